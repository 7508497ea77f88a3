//! An unpacked root filesystem, ready to be the lower layer of a sandbox.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::cache::TreeOwner;
use crate::error::io;
use crate::{Alpine, Arch, Error, Trust, UnpackLimits, Verification};

/// An unpacked root filesystem tree.
///
/// # Examples
/// ```no_run
/// let rootfs = fetch::Rootfs::from_tarball("alpine-minirootfs-3.20.3-x86_64.tar.gz")?;
/// assert!(rootfs.path().join("bin/busybox").exists());
/// # Ok::<(), fetch::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootfs {
    path: PathBuf,
    sha256: Option<String>,
    version: Option<String>,
    arch: Option<Arch>,
    verification: Option<Verification>,
}

impl Rootfs {
    pub(crate) fn cached(
        path: PathBuf,
        sha256: String,
        version: String,
        arch: Arch,
        verification: Verification,
    ) -> Rootfs {
        Rootfs {
            path,
            sha256: Some(sha256),
            version: Some(version),
            arch: Some(arch),
            verification: Some(verification),
        }
    }

    /// How the tarball was verified (digest source, and the signing key if a signature was checked);
    /// `None` for a tree given as a directory.
    pub fn verification(&self) -> Option<&Verification> {
        self.verification.as_ref()
    }

    /// The unpacked tree. Treat it as read-only: it is shared by every sandbox on the machine.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sha256 of the tarball the tree came from; `None` for a tree given as a directory.
    pub fn sha256(&self) -> Option<&str> {
        self.sha256.as_deref()
    }

    /// The Alpine release, e.g. `"3.20.3"`: the one fetched, or the tree's `/etc/alpine-release`.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The architecture, when it was fetched by version.
    pub fn arch(&self) -> Option<Arch> {
        self.arch
    }

    /// Unpacks a local `.tar.gz` into the default cache (see [`crate::default_cache_dir`]), keyed by
    /// its sha256; no network. The digest is recorded in the cache against the file's path, size,
    /// mtime, inode and ctime, so the same unchanged file is hashed once per machine, not per process.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read, [`Error::Unpack`] if it is not a safe tar.gz.
    pub fn from_tarball(path: impl AsRef<Path>) -> Result<Rootfs, Error> {
        Self::from_tarball_in(path, None::<&Path>)
    }

    /// [`Rootfs::from_tarball`] with an explicit cache directory (`None`: the default).
    ///
    /// # Errors
    /// As [`Rootfs::from_tarball`].
    pub fn from_tarball_in(path: impl AsRef<Path>, cache_dir: Option<impl AsRef<Path>>) -> Result<Rootfs, Error> {
        let path = path.as_ref();
        let cache = crate::alpine::cache_for(cache_dir.as_ref().map(AsRef::as_ref))?;
        // Opened once, and everything done through that descriptor: its identity (for the record),
        // its hash and its copy are of one file (the twenty-fifth outside review: stat by path, then
        // hashed by path, a rename of a folder above it between the two recorded another file's
        // digest against this one's identity, and sandboxes ran the other for good). Non-blocking,
        // so that a FIFO put there does not hang the open.
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            File::options().read(true).custom_flags(nix::libc::O_NONBLOCK).open(path)
        }
        .map_err(|e| not_found_or(path, e))?;
        let meta = file.metadata().map_err(io("inspect", path))?;
        // Read to its end to hash it: a FIFO or a device (`/dev/zero`) would hang or never end (an
        // outside review of sandbox-run).
        if !meta.is_file() {
            return Err(Error::BadRootfsPath {
                path: path.to_owned(),
                reason: "neither a folder nor a regular file (a tar.gz)".to_owned(),
            });
        }
        let key = std::path::absolute(path).map_err(io("resolve", path))?;
        let digest = match cache.local_digest(&key, &meta) {
            Some(digest) => digest,
            None => {
                let digest = crate::hash::sha256_of(&file).map_err(io("read", path))?;
                // Only a speed-up: a cache that cannot take the record still serves the tree. Not
                // for a file that changed while it was read.
                let recorded = file.metadata().map(|after| cache.put_local_digest(&key, &meta, &after, &digest));
                match recorded {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) | Err(_) => {
                        tracing::warn!("{} changed while it was hashed: its digest is not recorded", path.display());
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "could not record the digest of {}", path.display()),
                }
                digest
            }
        };
        let owner = TreeOwner::current();
        let tree = match cache.tree(&digest, owner)? {
            Some(tree) => tree,
            None => {
                let lock = cache.lock(&digest)?;
                if !cache.has_blob(&digest)? {
                    let mismatch = |actual| Error::ChecksumMismatch {
                        url: path.display().to_string(),
                        expected: digest.clone(),
                        trust: Trust::LocalFile,
                        actual,
                    };
                    cache.put_blob(&digest, &lock, |out| copy_file(&file, path, out), mismatch, |_| Ok(()))?;
                }
                // The file given, not the cache's copy of it, is what the user can look at.
                cache.ensure_tree(&digest, owner, &UnpackLimits::default(), &lock, &|| {}).map_err(|e| match e {
                    Error::Unpack { source, .. } => Error::Unpack { archive: path.to_owned(), source },
                    other => other,
                })?
            }
        };
        let version = read_release(&tree);
        let verification = Some(Verification { digest: Trust::LocalFile, signed_by: None });
        Ok(Rootfs { path: tree, sha256: Some(digest), version, arch: None, verification })
    }

    /// Uses an already unpacked tree as it is (nothing is copied or cached).
    ///
    /// # Errors
    /// [`Error::BadRootfsPath`] if `path` is not a directory.
    pub fn from_dir(path: impl AsRef<Path>) -> Result<Rootfs, Error> {
        let path = path.as_ref();
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                let path = std::path::absolute(path).map_err(io("resolve", path))?;
                let version = read_release(&path);
                Ok(Rootfs { path, sha256: None, version, arch: None, verification: None })
            }
            Ok(_) => Err(Error::BadRootfsPath { path: path.to_owned(), reason: "not a directory".to_owned() }),
            Err(e) => Err(Error::BadRootfsPath { path: path.to_owned(), reason: e.to_string() }),
        }
    }

    /// `$SANDBOX_ROOTFS` as a rootfs: a `.tar.gz` file (unpacked into the cache) or a directory (used
    /// as it is). `Ok(None)` when the variable is unset or empty.
    ///
    /// # Errors
    /// [`Error::BadRootfsPath`] if it names neither; the errors of [`Rootfs::from_tarball`].
    pub fn from_env() -> Result<Option<Rootfs>, Error> {
        let Some(value) = std::env::var_os("SANDBOX_ROOTFS").filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let path = PathBuf::from(value);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => Self::from_dir(&path).map(Some),
            Ok(m) if m.is_file() => Self::from_tarball(&path).map(Some),
            Ok(_) => Err(Error::BadRootfsPath { path, reason: "$SANDBOX_ROOTFS is a special file".to_owned() }),
            Err(e) => Err(Error::BadRootfsPath { path, reason: format!("$SANDBOX_ROOTFS: {e}") }),
        }
    }
}

/// The rootfs a sandbox uses when none is named: `$SANDBOX_ROOTFS`, else the default release
/// ([`Alpine::default`]) from the cache, fetched on first use.
///
/// # Errors
/// As [`Rootfs::from_env`] and [`Alpine::fetch`].
///
/// # Examples
/// ```no_run
/// let rootfs = fetch::default_rootfs()?;
/// println!("{}", rootfs.path().display());
/// # Ok::<(), fetch::Error>(())
/// ```
pub fn default_rootfs() -> Result<Rootfs, Error> {
    match Rootfs::from_env()? {
        Some(r) => Ok(r),
        // Offline and uncached, the error says that $SANDBOX_ROOTFS would do.
        None => Alpine::default().fetch().map_err(|mut e| {
            if let crate::Error::NotCached { default, .. } = &mut e {
                *default = true;
            }
            e
        }),
    }
}

fn read_release(tree: &Path) -> Option<String> {
    tree_text(tree, &["etc", "alpine-release"])
}

/// A short text file of the tree at `names` (`["etc", "apk", "arch"]`), trimmed, never read through a
/// symlink: a tree's `etc` or the file itself may point anywhere on the host (a stranger's review
/// read a root-only host file this way).
pub(crate) fn tree_text(tree: &Path, names: &[&str]) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let (file, folders) = names.split_last()?;
    let mut at = tree.to_owned();
    for folder in folders {
        at.push(folder);
        if !std::fs::symlink_metadata(&at).ok()?.is_dir() {
            return None;
        }
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(at.join(file))
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(64).read_to_string(&mut text).ok()?;
    let v = text.trim();
    (!v.is_empty() && v.len() < 64).then(|| v.to_owned())
}

fn not_found_or(path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::BadRootfsPath { path: path.to_owned(), reason: "no such file".to_owned() }
        }
        _ => io("open", path)(e),
    }
}

/// Copies the open `file` (named `path`, for errors) from its start into `out`.
fn copy_file(file: &File, path: &Path, out: &mut File) -> Result<(), Error> {
    use std::io::Seek;
    let mut file = file;
    file.rewind().map_err(io("read", path))?;
    std::io::copy(&mut file, out).map(drop).map_err(io("copy into the cache", path))
}

#[cfg(test)]
mod tests {
    use super::read_release;

    #[test]
    fn a_tarball_that_is_a_fifo_or_a_device_is_refused_not_read() {
        let t = tempfile::tempdir().expect("tempdir");
        let fifo = t.path().join("rootfs.tar.gz");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
        for path in [fifo.as_path(), std::path::Path::new("/dev/zero")] {
            let e = super::Rootfs::from_tarball_in(path, Some(t.path().join("cache"))).expect_err("refused");
            assert!(matches!(e, crate::Error::BadRootfsPath { .. }), "{e}");
        }
    }

    #[test]
    fn the_release_is_never_read_through_a_symlink() {
        let t = tempfile::tempdir().expect("tempdir");
        let secret = t.path().join("secret");
        std::fs::write(&secret, "TOPSECRET\n").expect("write");
        let tree = t.path().join("tree");
        std::fs::create_dir_all(tree.join("etc")).expect("mkdir");
        std::os::unix::fs::symlink(&secret, tree.join("etc/alpine-release")).expect("symlink");
        assert_eq!(read_release(&tree), None, "a symlinked alpine-release is not followed");
        let linked_etc = t.path().join("linked");
        std::fs::create_dir_all(t.path().join("elsewhere")).expect("mkdir");
        std::fs::write(t.path().join("elsewhere/alpine-release"), "3.99.0\n").expect("write");
        std::fs::create_dir_all(&linked_etc).expect("mkdir");
        std::os::unix::fs::symlink(t.path().join("elsewhere"), linked_etc.join("etc")).expect("symlink");
        assert_eq!(read_release(&linked_etc), None, "a symlinked etc is not followed");
        std::fs::remove_file(tree.join("etc/alpine-release")).expect("rm");
        std::fs::write(tree.join("etc/alpine-release"), "3.24.2\n").expect("write");
        assert_eq!(read_release(&tree).as_deref(), Some("3.24.2"));
    }
}
