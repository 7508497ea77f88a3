//! The thin layer over the kernel, one file per concern: [`Sys`], the operations a setup plan
//! performs (the real [`Kernel`] here, a recording fake in the plan's tests), and the few operations
//! that need `unsafe`: `process` (fork, exec, descriptors, signals, the constructor), `mount`
//! (mount_setattr, tree copies) and `net` (interfaces). The only module of the crate where `unsafe` is
//! allowed.

#![allow(unsafe_code)]

pub(crate) mod code;
pub(crate) mod hardening;
pub(crate) mod mount;
pub(crate) mod net;
pub(crate) mod process;
pub(crate) mod pty;

use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;

pub(crate) use net::{if_address_up, if_index};
pub(crate) use process::{
    ExecList, HolderPipes, NamespaceHolder, SingleThreaded, adopt_fd, default_sigpipe, die_by_signal, execve, exit_now,
    fill_closed_stdio, fork, keep_fds_on_exec, let_go_of_stdio, read_proc_file, reader_gone, run_before_main, set_env,
    show_as, spawn_sharing_memory, stat_fields, stat_fields_at, take_stdin_as_controlling_terminal, user_namespace_of,
};

/// The kernel operations a setup plan performs, each failing with an errno.
pub(crate) trait Sys {
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno>;
    fn umount_detach(&self, target: &Path) -> Result<(), Errno>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), Errno>;
    fn chdir(&self, path: &Path) -> Result<(), Errno>;
    /// Creates a directory; an existing one is fine.
    fn mkdir(&self, path: &Path, mode: u32) -> Result<(), Errno>;
    /// Creates an empty file if there is none (a bind-mount target).
    fn touch(&self, path: &Path) -> Result<(), Errno>;
    /// Makes the character device `number` at `path` (mode 0666), or, where mknod(2) is refused
    /// (EPERM), binds the host's device `host` at `path` (see crate::plan::Op::CharDevice).
    fn char_devices(&self, dir: &Path, nodes: &[(&'static str, (u64, u64), String)]) -> Result<(), Errno>;
    /// Replaces the file's contents (creating it, mode 0644), never following a symlink at `path`.
    fn write_file(&self, path: &Path, contents: &[u8]) -> Result<(), Errno>;
    /// Writes a file of the sandbox's own below the new root, unless its path leads into another
    /// mount (a volume): then nothing (crate::inroot::write_own_file).
    fn write_own_file(&self, path: &Path, contents: &[u8]) -> Result<(), Errno>;
    /// Creates a symlink; an existing entry at `link` is replaced.
    fn symlink(&self, target: &Path, link: &Path) -> Result<(), Errno>;
    fn sethostname(&self, name: &str) -> Result<(), Errno>;
    fn loopback_up(&self) -> Result<(), Errno>;
    /// Waits until the holder of [`crate::spawn::netns`] has made its network namespace, joins it,
    /// and lets the holder go.
    fn join_network(&self, made: &crate::config::NetworkInBackground) -> Result<(), Errno>;
    /// Sets a path's mode (mkdir's is cut by the umask).
    fn chmod(&self, path: &Path, mode: u32) -> Result<(), Errno>;
    /// Copies the tree at `from` into the existing directory `to`: directories, files (hard links
    /// become copies), symlinks as they are; modes kept, owners kept where the process may chown.
    fn copy_tree(&self, from: &Path, to: &Path, shift: u32) -> Result<(), Errno>;
    /// Binds `source` at `target` shown through the id mapping of the user namespace `userns`; with the
    /// mounts below `source` if `recursive`.
    /// `(read_only, recursive)`; `id`: bound only if `source` is still the file of that device and
    /// inode (ESTALE).
    fn idmapped_bind(
        &self,
        source: &Path,
        target: &Path,
        userns: i32,
        flags: (bool, bool),
        id: Option<(u64, u64)>,
    ) -> Result<(), Errno>;
    /// Gives `path` (not what a symlink there points to) to uid and gid `id`.
    fn chown(&self, path: &Path, id: u32) -> Result<(), Errno>;
    /// See `Op::HoldFolder`.
    fn hold_folder(&self, source: &Path, target: &Path, id: (u64, u64), owner: Option<u32>) -> Result<(), Errno>;
    /// See `Op::BindHeld`.
    fn bind_held(&self, source: &Path, target: &Path, id: (u64, u64)) -> Result<(), Errno>;
    /// See `Op::BindNoLinks`.
    fn bind_no_links(&self, source: &Path, target: &Path, id: Option<(u64, u64)>) -> Result<(), Errno>;
    /// Enters the user namespace `userns`, then a new mount namespace owned by it.
    fn enter_user_namespace(&self, userns: i32) -> Result<(), Errno>;
    /// Creates a directory and its missing parents.
    fn mkdir_all(&self, path: &Path) -> Result<(), Errno>;
    /// Moves this process into a new mount namespace.
    fn unshare_mount(&self) -> Result<(), Errno>;
    /// Makes the bind mount at `target`, and every mount below it, nosuid and nodev, and read-only if
    /// asked.
    fn lock_bind(&self, target: &Path, read_only: bool) -> Result<(), Errno>;
    /// Hides `path`: `/dev/null` of the new root bound over a file, an empty read-only tmpfs over a
    /// directory. A path the kernel does not have is fine.
    fn mask(&self, path: &Path) -> Result<(), Errno>;
    /// Binds `path` onto itself, read-only, nosuid and nodev. A path that does not exist is fine.
    fn bind_read_only(&self, path: &Path) -> Result<(), Errno>;
    /// The entries of the folder `path` (a host folder, seen through the staging root), without
    /// following symlinks.
    fn list_dir(&self, path: &Path) -> Result<Vec<(std::ffi::OsString, Entry)>, Errno>;
    /// Binds the host file `source` read-only (locked) at `target` in the new root, created first, if
    /// `source` is a regular file when it is opened (`O_PATH | O_NOFOLLOW`): the bind is of that very
    /// inode, so a file swapped for a symlink or a socket after it was listed is left out (`Ok(false)`).
    fn bind_regular_file(&self, source: &Path, target: &Path) -> Result<bool, Errno>;
}

/// What an entry of a folder is ([`Sys::list_dir`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Dir,
    File,
    Symlink(std::path::PathBuf),
    /// A socket, a FIFO or a device node.
    Other,
}

/// The real kernel.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Kernel;

impl Sys for Kernel {
    fn bind_regular_file(&self, source: &Path, target: &Path) -> Result<bool, Errno> {
        use std::os::fd::AsRawFd;
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(source, flags, Mode::empty())?;
        if nix::sys::stat::fstat(&fd)?.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Ok(false);
        }
        self.touch(target)?;
        // The staging root sees the host's /proc at /oldroot/proc: the link names the opened inode.
        let by_fd = format!("/oldroot/proc/self/fd/{}", fd.as_raw_fd());
        self.mount(Some(&by_fd), target, None, MsFlags::MS_BIND, None)?;
        self.lock_bind(target, true)?;
        Ok(true)
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<(std::ffi::OsString, Entry)>, Errno> {
        let mut entries = Vec::new();
        for e in std::fs::read_dir(path).map_err(mount::errno_of)? {
            let e = e.map_err(mount::errno_of)?;
            let Ok(kind) = e.file_type() else { continue };
            let entry = if kind.is_dir() {
                Entry::Dir
            } else if kind.is_file() {
                Entry::File
            } else if kind.is_symlink() {
                Entry::Symlink(std::fs::read_link(e.path()).map_err(mount::errno_of)?)
            } else {
                Entry::Other
            };
            entries.push((e.file_name(), entry));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(entries)
    }

    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno> {
        let mount = || on_target(target, |target| nix::mount::mount(source, target, fstype, flags, data));
        match fstype {
            // It copies up with the credentials it records here (see hardening::without_mknod).
            Some("overlay") => hardening::without_mknod(mount),
            _ => mount(),
        }
    }

    fn umount_detach(&self, target: &Path) -> Result<(), Errno> {
        nix::mount::umount2(target, MntFlags::MNT_DETACH)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), Errno> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn chdir(&self, path: &Path) -> Result<(), Errno> {
        nix::unistd::chdir(path)
    }

    fn mkdir(&self, path: &Path, mode: u32) -> Result<(), Errno> {
        if let Some(rel) = crate::inroot::below_new_root(path) {
            return crate::inroot::mkdir(rel, mode);
        }
        match nix::unistd::mkdir(path, Mode::from_bits_truncate(mode)) {
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn char_devices(&self, dir: &Path, nodes: &[(&'static str, (u64, u64), String)]) -> Result<(), Errno> {
        let rel = crate::inroot::below_new_root(dir).ok_or(Errno::EINVAL)?;
        let numbers =
            nodes.iter().map(|(name, (major, minor), _)| (*name, libc::makedev(*major as u32, *minor as u32)));
        let refused = crate::inroot::char_devices(rel, numbers)?;
        for (name, _, host) in nodes.iter().filter(|(name, ..)| refused.contains(name)) {
            let path = dir.join(name);
            self.touch(&path)?;
            self.mount(Some(host), &path, None, MsFlags::MS_BIND, None)?;
        }
        Ok(())
    }

    fn touch(&self, path: &Path) -> Result<(), Errno> {
        if let Some(rel) = crate::inroot::below_new_root(path) {
            return crate::inroot::touch(rel);
        }
        let fd = nix::fcntl::open(
            path,
            OFlag::O_CREAT | OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o644),
        )?;
        drop(fd);
        Ok(())
    }

    fn write_file(&self, path: &Path, contents: &[u8]) -> Result<(), Errno> {
        if let Some(rel) = crate::inroot::below_new_root(path) {
            return crate::inroot::write_file(rel, contents);
        }
        let flags = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_TRUNC | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
        let fd = nix::fcntl::open(path, flags, Mode::from_bits_truncate(0o644))?;
        crate::inroot::write_all(&fd, contents)
    }

    fn write_own_file(&self, path: &Path, contents: &[u8]) -> Result<(), Errno> {
        let rel = crate::inroot::below_new_root(path).ok_or(Errno::EINVAL)?;
        crate::inroot::write_own_file(rel, contents)
    }

    fn symlink(&self, target: &Path, link: &Path) -> Result<(), Errno> {
        if let Some(rel) = crate::inroot::below_new_root(link) {
            return crate::inroot::symlink(target, rel);
        }
        match nix::unistd::symlinkat(target, nix::fcntl::AT_FDCWD, link) {
            Err(Errno::EEXIST) => {
                nix::unistd::unlink(link)?;
                nix::unistd::symlinkat(target, nix::fcntl::AT_FDCWD, link)
            }
            other => other,
        }
    }

    fn sethostname(&self, name: &str) -> Result<(), Errno> {
        nix::unistd::sethostname(name)
    }

    fn chmod(&self, path: &Path, mode: u32) -> Result<(), Errno> {
        if let Some(rel) = crate::inroot::below_new_root(path) {
            return crate::inroot::chmod(rel, mode);
        }
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            path,
            Mode::from_bits_truncate(mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
    }

    fn copy_tree(&self, from: &Path, to: &Path, shift: u32) -> Result<(), Errno> {
        mount::copy_dir_contents(from, to, shift)
    }

    fn idmapped_bind(
        &self,
        source: &Path,
        target: &Path,
        userns: i32,
        flags: (bool, bool),
        id: Option<(u64, u64)>,
    ) -> Result<(), Errno> {
        // The plan names host paths through the host's root as the staging pivot left it.
        let host = source.strip_prefix("/oldroot").map_or_else(|_| source.to_owned(), |rest| Path::new("/").join(rest));
        on_target(target, |target| hardening::idmapped_bind(&host, source, target, userns, flags, id))
    }

    fn chown(&self, path: &Path, id: u32) -> Result<(), Errno> {
        std::os::unix::fs::lchown(path, Some(id), Some(id)).map_err(mount::errno_of)
    }

    fn hold_folder(&self, source: &Path, target: &Path, id: (u64, u64), owner: Option<u32>) -> Result<(), Errno> {
        mount::hold_folder(source, target, id, owner)
    }

    fn bind_held(&self, source: &Path, target: &Path, id: (u64, u64)) -> Result<(), Errno> {
        mount::bind_held(source, target, id)
    }

    fn bind_no_links(&self, source: &Path, target: &Path, id: Option<(u64, u64)>) -> Result<(), Errno> {
        on_target(target, |target| hardening::bind_no_links(source, target, id))
    }

    fn enter_user_namespace(&self, userns: i32) -> Result<(), Errno> {
        // SAFETY: the helper opened this descriptor for init (inherited across fork) and keeps it open
        // for as long as init lives; it is only borrowed for the call.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(userns) };
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWUSER)?;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
        crate::spawn::userns::become_root()
    }

    fn mkdir_all(&self, path: &Path) -> Result<(), Errno> {
        if let Some(rel) = crate::inroot::below_new_root(path) {
            return crate::inroot::mkdir_all(rel);
        }
        std::fs::create_dir_all(path).map_err(mount::errno_of)
    }

    fn unshare_mount(&self) -> Result<(), Errno> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
    }

    fn lock_bind(&self, target: &Path, read_only: bool) -> Result<(), Errno> {
        on_target(target, |target| mount::lock_bind(target, read_only))
    }

    fn mask(&self, path: &Path) -> Result<(), Errno> {
        if let Some((dir, name)) = kernel_dir(path)? {
            // SAFETY: OPENED keeps the descriptor open until the setup is done; borrowed for the call.
            let dir = unsafe { std::os::fd::BorrowedFd::borrow_raw(dir) };
            match hardening::mask_at(
                dir,
                &name,
                listed(dir, &name, path.starts_with("/newroot/proc")),
                null_device,
                empty_directory,
            ) {
                Err(Errno::ENOSYS) => {} // before Linux 5.12: by path, below
                other => return other,
            }
        }
        let masked = on_kernel_target(path, |target| {
            let meta = nix::sys::stat::stat(target)?;
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            if nix::sys::stat::SFlag::from_bits_truncate(meta.st_mode).contains(nix::sys::stat::SFlag::S_IFDIR) {
                let data = Some("mode=0555,size=4k");
                nix::mount::mount(Some("tmpfs"), target, Some("tmpfs"), flags | MsFlags::MS_RDONLY, data)?;
                Ok(false)
            } else {
                // The sandbox's own /dev/null, resolved in the new root like any path of it, and
                // checked to be the null device: a rootfs whose /dev leads elsewhere neither binds
                // another file over the mask nor makes it vanish (ENODEV, never a skipped ENOENT).
                on_target(Path::new("/newroot/dev/null"), |null| {
                    if !is_null_device(&nix::sys::stat::stat(null).map_err(|_| Errno::ENODEV)?) {
                        return Err(Errno::ENODEV);
                    }
                    nix::mount::mount(Some(null), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                })
                .map_err(|e| if e == Errno::ENOENT { Errno::ENODEV } else { e })?;
                Ok(true)
            }
        });
        match masked {
            Err(Errno::ENOENT) | Ok(false) => Ok(()),
            // Resolved afresh: the descriptor used above is the covered file, not the new mount.
            Ok(true) => on_kernel_target(path, |target| mount::lock_bind(target, true)),
            Err(e) => Err(e),
        }
    }

    fn bind_read_only(&self, path: &Path) -> Result<(), Errno> {
        if let Some((dir, name)) = kernel_dir(path)? {
            // SAFETY: as in `mask`.
            let dir = unsafe { std::os::fd::BorrowedFd::borrow_raw(dir) };
            match hardening::read_only_at(dir, &name, listed(dir, &name, path.starts_with("/newroot/proc"))) {
                Err(Errno::ENOSYS) => {} // before Linux 5.12: by path, below
                other => return other,
            }
        }
        let bound = on_kernel_target(path, |target| {
            nix::mount::mount(Some(target), target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        });
        match bound {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e),
            Ok(()) => on_kernel_target(path, |target| mount::lock_bind(target, true)),
        }
    }

    fn loopback_up(&self) -> Result<(), Errno> {
        net::interface_up("lo")
    }

    fn join_network(&self, made: &crate::config::NetworkInBackground) -> Result<(), Errno> {
        use std::os::fd::{FromRawFd, OwnedFd};
        // SAFETY: the helper opened these three descriptors for init, which inherited them and uses
        // them here only, once: they are owned (and closed) from here on.
        let [holder, ready, release] =
            [made.holder, made.ready, made.release].map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
        read_word(&ready)?;
        nix::sched::setns(&holder, nix::sched::CloneFlags::CLONE_NEWNET)?;
        // The namespace is ours now: the holder may end (end-of-file on its release pipe).
        drop(release);
        Ok(())
    }
}

thread_local! {
    /// [`on_kernel_target`]'s open mount points: (path below the new root, descriptor). Init is
    /// single-threaded and sets up one sandbox; [`close_kernel_dirs`] ends their use with the setup.
    static OPENED: std::cell::RefCell<Vec<(std::path::PathBuf, std::os::fd::OwnedFd)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Reads a one-byte word another process writes when it is done: 0, or the errno of what failed;
/// ESRCH if it ended without a word (killed from outside).
fn read_word(fd: &std::os::fd::OwnedFd) -> Result<(), Errno> {
    let mut byte = [0u8; 1];
    let said = loop {
        match nix::unistd::read(fd, &mut byte) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    match said {
        Ok(1) if byte[0] == 0 => Ok(()),
        Ok(1) => Err(Errno::from_raw(i32::from(byte[0]))),
        Ok(_) => Err(Errno::ESRCH),
        Err(e) => Err(e),
    }
}

thread_local! {
    /// [`listed`]'s listings of `/proc`: (descriptor OPENED keeps, listing), for one setup.
    static LISTED: std::cell::RefCell<Vec<(i32, Option<hardening::Listing>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// What a listing of `/proc` (`dir`, kept open in OPENED, where [`kernel_dir`] checked it is procfs:
/// `is_proc`), read once per setup, says of `name`, one of the masked or read-only paths there
/// (crate::hardening; the listing keeps no other name): `None` for a name below a directory of it, in
/// `/sys` (a listing of its top would not say), or where the listing failed, where callers look the
/// name up instead.
fn listed(dir: std::os::fd::BorrowedFd<'_>, name: &Path, is_proc: bool) -> Option<hardening::Listed> {
    use hardening::Listed;
    use std::os::fd::AsRawFd;
    if !is_proc || name.components().count() != 1 {
        return None;
    }
    LISTED.with(|listed| {
        let mut listed = listed.borrow_mut();
        let at = match listed.iter().position(|(fd, _)| *fd == dir.as_raw_fd()) {
            Some(at) => at,
            None => {
                // Only the names a mask or a read-only path may ask for.
                let asked = |name: &[u8]| {
                    let mut paths = crate::hardening::MASKED_PATHS.iter().chain(crate::hardening::READ_ONLY_PATHS);
                    paths.any(|p| p.strip_prefix("/proc/").is_some_and(|rest| rest.as_bytes() == name))
                };
                listed.push((dir.as_raw_fd(), hardening::listing(dir, asked)));
                listed.len() - 1
            }
        };
        let names = listed[at].1.as_ref()?;
        names.iter().find(|(n, _)| n.as_os_str() == name.as_os_str()).map_or(Some(Listed::Absent), |(_, kind)| *kind)
    })
}

/// Closes what [`on_kernel_target`] kept open: once setup is done, the program gets none of it.
pub(crate) fn close_kernel_dirs() {
    OPENED.with(|opened| opened.borrow_mut().clear());
    LISTED.with(|listed| listed.borrow_mut().clear());
}

/// As [`on_target`], for a path below the new root's `/proc` or `/sys` (the masks): the kernel file
/// system's mount point is resolved in the new root once, checked to be procfs or sysfs, and kept
/// open; the rest of the path is walked inside that file system, whose names the kernel alone makes.
/// Four system calls fewer per masked path than resolving each from the root.
fn on_kernel_target<T>(path: &Path, f: impl FnOnce(&Path) -> Result<T, Errno>) -> Result<T, Errno> {
    match kernel_dir(path)? {
        Some((fd, rest)) => f(&Path::new(&format!("/oldroot/proc/self/fd/{fd}")).join(rest)),
        None => on_target(path, f),
    }
}

/// For a path below the new root's `/proc` or `/sys`: the descriptor of that mount point (opened
/// once, kept in OPENED, checked to be procfs or sysfs) and the rest of the path; `None` for
/// another path, or where something else is mounted there.
fn kernel_dir(path: &Path) -> Result<Option<(i32, std::path::PathBuf)>, Errno> {
    use nix::sys::statfs::{FsType, PROC_SUPER_MAGIC, SYSFS_MAGIC};
    let kinds: [(&str, FsType); 2] = [("/newroot/proc", PROC_SUPER_MAGIC), ("/newroot/sys", SYSFS_MAGIC)];
    let Some((dir, magic, rest)) =
        kinds.iter().find_map(|(dir, magic)| Some((*dir, *magic, path.strip_prefix(dir).ok()?)))
    else {
        return Ok(None);
    };
    let opened = kept_open(dir, || {
        let rel = crate::inroot::below_new_root(Path::new(dir)).ok_or(Errno::EINVAL)?;
        let (fd, _) = crate::inroot::mount_target(rel)?;
        if nix::sys::statfs::fstatfs(&fd)?.filesystem_type() != magic {
            // Not the kernel's file system we mounted there: resolve each path from the root instead.
            return Err(Errno::EXDEV);
        }
        Ok(fd)
    });
    match opened {
        Ok(fd) => Ok(Some((fd, rest.to_owned()))),
        Err(Errno::EXDEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The descriptor OPENED keeps under `key`, opened with `open` the first time.
fn kept_open(key: &str, open: impl FnOnce() -> Result<std::os::fd::OwnedFd, Errno>) -> Result<i32, Errno> {
    use std::os::fd::AsRawFd;
    OPENED.with(|opened| {
        let mut opened = opened.borrow_mut();
        if let Some((_, fd)) = opened.iter().find(|(d, _)| d == Path::new(key)) {
            return Ok(fd.as_raw_fd());
        }
        let fd = open()?;
        let raw = fd.as_raw_fd();
        opened.push((key.into(), fd));
        Ok(raw)
    })
}

/// An empty directory of the staging root (`O_PATH`), mode 0555, made once per setup (OPENED): what a
/// masked directory shows, read-only. The staging root is init's own tmpfs, out of the program's
/// sight; a bind of a directory shows nothing above it.
fn empty_directory() -> Result<i32, Errno> {
    const EMPTY: &str = "/masked";
    kept_open(EMPTY, || {
        match nix::unistd::mkdir(EMPTY, Mode::from_bits_truncate(0o555)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        nix::fcntl::open(
            EMPTY,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    })
}

/// The host's `/dev/null` (`O_PATH`, through the old root), checked to be the null device: what a
/// masked file shows. The host's, not the new root's: a rootfs can make no other file appear over a
/// mask. Opened once per setup (OPENED).
fn null_device() -> Result<i32, Errno> {
    const NULL: &str = "/oldroot/dev/null";
    kept_open(NULL, || {
        let fd = nix::fcntl::open(NULL, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|_| Errno::ENODEV)?;
        if !is_null_device(&nix::sys::stat::fstat(&fd).map_err(|_| Errno::ENODEV)?) {
            return Err(Errno::ENODEV);
        }
        Ok(fd)
    })
}

/// Whether `st` is the null character device (1:3).
fn is_null_device(st: &nix::sys::stat::FileStat) -> bool {
    let kind = nix::sys::stat::SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
    kind == nix::sys::stat::SFlag::S_IFCHR && st.st_rdev == libc::makedev(1, 3)
}

/// Runs `f` on `path`, or, for a path of the new root, on its descriptor's `/proc/self/fd` entry after
/// resolving it inside the new root (crate::inroot), so that no symlink there leads to the host.
fn on_target<T>(path: &Path, f: impl FnOnce(&Path) -> Result<T, Errno>) -> Result<T, Errno> {
    match crate::inroot::below_new_root(path) {
        Some(rel) => {
            let (_fd, target) = crate::inroot::mount_target(rel)?;
            f(&target)
        }
        None => f(path),
    }
}

/// Whether the running kernel's release is at least `major.minor` (uname(2); `5.15.0-91-generic`
/// reads as 5.15).
pub(crate) fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = rustix::system::uname();
    let release = release.release().to_string_lossy();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}
