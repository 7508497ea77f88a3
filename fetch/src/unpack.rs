//! Unpacking a `.tar.gz` so that nothing is ever written outside the target directory.
//!
//! Every entry's path is checked before anything is written: `..` components and absolute paths
//! refuse the whole archive, and so does an entry whose parent inside the target is a symlink (the
//! "symlink, then write through it" trick) or a hard link whose target is not a regular file already
//! unpacked inside the tree. Symlinks themselves are created verbatim, absolute ones included (Alpine's
//! applets point at `/bin/busybox`): they are only ever resolved inside a sandbox, never followed here.
//! Device nodes and FIFOs are skipped (a sandbox builds its own `/dev`); sparse files are refused (their
//! holes would expand past what the byte cap sees). The uncompressed size, the number of entries and
//! each path's depth and length are capped, and the gzip trailer is checked, so a bomb or a truncated
//! download is an error, not a partial tree.
//!
//! Everything is done with descriptors: each entry's parent folder is opened once from the target's
//! descriptor (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), consecutive entries of one
//! folder reuse it, and files, links and folders are made with `*at` calls that never follow a
//! symlink. Each directory is created once, so the work is linear in the archive.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Permissions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};

use flate2::bufread::MultiGzDecoder;
use tar::EntryType;

/// Caps that turn a decompression bomb into an error.
///
/// # Examples
/// ```
/// let limits = fetch::UnpackLimits { max_bytes: 64 << 20, ..Default::default() };
/// assert_eq!(limits.max_entries, fetch::UnpackLimits::default().max_entries);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Most bytes the decompressed stream may hold (tar headers included). Default: 512 MiB; an Alpine
    /// minirootfs is about 8 MiB.
    pub max_bytes: u64,
    /// Most entries the archive may hold. Default: 100,000; an Alpine minirootfs has about 500.
    pub max_entries: u64,
    /// Most components an entry's path may have. Default: 64; Alpine's deepest has about 10.
    pub max_depth: usize,
    /// Most bytes an entry's path (or a link's target) may have. Default: 1024.
    pub max_path_bytes: usize,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits { max_bytes: 512 << 20, max_entries: 100_000, max_depth: 64, max_path_bytes: 1024 }
    }
}

/// Whose files the unpacked tree holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Keep the uid and gid recorded in the archive (needs root, or CAP_CHOWN).
    FromArchive,
    /// Every file belongs to the calling user; inside a user namespace that maps it to root, the files
    /// then appear as root's.
    Caller,
}

/// What an unpack did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Entries written (files, directories, symlinks, hard links).
    pub written: u64,
    /// Device nodes, FIFOs and other special entries that were skipped.
    pub skipped: u64,
    /// Decompressed bytes read.
    pub bytes: u64,
    /// Bytes written into regular files.
    pub file_bytes: u64,
}

/// Why an archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnpackError {
    /// The data does not start with the gzip magic bytes.
    #[error("not gzip data (the file starts with {magic:02x?}, a .tar.gz starts with [1f, 8b])")]
    NotGzip {
        /// The first bytes found.
        magic: Vec<u8>,
    },
    /// The gzip or tar stream is truncated or corrupt.
    #[error("truncated or corrupt archive near entry {entry}")]
    Corrupt {
        /// How many entries had been read.
        entry: u64,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },
    /// An entry would write outside the target, or through a link.
    #[error("unsafe entry `{path}`: {reason}; the archive was refused")]
    Unsafe {
        /// The entry's path as stored in the archive.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The decompressed data exceeds [`UnpackLimits::max_bytes`].
    #[error(
        "archive expands to more than {limit} bytes (a decompression bomb?); raise UnpackLimits::max_bytes if it is genuine"
    )]
    TooLarge {
        /// The cap.
        limit: u64,
    },
    /// The archive holds more than [`UnpackLimits::max_entries`] entries.
    #[error("archive has more than {limit} entries; raise UnpackLimits::max_entries if it is genuine")]
    TooManyEntries {
        /// The cap.
        limit: u64,
    },
    /// An entry's path has more components than [`UnpackLimits::max_depth`] or more bytes than
    /// [`UnpackLimits::max_path_bytes`].
    #[error(
        "entry `{path}` is deeper or longer than the caps ({max_depth} components, {max_path_bytes} bytes); raise UnpackLimits::max_depth / max_path_bytes if it is genuine"
    )]
    PathTooDeep {
        /// The entry's path (cut to 200 bytes).
        path: String,
        /// The depth cap.
        max_depth: usize,
        /// The length cap.
        max_path_bytes: usize,
    },
    /// Writing the tree failed.
    #[error("failed to {op} `{path}`")]
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> UnpackError + 'a {
    move |source| UnpackError::Io { op, path: path.to_owned(), source }
}

/// Counts decompressed bytes and fails once `limit` is passed.
struct Capped<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(TooLargeMarker));
        }
        Ok(n)
    }
}

#[derive(Debug)]
struct TooLargeMarker;
impl std::fmt::Display for TooLargeMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("decompressed size limit exceeded")
    }
}
impl std::error::Error for TooLargeMarker {}

fn is_too_large(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TooLargeMarker>())
}

/// A directory whose final mode and times are applied after all its contents are written.
struct PendingDir {
    rel: PathBuf,
    mode: u32,
    mtime: u64,
    owner: Option<(u32, u32)>,
}

/// Unpacks the gzip-compressed tar stream `input` into `dest`, which must exist and should be empty.
///
/// On error, `dest` may hold part of the tree: unpack into a fresh temporary directory and remove it on
/// failure (the cache does exactly that), so a refused archive leaves nothing behind.
///
/// # Errors
/// [`UnpackError::NotGzip`], [`UnpackError::Corrupt`] for truncated data, [`UnpackError::Unsafe`] for
/// any entry that would escape `dest` (and for sparse files), [`UnpackError::TooLarge`] /
/// [`UnpackError::TooManyEntries`] / [`UnpackError::PathTooDeep`] past `limits`, [`UnpackError::Io`]
/// when writing fails.
///
/// # Examples
/// ```no_run
/// let file = std::fs::File::open("alpine-minirootfs-3.20.3-x86_64.tar.gz").map_err(|e| e.to_string())?;
/// let stats = fetch::unpack(file, "/tmp/tree".as_ref(), &Default::default(), fetch::Ownership::Caller)
///     .map_err(|e| e.to_string())?;
/// println!("{} entries", stats.written);
/// # Ok::<(), String>(())
/// ```
pub fn unpack(
    input: impl Read,
    dest: &Path,
    limits: &UnpackLimits,
    ownership: Ownership,
) -> Result<UnpackStats, UnpackError> {
    let dir: OwnedFd = File::open(dest).map_err(io_err("open", dest))?.into();
    unpack_into(input, &dir, limits, ownership)
}

/// [`unpack`] into the directory open as `dest`.
pub(crate) fn unpack_into(
    input: impl Read,
    dest: &OwnedFd,
    limits: &UnpackLimits,
    ownership: Ownership,
) -> Result<UnpackStats, UnpackError> {
    let mut buffered = BufReader::with_capacity(64 * 1024, input);
    let magic = buffered.fill_buf().map_err(|source| UnpackError::Corrupt { entry: 0, source })?;
    if magic.len() < 2 || magic[..2] != [0x1f, 0x8b] {
        return Err(UnpackError::NotGzip { magic: magic.iter().take(4).copied().collect() });
    }
    let capped = Capped { inner: MultiGzDecoder::new(buffered), read: 0, limit: limits.max_bytes };
    let mut archive = tar::Archive::new(capped);
    let mut stats = UnpackStats::default();
    let mut dirs: Vec<PendingDir> = Vec::new();
    let mut walker = Walker { root: dest, last: None };
    let mut entry_no = 0u64;
    let corrupt = |entry: u64, limit: u64| {
        move |source: io::Error| {
            if is_too_large(&source) { UnpackError::TooLarge { limit } } else { UnpackError::Corrupt { entry, source } }
        }
    };

    let entries = archive.entries().map_err(corrupt(0, limits.max_bytes))?;
    for entry in entries {
        let mut entry = entry.map_err(corrupt(entry_no, limits.max_bytes))?;
        entry_no += 1;
        if entry_no > limits.max_entries {
            return Err(UnpackError::TooManyEntries { limit: limits.max_entries });
        }
        let header_size = entry.header().entry_size().map_err(corrupt(entry_no, limits.max_bytes))?;
        if header_size > limits.max_bytes {
            return Err(UnpackError::TooLarge { limit: limits.max_bytes });
        }
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path[..raw_path.len().min(200)]).into_owned();
        let too_deep = || UnpackError::PathTooDeep {
            path: shown.clone(),
            max_depth: limits.max_depth,
            max_path_bytes: limits.max_path_bytes,
        };
        if raw_path.len() > limits.max_path_bytes {
            return Err(too_deep());
        }
        let unsafe_entry = |reason: String| UnpackError::Unsafe { path: shown.clone(), reason };
        let lift = |e: Parent| match e {
            Parent::Unsafe(reason) => unsafe_entry(reason),
            Parent::Io(e) => e,
        };
        let path = entry.path().map_err(corrupt(entry_no, limits.max_bytes))?.into_owned();
        let Some(rel) = contained(&path).map_err(|r| unsafe_entry(r.to_owned()))? else {
            continue; // "./": the target itself
        };
        if rel.components().count() > limits.max_depth {
            return Err(too_deep());
        }
        let header = entry.header();
        let kind = header.entry_type();
        if kind == EntryType::GNUSparse {
            return Err(unsafe_entry(
                "a sparse file: its holes would be written out past what the size cap counts; sparse entries are refused"
                    .to_owned(),
            ));
        }
        let mode = header.mode().map_err(corrupt(entry_no, limits.max_bytes))? & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let owner = match ownership {
            Ownership::FromArchive => Some((
                header.uid().map_err(corrupt(entry_no, limits.max_bytes))? as u32,
                header.gid().map_err(corrupt(entry_no, limits.max_bytes))? as u32,
            )),
            Ownership::Caller => None,
        };
        let link = match kind {
            EntryType::Symlink | EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(corrupt(entry_no, limits.max_bytes))?
                    .ok_or_else(|| unsafe_entry("a link without a target".to_owned()))?
                    .into_owned();
                if link.as_os_str().len() > limits.max_path_bytes {
                    return Err(too_deep());
                }
                Some(link)
            }
            _ => None,
        };
        let is_special = !matches!(
            kind,
            EntryType::Directory | EntryType::Regular | EntryType::Continuous | EntryType::Symlink | EntryType::Link
        );
        if is_special {
            tracing::debug!(path = %shown, kind = ?kind, "skipping special archive entry");
            stats.skipped += 1;
            continue;
        }
        let leaf = rel.file_name().map(OsStr::to_owned).unwrap_or_default();
        let parent = walker.parent(&rel, true).map_err(&lift)?;
        let target = || rel.clone();
        match kind {
            EntryType::Directory => {
                match stat(parent, &leaf).map_err(|e| io_err("inspect", &target())(e))? {
                    Some(st) if is_kind(&st, SFlag::S_IFDIR) => {}
                    Some(_) => {
                        unlink(parent, &leaf).map_err(|e| io_err("remove", &target())(e))?;
                        mkdir(parent, &leaf).map_err(|e| io_err("create directory", &target())(e))?;
                    }
                    None => mkdir(parent, &leaf).map_err(|e| io_err("create directory", &target())(e))?,
                }
                dirs.push(PendingDir { rel, mode, mtime, owner });
            }
            EntryType::Regular | EntryType::Continuous => {
                replace_non_dir(parent, &leaf, &rel).map_err(&lift)?;
                let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let mut file = nix::fcntl::openat(parent, leaf.as_bytes(), flags, Mode::from_bits_truncate(0o600))
                    .map(File::from)
                    .map_err(|e| io_err("create file", &rel)(e.into()))?;
                let written = io::copy(&mut entry, &mut file).map_err(|e| {
                    if is_too_large(&e) {
                        UnpackError::TooLarge { limit: limits.max_bytes }
                    } else {
                        UnpackError::Corrupt { entry: entry_no, source: e }
                    }
                })?;
                stats.file_bytes += written;
                file.set_modified(epoch(mtime)).map_err(io_err("set mtime of", &rel))?;
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(io_err("chown", &rel))?;
                }
                // After chown, which clears setuid/setgid bits.
                file.set_permissions(Permissions::from_mode(mode)).map_err(io_err("chmod", &rel))?;
            }
            EntryType::Symlink => {
                let link = link.unwrap_or_default();
                replace_non_dir(parent, &leaf, &rel).map_err(&lift)?;
                nix::unistd::symlinkat(link.as_os_str().as_bytes(), parent, leaf.as_bytes())
                    .map_err(|e| io_err("create symlink", &rel)(e.into()))?;
                if let Some((uid, gid)) = owner {
                    nix::unistd::fchownat(
                        parent,
                        leaf.as_bytes(),
                        Some(uid.into()),
                        Some(gid.into()),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| io_err("chown", &rel)(e.into()))?;
                }
            }
            _ => {
                // A hard link: its source must be a regular file already unpacked in this tree.
                let link = link.unwrap_or_default();
                let link_rel = contained(&link)
                    .map_err(|r| unsafe_entry(format!("hard link target `{}` {r}", link.display())))?
                    .ok_or_else(|| unsafe_entry("hard link to the target directory itself".to_owned()))?;
                let not_file = || {
                    unsafe_entry(format!(
                        "hard link target `{}` is not a regular file unpacked earlier from this archive",
                        link.display()
                    ))
                };
                let source_parent = walker.open_parent(&link_rel).map_err(|_| not_file())?;
                let source_leaf = link_rel.file_name().map(OsStr::to_owned).unwrap_or_default();
                match stat(&source_parent, &source_leaf) {
                    Ok(Some(st)) if is_kind(&st, SFlag::S_IFREG) => {}
                    _ => return Err(not_file()),
                }
                if link_rel != rel {
                    let parent = walker.parent(&rel, true).map_err(&lift)?;
                    replace_non_dir(parent, &leaf, &rel).map_err(&lift)?;
                    nix::unistd::linkat(
                        &source_parent,
                        source_leaf.as_bytes(),
                        parent,
                        leaf.as_bytes(),
                        AtFlags::empty(),
                    )
                    .map_err(|e| io_err("hard-link", &rel)(e.into()))?;
                }
            }
        }
        stats.written += 1;
    }

    // Read to the end of the gzip stream so that its length and CRC trailer are checked.
    let mut inner = archive.into_inner();
    io::copy(&mut inner, &mut io::sink()).map_err(corrupt(entry_no, limits.max_bytes))?;
    stats.bytes = inner.read;

    // Deepest first, so that a read-only directory is made read-only after its children are in place.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.rel.components().count()));
    for dir in &dirs {
        let fd = walker.open(&dir.rel).map_err(|e| match e {
            Parent::Unsafe(reason) => UnpackError::Unsafe { path: dir.rel.display().to_string(), reason },
            Parent::Io(e) => e,
        })?;
        if let Some((uid, gid)) = dir.owner {
            nix::unistd::fchown(&fd, Some(uid.into()), Some(gid.into()))
                .map_err(|e| io_err("chown", &dir.rel)(e.into()))?;
        }
        nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(dir.mode as nix::libc::mode_t))
            .map_err(|e| io_err("chmod", &dir.rel)(e.into()))?;
        // Best effort: a directory's mtime matters to no one in a sandbox.
        let _ = File::from(fd).set_modified(epoch(dir.mtime));
    }
    Ok(stats)
}

/// Opens folders of the tree being unpacked, by descriptor, never through a symlink.
struct Walker<'a> {
    root: &'a OwnedFd,
    /// The parent folder of the previous entry: the next one is most often in the same folder.
    last: Option<(PathBuf, OwnedFd)>,
}

impl Walker<'_> {
    /// The folder holding `rel`, created (with its missing parents) when `create` is set.
    fn parent(&mut self, rel: &Path, create: bool) -> Result<&OwnedFd, Parent> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        if parent.as_os_str().is_empty() {
            return Ok(self.root);
        }
        if self.last.as_ref().is_none_or(|(p, _)| p != parent) {
            let fd = match self.open(parent) {
                Ok(fd) => fd,
                Err(Parent::Io(_)) if create => self.create_chain(parent)?,
                Err(e) => return Err(e),
            };
            self.last = Some((parent.to_owned(), fd));
        }
        match &self.last {
            Some((_, fd)) => Ok(fd),
            None => Ok(self.root),
        }
    }

    /// The folder holding `rel`, which must exist; a fresh descriptor.
    fn open_parent(&self, rel: &Path) -> Result<OwnedFd, Parent> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        if parent.as_os_str().is_empty() {
            return self.root.try_clone().map_err(|e| Parent::Io(io_err("open", parent)(e)));
        }
        self.open(parent)
    }

    /// Opens the folder `rel` in one call, refusing symlinks anywhere on the way.
    fn open(&self, rel: &Path) -> Result<OwnedFd, Parent> {
        use nix::fcntl::{OpenHow, ResolveFlag};
        let how =
            OpenHow::new().flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW).resolve(
                ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        match nix::fcntl::openat2(self.root, rel.as_os_str().as_bytes(), how) {
            Ok(fd) => Ok(fd),
            Err(Errno::ENOSYS) => self.walk(rel, false),
            Err(Errno::ELOOP | Errno::EXDEV | Errno::ENOTDIR) => self.walk(rel, false),
            Err(e) => Err(Parent::Io(io_err("open directory", rel)(e.into()))),
        }
    }

    fn create_chain(&self, rel: &Path) -> Result<OwnedFd, Parent> {
        self.walk(rel, true)
    }

    /// One component at a time: creates missing folders when `create`, and says which component is a
    /// symlink or not a folder.
    fn walk(&self, rel: &Path, create: bool) -> Result<OwnedFd, Parent> {
        let mut at = self.root.try_clone().map_err(|e| Parent::Io(io_err("open", rel)(e)))?;
        let mut so_far = PathBuf::new();
        for c in rel.components() {
            let name = c.as_os_str();
            so_far.push(name);
            match stat(&at, name).map_err(|e| Parent::Io(io_err("inspect", &so_far)(e)))? {
                Some(st) if is_kind(&st, SFlag::S_IFLNK) => {
                    return Err(Parent::Unsafe(format!(
                        "its parent `{}` is a symlink: writing through it could reach outside the target",
                        so_far.display()
                    )));
                }
                Some(st) if is_kind(&st, SFlag::S_IFDIR) => {}
                Some(_) => {
                    return Err(Parent::Unsafe(format!("its parent `{}` is not a directory", so_far.display())));
                }
                None if create => mkdir(&at, name).map_err(|e| Parent::Io(io_err("create directory", &so_far)(e)))?,
                None => {
                    return Err(Parent::Io(io_err("open directory", &so_far)(io::Error::from(
                        io::ErrorKind::NotFound,
                    ))));
                }
            }
            at = crate::at::open_dir(&at, name).map_err(|e| Parent::Io(io_err("open directory", &so_far)(e)))?;
        }
        Ok(at)
    }
}

fn epoch(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// The archive path as a relative path with only normal components; `Ok(None)` for the root itself.
fn contained(path: &Path) -> Result<Option<PathBuf>, &'static str> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("contains `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    Ok(if out.as_os_str().is_empty() { None } else { Some(out) })
}

enum Parent {
    Unsafe(String),
    Io(UnpackError),
}

fn stat(dir: impl AsFd, name: &OsStr) -> io::Result<Option<nix::sys::stat::FileStat>> {
    crate::at::stat(dir, name)
}

fn is_kind(st: &nix::sys::stat::FileStat, kind: SFlag) -> bool {
    crate::at::is(st, kind)
}

fn mkdir(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    // Owner-writable until the final pass applies the archive's mode.
    Ok(nix::sys::stat::mkdirat(dir, name.as_bytes(), Mode::from_bits_truncate(0o755))?)
}

fn unlink(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    Ok(nix::unistd::unlinkat(dir, name.as_bytes(), nix::unistd::UnlinkatFlags::NoRemoveDir)?)
}

/// A later entry replaces an earlier one of the same name, as tar does; a directory is never replaced by
/// a non-directory (it could hold entries already unpacked).
fn replace_non_dir(dir: &OwnedFd, name: &OsString, rel: &Path) -> Result<(), Parent> {
    match stat(dir, name) {
        Ok(Some(st)) if is_kind(&st, SFlag::S_IFDIR) => {
            Err(Parent::Unsafe("would replace a directory with a non-directory".to_owned()))
        }
        Ok(Some(_)) => unlink(dir, name).map_err(|e| Parent::Io(io_err("remove", rel)(e))),
        Ok(None) => Ok(()),
        Err(e) => Err(Parent::Io(io_err("inspect", rel)(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contained_paths() {
        assert_eq!(contained(Path::new("./bin/sh")), Ok(Some(PathBuf::from("bin/sh"))));
        assert_eq!(contained(Path::new("./")), Ok(None));
        assert!(contained(Path::new("a/../../etc")).is_err());
        assert!(contained(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn rejects_non_gzip() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        let Ok(dir) = dir else { return };
        let r = unpack(&b"PK\x03\x04zip"[..], dir.path(), &UnpackLimits::default(), Ownership::Caller);
        assert!(matches!(r, Err(UnpackError::NotGzip { .. })), "{r:?}");
    }
}
