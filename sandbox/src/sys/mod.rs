//! The thin layer over the kernel, one file per concern: [`Sys`], the operations a setup plan
//! performs (the real [`Kernel`] here, a recording fake in the plan's tests), and the few operations
//! that need `unsafe`: `process` (fork, exec, descriptors, signals, the constructor), `mount`
//! (mount_setattr, tree copies) and `net` (interfaces). The only module of the crate where `unsafe` is
//! allowed.

#![allow(unsafe_code)]

pub(crate) mod code;
pub(crate) mod mount;
pub(crate) mod net;
pub(crate) mod process;

use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;

pub(crate) use net::{if_address_up, if_index};
pub(crate) use process::{
    SingleThreaded, adopt_fd, die_by_signal, execve, fork, keep_fds_on_exec, run_before_main, set_controlling_terminal,
    set_env,
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
    fn copy_tree(&self, from: &Path, to: &Path) -> Result<(), Errno>;
    /// Creates a directory and its missing parents.
    fn mkdir_all(&self, path: &Path) -> Result<(), Errno>;
    /// Moves this process into a new mount namespace.
    fn unshare_mount(&self) -> Result<(), Errno>;
    /// Makes the bind mount at `target`, and every mount below it, nosuid and nodev, and read-only if
    /// asked.
    fn lock_bind(&self, target: &Path, read_only: bool) -> Result<(), Errno>;
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
        nix::mount::mount(source, target, fstype, flags, data)
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
        match nix::unistd::mkdir(path, Mode::from_bits_truncate(mode)) {
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn touch(&self, path: &Path) -> Result<(), Errno> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o644),
        )?;
        drop(fd);
        Ok(())
    }

    fn write_file(&self, path: &Path, contents: &[u8]) -> Result<(), Errno> {
        let flags = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_TRUNC | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
        let fd = nix::fcntl::open(path, flags, Mode::from_bits_truncate(0o644))?;
        let mut rest = contents;
        while !rest.is_empty() {
            match nix::unistd::write(&fd, rest) {
                Ok(n) => rest = &rest[n..],
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn symlink(&self, target: &Path, link: &Path) -> Result<(), Errno> {
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
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            path,
            Mode::from_bits_truncate(mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
    }

    fn copy_tree(&self, from: &Path, to: &Path) -> Result<(), Errno> {
        mount::copy_dir_contents(from, to)
    }

    fn mkdir_all(&self, path: &Path) -> Result<(), Errno> {
        std::fs::create_dir_all(path).map_err(mount::errno_of)
    }

    fn unshare_mount(&self) -> Result<(), Errno> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
    }

    fn lock_bind(&self, target: &Path, read_only: bool) -> Result<(), Errno> {
        mount::lock_bind(target, read_only)
    }

    fn loopback_up(&self) -> Result<(), Errno> {
        net::interface_up("lo")
    }
}
