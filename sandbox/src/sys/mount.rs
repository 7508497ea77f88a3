//! Mount operations beyond a plain mount(2): recursive attribute changes and private tree copies.

use std::ffi::CString;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::mount::MsFlags;

/// Makes the bind mount at `target`, and every mount below it, nosuid and nodev (and read-only).
pub(crate) fn lock_bind(target: &Path, read_only: bool) -> Result<(), Errno> {
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

/// Makes the writable layer's host folder `dir` private (0700) through one descriptor and returns its
/// path (the folder's own, no link in it) and its device and inode, by which init holds it later
/// ([`hold_folder`]). `dir` is resolved once, here: a caller holding the folder it made can name it
/// `/proc/self/fd/N` (sandbox-run does), so that a link put in the path it made it by since leads
/// nowhere (an outside review: resolved by path again, such a link sent the layer anywhere).
pub(crate) fn make_private(dir: &Path) -> Result<(std::path::PathBuf, (u64, u64)), Errno> {
    let (fd, real, id) = identify(dir)?;
    nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::from_bits_truncate(0o700))?;
    Ok((real, id))
}

/// The folder `dir` names now (links followed once, here), opened, with its own path (read back from
/// `/proc/self/fd`, no link in it) and its device and inode, by which init holds it later
/// ([`bind_held`], [`hold_folder`]).
pub(crate) fn identify(dir: &Path) -> Result<(std::os::fd::OwnedFd, std::path::PathBuf, (u64, u64)), Errno> {
    let (fd, real, st) = open_resolved(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    Ok((fd, real, (st.st_dev, st.st_ino)))
}

/// A bind source `path` (a file or a folder) opened once, links followed, and its path read back
/// from the descriptor (no link in it, nothing walked again), whether it is a folder, and its device
/// and inode, by which each start binds it (crate::sys::hardening::bind_no_links, idmapped_bind).
/// ESTALE if the path read back, opened without following links, is another file: a file reached
/// through another mount namespace (`/proc/PID/root/…`, `/proc/self/fd/N` of such a file) reads back
/// as its path there, which names another file here (the fourteenth outside review: a library checked
/// in another sandbox's mount namespace, bound by that path from the host's, was a root-only file).
pub(crate) fn resolve_source(path: &Path) -> Result<(std::path::PathBuf, bool, (u64, u64)), Errno> {
    let (_, real, st) = open_resolved(path, OFlag::O_PATH)?;
    let again = nix::sys::stat::fstat(&open_no_links(&real, OFlag::O_PATH).map_err(|_| Errno::ESTALE)?)?;
    if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
        return Err(Errno::ESTALE);
    }
    Ok((real, st.st_mode & libc::S_IFMT == libc::S_IFDIR, (st.st_dev, st.st_ino)))
}

/// `path` opened with `flags` (links followed once, here), with its own path read back from the
/// descriptor (`/proc/self/fd`: no link in it) and its status.
fn open_resolved(
    path: &Path,
    flags: OFlag,
) -> Result<(std::os::fd::OwnedFd, std::path::PathBuf, nix::sys::stat::FileStat), Errno> {
    let fd = nix::fcntl::open(path, flags | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())?;
    let st = nix::sys::stat::fstat(&fd)?;
    let real =
        std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd))).map_err(errno_of)?;
    Ok((fd, real, st))
}

/// The folder at `source` (a path without links, opened without following any), if it is still the
/// folder of device and inode `id`; ESTALE if it was replaced since.
fn open_identified(source: &Path, id: (u64, u64)) -> Result<std::os::fd::OwnedFd, Errno> {
    let fd = open_no_links(source, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    let st = nix::sys::stat::fstat(&fd)?;
    if (st.st_dev, st.st_ino) != id {
        return Err(Errno::ESTALE);
    }
    Ok(fd)
}

/// See `crate::plan::Op::BindHeld`.
pub(crate) fn bind_held(source: &Path, target: &Path, id: (u64, u64)) -> Result<(), Errno> {
    use std::os::fd::AsFd;
    let fd = open_identified(source, id)?;
    super::hardening::bind_held_at(fd.as_fd(), target)
}

/// `path` opened with `flags`, with no link anywhere in it (`RESOLVE_NO_SYMLINKS`).
pub(crate) fn open_no_links(path: &Path, flags: OFlag) -> Result<std::os::fd::OwnedFd, Errno> {
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    loop {
        match nix::fcntl::openat2(nix::fcntl::AT_FDCWD, path, how) {
            // openat2(2): EAGAIN when a rename raced the lookup; try again.
            Err(Errno::EAGAIN) => continue,
            other => return other,
        }
    }
}

/// See `crate::plan::Op::HoldFolder`. ESTALE when the folder at `source` is not the one of `id`
/// (replaced since the sandbox was built), EEXIST when `upper` or `work` is already in it.
pub(crate) fn hold_folder(source: &Path, target: &Path, id: (u64, u64), owner: Option<u32>) -> Result<(), Errno> {
    use std::os::fd::AsFd;
    let fd = open_identified(source, id)?;
    // As root with a shifted range: the range's root, an id no sandbox's read-write volume maps, so
    // that no other sandbox's root reaches inside through one (a volume maps the host's root alone).
    if let Some(owner) = owner {
        let id = (nix::unistd::Uid::from_raw(owner), nix::unistd::Gid::from_raw(owner));
        nix::unistd::fchown(&fd, Some(id.0), Some(id.1))?;
    }
    nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::from_bits_truncate(0o700))?;
    // From here on nobody else can reach inside; what is there already was put there by someone
    // else, between the folder's making and now.
    for name in ["upper", "work"] {
        nix::sys::stat::mkdirat(&fd, name, nix::sys::stat::Mode::from_bits_truncate(0o755))?;
    }
    super::hardening::bind_held_at(fd.as_fd(), target)
}

pub(crate) fn errno_of(e: std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

/// `shift` is added to every owner (as root with a shifted id range).
pub(crate) fn copy_dir_contents(from: &Path, to: &Path, shift: u32) -> Result<(), Errno> {
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
        let (uid, gid) = match shift {
            0 => (meta.uid(), meta.gid()),
            base => (crate::hardening::shift_id(meta.uid(), base), crate::hardening::shift_id(meta.gid(), base)),
        };
        let _ = std::os::unix::fs::lchown(&dst, Some(uid), Some(gid));
        if !kind.is_symlink() {
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777)).map_err(errno_of)?;
        }
    }
    Ok(())
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
pub(crate) struct MountAttr {
    pub(crate) attr_set: u64,
    pub(crate) attr_clr: u64,
    pub(crate) propagation: u64,
    pub(crate) userns_fd: u64,
}

pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(crate) const AT_RECURSIVE: libc::c_uint = 0x8000;

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
