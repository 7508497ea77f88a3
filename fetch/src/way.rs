//! The way to a folder (the cache, a tree in it), walked from `/` as the kernel would walk it, one
//! descriptor at a time: every folder and link on the way must be root's or the caller's, and a
//! folder that group or others may write must be sticky (as `/tmp` is). Otherwise another user
//! could put a folder of their own in its place between two uses: the cache's trees are handed to
//! sandboxes by path (the overlay's lower layer), and with the cache below a folder another user
//! owned, that user swapped the cache for their own and their `/bin/sh` ran as root inside root's
//! sandbox (the twenty-second outside review). Missing folders are made here, one by one, under the
//! descriptor of the folder checked last, with an explicit mode (whatever the umask), and checked as
//! any other (the twenty-third: made by path after the walk, a folder another user created in a
//! sticky `/tmp` between the walk and the making was taken for root's).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

use crate::at::is;
use crate::error::{Error, io};

/// How many links a walk follows before it gives up, as the kernel does (`ELOOP`).
const MAX_LINKS: usize = 40;

/// How many folders a walk may make (and find gone again) before it gives up: another process
/// removing each as it is made would otherwise keep it going.
const MAX_MADE: usize = 64;

/// Opens the folder `dir` (as `O_PATH`) by walking to it, making what is missing when `make` (the
/// last folder 0700, those before it 0755), and refusing the way when someone other than root or
/// `uid` could change it ([`Error::CachePathNotSafe`]).
pub(crate) fn open(dir: &Path, uid: u32, make: bool) -> Result<OwnedFd, Error> {
    let absolute = match dir.is_absolute() {
        true => dir.to_owned(),
        false => std::env::current_dir().map_err(io("find the current directory for", dir))?.join(dir),
    };
    let path_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let root = || nix::fcntl::open("/", path_flags, Mode::empty()).map_err(|e| io("open", Path::new("/"))(e.into()));
    let unsafe_at = |path: &Path, st: &FileStat| Error::CachePathNotSafe {
        cache: dir.to_owned(),
        path: path.to_owned(),
        owner: st.st_uid,
        mode: st.st_mode & 0o7777,
        uid,
    };
    let mut at = root()?;
    let mut at_path = PathBuf::from("/");
    let top = nix::sys::stat::fstat(&at).map_err(|e| io("inspect", Path::new("/"))(e.into()))?;
    if !safe_folder(&top, uid) {
        return Err(unsafe_at(Path::new("/"), &top));
    }
    let mut left: VecDeque<OsString> = names(&absolute);
    let (mut links, mut made) = (0, 0);
    // The folder made last, with its mode: set explicitly once it is open (a umask of 000, or a
    // default ACL, must not leave it writable by others).
    let mut just_made: Option<(OsString, u32)> = None;
    while let Some(name) = left.pop_front() {
        if name == "/" {
            (at, at_path) = (root()?, PathBuf::from("/"));
            continue;
        }
        if name == "." {
            continue;
        }
        if name == ".." {
            // Up from a folder checked on the way: its parent was checked before it (or is `/`).
            at = nix::fcntl::openat(&at, "..", path_flags, Mode::empty())
                .map_err(|e| io("open", at_path.join(".."))(e.into()))?;
            at_path.pop();
            continue;
        }
        let next = at_path.join(&name);
        let st = match nix::sys::stat::fstatat(&at, name.as_bytes(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Nothing is made on a way that goes back up after it (`new/../x`): the folders made
            // would stay behind a refusal further on (the twenty-fifth outside review).
            Err(Errno::ENOENT) if make && made < MAX_MADE && !left.iter().any(|n| n == "..") => {
                let bits = if left.iter().all(|n| n == ".") { 0o700 } else { 0o755 };
                match nix::sys::stat::mkdirat(&at, name.as_bytes(), Mode::from_bits_truncate(bits)) {
                    Ok(()) => just_made = Some((name.clone(), bits)),
                    Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io("create cache directory", &next)(e.into())),
                }
                made += 1;
                left.push_front(name);
                continue;
            }
            // Any other answer (a name too long, a folder we may not search): not a way we checked.
            Err(e) => return Err(io("inspect", &next)(e.into())),
        };
        if st.st_uid != 0 && st.st_uid != uid {
            return Err(unsafe_at(&next, &st));
        }
        if is(&st, SFlag::S_IFLNK) {
            links += 1;
            if links > MAX_LINKS {
                return Err(io("follow the links to", dir)(Errno::ELOOP.into()));
            }
            let target =
                nix::fcntl::readlinkat(&at, name.as_bytes()).map_err(|e| io("read the link", &next)(e.into()))?;
            for n in names(Path::new(&target)).into_iter().rev() {
                left.push_front(n);
            }
            continue;
        }
        if !is(&st, SFlag::S_IFDIR) {
            return Err(io("open cache directory", &next)(Errno::ENOTDIR.into()));
        }
        let opened = nix::fcntl::openat(&at, name.as_bytes(), path_flags, Mode::empty())
            .map_err(|e| io("open", &next)(e.into()))?;
        let mut st_now = nix::sys::stat::fstat(&opened).map_err(|e| io("inspect", &next)(e.into()))?;
        if (st_now.st_dev, st_now.st_ino) != (st.st_dev, st.st_ino) {
            return Err(unsafe_at(&next, &st_now));
        }
        if let Some((_, bits)) = just_made.take().filter(|(n, _)| *n == name) {
            if st_now.st_uid != uid {
                return Err(unsafe_at(&next, &st_now));
            }
            set_mode(&at, &name, &opened, bits).map_err(|e| io("chmod", &next)(e.into()))?;
            st_now.st_mode = (st_now.st_mode & !0o7777) | bits;
        }
        if !safe_folder(&st_now, uid) {
            return Err(unsafe_at(&next, &st_now));
        }
        (at, at_path) = (opened, next);
    }
    Ok(at)
}

/// Whether only root and the caller can change what `path` names (an existing folder, such as a tree
/// a kept record names): the way to it, walked as for the cache, nothing made.
///
/// # Errors
/// [`Error::CachePathNotSafe`] naming the folder or link another user could change, or
/// [`Error::Io`] when the way cannot be walked (a name missing, a folder that may not be searched).
pub fn check(path: &Path) -> Result<(), Error> {
    open(path, nix::unistd::geteuid().as_raw(), false).map(drop)
}

/// The names of `path` in order, `/` first for an absolute one.
fn names(path: &Path) -> VecDeque<OsString> {
    path.components()
        .map(|c| match c {
            Component::RootDir => OsString::from("/"),
            other => other.as_os_str().to_owned(),
        })
        .collect()
}

/// Whether a folder on the way is as it must be: root's or `uid`'s, and not writable by group or
/// others unless sticky.
fn safe_folder(st: &FileStat, uid: u32) -> bool {
    let owned = st.st_uid == 0 || st.st_uid == uid;
    let open_to_others = st.st_mode & 0o022 != 0 && st.st_mode & 0o1000 == 0;
    owned && !open_to_others
}

/// Sets the mode of the folder `name` under `parent`, held as `folder` (an `O_PATH` descriptor, on
/// which fchmod(2) is refused): through a readable descriptor of the same folder.
fn set_mode(parent: &impl AsFd, name: &OsStr, folder: &OwnedFd, bits: u32) -> nix::Result<()> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let readable = nix::fcntl::openat(parent, name.as_bytes(), flags, Mode::empty())?;
    let (a, b) = (nix::sys::stat::fstat(&readable)?, nix::sys::stat::fstat(folder)?);
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return Err(Errno::EPERM);
    }
    nix::sys::stat::fchmod(&readable, Mode::from_bits_truncate(bits))
}
