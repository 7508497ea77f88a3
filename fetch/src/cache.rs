//! The on-disk cache, shared by every process of every user that points at the same directory.
//!
//! ```text
//! <cache_dir>/v1/
//!   blobs/<sha256>.tar.gz          verified tarballs, content-addressed
//!   trees/<sha256>.<owner>/        unpacked trees; <owner> is `root` (archive ownership kept) or
//!                                  `uid<N>` (all files owned by uid N), so root and rootless never collide
//!   index/<arch>/<X.Y.Z>.json      version + arch -> sha256, for offline look-ups by version
//!   locks/<sha256>.lock            flock(2) per digest: one writer per digest across processes
//!   tmp/<sha256>.*                 work in progress of the holder of that digest's lock
//! ```
//!
//! Everything enters through `tmp/` and a `rename(2)`, so a reader sees a complete entry or none. Work
//! under `tmp/` belongs to whoever holds the digest's lock: once a process holds it, anything left there
//! for that digest is from a process that died, and is removed.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::io;
use crate::{Arch, Error};

/// Whose files an unpacked tree holds; part of the tree's name in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TreeOwner {
    /// Real root (uid 0 in the initial user namespace): the archive's uids and gids are kept.
    Root,
    /// An ordinary user, or root inside a user namespace that cannot chown to arbitrary ids.
    Uid(u32),
}

impl TreeOwner {
    pub(crate) fn current() -> TreeOwner {
        let euid = nix::unistd::geteuid().as_raw();
        let map = fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        // Root with the identity map over the whole id range can keep the archive's owners. Root in a
        // user namespace that maps only itself cannot chown to uid 1000 and unpacks as a plain user.
        if euid == 0 && map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"] {
            return TreeOwner::Root;
        }
        // Trees are named for the uid outside any user namespace, so that a process that is root in
        // its own namespace (a sandbox) finds the tree its user unpacked.
        TreeOwner::Uid(outer_uid(&map, euid).unwrap_or(euid))
    }

    fn suffix(self) -> String {
        match self {
            TreeOwner::Root => "root".to_owned(),
            TreeOwner::Uid(uid) => format!("uid{uid}"),
        }
    }

    /// The owner a tree of ours has, as this process sees uids.
    fn seen_uid(self) -> u32 {
        match self {
            TreeOwner::Root => 0,
            TreeOwner::Uid(_) => nix::unistd::geteuid().as_raw(),
        }
    }

    pub(crate) fn ownership(self) -> crate::Ownership {
        match self {
            TreeOwner::Root => crate::Ownership::FromArchive,
            TreeOwner::Uid(_) => crate::Ownership::Caller,
        }
    }
}

/// Copies `input` to `output` and returns the sha256 (hex) of what was copied.
pub(crate) fn copy_hashing(mut input: impl Read, mut output: impl Write) -> io::Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n])?;
    }
    output.flush()?;
    Ok(hex::encode(hasher.finalize()))
}

/// `uid` (as seen in this user namespace) translated through a `uid_map` to the parent namespace.
fn outer_uid(map: &str, uid: u32) -> Option<u32> {
    map.lines().find_map(|line| {
        let f: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        let [inside, outside, count] = f[..] else { return None };
        let uid = u64::from(uid);
        (uid >= inside && uid < inside + count).then(|| u32::try_from(outside + uid - inside).ok()).flatten()
    })
}

/// What the index knows about a version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct IndexEntry {
    pub version: String,
    pub arch: Arch,
    pub sha256: String,
    pub url: String,
    pub trust: crate::Trust,
}

#[derive(Debug)]
pub(crate) struct Cache {
    root: PathBuf,
}

/// An exclusive hold on one digest; released on drop (and by the kernel if the process dies).
#[derive(Debug)]
pub(crate) struct DigestLock {
    _file: File,
}

impl Cache {
    pub(crate) fn open(dir: &Path) -> Result<Cache, Error> {
        let root = dir.join("v1");
        for sub in ["blobs", "trees", "index", "locks", "tmp"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io("create cache directory", &p))?;
        }
        Ok(Cache { root })
    }

    pub(crate) fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{digest}.tar.gz"))
    }

    fn tree_path(&self, digest: &str, owner: TreeOwner) -> PathBuf {
        self.root.join("trees").join(format!("{digest}.{}", owner.suffix()))
    }

    fn tmp_path(&self, digest: &str, what: &str) -> PathBuf {
        self.root.join("tmp").join(format!("{digest}.{what}.{}", std::process::id()))
    }

    /// The unpacked tree of `digest` for `owner`, if the cache holds a complete one that `owner` made.
    pub(crate) fn tree(&self, digest: &str, owner: TreeOwner) -> Option<PathBuf> {
        let path = self.tree_path(digest, owner);
        // A tree that someone else made under our name is not ours to trust.
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() && m.uid() == owner.seen_uid() => Some(path),
            _ => None,
        }
    }

    /// Blocks until this process is the only one working on `digest`, then clears what a dead holder
    /// of the lock left in `tmp/`.
    pub(crate) fn lock(&self, digest: &str) -> Result<DigestLock, Error> {
        let (file, path) = self.lock_file(digest)?;
        file.lock().map_err(io("lock", &path))?;
        self.clear_tmp(digest)?;
        Ok(DigestLock { _file: file })
    }

    /// The lock file of `digest`, opened (and created) but not locked. Lock files are never removed:
    /// removing one would let two processes lock two different files for the same digest.
    fn lock_file(&self, digest: &str) -> Result<(File, PathBuf), Error> {
        let path = self.root.join("locks").join(format!("{digest}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("open lock file", &path))?;
        Ok((file, path))
    }

    fn clear_tmp(&self, digest: &str) -> Result<(), Error> {
        let tmp = self.root.join("tmp");
        let entries = fs::read_dir(&tmp).map_err(io("list", &tmp))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(digest) {
                tracing::info!(path = %entry.path().display(), "removing a partial cache entry left by a killed process");
                remove_tree(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Removes partial entries of killed processes for every digest nobody is working on now.
    pub(crate) fn sweep(&self) -> Result<(), Error> {
        let tmp = self.root.join("tmp");
        let entries = fs::read_dir(&tmp).map_err(io("list", &tmp))?;
        let mut digests: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.get(..64)).map(str::to_owned))
            .collect();
        digests.dedup();
        for digest in digests {
            let Ok((file, _)) = self.lock_file(&digest) else { continue };
            if file.try_lock().is_ok() {
                self.clear_tmp(&digest)?;
            }
        }
        Ok(())
    }

    /// A file under `tmp/` to download `digest` into, and the path it is renamed to once verified.
    pub(crate) fn blob_staging(&self, digest: &str) -> Result<(File, PathBuf), Error> {
        let path = self.tmp_path(digest, "download");
        let file = File::options().read(true).write(true).create_new(true).open(&path).map_err(io("create", &path))?;
        Ok((file, path))
    }

    /// Moves a verified tarball from `tmp/` into `blobs/`.
    pub(crate) fn commit_blob(&self, staged: &Path, digest: &str) -> Result<PathBuf, Error> {
        let dest = self.blob_path(digest);
        fs::set_permissions(staged, fs::Permissions::from_mode(0o444)).map_err(io("chmod", staged))?;
        fs::rename(staged, &dest).map_err(io("rename into the cache", &dest))?;
        Ok(dest)
    }

    /// Copies a local tarball into `blobs/` under `digest`, checking on the way that it still hashes
    /// to `digest`.
    pub(crate) fn import_blob(&self, source: &Path, digest: &str) -> Result<PathBuf, Error> {
        let staged = self.tmp_path(digest, "import");
        let input = File::open(source).map_err(io("open", source))?;
        let out = File::create_new(&staged).map_err(io("create", &staged))?;
        let actual = copy_hashing(input, out).map_err(io("copy into the cache", &staged))?;
        if actual != digest {
            remove_tree(&staged)?;
            return Err(Error::ChecksumMismatch {
                url: source.display().to_string(),
                expected: digest.to_owned(),
                trust: crate::Trust::LocalFile,
                actual,
            });
        }
        self.commit_blob(&staged, digest)
    }

    /// Unpacks the cached blob of `digest` into a tree for `owner`. Call with the digest's lock held.
    pub(crate) fn unpack_blob(
        &self,
        digest: &str,
        owner: TreeOwner,
        limits: &crate::UnpackLimits,
    ) -> Result<PathBuf, Error> {
        let blob = self.blob_path(digest);
        let staged = self.tmp_path(digest, &format!("tree-{}", owner.suffix()));
        fs::create_dir(&staged).map_err(io("create directory", &staged))?;
        let result = File::open(&blob).map_err(io("open", &blob)).and_then(|f| {
            crate::unpack(io::BufReader::new(f), &staged, limits, owner.ownership())
                .map_err(|source| Error::Unpack { archive: blob.clone(), source })
        });
        if let Err(e) = result {
            // Neither the half tree nor a tarball that cannot be unpacked stays in the cache.
            remove_tree(&staged)?;
            remove_tree(&blob)?;
            return Err(e);
        }
        // The tree's root directory carries the archive's "./" mode (0755), whatever umask said.
        fs::set_permissions(&staged, fs::Permissions::from_mode(0o755)).map_err(io("chmod", &staged))?;
        let dest = self.tree_path(digest, owner);
        fs::rename(&staged, &dest).map_err(io("rename into the cache", &dest))?;
        Ok(dest)
    }

    fn index_path(&self, arch: Arch, version: &str) -> PathBuf {
        self.root.join("index").join(arch.as_str()).join(format!("{version}.json"))
    }

    /// Records that `entry.version` for `entry.arch` is `entry.sha256`. Call with that digest's lock held.
    pub(crate) fn index_put(&self, entry: &IndexEntry) -> Result<(), Error> {
        let dest = self.index_path(entry.arch, &entry.version);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).map_err(io("create cache directory", dir))?;
        }
        let staged = self.tmp_path(&entry.sha256, "index");
        let text = serde_json::to_vec_pretty(entry).map_err(|e| io("encode", &dest)(io::Error::other(e)))?;
        fs::write(&staged, text).map_err(io("write", &staged))?;
        fs::rename(&staged, &dest).map_err(io("rename into the cache", &dest))
    }

    /// The newest indexed release for `arch` that satisfies `spec`.
    pub(crate) fn index_find(&self, arch: Arch, spec: &crate::VersionSpec) -> Option<IndexEntry> {
        let dir = self.root.join("index").join(arch.as_str());
        fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter_map(|e| {
                let text = fs::read(e.path()).ok()?;
                let entry: IndexEntry = serde_json::from_slice(&text).ok()?;
                let release: crate::Release = entry.version.parse().ok()?;
                (spec.matches(&release) && entry.arch == arch).then_some((release, entry))
            })
            .max_by_key(|(release, _)| *release)
            .map(|(_, entry)| entry)
    }
}

/// Removes `path` and everything below it without following symlinks, making read-only directories
/// writable first (a rootless tree keeps the archive's 0555 directories).
pub(crate) fn remove_tree(path: &Path) -> Result<(), Error> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("inspect", path)(e)),
    };
    if !meta.is_dir() {
        return fs::remove_file(path).map_err(io("remove", path));
    }
    if meta.permissions().mode() & 0o700 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io("chmod", path))?;
    }
    for entry in fs::read_dir(path).map_err(io("list", path))? {
        let entry = entry.map_err(io("list", path))?;
        remove_tree(&entry.path())?;
    }
    fs::remove_dir(path).map_err(io("remove directory", path))
}

#[cfg(test)]
mod tests {
    use super::outer_uid;

    #[test]
    fn uid_translation() {
        assert_eq!(outer_uid("         0       1000          1\n", 0), Some(1000));
        assert_eq!(outer_uid("0 0 4294967295\n", 1000), Some(1000));
        assert_eq!(outer_uid("0 100000 65536\n", 5), Some(100005));
        assert_eq!(outer_uid("0 1000 1\n", 7), None);
    }
}
