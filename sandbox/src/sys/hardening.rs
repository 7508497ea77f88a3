//! The system calls of the hardening (issue 9) that neither nix nor seccompiler wrap:
//! `close_range(2)`, `keyctl(2)`, and the new mount API for id-mapped bind mounts.

use std::os::fd::RawFd;

use nix::errno::Errno;

/// Marks every descriptor above stderr close-on-exec, except `keep` (which a closure's child still
/// needs), so that the program gets only stdin, stdout and stderr. close_range(2) with
/// `CLOSE_RANGE_CLOEXEC` (Linux >= 5.11), else one fcntl per possible descriptor. Async-signal-safe.
pub(crate) fn cloexec_above_stdio(keep: &[RawFd]) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC closes nothing: it only sets a flag on this
    // process's descriptors, so no descriptor owned elsewhere in the process is invalidated; F_SETFD
    // on a number that is not open is EBADF.
    ranges_above_stdio(keep, libc::CLOSE_RANGE_CLOEXEC, |fd| unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
    });
}

/// Closes every descriptor above stderr except `keep` (a closure's process, which never execs; a
/// helper forked from its caller, which holds copies of all the caller's descriptors).
/// close_range(2) (Linux >= 5.9), else close(2) on each possible descriptor. Async-signal-safe. The
/// caller must own every descriptor it closes this way: nothing of this process uses them again.
pub(crate) fn close_above_stdio(keep: &[RawFd]) {
    // SAFETY: the callers (a closure's process after its setup, a forked helper before its work)
    // own every descriptor in the ranges and never use one again: the values that held them in the
    // forking process are never dropped in this one, which ends with _exit; close(2) of a number
    // that is not open is EBADF.
    ranges_above_stdio(keep, 0, |fd| unsafe {
        libc::close(fd);
    });
}

/// Applies close_range(2) with `flags` to every descriptor above stderr but `keep` (at most 8), or,
/// where the kernel has no close_range, `each` to every possible one.
fn ranges_above_stdio(keep: &[RawFd], flags: libc::c_uint, each: impl Fn(RawFd)) {
    let mut first: RawFd = 3;
    let mut bounds: [RawFd; 8] = [RawFd::MAX; 8];
    let n = keep.len().min(bounds.len());
    bounds[..n].copy_from_slice(&keep[..n]);
    bounds[..n].sort_unstable();
    for &fd in bounds[..n].iter().chain(std::iter::once(&RawFd::MAX)) {
        if fd > first {
            let last = fd - 1;
            // SAFETY: see the callers: the flags decide what happens to descriptors they own.
            let rc = unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, flags) };
            if rc != 0 {
                let max = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                    .map_or(1024, |(soft, _)| soft.min(1 << 16) as RawFd);
                (first..=last.min(max)).for_each(&each);
            }
        }
        first = first.max(fd.saturating_add(1));
    }
}

/// Joins a new anonymous session keyring (keyctl(2) `KEYCTL_JOIN_SESSION_KEYRING` with no name), so
/// that the caller's session keyring is out of reach. Async-signal-safe.
pub(crate) fn join_new_session_keyring() -> Result<(), Errno> {
    // SAFETY: a NULL name asks for a new anonymous keyring; the kernel reads no memory of ours.
    let rc = unsafe {
        libc::syscall(libc::SYS_keyctl, libc::KEYCTL_JOIN_SESSION_KEYRING as libc::c_ulong, std::ptr::null::<u8>())
    };
    Errno::result(rc).map(drop)
}

use super::mount::{AT_RECURSIVE, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, MountAttr};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_SYMLINKS: libc::c_uint = 0x10;

/// A detached copy of the mount at `source` (open_tree(2) `OPEN_TREE_CLONE`; with the mounts below it
/// if `recursive`: every one must support id-mapping, as /proc or /sys do not), shown
/// through the id mapping of the user namespace `userns` (mount_setattr(2) `MOUNT_ATTR_IDMAP`), nosuid,
/// nodev and maybe read-only, then attached at `target` (move_mount(2)). On-disk owners appear inside
/// the user namespace as they are on the host (root's files are root's inside), and what the program
/// writes is stored with the ids it has inside, unshifted. `host` is `source` as the helper named it
/// on the host: a tree [`prepare_idmap`] made under that name is attached rather than made again.
pub(crate) fn idmapped_bind(
    host: &std::path::Path,
    source: &std::path::Path,
    target: &std::path::Path,
    userns: RawFd,
    (read_only, recursive): (bool, bool),
    id: Option<(u64, u64)>,
) -> Result<(), Errno> {
    let tree = match take_prepared(host, userns, read_only, recursive) {
        Some(tree) => tree,
        None => idmapped_tree(source, userns, (read_only, recursive), id)?,
    };
    // The target may be a /proc/self/fd entry (crate::inroot): followed.
    attach_at_path(&tree, target)
}

/// The detached, id-mapped trees [`prepare_idmap`] made, for [`idmapped_bind`] to attach: made by the
/// helper, inherited by init across fork. Key: the host path, the user namespace, read-only, recursive.
type Prepared = ((std::path::PathBuf, RawFd, bool, bool), std::os::fd::OwnedFd);

thread_local! {
    static PREPARED: std::cell::RefCell<Vec<Prepared>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Makes the detached, id-mapped copy of the mount at `path` that [`idmapped_bind`] with the same
/// arguments will attach, and keeps it: whether the kernel refuses it is the helper's question
/// (crate::spawn::idmap), and the answer is the mount itself, made once. Dropping an unattached tree
/// costs an RCU grace period (the kernel unmounts it), which a kept one never pays. EINVAL (or EPERM,
/// ENOSYS) where the file system cannot be id-mapped (9p, NFS, tmpfs before Linux 6.3, ...).
pub(crate) fn prepare_idmap(
    path: &std::path::Path,
    userns: RawFd,
    (read_only, recursive): (bool, bool),
    id: Option<(u64, u64)>,
) -> Result<(), Errno> {
    let tree = idmapped_tree(path, userns, (read_only, recursive), id)?;
    PREPARED.with(|p| p.borrow_mut().push(((path.to_owned(), userns, read_only, recursive), tree)));
    Ok(())
}

/// Closes the prepared trees: the helper's copies once init is forked, init's once its mounts are
/// built (none is left then but a tree no step asked for), so that the program holds none.
pub(crate) fn drop_prepared() {
    PREPARED.with(|p| p.borrow_mut().clear());
}

/// A prepared tree for these arguments, taken out of the list.
fn take_prepared(
    host: &std::path::Path,
    userns: RawFd,
    read_only: bool,
    recursive: bool,
) -> Option<std::os::fd::OwnedFd> {
    PREPARED.with(|p| {
        let mut p = p.borrow_mut();
        let at = p
            .iter()
            .position(|((path, u, r, rec), _)| path == host && (*u, *r, *rec) == (userns, read_only, recursive))?;
        Some(p.swap_remove(at).1)
    })
}

/// The detached, id-mapped copy of the mount at `source` that [`idmapped_bind`] attaches.
fn idmapped_tree(
    source: &std::path::Path,
    userns: RawFd,
    (read_only, recursive): (bool, bool),
    id: Option<(u64, u64)>,
) -> Result<std::os::fd::OwnedFd, Errno> {
    let recursive = if recursive { AT_RECURSIVE } else { 0 };
    let tree = clone_source(source, recursive, id)?;
    let userns = u64::try_from(userns).map_err(|_| Errno::EBADF)?;
    let read_only = if read_only { MOUNT_ATTR_RDONLY } else { 0 };
    set_attrs(&tree, MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | read_only, userns, recursive)?;
    Ok(tree)
}

const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// Runs `f` with `CAP_MKNOD` out of this (single-threaded) process's effective capabilities, raised
/// again after if it was there: a mount made meanwhile records credentials that make no device node.
/// overlayfs copies a lower file up with its mounter's credentials when the program changes it (a
/// `chmod` of a device node a directory rootfs holds), and the copy keeps the mode the program chose:
/// with `--keep-failed`, a working node on the host's disk (the twenty-seventh outside review).
/// Whiteouts (0:0, overlayfs' record of a deletion) need no `CAP_MKNOD`.
pub(crate) fn without_mknod<T>(f: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
    use rustix::thread::{CapabilitySet, CapabilitySets, capabilities, set_capabilities};
    let errno = |e: rustix::io::Errno| Errno::from_raw(e.raw_os_error());
    let caps = capabilities(None).map_err(errno)?;
    let had = caps.effective.contains(CapabilitySet::MKNOD);
    if had {
        set_capabilities(None, CapabilitySets { effective: caps.effective - CapabilitySet::MKNOD, ..caps })
            .map_err(errno)?;
    }
    let result = f();
    if had {
        set_capabilities(None, caps).map_err(errno)?;
    }
    result
}

/// A directory's names, each with its kind (`None`: a symlink); see [`listing`].
pub(crate) type Listing = Vec<(std::ffi::OsString, Option<Listed>)>;

/// What a listing of a kernel file system's directory says of a name in it (see [`listing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listed {
    /// Not in the directory.
    Absent,
    /// A directory.
    Directory,
    /// Another kind of file.
    Other,
}

/// The names in `dir` (a freshly mounted `/proc`) that `keep` keeps, each with its kind (`None` for a symlink, which
/// callers look up: a mask covers what it leads to); `None` if a name's kind is not
/// given (`DT_UNKNOWN`) or the listing fails, where callers look each name up. One getdents(2) where
/// a lookup per masked path was: in a procfs just mounted, each lookup, of a name there or not,
/// allocates and later frees a dentry.
pub(crate) fn listing(dir: std::os::fd::BorrowedFd<'_>, keep: impl Fn(&[u8]) -> bool) -> Option<Listing> {
    use std::os::unix::ffi::OsStrExt;
    let flags = nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
    let listed = nix::fcntl::openat(dir, c".", flags, nix::sys::stat::Mode::empty()).ok()?;
    // getdents(2) into a buffer on the stack: opendir(3)'s 32 KiB on the heap, freed at once, made
    // init's allocator give memory back and take it again (brk(2) twice, and the page faults).
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut entries = rustix::fs::RawDir::new(&listed, &mut buf);
    let mut names = Vec::with_capacity(96);
    while let Some(entry) = entries.next() {
        let entry = entry.ok()?;
        if !keep(entry.file_name().to_bytes()) {
            continue;
        }
        let kind = match entry.file_type() {
            rustix::fs::FileType::Unknown => return None,
            rustix::fs::FileType::Symlink => None,
            rustix::fs::FileType::Directory => Some(Listed::Directory),
            _ => Some(Listed::Other),
        };
        names.push((std::ffi::OsStr::from_bytes(entry.file_name().to_bytes()).to_owned(), kind));
    }
    Some(names)
}

/// Masks `name` in the kernel file system directory `dir` (a `/proc` or `/sys` of the new root): a
/// directory gets a read-only copy of the mount of an empty directory (`empty` yields an `O_PATH`
/// descriptor on one), a file a read-only copy of the mount of the `null` device (likewise). Through
/// descriptors and names relative to `dir` (open_tree(2), mount_setattr(2), move_mount(2)); no new
/// file system is made. Nothing to mask where `name` does not exist (`listed`: what a listing of
/// `dir` says of it, `None` where there is none, then it is looked up). ENOSYS on kernels before 5.12
/// (no mount_setattr), whose callers mask by path instead.
pub(crate) fn mask_at(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &std::path::Path,
    listed: Option<Listed>,
    null: impl FnOnce() -> Result<RawFd, Errno>,
    empty: impl FnOnce() -> Result<RawFd, Errno>,
) -> Result<(), Errno> {
    use nix::sys::stat::SFlag;
    let name = std::ffi::CString::new(name.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    let is_dir = match listed {
        Some(Listed::Absent) => return Ok(()),
        Some(Listed::Directory) => true,
        Some(Listed::Other) => false,
        None => match nix::sys::stat::fstatat(dir, name.as_c_str(), nix::fcntl::AtFlags::empty()) {
            Err(Errno::ENOENT) => return Ok(()),
            other => SFlag::from_bits_truncate(other?.st_mode & libc::S_IFMT) == SFlag::S_IFDIR,
        },
    };
    // `null` and `empty` return descriptors their owner keeps open for the whole setup.
    let cover = if is_dir { empty()? } else { null()? };
    let copy = clone_mount(cover, c"", 0)?;
    set_attrs(&copy, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, 0, 0)?;
    attach(&copy, dir, &name, 0)
}

/// Makes `name` in `dir` (see [`mask_at`]) and every mount below it read-only, nosuid and nodev: a
/// recursive copy of its mount, so changed, attached over it. Nothing to do where it does not exist;
/// ENOSYS as [`mask_at`]; `listed` as there.
pub(crate) fn read_only_at(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &std::path::Path,
    listed: Option<Listed>,
) -> Result<(), Errno> {
    if listed == Some(Listed::Absent) {
        return Ok(());
    }
    let name = std::ffi::CString::new(name.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    use std::os::fd::AsRawFd;
    let copy = match clone_mount(dir.as_raw_fd(), &name, AT_RECURSIVE) {
        Err(Errno::ENOENT) => return Ok(()),
        other => other?,
    };
    set_attrs(&copy, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, AT_RECURSIVE)?;
    attach(&copy, dir, &name, 0)
}

/// A detached copy of the mount of `source` (with `recursive`, the mounts below it too), opened
/// without following any link (`RESOLVE_NO_SYMLINKS`). Sources are resolved paths (`Builder::build`
/// canonicalises them): a link found there at a start was put there since, by whoever can write
/// where the source lies, to bind another host path in its place (the tenth outside review: one
/// sandbox-run test swapped a `--mount` source for a link, and the next test read a root-only host
/// file through it). ELOOP then. With `id`, it must still be the file of that device and inode,
/// which `Builder::build` found there (ESTALE otherwise).
fn clone_source(
    source: &std::path::Path,
    recursive: libc::c_uint,
    id: Option<(u64, u64)>,
) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::AsRawFd;
    let fd = super::mount::open_no_links(source, nix::fcntl::OFlag::O_PATH)?;
    if let Some(id) = id {
        let st = nix::sys::stat::fstat(&fd)?;
        if (st.st_dev, st.st_ino) != id {
            return Err(Errno::ESTALE);
        }
    }
    clone_mount(fd.as_raw_fd(), c"", recursive)
}

/// Binds `source` at `target` (a path, or a /proc/self/fd entry crate::inroot gives), with the
/// mounts below it: a bind mount made from [`clone_source`], never through a link at `source`.
pub(crate) fn bind_no_links(
    source: &std::path::Path,
    target: &std::path::Path,
    id: Option<(u64, u64)>,
) -> Result<(), Errno> {
    match clone_source(source, AT_RECURSIVE, id) {
        Ok(tree) => attach_at_path(&tree, target),
        // Kernels before 5.6 (no openat2, or before 5.2 no open_tree): bound by path, as before.
        Err(Errno::ENOSYS) => nix::mount::mount(
            Some(source),
            target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
            None::<&str>,
        ),
        Err(e) => Err(e),
    }
}

/// Attaches the detached tree `tree` at the path `target`, following a link there (a /proc/self/fd
/// entry crate::inroot gives for a target inside the new root).
fn attach_at_path(tree: &std::os::fd::OwnedFd, target: &std::path::Path) -> Result<(), Errno> {
    let target = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    attach(tree, nix::fcntl::AT_FDCWD, &target, MOVE_MOUNT_T_SYMLINKS)
}

/// Binds the folder `dir` (any descriptor of it, `O_PATH` too) at `target`: the folder itself, not
/// what a path to it leads to by now (open_tree(2) of the descriptor, then move_mount(2)).
pub(crate) fn bind_held_at(dir: std::os::fd::BorrowedFd<'_>, target: &std::path::Path) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let target = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    let tree = clone_mount(dir.as_raw_fd(), c"", 0)?;
    attach(&tree, nix::fcntl::AT_FDCWD, &target, 0)
}

/// A detached copy of the mount at `name` in `dir` (`dir` itself if `name` is empty; `AT_FDCWD`
/// for a path): open_tree(2) `OPEN_TREE_CLONE`, with `recursive` the mounts below it too.
fn clone_mount(dir: RawFd, name: &std::ffi::CStr, recursive: libc::c_uint) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    let empty = if name.is_empty() { libc::AT_EMPTY_PATH as libc::c_uint } else { 0 };
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | empty | recursive;
    // SAFETY: `dir` is open (or AT_FDCWD) for the call, `name` a NUL-terminated string alive for it
    // (empty: with AT_EMPTY_PATH, `dir` itself); open_tree returns a new descriptor.
    let fd = Errno::result(unsafe { libc::syscall(libc::SYS_open_tree, dir, name.as_ptr(), flags) })?;
    // SAFETY: the descriptor was just returned by open_tree and is owned by nothing else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as RawFd) })
}

/// mount_setattr(2) on the detached tree `tree` (its top mount, or with `recursive` all of it);
/// `userns_fd` for `MOUNT_ATTR_IDMAP`, else 0.
fn set_attrs(tree: &std::os::fd::OwnedFd, attr_set: u64, userns_fd: u64, recursive: libc::c_uint) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let attr = MountAttr { attr_set, attr_clr: 0, propagation: 0, userns_fd };
    // SAFETY: an empty path with AT_EMPTY_PATH names the descriptor itself; `attr` is a valid
    // mount_attr of the size passed, alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | recursive,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(rc).map(drop)
}

/// Attaches the detached tree `tree` over `name` in `dir` (move_mount(2)); a symlink there is
/// followed only with `flags` `MOVE_MOUNT_T_SYMLINKS`.
fn attach(
    tree: &std::os::fd::OwnedFd,
    dir: std::os::fd::BorrowedFd<'_>,
    name: &std::ffi::CStr,
    flags: libc::c_uint,
) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: both descriptors are open for the call; the empty path names `tree` itself
    // (MOVE_MOUNT_F_EMPTY_PATH), `name` is a NUL-terminated string alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            dir.as_raw_fd(),
            name.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | flags,
        )
    };
    Errno::result(rc).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing gives each name's kind, a symlink's as unknown (looked up, followed), and says nothing
    /// of a name that is not there: [`mask_at`] then masks nothing, as a lookup's ENOENT did.
    #[test]
    fn a_listing_names_directories_files_and_leaves_symlinks_to_a_lookup() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sys")).expect("mkdir");
        std::fs::write(dir.path().join("keys"), b"").expect("write");
        std::os::unix::fs::symlink("keys", dir.path().join("self")).expect("symlink");
        let fd = std::fs::File::open(dir.path()).expect("open");
        let mut names = listing(std::os::fd::AsFd::as_fd(&fd), |_| true).expect("a listing");
        names.retain(|(n, _)| n != "." && n != "..");
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let expected = [("keys", Some(Listed::Other)), ("self", None), ("sys", Some(Listed::Directory))];
        assert_eq!(names, expected.map(|(n, k)| (std::ffi::OsString::from(n), k)));
        let absent = mask_at(
            std::os::fd::AsFd::as_fd(&fd),
            std::path::Path::new("kcore"),
            Some(Listed::Absent),
            || panic!("no cover for an absent name"),
            || panic!("no cover for an absent name"),
        );
        assert_eq!(absent, Ok(()));
    }
}
