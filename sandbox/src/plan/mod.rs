//! The setup plan: what happens inside the new namespaces, in order, as data.
//!
//! [`plan`] turns a [`Config`] into steps; [`run`] executes them against a [`Sys`]. The order follows
//! bubblewrap's `setup_newroot`: make the host's mounts a one-way slave, pivot into a staging tmpfs
//! (the host stays reachable at `/oldroot`), build the new root there, pivot into it, detach the host.

use std::path::{Path, PathBuf};

use crate::config::Config;
pub(crate) use crate::report::{Failure, StepKind};

mod etc;
mod mounts;
mod rootfs;
use crate::sys::Sys;
use nix::mount::MsFlags;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    WriteFile {
        path: PathBuf,
        contents: Vec<u8>,
    },
    /// A file the sandbox itself provides (`/etc/hosts`, …), in its own root layer only: nothing
    /// is written where the path leads into another mount (a volume), which is the user's.
    WriteOwnFile {
        path: PathBuf,
        contents: Vec<u8>,
    },
    Mount {
        source: Option<String>,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    Mkdir {
        path: PathBuf,
        mode: u32,
    },
    Touch {
        path: PathBuf,
    },
    Symlink {
        target: PathBuf,
        link: PathBuf,
    },
    PivotRoot {
        new_root: PathBuf,
        put_old: PathBuf,
    },
    UmountDetach {
        target: PathBuf,
    },
    Chdir {
        path: PathBuf,
    },
    SetHostname {
        name: String,
    },
    LoopbackUp,
    /// Joins the network namespace a holder made meanwhile (crate::spawn::netns).
    JoinNetwork {
        made: crate::config::NetworkInBackground,
    },
    Chmod {
        path: PathBuf,
        mode: u32,
    },
    CopyTree {
        from: PathBuf,
        to: PathBuf,
        /// Added to every owner (as root with a shifted id range).
        shift: u32,
    },
    /// Binds `source` at `target` through the id mapping of the user namespace `userns`, nosuid,
    /// nodev, maybe read-only (crate::sys::hardening::idmapped_bind).
    IdmappedBind {
        source: PathBuf,
        target: PathBuf,
        userns: i32,
        read_only: bool,
        /// With the mounts below `source` (a volume; the overlay's lower layer sees no submount).
        recursive: bool,
        /// A volume's device and inode: bound only if `source` is still that file (ESTALE).
        id: Option<(u64, u64)>,
    },
    /// Holds the kept writable layer's host folder `source` (a path without links, opened without
    /// following any) at `target`, if it is still the folder of device and inode `id`: made private
    /// (0700, given to `owner` if any), `upper` and `work` made in it, none there before, then bound
    /// at `target` through its descriptor (crate::sys::mount::hold_folder).
    HoldFolder {
        source: PathBuf,
        target: PathBuf,
        id: (u64, u64),
        owner: Option<u32>,
    },
    /// Binds the read-only layer's host folder `source` (a path without links, opened without
    /// following any) at `target` through its descriptor, if it is still the folder of device and
    /// inode `id` (crate::sys::mount::bind_held).
    BindHeld {
        source: PathBuf,
        target: PathBuf,
        id: (u64, u64),
    },
    /// Binds the host path `source` at `target` with the mounts below it, never through a link at
    /// `source` (crate::sys::hardening::bind_no_links): a volume bound as it is.
    BindNoLinks {
        source: PathBuf,
        target: PathBuf,
        /// Its device and inode: bound only if `source` is still that file (ESTALE).
        id: Option<(u64, u64)>,
    },
    /// Makes each of `nodes`, a character device (name, (major, minor), the host's device of the
    /// same name) in the directory `dir`, mode 0666, the host's root its owner (as the host's own
    /// nodes are); where the kernel refuses (no CAP_MKNOD: a container that dropped it), binds the
    /// host's device there instead. One step for all, with `dir` resolved once (it was looked up in
    /// the new root again for each).
    CharDevices {
        dir: PathBuf,
        nodes: Vec<(&'static str, (u64, u64), String)>,
    },
    /// Gives a path to an owner (lchown).
    Chown {
        path: PathBuf,
        id: u32,
    },
    /// Enters the program's user namespace, then copies the mount namespace into it, which locks
    /// every mount (crate::spawn::userns).
    EnterUserNamespace {
        userns: i32,
    },
    /// Hides a path of /proc or /sys: `/dev/null` over a file, an empty read-only tmpfs over a
    /// directory; nothing if the kernel has no such path.
    Mask {
        path: PathBuf,
    },
    /// Binds a path onto itself read-only (and nosuid, nodev); nothing if it does not exist.
    ReadOnly {
        path: PathBuf,
    },
    MkdirAll {
        path: PathBuf,
    },
    UnshareMount,
    /// Sets nosuid, nodev and maybe read-only on a bind mount and everything below it.
    LockBind {
        target: PathBuf,
        read_only: bool,
    },
    /// Binds the staged file `source` over `target`, creating `target` first if it is missing.
    BindFile {
        source: PathBuf,
        target: PathBuf,
    },
    /// A writable overlay of a host folder (`lowers`, the host's last) at `target`; where the kernel
    /// refuses it (mounts below the folder that a user namespace may not look under), the folder is
    /// rebuilt one level down instead ([`host_overlay`]).
    HostOverlay {
        /// Topmost first; the last is the host folder itself.
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
        userxattr: bool,
    },
}

impl Op {
    /// A mount of the kernel file system `fstype` (its source named the same, as mount(8) shows it).
    fn fs(fstype: &str, target: PathBuf, flags: MsFlags, data: Option<&str>) -> Op {
        Op::Mount {
            source: Some(fstype.to_owned()),
            target,
            fstype: Some(fstype.to_owned()),
            flags,
            data: data.map(str::to_owned),
        }
    }

    /// A bind mount of `source` (with `flags` beside MS_BIND, e.g. MS_REC) at `target`.
    fn bind(source: impl Into<String>, target: PathBuf, flags: MsFlags) -> Op {
        Op::Mount { source: Some(source.into()), target, fstype: None, flags, data: None }
    }

    /// The path the step acts on, for error messages.
    pub(crate) fn path(&self) -> Option<String> {
        let p = match self {
            Op::WriteFile { path, .. }
            | Op::WriteOwnFile { path, .. }
            | Op::Mkdir { path, .. }
            | Op::Touch { path }
            | Op::CharDevices { dir: path, .. }
            | Op::Chdir { path }
            | Op::Chmod { path, .. } => path,
            Op::Mount { target, .. } | Op::UmountDetach { target } => target,
            Op::Symlink { link, .. } => link,
            Op::PivotRoot { new_root, .. } => new_root,
            Op::CopyTree { from, .. } => from,
            Op::MkdirAll { path }
            | Op::LockBind { target: path, .. }
            | Op::HostOverlay { target: path, .. }
            | Op::BindFile { target: path, .. } => path,
            Op::IdmappedBind { target, .. } | Op::BindNoLinks { target, .. } => target,
            Op::HoldFolder { source, .. } | Op::BindHeld { source, .. } => source,
            Op::Chown { path, .. } | Op::Mask { path } | Op::ReadOnly { path } => path,
            Op::EnterUserNamespace { .. } => return None,
            Op::SetHostname { name } => return Some(name.clone()),
            Op::LoopbackUp => return Some("lo".to_owned()),
            Op::JoinNetwork { .. } => return None,
            Op::UnshareMount => return None,
        };
        // Paths of the new root are shown as the sandbox sees them.
        let shown = p.strip_prefix("/newroot").map(|r| Path::new("/").join(r)).unwrap_or_else(|_| p.clone());
        Some(shown.display().to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub kind: StepKind,
    pub what: &'static str,
    pub op: Op,
    /// A failure is logged and setup goes on (e.g. sysfs, which a user namespace may not mount).
    pub optional: bool,
}

/// The whole plan for `config`: [`namespace_phase`], then [`filesystem_phase`] (init runs them one
/// after the other, telling the helper about its mount namespace in between).
#[cfg(test)]
pub(crate) fn plan(config: &Config) -> Vec<Step> {
    let mut steps = namespace_phase(config);
    steps.extend(filesystem_phase(config));
    steps
}

/// What init does for every sandbox right after the namespaces exist: id maps, hostname, loopback.
pub(crate) fn namespace_phase(config: &Config) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut step = |kind, what, op| steps.push(Step { kind, what, op, optional: false });
    let p = PathBuf::from;
    // The mount namespace is init's own, created inside the user namespace (which then owns it).
    step(StepKind::Namespaces, "create the mount namespace", Op::UnshareMount);
    // With the program's user namespace (crate::spawn::userns), the helper made and mapped them all.
    if config.user_namespace && config.security.userns_fd.is_none() {
        // user_namespaces(7): an unprivileged process may map only itself, and must deny setgroups
        // before writing gid_map.
        step(
            StepKind::UserMap,
            "deny setgroups in the user namespace",
            Op::WriteFile { path: p("/proc/self/setgroups"), contents: b"deny".to_vec() },
        );
        let uid_map = format!("0 {} 1\n", config.outer_uid).into_bytes();
        step(
            StepKind::UserMap,
            "map the caller's uid to root",
            Op::WriteFile { path: p("/proc/self/uid_map"), contents: uid_map },
        );
        let gid_map = format!("0 {} 1\n", config.outer_gid).into_bytes();
        step(
            StepKind::UserMap,
            "map the caller's gid to root",
            Op::WriteFile { path: p("/proc/self/gid_map"), contents: gid_map },
        );
    }
    step(StepKind::Hostname, "set the hostname", Op::SetHostname { name: config.hostname.clone() });
    if config.network.loopback_up() && config.network_in_background.is_none() {
        step(StepKind::Loopback, "bring up the loopback interface", Op::LoopbackUp);
    }
    steps
}

/// Building the root filesystem and switching into it, in parts: the staging root and the new root
/// (`rootfs`), the kernel's file systems and the volumes (`mounts`), the files the sandbox is given
/// (`etc`), then the pivot. Init does it before starting the program's process (a program's or a
/// closure's).
pub(crate) fn filesystem_phase(config: &Config) -> Vec<Step> {
    let mut s = Steps::default();
    rootfs::stage(&mut s, config);
    mounts::standard(&mut s, config);
    if !config.security.privileged {
        mounts::mask(&mut s, "/proc/");
    }
    // Volumes, then files, after the standard mounts: a user's mount may cover /tmp, and a file may
    // land in a volume.
    mounts::volumes(&mut s, config);
    etc::files(&mut s, config);
    // The network namespace a holder made while the steps above ran: joined before the steps that
    // need it (sysfs shows the network namespace of the process that mounts it).
    if let Some(made) = config.network_in_background {
        s.add(
            StepKind::Network,
            "create the network namespace (in the background) and join it",
            Op::JoinNetwork { made },
        );
        if config.network.loopback_up() {
            s.add(StepKind::Loopback, "bring up the loopback interface", Op::LoopbackUp);
        }
    }
    if config.sys && config.network.own_namespace() {
        mounts::sys(&mut s);
        if !config.security.privileged {
            mounts::mask(&mut s, "/sys/");
        }
    }
    rootfs::pivot(&mut s);
    if let Some(userns) = config.security.userns_fd.filter(|_| !config.security.privileged) {
        s.add(
            StepKind::Namespaces,
            "enter the program's user namespace, locking every mount (setns, unshare)",
            Op::EnterUserNamespace { userns },
        );
    }
    s.0
}

/// Steps in the making.
#[derive(Debug, Default)]
pub(crate) struct Steps(Vec<Step>);

impl Steps {
    /// Adds a step; only `/sys` is optional (a user namespace may not mount it), and not its masks.
    fn add(&mut self, kind: StepKind, what: &'static str, op: Op) {
        let optional = kind == StepKind::Sys && !matches!(op, Op::Mask { .. });
        self.0.push(Step { kind, what, op, optional });
    }
}

/// Executes `steps` in order; stops at the first failure of a step that is not optional.
pub(crate) fn run(steps: &[Step], sys: &dyn Sys) -> Result<(), Failure> {
    for s in steps {
        let result = match &s.op {
            Op::WriteFile { path, contents } => sys.write_file(path, contents),
            Op::WriteOwnFile { path, contents } => sys.write_own_file(path, contents),
            Op::Mount { source, target, fstype, flags, data } => {
                sys.mount(source.as_deref(), target, fstype.as_deref(), *flags, data.as_deref())
            }
            Op::Mkdir { path, mode } => sys.mkdir(path, *mode),
            Op::Touch { path } => sys.touch(path),
            Op::CharDevices { dir, nodes } => sys.char_devices(dir, nodes),
            Op::Symlink { target, link } => sys.symlink(target, link),
            Op::PivotRoot { new_root, put_old } => sys.pivot_root(new_root, put_old),
            Op::UmountDetach { target } => sys.umount_detach(target),
            Op::Chdir { path } => sys.chdir(path),
            Op::SetHostname { name } => sys.sethostname(name),
            Op::LoopbackUp => sys.loopback_up(),
            Op::JoinNetwork { made } => sys.join_network(made),
            Op::Chmod { path, mode } => sys.chmod(path, *mode),
            Op::CopyTree { from, to, shift } => sys.copy_tree(from, to, *shift),
            Op::IdmappedBind { source, target, userns, read_only, recursive, id } => {
                sys.idmapped_bind(source, target, *userns, (*read_only, *recursive), *id)
            }
            Op::Chown { path, id } => sys.chown(path, *id),
            Op::HoldFolder { source, target, id, owner } => sys.hold_folder(source, target, *id, *owner),
            Op::BindHeld { source, target, id } => sys.bind_held(source, target, *id),
            Op::BindNoLinks { source, target, id } => sys.bind_no_links(source, target, *id),
            Op::EnterUserNamespace { userns } => sys.enter_user_namespace(*userns),
            Op::Mask { path } => sys.mask(path),
            Op::ReadOnly { path } => sys.bind_read_only(path),
            Op::MkdirAll { path } => sys.mkdir_all(path),
            Op::UnshareMount => sys.unshare_mount(),
            Op::LockBind { target, read_only } => sys.lock_bind(target, *read_only),
            Op::BindFile { source, target } => bind_file(sys, source, target),
            Op::HostOverlay { lowers, upper, work, target, userxattr } => {
                host_overlay(sys, (lowers, upper, work, target), *userxattr)
            }
        };
        match result {
            Ok(()) => {}
            Err(errno) if s.optional => tracing::debug!(what = s.what, %errno, "optional setup step failed"),
            Err(errno) => return Err(Failure { kind: s.kind, what: s.what, path: s.op.path(), errno }),
        }
    }
    Ok(())
}

/// See [`Op::BindFile`].
fn bind_file(sys: &dyn Sys, source: &Path, target: &Path) -> Result<(), nix::errno::Errno> {
    let source_text = source.to_string_lossy();
    let bind = || sys.mount(Some(&source_text), target, None, MsFlags::MS_BIND, None);
    match bind() {
        Err(nix::errno::Errno::ENOENT) => {
            sys.touch(target)?;
            bind()
        }
        other => other,
    }
}

/// How many levels below a top-level host folder [`host_overlay`] rebuilds before it leaves a folder
/// empty.
const HOST_DEPTH: usize = 8;

/// How many entries [`host_overlay`] rebuilds in one folder, and in one top-level folder with all its
/// rebuilt subfolders (each entry costs a mount or a copy); entries past either are left out, and the
/// program's stderr names the folder, so that a huge folder neither slows every start down nor
/// exhausts `fs.mount-max` or the new root's tmpfs.
const HOST_ENTRIES: usize = 512;
const HOST_ENTRIES_IN_ALL: usize = 4096;

/// See [`Op::HostOverlay`]. Where overlayfs refuses the folder (inside a user namespace, a host folder
/// with mounts below it: they are locked, and overlayfs takes no lower layer with locked mounts under
/// it), `target` is left a plain folder of the new root holding the host folder's entries one by one:
/// each subfolder the same way (its own overlay, or one level further down), each regular file bound
/// read-only (the inode opened without following symlinks, so that one swapped in after the listing
/// is left out), each symlink copied; sockets, FIFOs and device nodes are left out. Never the folder
/// bound as it is: connect(2) reaches a host service's socket through a read-only bind too (the
/// caller's D-Bus and systemd manager under `/run/user/UID`, docker's socket), while a socket in an
/// overlay connects to nothing. An entry that fails (it went away, it cannot be read) is left out, a
/// folder that cannot be listed stays empty, as do folders [`HOST_DEPTH`] levels down. What the
/// program writes directly in a rebuilt folder lands in the new root's tmpfs, not in a writable layer.
fn host_overlay(sys: &dyn Sys, layers: HostLayers<'_>, userxattr: bool) -> Result<(), nix::errno::Errno> {
    if layers.0.is_empty() {
        return Err(nix::errno::Errno::EINVAL);
    }
    if overlay(sys, layers, userxattr).is_ok() {
        return Ok(());
    }
    let mut entries = 0;
    rebuild(sys, layers, userxattr, HOST_DEPTH, &mut entries);
    Ok(())
}

/// An overlay's lower layers (the host folder last), upper and work folders, and mount point.
type HostLayers<'a> = (&'a [PathBuf], &'a Path, &'a Path, &'a Path);

/// The overlay itself.
fn overlay(
    sys: &dyn Sys,
    (lowers, upper, work, target): HostLayers<'_>,
    userxattr: bool,
) -> Result<(), nix::errno::Errno> {
    let joined: Vec<String> = lowers.iter().map(|l| rootfs::escape_overlay_path(l)).collect();
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={}",
        joined.join(":"),
        rootfs::escape_overlay_path(upper),
        rootfs::escape_overlay_path(work)
    );
    if userxattr {
        data.push_str(",userxattr");
    }
    // nodev, as the rootfs's own overlay: a device node in a host folder (a chroot's /dev, say) opens
    // nothing (an outside review wrote the host's kernel log through one).
    sys.mount(Some("overlay"), target, Some("overlay"), MsFlags::MS_NODEV, Some(&data))
}

/// One level of [`host_overlay`]'s rebuilding: the entries of `lowers`' host folder into `target`
/// (`upper` and `work`: the places of its subfolders' layers). `count` counts the entries rebuilt in
/// the whole top-level folder.
fn rebuild(
    sys: &dyn Sys,
    (lowers, upper, work, target): HostLayers<'_>,
    userxattr: bool,
    depth: usize,
    count: &mut usize,
) {
    let Some(host) = lowers.last() else { return };
    let listed = if depth == 0 { Err(nix::errno::Errno::ELOOP) } else { sys.list_dir(host) };
    let entries = match listed {
        Ok(entries) => entries,
        Err(errno) => {
            tracing::debug!(folder = %host.display(), %errno, "a host folder overlayfs refuses is left empty");
            return;
        }
    };
    let entries: Vec<_> = entries.into_iter().filter(|(_, e)| !matches!(e, crate::sys::Entry::Other)).collect();
    let room = HOST_ENTRIES.min(HOST_ENTRIES_IN_ALL.saturating_sub(*count));
    if entries.len() > room {
        let shown = rootfs::host_name(host);
        // Init's stderr is the program's: the one place a user of the sandbox sees this.
        eprintln!(
            "sandbox: only {room} of the {} entries of the host folder {} are shown (a folder with mounts \
             below it is rebuilt entry by entry)",
            entries.len(),
            shown.display()
        );
    }
    for (name, entry) in entries.into_iter().take(room) {
        *count += 1;
        let at = target.join(&name);
        let done = match entry {
            crate::sys::Entry::Dir => {
                let below: Vec<PathBuf> = lowers.iter().map(|l| l.join(&name)).collect();
                let (up, wk) = (upper.join(&name), work.join(&name));
                let made = [&at, &up, &wk].into_iter().try_for_each(|dir| sys.mkdir(dir, 0o755));
                if made.is_ok() && overlay(sys, (&below, &up, &wk, &at), userxattr).is_err() {
                    rebuild(sys, (&below, &up, &wk, &at), userxattr, depth - 1, count);
                }
                made
            }
            crate::sys::Entry::File => sys.bind_regular_file(&host.join(&name), &at).map(drop),
            crate::sys::Entry::Symlink(to) => sys.symlink(&to, &at),
            crate::sys::Entry::Other => Ok(()),
        };
        if let Err(errno) = done {
            tracing::debug!(entry = %host.join(&name).display(), %errno, "a host entry is left out");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use nix::errno::Errno;

    use super::*;
    use crate::config::{Job, NetMode, RootMode};

    /// Records every call; fails the call whose description matches `fail_on`.
    #[derive(Default)]
    struct Recorder {
        calls: RefCell<Vec<String>>,
        fail_on: Option<(&'static str, Errno)>,
        /// What `list_dir` finds, by folder (none: empty).
        listings: Vec<(PathBuf, Vec<(String, crate::sys::Entry)>)>,
    }

    impl Recorder {
        fn call(&self, text: String) -> Result<(), Errno> {
            let fail = self.fail_on.filter(|(needle, _)| text.contains(needle)).map(|(_, e)| e);
            self.calls.borrow_mut().push(text);
            fail.map_or(Ok(()), Err)
        }
    }

    impl Sys for Recorder {
        fn list_dir(&self, path: &Path) -> Result<Vec<(std::ffi::OsString, crate::sys::Entry)>, Errno> {
            self.call(format!("list {}", path.display()))?;
            let listing = self.listings.iter().find(|(p, _)| p == path).map(|(_, l)| l.clone()).unwrap_or_default();
            Ok(listing.into_iter().map(|(name, e)| (name.into(), e)).collect())
        }
        fn bind_regular_file(&self, source: &Path, target: &Path) -> Result<bool, Errno> {
            self.call(format!("bind-file {} {}", source.display(), target.display())).map(|()| true)
        }
        fn mount(
            &self,
            source: Option<&str>,
            target: &Path,
            fstype: Option<&str>,
            flags: MsFlags,
            data: Option<&str>,
        ) -> Result<(), Errno> {
            self.call(format!(
                "mount {} {} {} {:?} {}",
                source.unwrap_or("-"),
                target.display(),
                fstype.unwrap_or("-"),
                flags,
                data.unwrap_or("-")
            ))
        }
        fn umount_detach(&self, target: &Path) -> Result<(), Errno> {
            self.call(format!("umount -l {}", target.display()))
        }
        fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), Errno> {
            self.call(format!("pivot_root {} {}", new_root.display(), put_old.display()))
        }
        fn chdir(&self, path: &Path) -> Result<(), Errno> {
            self.call(format!("chdir {}", path.display()))
        }
        fn mkdir(&self, path: &Path, mode: u32) -> Result<(), Errno> {
            self.call(format!("mkdir {} {mode:o}", path.display()))
        }
        fn touch(&self, path: &Path) -> Result<(), Errno> {
            self.call(format!("touch {}", path.display()))
        }
        fn char_devices(&self, dir: &Path, nodes: &[(&'static str, (u64, u64), String)]) -> Result<(), Errno> {
            for (name, (major, minor), _) in nodes {
                self.call(format!("mknod {} {major}:{minor}", dir.join(name).display()))?;
            }
            Ok(())
        }
        fn write_file(&self, path: &Path, contents: &[u8]) -> Result<(), Errno> {
            self.call(format!("write {} {:?}", path.display(), String::from_utf8_lossy(contents)))
        }
        fn write_own_file(&self, path: &Path, contents: &[u8]) -> Result<(), Errno> {
            self.write_file(path, contents)
        }
        fn symlink(&self, target: &Path, link: &Path) -> Result<(), Errno> {
            self.call(format!("symlink {} {}", target.display(), link.display()))
        }
        fn sethostname(&self, name: &str) -> Result<(), Errno> {
            self.call(format!("sethostname {name}"))
        }
        fn loopback_up(&self) -> Result<(), Errno> {
            self.call("loopback up".to_owned())
        }
        fn join_network(&self, made: &crate::config::NetworkInBackground) -> Result<(), Errno> {
            self.call(format!("join network {}", made.holder))
        }
        fn chmod(&self, path: &Path, mode: u32) -> Result<(), Errno> {
            self.call(format!("chmod {} {mode:o}", path.display()))
        }
        fn copy_tree(&self, from: &Path, to: &Path, shift: u32) -> Result<(), Errno> {
            self.call(format!("copy {} {} +{shift}", from.display(), to.display()))
        }
        fn mkdir_all(&self, path: &Path) -> Result<(), Errno> {
            self.call(format!("mkdir -p {}", path.display()))
        }
        fn unshare_mount(&self) -> Result<(), Errno> {
            self.call("unshare mount".to_owned())
        }
        fn lock_bind(&self, target: &Path, read_only: bool) -> Result<(), Errno> {
            self.call(format!("lock {} ro={read_only}", target.display()))
        }
        fn idmapped_bind(
            &self,
            source: &Path,
            target: &Path,
            userns: i32,
            (read_only, recursive): (bool, bool),
            _: Option<(u64, u64)>,
        ) -> Result<(), Errno> {
            let (s, t) = (source.display(), target.display());
            self.call(format!("idmap {s} {t} userns={userns} ro={read_only} rec={recursive}"))
        }
        fn chown(&self, path: &Path, id: u32) -> Result<(), Errno> {
            self.call(format!("chown {} {id}", path.display()))
        }
        fn hold_folder(&self, source: &Path, target: &Path, _: (u64, u64), owner: Option<u32>) -> Result<(), Errno> {
            self.call(format!("hold {} at {} for {owner:?}", source.display(), target.display()))
        }
        fn bind_held(&self, source: &Path, target: &Path, _: (u64, u64)) -> Result<(), Errno> {
            self.call(format!("bind held {} at {}", source.display(), target.display()))
        }
        fn bind_no_links(&self, source: &Path, target: &Path, _: Option<(u64, u64)>) -> Result<(), Errno> {
            self.call(format!("bind {} at {}", source.display(), target.display()))
        }
        fn enter_user_namespace(&self, userns: i32) -> Result<(), Errno> {
            self.call(format!("enter userns {userns}"))
        }
        fn mask(&self, path: &Path) -> Result<(), Errno> {
            self.call(format!("mask {}", path.display()))
        }
        fn bind_read_only(&self, path: &Path) -> Result<(), Errno> {
            self.call(format!("read-only {}", path.display()))
        }
    }

    fn config(user_namespace: bool, network: NetMode) -> Config {
        Config {
            root: RootMode::Overlay { lower: PathBuf::from("/cache/trees/abc,d.uid1000") },
            layers: Default::default(),
            hostname: "box".into(),
            network,
            env: vec![],
            current_dir: "/".into(),
            timeout: None,
            user_namespace,
            outer_uid: 1000,
            outer_gid: 1000,
            resolv_conf: None,
            controlling_terminal: false,
            pty: None,
            sys: true,
            mounts: vec![],
            files: vec![],
            limits: Default::default(),
            rlimits: vec![],
            security: crate::hardening::Security { tmpfs_size: 1 << 30, ..Default::default() },
            network_in_background: None,
            job: Job::Session,
        }
    }

    fn recorded(cfg: &Config) -> Vec<String> {
        let rec = Recorder::default();
        assert_eq!(run(&plan(cfg), &rec), Ok(()));
        rec.calls.into_inner()
    }

    fn position(calls: &[String], needle: &str) -> usize {
        calls
            .iter()
            .position(|c| c.contains(needle))
            .unwrap_or_else(|| panic!("no call matching {needle:?} in {calls:#?}"))
    }

    #[test]
    fn host_root_is_one_overlay_per_folder_rebuilt_entry_by_entry_where_refused_and_bound_etc_files() {
        use crate::config::{HostEntry, HostEntryKind};
        use crate::sys::Entry;
        let mut cfg = config(true, NetMode::Loopback);
        cfg.root = RootMode::Host {
            entries: vec![
                HostEntry {
                    name: "bin".into(),
                    kind: HostEntryKind::Symlink { target: "usr/bin".into() },
                    as_is: false,
                },
                HostEntry { name: "etc".into(), kind: HostEntryKind::Dir { layers: vec![] }, as_is: false },
                HostEntry { name: "mnt".into(), kind: HostEntryKind::Dir { layers: vec![] }, as_is: false },
                HostEntry { name: "vmlinuz".into(), kind: HostEntryKind::File, as_is: false },
            ],
        };
        // The kernel refuses the overlay of /mnt (locked mounts below it): it is rebuilt entry by entry,
        // its socket left out.
        let listing = vec![
            ("data".to_owned(), Entry::Dir),
            ("latest".to_owned(), Entry::Symlink("data".into())),
            ("note".to_owned(), Entry::File),
            ("service.sock".to_owned(), Entry::Other),
        ];
        let rec = Recorder {
            fail_on: Some(("lowerdir=/oldroot/mnt,", Errno::EINVAL)),
            listings: vec![(PathBuf::from("/oldroot/mnt"), listing)],
            ..Recorder::default()
        };
        assert_eq!(run(&plan(&cfg), &rec), Ok(()));
        let calls = rec.calls.into_inner();
        let order = [
            "mount tmpfs /newroot tmpfs",
            "mkdir /newroot/proc",
            "symlink usr/bin /newroot/bin",
            "mount overlay /newroot/etc overlay MsFlags(MS_NODEV) lowerdir=/oldroot/etc,upperdir=/upper/etc,workdir=/work/etc,userxattr",
            "mount overlay /newroot/mnt overlay",
            "list /oldroot/mnt",
            "mkdir /newroot/mnt/data",
            "mkdir /upper/mnt/data",
            "mount overlay /newroot/mnt/data overlay MsFlags(MS_NODEV) lowerdir=/oldroot/mnt/data,upperdir=/upper/mnt/data,workdir=/work/mnt/data,userxattr",
            "symlink data /newroot/mnt/latest",
            "bind-file /oldroot/mnt/note /newroot/mnt/note",
            "mount /oldroot/vmlinuz /newroot/vmlinuz - MsFlags(MS_BIND)",
            "lock /newroot/vmlinuz ro=true",
            "write /etc-hostname \"box\\n\"",
            "mount /etc-hostname /newroot/etc/hostname - MsFlags(MS_BIND)",
            "mount /etc-hosts /newroot/etc/hosts - MsFlags(MS_BIND)",
            "pivot_root . .",
        ];
        let positions: Vec<usize> = order.iter().map(|n| position(&calls, n)).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "out of order: {order:?} at {positions:?}\n{calls:#?}");
        assert!(!calls.iter().any(|c| c.contains("lowerdir=/oldroot,") || c.starts_with("copy")), "{calls:#?}");
        assert!(!calls.iter().any(|c| c.contains("service.sock") || c.contains("MS_REC)")), "{calls:#?}");
        assert!(
            !calls.iter().any(|c| c.starts_with("write /newroot/etc")),
            "the host's /etc is never written: {calls:#?}"
        );
    }

    #[test]
    fn rootless_plan_maps_ids_first_then_builds_and_pivots() {
        let calls = recorded(&config(true, NetMode::Loopback));
        assert_eq!(calls[0], "unshare mount");
        assert_eq!(calls[1], "write /proc/self/setgroups \"deny\"");
        assert_eq!(calls[2], "write /proc/self/uid_map \"0 1000 1\\n\"");
        assert_eq!(calls[3], "write /proc/self/gid_map \"0 1000 1\\n\"");
        assert_eq!(calls[4], "sethostname box");
        assert_eq!(calls[5], "loopback up");
        assert_eq!(calls[6], "mount - / - MsFlags(MS_REC | MS_SLAVE) -");
        let order = [
            "mount tmpfs /tmp tmpfs",
            "pivot_root /tmp /tmp/oldroot",
            "mount overlay /newroot overlay MsFlags(MS_NODEV) lowerdir=/oldroot/cache/trees/abc\\,d.uid1000,upperdir=/upper,workdir=/work,userxattr",
            "mount proc /newroot/proc",
            "mount tmpfs /newroot/dev tmpfs",
            "mount /oldroot/dev/null /newroot/dev/null",
            "mount devpts /newroot/dev/pts devpts",
            "mount tmpfs /newroot/tmp tmpfs",
            "write /newroot/etc/hosts",
            "pivot_root . .",
            "umount -l .",
        ];
        let positions: Vec<usize> = order.iter().map(|n| position(&calls, n)).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "out of order: {order:?} at {positions:?}\n{calls:#?}");
        assert_eq!(calls.last().map(String::as_str), Some("chdir /"));
    }

    #[test]
    fn root_plan_has_no_id_maps_and_no_userxattr() {
        let calls = recorded(&config(false, NetMode::Loopback));
        assert!(!calls.iter().any(|c| c.contains("uid_map") || c.contains("userxattr")), "{calls:#?}");
    }

    #[test]
    fn filesystem_phase_touches_no_namespace_settings() {
        let calls = {
            let rec = Recorder::default();
            assert_eq!(run(&filesystem_phase(&config(true, NetMode::Loopback)), &rec), Ok(()));
            rec.calls.into_inner()
        };
        assert!(calls[0].starts_with("mount - / -"), "{calls:#?}");
        assert!(!calls.iter().any(|c| c.contains("uid_map") || c.starts_with("sethostname") || c == "loopback up"));
    }

    #[test]
    fn copy_mode_copies_into_the_staging_tmpfs_then_binds() {
        let mut cfg = config(true, NetMode::Loopback);
        cfg.root = RootMode::Copy { lower: PathBuf::from("/cache/tree") };
        let calls = recorded(&cfg);
        let copy = position(&calls, "copy /oldroot/cache/tree /newroot +0");
        let bind = position(&calls, "mount /newroot /newroot - MsFlags(MS_NODEV | MS_BIND | MS_REC)");
        assert!(
            position(&calls, "mount tmpfs /tmp tmpfs") < copy && copy < bind && bind < position(&calls, "mount proc")
        );
        assert!(!calls.iter().any(|c| c.contains("overlay")));
    }

    #[test]
    fn volumes_and_files_come_after_the_standard_mounts() {
        let mut cfg = config(true, NetMode::Loopback);
        cfg.mounts = vec![
            crate::volume::Mount::bind("/", "/data").read_only(),
            crate::volume::Mount::tmpfs("/scratch").size(4096),
        ];
        cfg.files = vec![("/etc/app.toml".into(), b"port = 80\n".to_vec())];
        let calls = recorded(&cfg);
        let bind = position(&calls, "bind /oldroot/ at /newroot/data");
        let lock = position(&calls, "lock /newroot/data ro=true");
        let tmpfs =
            position(&calls, "mount tmpfs /newroot/scratch tmpfs MsFlags(MS_NOSUID | MS_NODEV) mode=1777,size=4096");
        let file = position(&calls, "write /newroot/etc/app.toml \"port = 80\\n\"");
        assert!(
            position(&calls, "mount tmpfs /newroot/tmp") < bind && bind < lock && lock < tmpfs && tmpfs < file,
            "{calls:#?}"
        );
        assert!(file < position(&calls, "pivot_root . ."));
    }

    #[test]
    fn a_file_volume_gets_a_file_mount_point_without_looking_at_the_host() {
        let mut cfg = config(true, NetMode::Loopback);
        let mut m = crate::volume::Mount::bind("/no/such/host/file", "/etc/app.conf");
        m.kind = crate::volume::MountKind::Bind { source: "/no/such/host/file".into(), is_dir: false, id: None };
        cfg.mounts = vec![m];
        let calls = recorded(&cfg);
        assert!(position(&calls, "mkdir -p /newroot/etc") < position(&calls, "touch /newroot/etc/app.conf"));
    }

    #[test]
    fn switch_members_list_each_other_in_etc_hosts() {
        let mut cfg = config(false, NetMode::Loopback);
        cfg.network = NetMode::Switch(crate::config::SwitchMember {
            holder: 1,
            address: "10.89.0.2".parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST),
            peer: "v1".into(),
            hosts: vec![
                ("db".into(), std::net::Ipv4Addr::new(10, 89, 0, 2)),
                ("web".into(), std::net::Ipv4Addr::new(10, 89, 0, 3)),
            ],
        });
        let calls = recorded(&cfg);
        let hosts = &calls[position(&calls, "write /newroot/etc/hosts")];
        assert!(hosts.contains("10.89.0.2\\tdb\\n10.89.0.3\\tweb\\n"), "{hosts}");
        assert!(calls.iter().any(|c| c == "loopback up"));
    }

    #[test]
    fn network_modes() {
        let none = recorded(&config(false, NetMode::None));
        assert!(!none.iter().any(|c| c == "loopback up"));
        let host = recorded(&config(false, NetMode::Host));
        assert!(!host.iter().any(|c| c == "loopback up" || c.contains("sysfs")), "{host:#?}");
    }

    #[test]
    fn a_network_made_in_the_background_is_joined_before_lo_and_sysfs() {
        let mut cfg = config(false, NetMode::Loopback);
        cfg.sys = true;
        cfg.network_in_background = Some(crate::config::NetworkInBackground { holder: 7, ready: 8, release: 9 });
        let calls = recorded(&cfg);
        let at = |name: &str| calls.iter().position(|c| c.starts_with(name));
        let (join, lo, sysfs) = (at("join network 7"), at("loopback up"), at("mount sysfs"));
        assert!(join.is_some() && join < lo && lo < sysfs, "{calls:#?}");
        assert_eq!(calls.iter().filter(|c| *c == "loopback up").count(), 1, "{calls:#?}");
        let last_pivot = calls.iter().rposition(|c| c.starts_with("pivot_root"));
        assert!(at("mount overlay") < join && join < last_pivot, "after the mounts, before the pivot: {calls:#?}");
        cfg.network = NetMode::None;
        let calls = recorded(&cfg);
        assert!(calls.iter().any(|c| c == "join network 7") && !calls.iter().any(|c| c == "loopback up"));
    }

    #[test]
    fn failure_names_the_step_and_path_and_stops() {
        let rec = Recorder { fail_on: Some(("mount proc", Errno::EPERM)), ..Default::default() };
        let err = run(&plan(&config(true, NetMode::Loopback)), &rec).err();
        assert_eq!(
            err,
            Some(Failure {
                kind: StepKind::Proc,
                what: "mount /proc for the new pid namespace",
                path: Some("/proc".into()),
                errno: Errno::EPERM
            })
        );
        assert!(rec.calls.borrow().last().is_some_and(|c| c.starts_with("mount proc")), "stopped at the failure");
    }

    #[test]
    fn as_root_the_rootfs_and_volumes_are_idmapped_and_the_userns_is_entered_last() {
        let mut cfg = config(false, NetMode::Loopback);
        cfg.outer_uid = 0;
        cfg.security.userns_fd = Some(7);
        cfg.security.id_base = 100_000;
        cfg.mounts = vec![crate::volume::Mount::bind("/", "/data").read_only()];
        let calls = recorded(&cfg);
        assert!(!calls.iter().any(|c| c.contains("uid_map")), "the helper maps ids: {calls:#?}");
        let idmap = position(&calls, "idmap /oldroot/cache/trees/abc,d.uid1000 /lower userns=7 ro=true rec=false");
        let overlay = position(&calls, "mount overlay /newroot overlay MsFlags(MS_NODEV) lowerdir=/lower,");
        let volume = position(&calls, "idmap /oldroot/ /newroot/data userns=7 ro=true rec=true");
        assert!(position(&calls, "chown /upper 100000") < idmap && idmap < overlay && overlay < volume);
        let tmp = calls.iter().find(|c| c.starts_with("mount tmpfs /newroot/tmp")).expect("/tmp");
        assert!(tmp.ends_with(",uid=100000,gid=100000"), "{tmp}");
        assert_eq!(calls.last().map(String::as_str), Some("enter userns 7"), "{calls:#?}");
    }

    #[test]
    fn proc_is_masked_and_every_tmpfs_has_a_size_unless_privileged() {
        let cfg = config(true, NetMode::Loopback);
        let calls = recorded(&cfg);
        let dev = position(&calls, "mount /oldroot/dev/null /newroot/dev/null");
        let kcore = position(&calls, "mask /newroot/proc/kcore");
        let sys = position(&calls, "read-only /newroot/proc/sys");
        assert!(dev < kcore && kcore < sys && sys < position(&calls, "pivot_root . ."), "{calls:#?}");
        assert!(calls.iter().any(|c| c == "mask /newroot/sys/firmware"), "{calls:#?}");
        for tmpfs in calls.iter().filter(|c| c.starts_with("mount tmpfs")) {
            assert!(tmpfs.contains(",size="), "{tmpfs}");
        }
        let mut privileged = cfg;
        privileged.security.privileged = true;
        let calls = recorded(&privileged);
        assert!(!calls.iter().any(|c| c.starts_with("mask") || c.starts_with("read-only")), "{calls:#?}");
    }

    /// As root, unless privileged, `/dev`'s devices are nodes made in its tmpfs (which then allows
    /// devices), not mounts; rootless and privileged, the host's are bound into a `nodev` tmpfs.
    #[test]
    fn as_root_devices_are_made_not_bound_unless_privileged() {
        let devices = |cfg: &Config| {
            let calls = recorded(cfg);
            let tmpfs = calls.iter().find(|c| c.starts_with("mount tmpfs /newroot/dev ")).cloned().unwrap_or_default();
            let made = calls.iter().filter(|c| c.starts_with("mknod /newroot/dev/")).count();
            let bound = calls.iter().filter(|c| c.starts_with("mount /oldroot/dev/")).count();
            (tmpfs.contains("MS_NODEV"), made, bound, calls.iter().any(|c| c == "mknod /newroot/dev/null 1:3"))
        };
        let mut root = config(false, NetMode::Loopback);
        root.outer_uid = 0;
        assert_eq!(devices(&root), (false, 6, 0, true));
        let mut privileged = root.clone();
        privileged.security.privileged = true;
        assert_eq!(devices(&privileged), (true, 0, 6, false));
        assert_eq!(devices(&config(true, NetMode::Loopback)), (true, 0, 6, false));
    }

    #[test]
    fn optional_sysfs_failure_is_not_fatal() {
        let rec = Recorder { fail_on: Some(("sysfs", Errno::EPERM)), ..Default::default() };
        assert_eq!(run(&plan(&config(true, NetMode::Loopback)), &rec), Ok(()));
        assert!(rec.calls.borrow().iter().any(|c| c == "pivot_root . ."));
    }
}
