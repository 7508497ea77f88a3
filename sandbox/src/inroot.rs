//! Setup's file operations on the new root, resolved inside it: `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` from a descriptor on `/newroot`, then the `*at` call on the last component
//! without following it. A symlink in the rootfs pointing anywhere (`/oldroot/…`, `../../..`,
//! `/proc/1/root/…`) resolves to a path inside the new root, never to the host's, while the host's
//! tree is still reachable at `/oldroot` during setup.
//!
//! Mount targets are opened the same way (`O_PATH`) and mounted on through the descriptor's
//! `/proc/self/fd` entry, as runc and libpathrs do.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// Where the new root is built (see crate::plan).
const NEW_ROOT: &str = "/newroot";

/// As root with a shifted id range: the id that root inside is, given to what setup creates (0: keep).
static OWNER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// From now on, files, directories and symlinks setup creates in the new root belong to `id` (uid and
/// gid): root inside, when root inside is a shifted id.
pub(crate) fn give_created_to(id: u32) {
    OWNER.store(id, std::sync::atomic::Ordering::Relaxed);
}

/// Gives `name` in `dir`, which setup has just created, to the owner set by [`give_created_to`].
fn own(dir: &OwnedFd, name: &Path) -> Result<(), Errno> {
    let Some(id) = owner() else { return Ok(()) };
    nix::unistd::fchownat(dir, name, Some(id.0), Some(id.1), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
}

/// The owner set by [`give_created_to`], if any.
fn owner() -> Option<(nix::unistd::Uid, nix::unistd::Gid)> {
    let id = OWNER.load(std::sync::atomic::Ordering::Relaxed);
    (id != 0).then(|| (nix::unistd::Uid::from_raw(id), nix::unistd::Gid::from_raw(id)))
}

/// Gives the file `fd` to the owner set by [`give_created_to`] if the host's root owns it: created
/// now (nothing inside is legitimately owned by an unmapped id).
fn own_if_new(fd: &OwnedFd) -> Result<(), Errno> {
    match owner() {
        Some((uid, gid)) if nix::sys::stat::fstat(fd)?.st_uid == 0 => nix::unistd::fchown(fd, Some(uid), Some(gid)),
        _ => Ok(()),
    }
}

/// Runs `create`; where it fails with EOVERFLOW (as root, in a read-write volume, id-mapped through a
/// namespace that maps root inside alone: the host's root, which setup is, has no id there), again
/// as root inside (setfsuid/setfsgid to the owner of [`give_created_to`]), as the program would
/// create it: on the host, the caller's.
fn as_root_inside<T>(create: impl Fn() -> Result<T, Errno>) -> Result<T, Errno> {
    match (create(), owner()) {
        (Err(Errno::EOVERFLOW), Some((uid, gid))) => {
            nix::unistd::setfsgid(gid);
            nix::unistd::setfsuid(uid);
            let again = create();
            nix::unistd::setfsuid(nix::unistd::Uid::from_raw(0));
            nix::unistd::setfsgid(nix::unistd::Gid::from_raw(0));
            again
        }
        (done, _) => done,
    }
}

/// The part of `path` below the new root, if `path` is inside it (and not the root itself).
pub(crate) fn below_new_root(path: &Path) -> Option<&Path> {
    path.strip_prefix(NEW_ROOT).ok().filter(|rel| !rel.as_os_str().is_empty())
}

fn root() -> Result<OwnedFd, Errno> {
    nix::fcntl::open(NEW_ROOT, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
}

fn resolve() -> ResolveFlag {
    ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// Opens `rel` (relative to the new root, resolved inside it) with `flags`.
fn open_in_root(root: &OwnedFd, rel: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(resolve());
    loop {
        match nix::fcntl::openat2(root, rel, how) {
            // openat2(2): EAGAIN when a rename raced the lookup; try again.
            Err(Errno::EAGAIN) => continue,
            other => return other,
        }
    }
}

/// The directory holding `rel`'s last component, opened inside the root, and that component.
fn parent_of(rel: &Path) -> Result<(OwnedFd, PathBuf), Errno> {
    let name = rel.file_name().ok_or(Errno::EINVAL)?;
    let root = root()?;
    let parent = open_in_root(&root, rel.parent().unwrap_or(Path::new("")), OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    Ok((parent, PathBuf::from(name)))
}

/// Replaces the file's contents (creating it, mode 0644), never following a symlink at its place.
pub(crate) fn write_file(rel: &Path, contents: &[u8]) -> Result<(), Errno> {
    let (dir, name) = parent_of(rel)?;
    let flags = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_TRUNC | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    let fd = as_root_inside(|| nix::fcntl::openat(&dir, &name, flags, Mode::from_bits_truncate(0o644)))?;
    own_if_new(&fd)?;
    write_all(&fd, contents)
}

/// Replaces the contents of a file the sandbox provides (creating it, mode 0644), in the new root's
/// own mount only: resolved with `RESOLVE_NO_XDEV` as well, so that a path that leads into another
/// mount (a volume bound there, or reached through a symlink in the rootfs such as
/// `etc -> /data/etc`) writes nothing. That file is the user's.
pub(crate) fn write_own_file(rel: &Path, contents: &[u8]) -> Result<(), Errno> {
    let root = root()?;
    let flags = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let how = OpenHow::new()
        .flags(flags)
        .mode(Mode::from_bits_truncate(0o644))
        .resolve(resolve() | ResolveFlag::RESOLVE_NO_XDEV);
    let fd = loop {
        match as_root_inside(|| nix::fcntl::openat2(&root, rel, how)) {
            Err(Errno::EAGAIN) => continue,
            Err(Errno::EXDEV) => return Ok(()),
            other => break other?,
        }
    };
    own_if_new(&fd)?;
    write_all(&fd, contents)
}

/// Writes all of `contents` to `fd`, retrying on EINTR.
pub(crate) fn write_all(fd: &OwnedFd, contents: &[u8]) -> Result<(), Errno> {
    let mut rest = contents;
    while !rest.is_empty() {
        match nix::unistd::write(fd, rest) {
            Ok(n) => rest = &rest[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Creates a directory; an existing one is fine.
pub(crate) fn mkdir(rel: &Path, mode: u32) -> Result<(), Errno> {
    let (dir, name) = parent_of(rel)?;
    match as_root_inside(|| nix::sys::stat::mkdirat(&dir, &name, Mode::from_bits_truncate(mode))) {
        Ok(()) => own(&dir, &name),
        Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates a directory and its missing parents, each component resolved inside the root.
pub(crate) fn mkdir_all(rel: &Path) -> Result<(), Errno> {
    let mut done = PathBuf::new();
    for part in rel.components() {
        let Component::Normal(part) = part else { continue };
        done.push(part);
        mkdir(&done, 0o755)?;
    }
    // The last one must be a directory (mkdir accepted an existing file).
    open_in_root(&root()?, &done, OFlag::O_PATH | OFlag::O_DIRECTORY).map(drop)
}

/// Creates an empty file if there is none (a bind-mount target: in a kept writable layer it stays,
/// root's inside).
pub(crate) fn touch(rel: &Path) -> Result<(), Errno> {
    let (dir, name) = parent_of(rel)?;
    // Read-only: a mount point need only exist. Opened for writing, an existing file there (a host
    // program bound at its own path inside a read-write workspace bind) was the host's file, busy
    // while another sandbox ran it (ETXTBSY: the eleventh outside review); O_NONBLOCK for a FIFO.
    let flags = OFlag::O_CREAT | OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    own_if_new(&as_root_inside(|| nix::fcntl::openat(&dir, &name, flags, Mode::from_bits_truncate(0o644)))?)
}

/// Makes each of `nodes`, a character device (name, number), in the directory `rel`, mode 0666
/// whatever the umask. Not given to the owner of [`give_created_to`]: the host's root owns them, as it
/// owns the host's device nodes a sandbox binds otherwise (root inside can use them, not change their
/// mode). An existing entry is an error (EEXIST). Returns the names the kernel refused (EPERM: no
/// CAP_MKNOD), each tried.
pub(crate) fn char_devices<'a>(
    rel: &Path,
    nodes: impl Iterator<Item = (&'a str, libc::dev_t)>,
) -> Result<Vec<&'a str>, Errno> {
    let dir = open_in_root(&root()?, rel, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    // No umask meanwhile (init is single-threaded): two umask(2) calls are cheaper than a chmod each.
    let umask = nix::sys::stat::umask(Mode::empty());
    let mut refused = Vec::new();
    let mut made = Ok(());
    let mode = Mode::from_bits_truncate(0o666);
    for (name, dev) in nodes {
        match nix::sys::stat::mknodat(&dir, name, nix::sys::stat::SFlag::S_IFCHR, mode, dev) {
            Ok(()) => {}
            Err(Errno::EPERM) => refused.push(name),
            Err(e) => {
                made = Err(e);
                break;
            }
        }
    }
    nix::sys::stat::umask(umask);
    made.map(|()| refused)
}

/// Creates a symlink; an existing entry is replaced.
pub(crate) fn symlink(target: &Path, rel: &Path) -> Result<(), Errno> {
    let (dir, name) = parent_of(rel)?;
    match as_root_inside(|| nix::unistd::symlinkat(target, &dir, &name)) {
        Err(Errno::EEXIST) => {
            nix::unistd::unlinkat(&dir, &name, nix::unistd::UnlinkatFlags::NoRemoveDir)?;
            nix::unistd::symlinkat(target, &dir, &name)?;
        }
        other => other?,
    }
    own(&dir, &name)
}

/// Sets the mode of a file or directory (never of what a symlink at its place points to).
pub(crate) fn chmod(rel: &Path, mode: u32) -> Result<(), Errno> {
    let (dir, name) = parent_of(rel)?;
    let fd = nix::fcntl::openat(&dir, &name, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
    nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode))
}

/// A mount target inside the root: the open descriptor (keep it until the mount is done) and the path
/// to give mount(2), its `/proc/self/fd` entry in the host's procfs (at `/oldroot/proc` during setup).
pub(crate) fn mount_target(rel: &Path) -> Result<(OwnedFd, PathBuf), Errno> {
    let fd = open_in_root(&root()?, rel, OFlag::O_PATH)?;
    let path = PathBuf::from(format!("/oldroot/proc/self/fd/{}", fd.as_raw_fd()));
    Ok((fd, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_below_the_new_root_are_resolved_in_it() {
        assert_eq!(below_new_root(Path::new("/newroot/etc/hosts")), Some(Path::new("etc/hosts")));
        assert_eq!(below_new_root(Path::new("/newroot")), None);
        assert_eq!(below_new_root(Path::new("/newrootx/etc")), None);
        assert_eq!(below_new_root(Path::new("/tmp/oldroot")), None);
    }
}
