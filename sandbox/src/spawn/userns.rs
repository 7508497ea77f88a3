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
//! The namespace is made by a short-lived child: unshare(2) of a user namespace needs a
//! single-threaded caller that stays outside it to write the id maps (user_namespaces(7): the writer
//! needs CAP_SETUID in the parent namespace, which the namespace's own members do not have).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::ForkResult;

/// A failed step: what, and the errno.
pub(crate) type Failed = (&'static str, Errno);

/// A namespace to enter, and what entering it is called in an error.
type ToEnter = (OwnedFd, &'static str);

/// Rootless: moves the helper into a new user namespace where the caller is root (the setup
/// namespace), mapping only the caller's own ids, as an unprivileged process may.
pub(crate) fn enter_setup_namespace(uid: u32, gid: u32) -> Result<(), Failed> {
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| ("create the setup user namespace (unshare)", e))?;
    write("/proc/self/setgroups", b"deny").map_err(|e| ("deny setgroups in the setup user namespace", e))?;
    write("/proc/self/uid_map", format!("0 {uid} 1\n").as_bytes()).map_err(|e| ("map the caller's uid to root", e))?;
    write("/proc/self/gid_map", format!("0 {gid} 1\n").as_bytes()).map_err(|e| ("map the caller's gid to root", e))
}

/// Makes the program's user namespace, mapping `0..count` inside to `base..base+count` of the
/// helper's namespace, with new UTS, IPC and (if `net`) network namespaces owned by it; moves the
/// helper into those three (so that init is born in them) and returns the user namespace, for init to
/// enter once the mounts are built.
pub(crate) fn create_program_namespaces(
    t: crate::sys::SingleThreaded,
    base: u32,
    count: u32,
    net: bool,
) -> Result<OwnedFd, Failed> {
    let mut others = CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if net {
        others |= CloneFlags::CLONE_NEWNET;
    }
    let (user, joined) = with_maker(t, Some(others), |maker| {
        maker.map(
            base,
            count,
            [
                "create the program's user namespace (unshare)",
                "write the program's uid map",
                "write the program's gid map",
            ],
        )?;
        maker.resume()?;
        maker.said("create the program's UTS, IPC and network namespaces (unshare)")?;
        let user = maker.open("user").map_err(|e| ("open the program's user namespace", e))?;
        let mut joined: Vec<ToEnter> = Vec::new();
        let mut names =
            vec![("uts", "enter the program's UTS namespace"), ("ipc", "enter the program's IPC namespace")];
        if net {
            names.push(("net", "enter the program's network namespace"));
        }
        for (ns, what) in names {
            joined.push((maker.open(ns).map_err(|e| (what, e))?, what));
        }
        Ok((user, joined))
    })?;
    for (fd, what) in joined {
        nix::sched::setns(fd, CloneFlags::empty()).map_err(|e| (what, e))?;
    }
    Ok(user)
}

/// A user namespace for an id-mapped mount only, mapping root (0) to `base` and nothing else, owning
/// no other namespace.
pub(crate) fn create_idmap_namespace(t: crate::sys::SingleThreaded, base: u32) -> Result<OwnedFd, Failed> {
    with_maker(t, None, |maker| {
        maker.map(
            base,
            1,
            [
                "create the volumes' user namespace (unshare)",
                "write the volumes' uid map",
                "write the volumes' gid map",
            ],
        )?;
        maker.open("user").map_err(|e| ("open the volumes' user namespace", e))
    })
}

/// The helper's side of a namespace maker: a short-lived child that makes the namespaces, since
/// unshare(2) of a user namespace needs a single-threaded caller that stays outside it to write the
/// id maps.
struct Maker {
    pid: nix::unistd::Pid,
    up: std::fs::File,
    down: std::fs::File,
}

impl Maker {
    /// Waits for the maker's word that a step is done (`what` names it if it failed).
    fn said(&mut self, what: &'static str) -> Result<(), Failed> {
        let mut byte = [0u8; 1];
        match self.up.read(&mut byte) {
            Ok(1) => Ok(()),
            _ => Err((what, Errno::EPERM)),
        }
    }

    /// Once the maker has its user namespace: maps `0..count` inside to `base..` outside, uid and gid.
    /// `steps` name the three steps (the maker's unshare, the uid map, the gid map) in errors.
    fn map(&mut self, base: u32, count: u32, steps: [&'static str; 3]) -> Result<(), Failed> {
        let [unshare, uid, gid] = steps;
        self.said(unshare)?;
        let map = format!("0 {base} {count}\n");
        write(&format!("/proc/{}/uid_map", self.pid), map.as_bytes()).map_err(|e| (uid, e))?;
        write(&format!("/proc/{}/gid_map", self.pid), map.as_bytes()).map_err(|e| (gid, e))
    }

    /// Lets the maker go on to its second step.
    fn resume(&mut self) -> Result<(), Failed> {
        self.down.write_all(b"m").map_err(|_| ("resume the namespace maker", Errno::EPIPE))
    }

    /// One of the maker's namespaces (`user`, `uts`, ...).
    fn open(&self, ns: &str) -> Result<OwnedFd, Errno> {
        let path = format!("/proc/{}/ns/{ns}", self.pid);
        nix::fcntl::open(path.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
    }
}

/// Forks a namespace maker and runs `helper` against it; the maker makes a user namespace, says so,
/// and, with `others`, waits for [`Maker::resume`], makes those (root of its user namespace by then,
/// with every capability in it) and says so again; then it waits until the helper is done with it.
fn with_maker<T>(
    t: crate::sys::SingleThreaded,
    others: Option<CloneFlags>,
    helper: impl FnOnce(&mut Maker) -> Result<T, Failed>,
) -> Result<T, Failed> {
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ("create a pipe to the namespace maker", e));
    let (up_r, up_w) = pipe()?;
    let (down_r, down_w) = pipe()?;
    match crate::sys::fork(t).map_err(|e| ("fork the namespace maker", e))? {
        ForkResult::Child => {
            drop((up_r, down_w));
            let mut up = std::fs::File::from(up_w);
            let mut down = std::fs::File::from(down_r);
            let mut byte = [0u8; 1];
            let mut ok = nix::sched::unshare(CloneFlags::CLONE_NEWUSER).is_ok() && up.write_all(b"u").is_ok();
            if let Some(others) = others {
                ok = ok
                    && matches!(down.read(&mut byte), Ok(1))
                    && nix::sched::unshare(others).is_ok()
                    && up.write_all(b"n").is_ok();
            }
            let _ = down.read(&mut byte);
            std::process::exit(if ok { 0 } else { 1 });
        }
        ForkResult::Parent { child } => {
            drop((up_w, down_r));
            let mut maker = Maker { pid: child, up: std::fs::File::from(up_r), down: std::fs::File::from(down_w) };
            let result = helper(&mut maker);
            // Closing its end lets the maker exit.
            drop(maker);
            let _ = nix::sys::wait::waitpid(child, None);
            result
        }
    }
}

/// After setns(2) into a user namespace, which keeps the process's ids (unmapped there): becomes its
/// root, so that what is exec'd next keeps root's capabilities in it (capabilities(7), "Capabilities
/// and execution of programs by root").
pub(crate) fn become_root() -> Result<(), Errno> {
    let (uid, gid) = (nix::unistd::Uid::from_raw(0), nix::unistd::Gid::from_raw(0));
    nix::unistd::setresgid(gid, gid, gid)?;
    // Refused where setgroups is denied (rootless: inherited from the setup namespace); there the
    // process has no supplementary group to drop anyway.
    let _ = nix::unistd::setgroups(&[]);
    let parent = nix::unistd::getppid();
    nix::unistd::setresuid(uid, uid, uid)?;
    // prctl(2): a change of credentials clears the parent-death signal: set it again, and make sure the
    // parent did not die in between (the process would then never get it).
    nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGKILL))?;
    if nix::unistd::getppid() != parent {
        std::process::exit(1);
    }
    Ok(())
}

fn write(path: &str, contents: &[u8]) -> Result<(), Errno> {
    let fd = nix::fcntl::open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    nix::unistd::write(&fd, contents).map(drop)
}
