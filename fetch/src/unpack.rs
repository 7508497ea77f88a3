//! Unpacking a `.tar.gz` so that nothing is ever written outside the target directory.
//!
//! Every entry's path is checked before anything is written: `..` components and absolute paths
//! refuse the whole archive, and so does an entry whose parent inside the target is a symlink (the
//! "symlink, then write through it" trick) or a hard link whose target is not a regular file already
//! unpacked inside the tree. Symlinks themselves are created verbatim, absolute ones included (Alpine's
//! applets point at `/bin/busybox`): they are only ever resolved inside a sandbox, never followed here.
//! Device nodes and FIFOs are skipped (a sandbox builds its own `/dev`). The uncompressed size and the
//! number of entries are capped, and the gzip trailer is checked, so a bomb or a truncated download is
//! an error, not a partial tree.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

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
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits { max_bytes: 512 << 20, max_entries: 100_000 }
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
    #[error("truncated or corrupt archive near entry {entry}: {source}")]
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
    /// Writing the tree failed.
    #[error("failed to {op} `{path}`: {source}")]
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
    path: PathBuf,
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
/// any entry that would escape `dest`, [`UnpackError::TooLarge`] / [`UnpackError::TooManyEntries`] past
/// `limits`, [`UnpackError::Io`] when writing fails.
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
    let mut buffered = BufReader::with_capacity(64 * 1024, input);
    let magic = buffered.fill_buf().map_err(|source| UnpackError::Corrupt { entry: 0, source })?;
    if magic.len() < 2 || magic[..2] != [0x1f, 0x8b] {
        return Err(UnpackError::NotGzip { magic: magic.iter().take(4).copied().collect() });
    }
    let capped = Capped { inner: MultiGzDecoder::new(buffered), read: 0, limit: limits.max_bytes };
    let mut archive = tar::Archive::new(capped);
    let mut stats = UnpackStats::default();
    let mut dirs: Vec<PendingDir> = Vec::new();
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
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let unsafe_entry = |reason: String| UnpackError::Unsafe { path: shown.clone(), reason };
        let lift = |e: Parent| match e {
            Parent::Unsafe(reason) => unsafe_entry(reason),
            Parent::Io(e) => e,
        };
        let path = entry.path().map_err(corrupt(entry_no, limits.max_bytes))?.into_owned();
        let Some(rel) = contained(&path).map_err(|r| unsafe_entry(r.to_owned()))? else {
            continue; // "./": the target itself
        };
        ensure_parents(dest, &rel).map_err(&lift)?;
        let target = dest.join(&rel);
        let header = entry.header();
        let mode = header.mode().map_err(corrupt(entry_no, limits.max_bytes))? & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let owner = match ownership {
            Ownership::FromArchive => Some((
                header.uid().map_err(corrupt(entry_no, limits.max_bytes))? as u32,
                header.gid().map_err(corrupt(entry_no, limits.max_bytes))? as u32,
            )),
            Ownership::Caller => None,
        };
        match header.entry_type() {
            EntryType::Directory => {
                match fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        remove_non_dir(&target)?;
                        make_dir(&target)?;
                    }
                    Err(_) => make_dir(&target)?,
                }
                dirs.push(PendingDir { path: target, mode, mtime, owner });
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                replace_non_dir(&target).map_err(&lift)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true) // O_EXCL: never opens through a symlink
                    .mode(0o600)
                    .open(&target)
                    .map_err(io_err("create file", &target))?;
                io::copy(&mut entry, &mut file).map_err(|e| {
                    if is_too_large(&e) {
                        UnpackError::TooLarge { limit: limits.max_bytes }
                    } else {
                        UnpackError::Corrupt { entry: entry_no, source: e }
                    }
                })?;
                file.set_modified(epoch(mtime)).map_err(io_err("set mtime of", &target))?;
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(io_err("chown", &target))?;
                }
                // After chown, which clears setuid/setgid bits.
                file.set_permissions(Permissions::from_mode(mode)).map_err(io_err("chmod", &target))?;
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(corrupt(entry_no, limits.max_bytes))?
                    .ok_or_else(|| unsafe_entry("symlink without a target".to_owned()))?
                    .into_owned();
                replace_non_dir(&target).map_err(&lift)?;
                std::os::unix::fs::symlink(&link, &target).map_err(io_err("create symlink", &target))?;
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::lchown(&target, Some(uid), Some(gid)).map_err(io_err("chown", &target))?;
                }
            }
            EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(corrupt(entry_no, limits.max_bytes))?
                    .ok_or_else(|| unsafe_entry("hard link without a target".to_owned()))?
                    .into_owned();
                let link_rel = contained(&link)
                    .map_err(|r| unsafe_entry(format!("hard link target `{}` {r}", link.display())))?
                    .ok_or_else(|| unsafe_entry("hard link to the target directory itself".to_owned()))?;
                ensure_parents_exist(dest, &link_rel)
                    .map_err(|reason| unsafe_entry(format!("hard link target `{}` {reason}", link.display())))?;
                let source = dest.join(&link_rel);
                match fs::symlink_metadata(&source) {
                    Ok(m) if m.is_file() => {}
                    _ => {
                        return Err(unsafe_entry(format!(
                            "hard link target `{}` is not a regular file unpacked earlier from this archive",
                            link.display()
                        )));
                    }
                }
                if source != target {
                    replace_non_dir(&target).map_err(&lift)?;
                    fs::hard_link(&source, &target).map_err(io_err("hard-link", &target))?;
                }
            }
            other => {
                tracing::debug!(path = %shown, kind = ?other, "skipping special archive entry");
                stats.skipped += 1;
                continue;
            }
        }
        stats.written += 1;
    }

    // Read to the end of the gzip stream so that its length and CRC trailer are checked.
    let mut inner = archive.into_inner();
    io::copy(&mut inner, &mut io::sink()).map_err(corrupt(entry_no, limits.max_bytes))?;
    stats.bytes = inner.read;

    // Deepest first, so that a read-only directory is made read-only after its children are in place.
    for dir in dirs.iter().rev() {
        if let Some((uid, gid)) = dir.owner {
            std::os::unix::fs::lchown(&dir.path, Some(uid), Some(gid)).map_err(io_err("chown", &dir.path))?;
        }
        fs::set_permissions(&dir.path, Permissions::from_mode(dir.mode)).map_err(io_err("chmod", &dir.path))?;
        if let Ok(handle) = File::open(&dir.path) {
            // Best effort: a directory's mtime matters to no one in a sandbox.
            let _ = handle.set_modified(epoch(dir.mtime));
        }
    }
    Ok(stats)
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

/// Creates the missing parents of `rel` under `dest`; refuses when one of them is a symlink or a file.
fn ensure_parents(dest: &Path, rel: &Path) -> Result<(), Parent> {
    let mut at = dest.to_path_buf();
    let Some(parent) = rel.parent() else { return Ok(()) };
    for c in parent.components() {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Parent::Unsafe(format!(
                    "its parent `{}` is a symlink: writing through it could reach outside the target",
                    at.strip_prefix(dest).unwrap_or(&at).display()
                )));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Parent::Unsafe(format!(
                    "its parent `{}` is not a directory",
                    at.strip_prefix(dest).unwrap_or(&at).display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => make_dir(&at).map_err(Parent::Io)?,
            Err(e) => return Err(Parent::Io(io_err("inspect", &at)(e))),
        }
    }
    Ok(())
}

/// Like `ensure_parents`, for a hard link's source: every parent must exist as a real directory.
fn ensure_parents_exist(dest: &Path, rel: &Path) -> Result<(), String> {
    let mut at = dest.to_path_buf();
    let Some(parent) = rel.parent() else { return Ok(()) };
    for c in parent.components() {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            _ => return Err("lies outside the directories unpacked so far, or behind a symlink".to_owned()),
        }
    }
    Ok(())
}

fn make_dir(path: &Path) -> Result<(), UnpackError> {
    // Owner-writable until the final pass applies the archive's mode.
    fs::DirBuilder::new().mode(0o755).create(path).map_err(io_err("create directory", path))
}

fn remove_non_dir(path: &Path) -> Result<(), UnpackError> {
    fs::remove_file(path).map_err(io_err("remove", path))
}

/// A later entry replaces an earlier one of the same name, as tar does; a directory is never replaced by
/// a non-directory (it could hold entries already unpacked).
fn replace_non_dir(path: &Path) -> Result<(), Parent> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(Parent::Unsafe("would replace a directory with a non-directory".to_owned())),
        Ok(_) => remove_non_dir(path).map_err(Parent::Io),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Parent::Io(io_err("inspect", path)(e))),
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
