//! File operations relative to a directory descriptor that never follow a symlink in the last
//! component: the cache and the unpacker reach everything through descriptors of folders they checked.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

fn mode(bits: u32) -> Mode {
    Mode::from_bits_truncate(bits as nix::libc::mode_t)
}

/// Opens the directory `name` under `dir`; `ELOOP`/`ENOTDIR` when it is a symlink or not a directory.
pub(crate) fn open_dir(dir: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    Ok(nix::fcntl::openat(dir, name.as_bytes(), flags, Mode::empty())?)
}

/// Creates the directory `name` under `dir` with `bits` (if missing) and opens it.
pub(crate) fn ensure_dir(dir: impl AsFd + Copy, name: &OsStr, bits: u32) -> io::Result<OwnedFd> {
    match nix::sys::stat::mkdirat(dir, name.as_bytes(), mode(bits)) {
        Ok(()) | Err(Errno::EEXIST) => open_dir(dir, name),
        Err(e) => Err(e.into()),
    }
}

/// `lstat` of `name` under `dir`; `None` if it does not exist.
pub(crate) fn stat(dir: impl AsFd, name: &OsStr) -> io::Result<Option<FileStat>> {
    match nix::sys::stat::fstatat(dir, name.as_bytes(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether a stat result is of the given kind.
pub(crate) fn is(st: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == kind
}

/// Opens the existing file `name` under `dir` for reading, refusing a symlink.
pub(crate) fn open_read(dir: impl AsFd, name: &OsStr) -> io::Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(File::from(nix::fcntl::openat(dir, name.as_bytes(), flags, Mode::empty())?))
}

/// Creates the new file `name` under `dir` (never an existing one, never through a symlink).
pub(crate) fn create(dir: impl AsFd, name: &OsStr, bits: u32) -> io::Result<File> {
    let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(File::from(nix::fcntl::openat(dir, name.as_bytes(), flags, mode(bits))?))
}

/// Opens `name` under `dir` for writing, creating it if missing; refuses a symlink.
pub(crate) fn open_or_create(dir: impl AsFd, name: &OsStr, bits: u32) -> io::Result<File> {
    let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(File::from(nix::fcntl::openat(dir, name.as_bytes(), flags, mode(bits))?))
}

/// `renameat(2)`.
pub(crate) fn rename(from_dir: impl AsFd, from: &OsStr, to_dir: impl AsFd, to: &OsStr) -> io::Result<()> {
    Ok(nix::fcntl::renameat(from_dir, from.as_bytes(), to_dir, to.as_bytes())?)
}

/// Removes `name` under `dir` and everything below it, without following symlinks; read-only
/// directories (a rootless tree keeps the archive's 0555) are made writable first.
pub(crate) fn remove_all(dir: impl AsFd + Copy, name: &OsStr) -> io::Result<()> {
    let Some(st) = stat(dir, name)? else { return Ok(()) };
    if !is(&st, SFlag::S_IFDIR) {
        return match nix::unistd::unlinkat(dir, name.as_bytes(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    let fd = match open_dir(dir, name) {
        Ok(fd) if st.st_mode & 0o700 != 0o700 => {
            nix::sys::stat::fchmod(&fd, mode(0o700))?;
            fd
        }
        Ok(fd) => fd,
        // A folder its owner may not read (mode 000, as an archive may leave one, here when the
        // unpacker was killed before it gave folders their last modes): given access first, through
        // a descriptor of that very folder (the twenty-fifth outside review: rootless, every later
        // fetch failed on one with "Permission denied").
        Err(e) if e.raw_os_error() == Some(nix::libc::EACCES) => {
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let held = nix::fcntl::openat(dir, name.as_bytes(), flags, Mode::empty())?;
            let shown = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&held));
            nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                shown.as_str(),
                mode(0o700),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )?;
            open_dir(&held, OsStr::new("."))?
        }
        Err(e) => return Err(e),
    };
    let names = list(&fd)?;
    for child in names {
        remove_all(&fd, &child)?;
    }
    match nix::unistd::unlinkat(dir, name.as_bytes(), UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The names in the directory `dir` (without `.` and `..`).
pub(crate) fn list(dir: impl AsFd) -> io::Result<Vec<std::ffi::OsString>> {
    // A descriptor of its own: a duplicate would share (and exhaust) the caller's read position.
    let fd = open_dir(dir, OsStr::new("."))?;
    let mut listing = nix::dir::Dir::from_fd(fd)?;
    Ok(listing
        .iter()
        .filter_map(Result::ok)
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
        .filter(|n| n != "." && n != "..")
        .collect())
}

/// Creates the new directory `name` under `dir` (0700) and opens it.
pub(crate) fn create_dir_fd(dir: impl AsFd + Copy, name: &OsStr) -> io::Result<OwnedFd> {
    nix::sys::stat::mkdirat(dir, name.as_bytes(), mode(0o700))?;
    open_dir(dir, name)
}
