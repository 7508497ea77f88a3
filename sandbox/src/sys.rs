//! The thin layer over the kernel: the [`Sys`] trait the setup plan runs against (with the real
//! implementation here and a recording fake in the tests), and the few operations that need `unsafe`.
//! This is the only module of the crate where `unsafe` is allowed.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;

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
    /// Replaces the file's contents (creating it, mode 0644), never following a symlink at `path`.
    fn write_file(&self, path: &Path, contents: &[u8]) -> Result<(), Errno>;
    /// Creates a symlink; an existing entry at `link` is replaced.
    fn symlink(&self, target: &Path, link: &Path) -> Result<(), Errno>;
    fn sethostname(&self, name: &str) -> Result<(), Errno>;
    fn loopback_up(&self) -> Result<(), Errno>;
    /// Sets a path's mode (mkdir's is cut by the umask).
    fn chmod(&self, path: &Path, mode: u32) -> Result<(), Errno>;
    /// Copies the tree at `from` into the existing directory `to`: directories, files (hard links
    /// become copies), symlinks as they are; modes kept, owners kept where the process may chown.
    fn copy_tree(&self, from: &Path, to: &Path, shift: u32) -> Result<(), Errno>;
    /// Binds `source` at `target` shown through the id mapping of the user namespace `userns`.
    fn idmapped_bind(&self, source: &Path, target: &Path, userns: i32, read_only: bool) -> Result<(), Errno>;
    /// Gives `path` (not what a symlink there points to) to uid and gid `id`.
    fn chown(&self, path: &Path, id: u32) -> Result<(), Errno>;
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
}

/// The real kernel.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Kernel;

impl Sys for Kernel {
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno> {
        on_target(target, |target| nix::mount::mount(source, target, fstype, flags, data))
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

    fn touch(&self, path: &Path) -> Result<(), Errno> {
        if let Some(rel) = crate::inroot::below_new_root(path) {
            return crate::inroot::touch(rel);
        }
        let fd = nix::fcntl::open(
            path,
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
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
        copy_dir_contents(from, to, shift)
    }

    fn idmapped_bind(&self, source: &Path, target: &Path, userns: i32, read_only: bool) -> Result<(), Errno> {
        on_target(target, |target| crate::sys_hardening::idmapped_bind(source, target, userns, read_only))
    }

    fn chown(&self, path: &Path, id: u32) -> Result<(), Errno> {
        std::os::unix::fs::lchown(path, Some(id), Some(id)).map_err(errno_of)
    }

    fn enter_user_namespace(&self, userns: i32) -> Result<(), Errno> {
        // SAFETY: the helper opened this descriptor for init (inherited across fork) and keeps it open
        // for as long as init lives; it is only borrowed for the call.
        let fd = unsafe { BorrowedFd::borrow_raw(userns) };
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWUSER)?;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
        crate::spawn::userns::become_root()
    }

    fn mkdir_all(&self, path: &Path) -> Result<(), Errno> {
        if let Some(rel) = crate::inroot::below_new_root(path) {
            return crate::inroot::mkdir_all(rel);
        }
        std::fs::create_dir_all(path).map_err(errno_of)
    }

    fn unshare_mount(&self) -> Result<(), Errno> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
    }

    fn lock_bind(&self, target: &Path, read_only: bool) -> Result<(), Errno> {
        on_target(target, |target| lock_bind_at(target, read_only))
    }

    fn mask(&self, path: &Path) -> Result<(), Errno> {
        let masked = on_target(path, |target| {
            let meta = nix::sys::stat::stat(target)?;
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            if nix::sys::stat::SFlag::from_bits_truncate(meta.st_mode).contains(nix::sys::stat::SFlag::S_IFDIR) {
                let data = Some("mode=0555,size=4k");
                nix::mount::mount(Some("tmpfs"), target, Some("tmpfs"), flags | MsFlags::MS_RDONLY, data)?;
                Ok(false)
            } else {
                nix::mount::mount(Some("/newroot/dev/null"), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
                Ok(true)
            }
        });
        match masked {
            Err(Errno::ENOENT) | Ok(false) => Ok(()),
            // Resolved afresh: the descriptor used above is the covered file, not the new mount.
            Ok(true) => self.lock_bind(path, true),
            Err(e) => Err(e),
        }
    }

    fn bind_read_only(&self, path: &Path) -> Result<(), Errno> {
        let bound = on_target(path, |target| {
            nix::mount::mount(Some(target), target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        });
        match bound {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e),
            Ok(()) => self.lock_bind(path, true),
        }
    }

    fn loopback_up(&self) -> Result<(), Errno> {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
        let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
        // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS reads the flags of the interface named in `req` into `req`, a valid,
        // writable ifreq that outlives the call; `sock` is an open socket.
        Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
        // SAFETY: the kernel filled the flags member of the union just above.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
        Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })?;
        Ok(())
    }
}

/// `fork(2)`. Only for the helper process, which is single-threaded (it runs before `main`).
pub(crate) fn fork() -> Result<nix::unistd::ForkResult, Errno> {
    // SAFETY: the only callers run in the helper process before `main`, where no other thread exists,
    // so the child may do anything the parent could (no lock can be held by a vanished thread).
    unsafe { nix::unistd::fork() }
}

/// Removes the helper's own variable and sets `env` on top of the inherited environment. Only for
/// the single-threaded helper, before `main`.
pub(crate) fn set_env_single_threaded(env: &[(String, String)]) {
    // SAFETY: called in a helper process before `main`, where no other thread exists that could read
    // the environment concurrently.
    unsafe { std::env::remove_var(crate::spawn::parent::HELPER_ENV) };
    for (k, v) in env {
        // SAFETY: as above.
        unsafe { std::env::set_var(k, v) };
    }
}

/// Makes `fds` survive the `exec` of `cmd` (they are close-on-exec in the parent, so that no other
/// thread's child inherits them).
pub(crate) fn keep_fds_on_exec(cmd: &mut std::process::Command, fds: Vec<RawFd>) {
    use std::os::unix::process::CommandExt;
    let hook = move || {
        for &fd in &fds {
            // SAFETY: `fd` is open in the parent (the caller keeps it alive across spawn), and so in
            // this forked child; fcntl is async-signal-safe.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            nix::fcntl::fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
        }
        Ok(())
    };
    // SAFETY: the hook only calls fcntl(2), which is async-signal-safe, and allocates nothing.
    unsafe { cmd.pre_exec(hook) };
}

/// `execve(2)` of `program` with `args` and `env`; returns only on failure.
pub(crate) fn execve(program: &CString, args: &[CString], env: &[CString]) -> Errno {
    match nix::unistd::execve(program, args, env) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

/// The constructor that turns a re-executed binary into a sandbox helper before `main` runs.
#[used]
#[unsafe(link_section = ".init_array")]
pub(crate) static HELPER_HOOK: extern "C" fn() = helper_hook;

extern "C" fn helper_hook() {
    crate::spawn::server::enter_if_server();
    crate::spawn::helper::enter_if_helper();
}

/// Takes ownership of an fd number inherited from the parent, if it is open.
pub(crate) fn adopt_fd(raw: RawFd) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: the borrow only lives for the F_GETFD probe, which works on any number.
    let probe = unsafe { BorrowedFd::borrow_raw(raw) };
    nix::fcntl::fcntl(probe, FcntlArg::F_GETFD).ok()?;
    // SAFETY: the fd is open (probed above) and was handed to this process for it alone to own: the
    // parent's spawn cleared close-on-exec on it for this exec only.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) })
}

/// Ends this process with the signal `sig`, so that its parent's `ExitStatus` shows it, without a
/// core dump; falls back to exit code 128 + sig.
pub(crate) fn die_by_signal(sig: i32) -> ! {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
    if let Ok(signal) = Signal::try_from(sig) {
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
        // SAFETY: restoring the default disposition installs no handler; no other thread exists here.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
        let mut set = SigSet::empty();
        set.add(signal);
        let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
        let _ = nix::sys::signal::raise(signal);
    }
    std::process::exit(128 + sig)
}

/// Points fd 1 at /dev/null and returns a copy of what it was, for [`restore_stdout`].
pub(crate) fn silence_stdout() -> Option<std::os::fd::OwnedFd> {
    let saved = nix::unistd::dup(std::io::stdout()).ok()?;
    let _ = nix::fcntl::fcntl(&saved, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    let null = nix::fcntl::open("/dev/null", OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    nix::unistd::dup2_stdout(&null).ok()?;
    Some(saved)
}

/// Puts back the stdout saved by [`silence_stdout`].
pub(crate) fn restore_stdout(saved: &std::os::fd::OwnedFd) {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = nix::unistd::dup2_stdout(saved);
}

/// Makes the terminal open on `fd` the controlling terminal of this process, a session leader.
pub(crate) fn set_controlling_terminal(fd: impl std::os::fd::AsFd) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal the terminal from another
    // session); `fd` is open for the duration of the call.
    Errno::result(unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSCTTY, 0) }).map(drop)
}

/// Closes a file descriptor this process owns by number only (inherited across fork, never wrapped).
pub(crate) fn close_fd(fd: RawFd) {
    // SAFETY: the caller owns `fd` and never uses the number again (the fork server's socket, in its
    // forked children).
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
}

fn errno_of(e: std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

fn copy_dir_contents(from: &Path, to: &Path, shift: u32) -> Result<(), Errno> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for entry in std::fs::read_dir(from).map_err(errno_of)? {
        let entry = entry.map_err(errno_of)?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let meta = std::fs::symlink_metadata(&src).map_err(errno_of)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            std::fs::create_dir(&dst).map_err(errno_of)?;
            copy_dir_contents(&src, &dst, shift)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).map_err(errno_of)?, &dst).map_err(errno_of)?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dst).map_err(errno_of)?;
        } else {
            continue; // devices, sockets, FIFOs: a rootfs from the cache has none
        }
        // Owners as in the tree where allowed (as root); inside a user namespace, what is mapped.
        let _ = std::os::unix::fs::lchown(&dst, Some(meta.uid() + shift), Some(meta.gid() + shift));
        if !kind.is_symlink() {
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777)).map_err(errno_of)?;
        }
    }
    Ok(())
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

/// Makes the mount at `target`, and every mount below it, nosuid and nodev, and read-only if asked.
fn lock_bind_at(target: &Path, read_only: bool) -> Result<(), Errno> {
    match mount_setattr_recursive(target, read_only) {
        // Kernels before 5.12: remount the top mount only, keeping the flags the kernel locks
        // (statvfs(3): a bind in a user namespace may not drop them).
        Err(Errno::ENOSYS) => {
            let st = nix::sys::statvfs::statvfs(target)?;
            let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            let f = st.flags();
            if read_only || f.contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
                flags |= MsFlags::MS_RDONLY;
            }
            if f.contains(nix::sys::statvfs::FsFlags::ST_NOEXEC) {
                flags |= MsFlags::MS_NOEXEC;
            }
            nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        }
        other => other,
    }
}

use crate::sys_hardening::{AT_RECURSIVE, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, MountAttr};

/// mount_setattr(2) with AT_RECURSIVE: nosuid, nodev (and read-only) on `target` and below.
fn mount_setattr_recursive(target: &Path, read_only: bool) -> Result<(), Errno> {
    let path = CString::new(target.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    let mut attr = MountAttr {
        attr_set: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | if read_only { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is a NUL-terminated string and `attr` a valid mount_attr, both alive for the
    // call; the size passed is the struct's.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            AT_RECURSIVE,
            &mut attr as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(rc).map(drop)
}

/// An `ifreq` naming `name` (at most 15 bytes).
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().take(libc::IFNAMSIZ - 1).zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

/// The index of the interface `name` in this thread's network namespace.
pub(crate) fn if_index(name: &str) -> Result<u32, Errno> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    let mut req = ifreq(name);
    // SAFETY: SIOCGIFINDEX fills the index of the interface named in `req`, a valid ifreq that
    // outlives the call.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFINDEX, &mut req) })?;
    // SAFETY: the kernel filled the index member of the union just above.
    Ok(unsafe { req.ifr_ifru.ifru_ifindex } as u32)
}

/// Gives the interface `name` the IPv4 address `addr` with a `prefix`-bit netmask, and brings it up.
pub(crate) fn if_address_up(name: &str, addr: std::net::Ipv4Addr, prefix: u8) -> Result<(), Errno> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    let sockaddr = |a: std::net::Ipv4Addr| {
        // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
        let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
        // SAFETY: sockaddr_in fits in sockaddr (both 16 bytes); the bytes are copied, not aliased.
        unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
    };
    let mask = std::net::Ipv4Addr::from(if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) });
    for (request, value) in [(libc::SIOCSIFADDR, addr), (libc::SIOCSIFNETMASK, mask)] {
        let mut req = ifreq(name);
        req.ifr_ifru.ifru_addr = sockaddr(value);
        // SAFETY: the set-address requests read the sockaddr in `req`, a valid ifreq alive for the call.
        Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), request, &req) })?;
    }
    let mut req = ifreq(name);
    // SAFETY: as in loopback_up.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: the kernel filled the flags member just above.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) }).map(drop)
}
