//! The program's user namespace, made by the helper before it forks init (issue 9).
//!
//! The program runs in a user namespace of its own, also as root, where root is mapped to an
//! unprivileged range of host ids; its UTS, IPC and network namespaces belong to that user namespace,
//! so it keeps root's powers over them (hostname, port 80, `ip link`). Its mounts, however, are built
//! by init *before* init enters that user namespace, in a mount namespace owned by a more privileged
//! one (the host's as root, the setup namespace rootless): entering it copies the mount namespace,
//! and the kernel locks every mount of the copy (mount_namespaces(7), "Restrictions on mount
//! namespaces"), so that no remount, unmount or re-bind from inside can undo them.
//!
//! The namespaces are made by a short-lived holder ([`NamespaceHolder`]): a process born in them,
//! sharing the helper's memory, which the helper maps, opens and kills; a process that stays outside
//! the user namespace must write its id maps (user_namespaces(7)).

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

use crate::sys::NamespaceHolder;

/// A failed step: what, and the errno.
pub(crate) type Failed = (&'static str, Errno);

/// A namespace to enter, and what entering it is called in an error.
type ToEnter = (OwnedFd, &'static str);

/// Rootless: moves the helper into the setup namespace, a user namespace where the caller is root.
/// With `subordinate` (crate::spawn::subids::allowed) and a range the system grants, it is this process's shared one,
/// which also maps the range (crate::spawn::subids); otherwise a new one that maps only the caller's
/// own ids, as an unprivileged process may. Returns the uid and gid maps of the program's namespace,
/// nested in it: all that it maps, in the same extents (the kernel refuses an extent that spans two
/// of the parent's: the caller and its range are two). setns(2) and unshare(2) of a user namespace
/// need a single-threaded caller.
pub(crate) fn enter_setup_namespace(
    t: crate::sys::SingleThreaded,
    uid: u32,
    gid: u32,
    subordinate: bool,
) -> Result<[String; 2], Failed> {
    if let Some(shared) = subordinate.then(|| super::subids::shared(t, uid, gid)).flatten() {
        nix::sched::setns(&shared.userns, CloneFlags::CLONE_NEWUSER)
            .map_err(|e| ("enter the setup user namespace (setns)", e))?;
        return Ok(shared.counts.map(|n| id_map(&[(0, 0, 1), (1, 1, n - 1)])));
    }
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| ("create the setup user namespace (unshare)", e))?;
    write("/proc/self/setgroups", b"deny").map_err(|e| ("deny setgroups in the setup user namespace", e))?;
    write("/proc/self/uid_map", id_map(&[(0, uid, 1)]).as_bytes()).map_err(|e| ("map the caller's uid to root", e))?;
    write("/proc/self/gid_map", id_map(&[(0, gid, 1)]).as_bytes()).map_err(|e| ("map the caller's gid to root", e))?;
    Ok([id_map(&[(0, 0, 1)]), id_map(&[(0, 0, 1)])])
}

/// The text of a uid_map or gid_map: one `inside outside count` line per extent, empty ones left out.
pub(crate) fn id_map(extents: &[(u32, u32, u32)]) -> String {
    extents.iter().filter(|e| e.2 > 0).map(|(inside, outside, n)| format!("{inside} {outside} {n}\n")).collect()
}

/// The program's network namespace, as [`create_program_namespaces`] makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProgramNet {
    /// The host's (none of its own).
    Host,
    /// Made with the others, and entered by the helper.
    Now,
    /// Made by the holder after the others, while init builds the mounts (crate::spawn::netns).
    Background,
}

/// Makes the program's user namespace, with `maps` (uid_map and gid_map, see [`id_map`]) over the
/// helper's namespace, with new UTS, IPC and network namespaces owned by it (as `net` says); moves
/// the helper into the UTS, IPC and (made now) network ones, so that init is born in them, and
/// returns the user namespace, for init to enter once the mounts are built, and a network namespace
/// in the making.
///
/// `owner`: as root, the host uid the user namespace is made to belong to
/// ([`crate::hardening::namespace_owner`]), see [`owned_by`].
pub(crate) fn create_program_namespaces(
    maps: [String; 2],
    net: ProgramNet,
    owner: Option<u32>,
) -> Result<(OwnedFd, Option<super::netns::Background>), Failed> {
    let mut flags = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if net == ProgramNet::Now {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let make = || {
        if net == ProgramNet::Background {
            let (holder, background) = super::netns::start(flags)?;
            Ok((holder, Some(background)))
        } else {
            Ok((NamespaceHolder::spawn(flags).map_err(|e| ("create the program's namespaces (clone)", e))?, None))
        }
    };
    let (holder, background) = match owner {
        Some(uid) => owned_by(uid, make)?,
        None => make()?,
    };
    map(&holder, &maps, ["write the program's uid map", "write the program's gid map"])?;
    // Through a pidfd of the holder where the kernel can (the background network's own, or one
    // opened now): one setns(2) for all of them (Linux 5.8) and the user namespace from an ioctl
    // (Linux 6.11), instead of a lookup of each /proc/<pid>/ns file (about 15 µs each, most of
    // this step here) and a setns(2) per namespace. Otherwise through those files.
    let opened;
    let pidfd = match &background {
        Some(b) => Some(b.holder()),
        None => {
            opened = rustix::process::Pid::from_raw(holder.pid().as_raw())
                .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
            opened.as_ref().map(AsFd::as_fd)
        }
    };
    let user = match pidfd.map(crate::sys::user_namespace_of) {
        Some(Ok(fd)) => fd,
        _ => open(&holder, "user").map_err(|e| ("open the program's user namespace", e))?,
    };
    let together = CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | if net == ProgramNet::Now { CloneFlags::CLONE_NEWNET } else { CloneFlags::empty() };
    let mut joined: Vec<ToEnter> = Vec::new();
    if pidfd.is_none_or(|fd| nix::sched::setns(fd, together).is_err()) {
        let mut names =
            vec![("uts", "enter the program's UTS namespace"), ("ipc", "enter the program's IPC namespace")];
        if net == ProgramNet::Now {
            names.push(("net", "enter the program's network namespace"));
        }
        for (ns, what) in names {
            joined.push((open(&holder, ns).map_err(|e| (what, e))?, what));
        }
    }
    if background.is_some() {
        // It holds the network namespace until init has joined it; not waited for.
        holder.leave_running();
    } else {
        drop(holder);
    }
    for (fd, what) in joined {
        nix::sched::setns(fd, CloneFlags::empty()).map_err(|e| (what, e))?;
    }
    Ok((user, background))
}

/// Runs `make`, which creates a user namespace, with this (single-threaded, root) process's effective
/// uid `owner` and its capabilities raised again, then root again: the namespace belongs to `owner`
/// (its creator's effective uid, user_namespaces(7)).
///
/// The kernel counts what a user namespace's processes hold against per-user quotas at every level
/// up to the host's, at each level for the namespace's owner (`user.max_inotify_instances`,
/// `user.max_uts_namespaces`, ...; kernel/ucount.c): owned by the host's root, a sandbox could take
/// all of root's, and host services running as root got EMFILE from inotify_init1 (the eighteenth
/// outside review: 128 inotify instances held in a sandbox). The owner also holds every capability
/// over the namespace from the host (cap_capable): it must be an id no host process runs as and no
/// file carries, one of [`crate::hardening::OWNERS_FIRST`]'s block (the nineteenth and twentieth outside reviews:
/// as the id base, or as base + 65536, a second job's root or its shifted rootfs's setuid files had
/// it).
///
/// A change of effective uid away from 0 empties the effective capabilities and keeps the permitted
/// ones (the real and saved uids stay 0): they are raised again from the permitted set, which takes
/// no privilege (the securebits way took CAP_SETPCAP, which a hardened service may lack, and then fell
/// back to root's ownership: the twentieth review); going back to uid 0 raises them anew. It also
/// clears the parent-death signal: asked for again, as [`become_root`] does, and the parent checked.
/// Where the switch is refused, the namespace is made by root as before.
fn owned_by<T>(owner: u32, make: impl FnOnce() -> Result<T, Failed>) -> Result<T, Failed> {
    use rustix::thread::{CapabilitySets, capabilities, set_capabilities, set_thread_res_uid};
    let Ok(caps) = capabilities(None) else { return make() };
    let parent = nix::unistd::getppid();
    if set_thread_res_uid(None, rustix::process::Uid::from_raw(owner), None).is_err() {
        return make();
    }
    let raised = set_capabilities(None, CapabilitySets { effective: caps.permitted, ..caps }).is_ok();
    let back_to_root = || -> Result<(), Failed> {
        set_thread_res_uid(None, rustix::process::Uid::ROOT, None).map_err(|e| {
            ("become root again after creating the program's user namespace", Errno::from_raw(e.raw_os_error()))
        })?;
        nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGKILL))
            .map_err(|e| ("ask for SIGKILL at the caller's death again", e))?;
        if nix::unistd::getppid() != parent {
            crate::sys::exit_now(1);
        }
        Ok(())
    };
    if !raised {
        // Made by root, as where the switch is refused.
        back_to_root()?;
        return make();
    }
    let made = make();
    back_to_root()?;
    made
}

/// A user namespace for an id-mapped mount only, mapping root (0) to `base` and nothing else, owning
/// no other namespace.
pub(crate) fn create_idmap_namespace(base: u32) -> Result<OwnedFd, Failed> {
    let holder = NamespaceHolder::spawn(CloneFlags::CLONE_NEWUSER)
        .map_err(|e| ("create the volumes' user namespace (clone)", e))?;
    let root = id_map(&[(0, base, 1)]);
    map(&holder, &[root.clone(), root], ["write the volumes' uid map", "write the volumes' gid map"])?;
    open(&holder, "user").map_err(|e| ("open the volumes' user namespace", e))
}

/// Writes the holder's uid and gid maps, `maps`; `steps` name
/// the two writes in errors. user_namespaces(7): the writer needs CAP_SETUID in the parent
/// namespace, which the namespace's own members do not have; hence a holder, and not unshare(2).
fn map(holder: &NamespaceHolder, [uids, gids]: &[String; 2], [uid, gid]: [&'static str; 2]) -> Result<(), Failed> {
    let pid = holder.pid();
    write(&format!("/proc/{pid}/uid_map"), uids.as_bytes()).map_err(|e| (uid, e))?;
    write(&format!("/proc/{pid}/gid_map"), gids.as_bytes()).map_err(|e| (gid, e))
}

/// One of the holder's namespaces (`user`, `uts`, ...).
pub(crate) fn open(holder: &NamespaceHolder, ns: &str) -> Result<OwnedFd, Errno> {
    let path = format!("/proc/{}/ns/{ns}", holder.pid());
    nix::fcntl::open(path.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
}

/// After setns(2) into a user namespace, which keeps the process's ids (unmapped there): becomes its
/// root, so that what is exec'd next keeps root's capabilities in it (capabilities(7), "Capabilities
/// and execution of programs by root").
pub(crate) fn become_root() -> Result<(), Errno> {
    let (uid, gid) = (nix::unistd::Uid::from_raw(0), nix::unistd::Gid::from_raw(0));
    // Before any change of credentials, each of which clears the parent-death signal.
    let parent = nix::unistd::getppid();
    nix::unistd::setresgid(gid, gid, gid)?;
    // Refused where setgroups is denied (rootless: inherited from the setup namespace); there the
    // process has no supplementary group to drop anyway.
    let _ = nix::unistd::setgroups(&[]);
    nix::unistd::setresuid(uid, uid, uid)?;
    // prctl(2): a change of credentials clears the parent-death signal: set it again, and make sure the
    // parent did not die in between (the process would then never get it).
    nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGKILL))?;
    if nix::unistd::getppid() != parent {
        crate::sys::exit_now(1);
    }
    Ok(())
}

fn write(path: &str, contents: &[u8]) -> Result<(), Errno> {
    let fd = nix::fcntl::open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    nix::unistd::write(&fd, contents).map(drop)
}
