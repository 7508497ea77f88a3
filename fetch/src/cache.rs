//! The on-disk cache: private to the user that owns it, reached only through descriptors.
//!
//! ```text
//! <cache_dir>/v1/                  0700: nothing below is reachable by other users
//!   blobs/<sha256>.tar.gz          verified tarballs, content-addressed
//!   trees/<sha256>.<owner>/        unpacked trees; <owner> is `root` (archive ownership kept) or
//!                                  `uid<N>` (all files owned by uid N), so root and rootless never collide
//!   index/<mirror>.<arch>.<X.Y.Z>.json   version + arch -> sha256, per mirror, for offline look-ups
//!   records/local-<key>.json       the digest of a local tarball, keyed by path, size, mtime, inode, ctime
//!   records/unreachable-<mirror>.json   a recent failure to reach a mirror
//!   locks/<name>.lock              flock(2) per digest (and per mirror): one writer at a time
//!   tmp/<sha256>.*                 work in progress of the holder of that digest's lock
//! ```
//!
//! `Cache::open` refuses a cache directory, or any of these folders, that is not owned by the caller
//! or is writable by group or others, and a cache with a folder or link on the way to it that is
//! neither root's nor the caller's, or a folder others may write that is not sticky (the trees are
//! handed to sandboxes by path); it opens every folder with `O_NOFOLLOW`; files are then opened
//! with `openat(2)` under those descriptors, again without following symlinks. Everything enters
//! through `tmp/` and a `rename(2)`, so a reader sees a complete entry or none. Work under `tmp/`
//! belongs to whoever holds the digest's lock: once a process holds it, anything left there for that
//! digest is from a process that died, and is removed.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::SFlag;

use crate::at;
use crate::error::io;
use crate::hash::Hashing;
use crate::{Arch, Error, Verification};

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

    pub(crate) fn ownership(self) -> crate::Ownership {
        match self {
            TreeOwner::Root => crate::Ownership::FromArchive,
            TreeOwner::Uid(_) => crate::Ownership::Caller,
        }
    }
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

/// A short stable name for a mirror URL, for file names: of its canonical spelling
/// (crate::mirror::canonical), which has no password: nothing in the cache keeps one, not even as a
/// hash a weak password could be found from.
pub(crate) fn mirror_key(mirror: &str) -> String {
    let digest = crate::hash::sha256_of(crate::mirror::canonical(mirror).as_bytes()).unwrap_or_default();
    digest[..16].to_owned()
}

/// What the index knows about a version, from one mirror.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct IndexEntry {
    pub version: String,
    pub arch: Arch,
    pub sha256: String,
    pub url: String,
    pub mirror: String,
    pub verification: Verification,
}

/// The digest a local tarball had when its file had this identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct LocalRecord {
    path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    sha256: String,
}

/// A failure to reach a mirror, for the processes that come right after.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(not(feature = "download"), allow(dead_code))] // used to download
pub(crate) struct FailureRecord {
    pub mirror: String,
    pub url: String,
    pub cause: String,
    pub at_unix: u64,
}

#[derive(Debug)]
pub(crate) struct Cache {
    root: PathBuf,
    blobs: OwnedFd,
    trees: OwnedFd,
    index: OwnedFd,
    records: OwnedFd,
    locks: OwnedFd,
    tmp: OwnedFd,
    uid: u32,
}

/// An exclusive hold on one digest (or mirror); released on drop (and by the kernel if the process dies).
#[derive(Debug)]
pub(crate) struct DigestLock {
    _file: File,
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

impl Cache {
    /// Opens (creating what is missing) the cache under `dir`, refusing folders that are not the caller's.
    pub(crate) fn open(dir: &Path) -> Result<Cache, Error> {
        use std::os::unix::fs::MetadataExt;
        let uid = nix::unistd::geteuid().as_raw();
        // Another user's cache (root's 0700 one, for an ordinary user), or one others may write:
        // said as such, with the way out (a new user's review), before the way to it.
        if let Ok(m) = fs::metadata(dir) {
            private(dir, m.uid(), m.mode(), uid)?;
        }
        // Walked to, and made where missing, one checked folder at a time (crate::way); below it,
        // nothing is followed.
        let top = crate::way::open(dir, uid, true)?;
        check_private(&top, dir, uid)?;
        // Absolute: the trees' paths are handed to sandboxes, which start elsewhere. And the real
        // path of the folder just checked, links on the way resolved: a sandbox opens a tree
        // following no link, and one on the way (a symlinked `~/.cache`, `/home -> var/home`)
        // made every start fail with ELOOP (an outside review).
        let real = fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&top)))
            .ok()
            .filter(|p| p.is_absolute() && fs::metadata(p).is_ok_and(|m| m.is_dir()));
        let root = match real {
            Some(real) => real,
            None => std::path::absolute(dir).map_err(io("resolve", dir))?,
        }
        .join("v1");
        let v1 = at::ensure_dir(&top, os("v1"), 0o700).map_err(io("open cache directory", &root))?;
        let mode = check_private(&v1, &root, uid)?;
        // Private: trees keep setuid files and world-writable folders that no other user may reach.
        // (Only when needed: a cache on a read-only mount stays usable.)
        if mode & 0o077 != 0 {
            nix::sys::stat::fchmod(&v1, nix::sys::stat::Mode::S_IRWXU).map_err(|e| io("chmod", &root)(e.into()))?;
        }
        let sub = |name: &str| -> Result<OwnedFd, Error> {
            let path = root.join(name);
            let fd = at::ensure_dir(&v1, os(name), 0o700).map_err(io("open cache directory", &path))?;
            check_private(&fd, &path, uid)?;
            Ok(fd)
        };
        Ok(Cache {
            blobs: sub("blobs")?,
            trees: sub("trees")?,
            index: sub("index")?,
            records: sub("records")?,
            locks: sub("locks")?,
            tmp: sub("tmp")?,
            root,
            uid,
        })
    }

    fn blob_name(digest: &str) -> OsString {
        format!("{digest}.tar.gz").into()
    }

    fn tree_name(digest: &str, owner: TreeOwner) -> OsString {
        format!("{digest}.{}", owner.suffix()).into()
    }

    fn tmp_name(digest: &str, what: &str) -> OsString {
        format!("{digest}.{what}.{}", unique_suffix()).into()
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs").join(Self::blob_name(digest))
    }

    /// Whether `blobs/` holds a regular file (ours) for `digest`.
    pub(crate) fn has_blob(&self, digest: &str) -> Result<bool, Error> {
        let st = at::stat(&self.blobs, &Self::blob_name(digest)).map_err(io("inspect", self.blob_path(digest)))?;
        Ok(st.is_some_and(|st| at::is(&st, SFlag::S_IFREG) && st.st_uid == self.uid))
    }

    /// The cached blob of `digest`, opened without following symlinks.
    pub(crate) fn open_blob(&self, digest: &str) -> Result<File, Error> {
        at::open_read(&self.blobs, &Self::blob_name(digest)).map_err(io("open", self.blob_path(digest)))
    }

    /// The unpacked tree of `digest` for `owner`, if the cache holds a complete one that we made.
    pub(crate) fn tree(&self, digest: &str, owner: TreeOwner) -> Result<Option<PathBuf>, Error> {
        let name = Self::tree_name(digest, owner);
        let path = self.root.join("trees").join(&name);
        let st = at::stat(&self.trees, &name).map_err(io("inspect", &path))?;
        Ok(st.filter(|st| at::is(st, SFlag::S_IFDIR) && st.st_uid == self.uid).map(|_| path))
    }

    /// Blocks until this process is the only one working on `digest`, then clears what a dead holder
    /// of the lock left in `tmp/`.
    pub(crate) fn lock(&self, digest: &str) -> Result<DigestLock, Error> {
        let lock = self.lock_named(digest)?;
        self.clear_tmp(digest)?;
        Ok(lock)
    }

    /// An exclusive lock on `name` (a digest, or `mirror-<key>`). Lock files are never removed:
    /// removing one would let two processes lock two different files for the same name.
    pub(crate) fn lock_named(&self, name: &str) -> Result<DigestLock, Error> {
        self.lock_named_or_say(name, &|| {})
    }

    /// [`Self::lock_named`], calling `waiting` first if another process holds the lock now (the
    /// wait, up to that process's download deadline, is then not silent).
    pub(crate) fn lock_named_or_say(&self, name: &str, waiting: &dyn Fn()) -> Result<DigestLock, Error> {
        let (file, path) = self.lock_file(name)?;
        match file.try_lock() {
            Ok(()) => return Ok(DigestLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => waiting(),
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock", &path)(e)),
        }
        file.lock().map_err(io("lock", &path))?;
        Ok(DigestLock { _file: file })
    }

    fn lock_file(&self, name: &str) -> Result<(File, PathBuf), Error> {
        let file_name = OsString::from(format!("{name}.lock"));
        let path = self.root.join("locks").join(&file_name);
        let file = at::open_or_create(&self.locks, &file_name, 0o600).map_err(io("open lock file", &path))?;
        Ok((file, path))
    }

    fn clear_tmp(&self, digest: &str) -> Result<(), Error> {
        let tmp = self.root.join("tmp");
        for name in at::list(&self.tmp).map_err(io("list", &tmp))? {
            if name.to_string_lossy().starts_with(digest) {
                tracing::info!(path = %tmp.join(&name).display(), "removing a partial cache entry left by a killed process");
                at::remove_all(&self.tmp, &name).map_err(io("remove", tmp.join(&name)))?;
            }
        }
        Ok(())
    }

    /// Removes partial entries of killed processes for every digest nobody is working on now, and
    /// the half-written index entries and records (`.<name>.<pid>-<n>`) of processes that are gone.
    pub(crate) fn sweep(&self) -> Result<(), Error> {
        for (dir, dir_name) in [(&self.index, "index"), (&self.records, "records")] {
            for name in at::list(dir).map_err(io("list", self.root.join(dir_name)))? {
                let text = name.to_string_lossy();
                let pid = text.rsplit('.').next().and_then(|t| t.split('-').next()).and_then(|p| p.parse::<u32>().ok());
                if text.starts_with('.')
                    && pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
                    && let Err(e) = at::remove_all(dir, &name)
                {
                    // A leftover that cannot go stays for the next sweep; it fails no fetch.
                    tracing::warn!(error = %e, "could not remove {}", self.root.join(dir_name).join(&name).display());
                }
            }
        }
        let tmp = self.root.join("tmp");
        let mut digests: Vec<String> = at::list(&self.tmp)
            .map_err(io("list", &tmp))?
            .iter()
            .filter_map(|n| n.to_str().and_then(|n| n.get(..64)).map(str::to_owned))
            .collect();
        digests.sort();
        digests.dedup();
        for digest in digests {
            let Ok((file, _)) = self.lock_file(&digest) else { continue };
            if file.try_lock().is_ok()
                && let Err(e) = self.clear_tmp(&digest)
            {
                tracing::warn!(error = %e, "could not remove a killed process's work in {}", tmp.display());
            }
        }
        Ok(())
    }

    /// Stages a blob for `digest` in `tmp/`: `fill` writes it, then it must hash to `digest` (else
    /// [`Error::ChecksumMismatch`] built by `mismatch`) before it moves into `blobs/`. Nothing of a
    /// failed attempt stays. Call with the digest's lock held.
    pub(crate) fn put_blob(
        &self,
        digest: &str,
        _lock: &DigestLock,
        fill: impl FnOnce(&mut File) -> Result<(), Error>,
        mismatch: impl FnOnce(String) -> Error,
        check: impl FnOnce(&File) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let name = Self::tmp_name(digest, "blob");
        let staged = self.root.join("tmp").join(&name);
        let mut file = at::create(&self.tmp, &name, 0o600).map_err(io("create", &staged))?;
        let result = fill(&mut file).and_then(|()| {
            file.rewind().map_err(io("rewind", &staged))?;
            let actual = crate::hash::sha256_of(&mut file).map_err(io("read", &staged))?;
            if actual != digest {
                return Err(mismatch(actual));
            }
            // Every other check of the bytes (the official sha512, the signature) before they enter
            // `blobs/`: a process killed after the rename and before them left refused bytes there
            // (the twenty-fifth outside review).
            check(&file)?;
            file.set_permissions(fs::Permissions::from_mode(0o444)).map_err(io("chmod", &staged))?;
            at::rename(&self.tmp, &name, &self.blobs, &Self::blob_name(digest))
                .map_err(io("rename into the cache", self.blob_path(digest)))
        });
        if result.is_err() {
            at::remove_all(&self.tmp, &name).map_err(io("remove", &staged))?;
        }
        result
    }

    /// Removes the blob of `digest` (a release refused after download). Call with its lock held.
    #[cfg_attr(not(feature = "download"), allow(dead_code))]
    pub(crate) fn drop_blob(&self, digest: &str, _lock: &DigestLock) -> Result<(), Error> {
        at::remove_all(&self.blobs, &Self::blob_name(digest)).map_err(io("remove", self.blob_path(digest)))
    }

    /// The one way a tree enters the cache: the tree of `digest` for `owner`, unpacked from the cached
    /// blob if it is not there yet. The blob is hashed again as it is unpacked, so a blob that does
    /// not match its name never becomes a tree. Call with the digest's lock held.
    pub(crate) fn ensure_tree(
        &self,
        digest: &str,
        owner: TreeOwner,
        limits: &crate::UnpackLimits,
        _lock: &DigestLock,
        before_unpack: &dyn Fn(),
    ) -> Result<PathBuf, Error> {
        if let Some(tree) = self.tree(digest, owner)? {
            return Ok(tree);
        }
        before_unpack();
        let blob = self.blob_path(digest);
        let name = Self::tmp_name(digest, &format!("tree-{}", owner.suffix()));
        let staged = self.root.join("tmp").join(&name);
        let dir = at::create_dir_fd(&self.tmp, &name).map_err(io("create directory", &staged))?;
        let result = self.open_blob(digest).and_then(|file| {
            let mut reader = Hashing::<_, sha2::Sha256>::new(io::BufReader::new(file));
            crate::unpack::unpack_into(&mut reader, &dir, limits, owner.ownership())
                .map_err(|source| Error::Unpack { archive: blob.clone(), source })?;
            io::copy(&mut reader, &mut io::sink()).map_err(io("read", &blob))?;
            let actual = reader.finish();
            if actual != digest {
                return Err(Error::ChecksumMismatch {
                    url: blob.display().to_string(),
                    expected: digest.to_owned(),
                    trust: crate::Trust::LocalFile,
                    actual,
                });
            }
            // The tree's root directory carries the archive's "./" mode (0755), whatever umask said;
            // the cache's v1/ (0700) keeps it private.
            nix::sys::stat::fchmod(&dir, nix::sys::stat::Mode::from_bits_truncate(0o755))
                .map_err(|e| io("chmod", &staged)(e.into()))?;
            at::rename(&self.tmp, &name, &self.trees, &Self::tree_name(digest, owner))
                .map_err(io("rename into the cache", self.root.join("trees").join(Self::tree_name(digest, owner))))
        });
        if let Err(e) = result {
            // Neither the half tree nor a tarball that cannot be unpacked stays in the cache.
            at::remove_all(&self.tmp, &name).map_err(io("remove", &staged))?;
            at::remove_all(&self.blobs, &Self::blob_name(digest)).map_err(io("remove", &blob))?;
            return Err(e);
        }
        Ok(self.root.join("trees").join(Self::tree_name(digest, owner)))
    }

    fn index_name(mirror: &str, arch: Arch, version: &str) -> OsString {
        format!("{}.{}.{version}.json", mirror_key(mirror), arch.as_str()).into()
    }

    /// Records that `entry.version` for `entry.arch` on `entry.mirror` is `entry.sha256`.
    /// Its mirror and URL are kept without a password (crate::mirror::shown).
    pub(crate) fn index_put(&self, entry: &IndexEntry) -> Result<(), Error> {
        let name = Self::index_name(&entry.mirror, entry.arch, &entry.version);
        let entry = IndexEntry {
            mirror: crate::mirror::shown(&entry.mirror).into_owned(),
            url: crate::mirror::shown(&entry.url).into_owned(),
            ..entry.clone()
        };
        let text = serde_json::to_vec_pretty(&entry)
            .map_err(|e| io("encode", self.root.join("index"))(io::Error::other(e)))?;
        self.write_atomically(&self.index, "index", &name, &text)
    }

    /// The newest indexed release from `mirror` for `arch` that satisfies `spec` and `usable`.
    pub(crate) fn index_find(
        &self,
        mirror: &str,
        arch: Arch,
        spec: &crate::VersionSpec,
        usable: impl Fn(&IndexEntry) -> bool,
    ) -> Option<IndexEntry> {
        let prefix = format!("{}.{}.", mirror_key(mirror), arch.as_str());
        let canonical = crate::mirror::canonical(mirror);
        at::list(&self.index)
            .ok()?
            .into_iter()
            .filter(|n| n.to_string_lossy().starts_with(&prefix))
            .filter_map(|n| {
                let entry: IndexEntry = serde_json::from_slice(&read_small(&self.index, &n)?).ok()?;
                let release: crate::Release = entry.version.parse().ok()?;
                (spec.matches(&release)
                    && entry.arch == arch
                    && crate::mirror::canonical(&entry.mirror) == canonical
                    && usable(&entry))
                .then_some((release, entry))
            })
            .max_by_key(|(release, _)| *release)
            .map(|(_, entry)| entry)
    }

    /// The entry for exactly `version` from `mirror`, if any.
    pub(crate) fn index_get(&self, mirror: &str, arch: Arch, version: &str) -> Option<IndexEntry> {
        let entry: IndexEntry =
            serde_json::from_slice(&read_small(&self.index, &Self::index_name(mirror, arch, version))?).ok()?;
        (entry.arch == arch && entry.version == version).then_some(entry)
    }

    fn local_name(path: &Path) -> OsString {
        use std::os::unix::ffi::OsStrExt;
        let digest = crate::hash::sha256_of(path.as_os_str().as_bytes()).unwrap_or_default();
        format!("local-{}.json", &digest[..32]).into()
    }

    /// The digest recorded for the local file `path` whose metadata is `meta`, if the file is unchanged.
    pub(crate) fn local_digest(&self, path: &Path, meta: &fs::Metadata) -> Option<String> {
        let record: LocalRecord = serde_json::from_slice(&read_small(&self.records, &Self::local_name(path))?).ok()?;
        (record == local_record(path, meta, record.sha256.clone())).then_some(record.sha256)
    }

    /// Remembers that the local file `path`, with metadata `meta` when it was opened and `after`
    /// once it was read, hashes to `digest`; `Ok(false)`, nothing recorded, for a file whose
    /// identity or times changed in between (what [`local_digest`](Self::local_digest) compares).
    pub(crate) fn put_local_digest(
        &self,
        path: &Path,
        meta: &fs::Metadata,
        after: &fs::Metadata,
        digest: &str,
    ) -> Result<bool, Error> {
        let record = local_record(path, meta, digest.to_owned());
        if record != local_record(path, after, digest.to_owned()) {
            return Ok(false);
        }
        let text =
            serde_json::to_vec(&record).map_err(|e| io("encode", self.root.join("records"))(io::Error::other(e)))?;
        self.write_atomically(&self.records, "records", &Self::local_name(path), &text).map(|()| true)
    }

    #[cfg_attr(not(feature = "download"), allow(dead_code))]
    fn failure_name(mirror: &str) -> OsString {
        format!("unreachable-{}.json", mirror_key(mirror)).into()
    }

    /// A failure to reach `mirror` recorded by some process, if any.
    #[cfg_attr(not(feature = "download"), allow(dead_code))]
    pub(crate) fn failure(&self, mirror: &str) -> Option<FailureRecord> {
        serde_json::from_slice(&read_small(&self.records, &Self::failure_name(mirror))?).ok()
    }

    #[cfg_attr(not(feature = "download"), allow(dead_code))]
    /// Kept without the mirror's password, in its URLs and in the cause's text (crate::mirror::shown).
    pub(crate) fn put_failure(&self, record: &FailureRecord) -> Result<(), Error> {
        let record = FailureRecord {
            mirror: crate::mirror::shown(&record.mirror).into_owned(),
            url: crate::mirror::shown(&record.url).into_owned(),
            cause: crate::mirror::hidden_in(&record.cause, &record.mirror),
            at_unix: record.at_unix,
        };
        let text =
            serde_json::to_vec(&record).map_err(|e| io("encode", self.root.join("records"))(io::Error::other(e)))?;
        self.write_atomically(&self.records, "records", &Self::failure_name(&record.mirror), &text)
    }

    #[cfg_attr(not(feature = "download"), allow(dead_code))]
    pub(crate) fn clear_failure(&self, mirror: &str) -> Result<(), Error> {
        let name = Self::failure_name(mirror);
        at::remove_all(&self.records, &name).map_err(io("remove", self.root.join("records").join(&name)))
    }

    /// Writes `bytes` to `dir/name` through a temporary file in the same folder and a rename.
    fn write_atomically(&self, dir: &OwnedFd, dir_name: &str, name: &OsStr, bytes: &[u8]) -> Result<(), Error> {
        let dest = self.root.join(dir_name).join(name);
        let tmp_name = OsString::from(format!(".{}.{}", name.to_string_lossy(), unique_suffix()));
        let mut file =
            at::create(dir, &tmp_name, 0o600).map_err(io("create", self.root.join(dir_name).join(&tmp_name)))?;
        let written = file.write_all(bytes).map_err(io("write", &dest));
        drop(file);
        let result =
            written.and_then(|()| at::rename(dir, &tmp_name, dir, name).map_err(io("rename into the cache", &dest)));
        if result.is_err() {
            let _ = at::remove_all(dir, &tmp_name);
        }
        result
    }
}

/// `<pid>-<n>`: unique among the processes and threads working in one cache at once (the test harness
/// resolves the rootfs from several threads of one process).
fn unique_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

fn local_record(path: &Path, meta: &fs::Metadata, sha256: String) -> LocalRecord {
    use std::os::unix::fs::MetadataExt;
    LocalRecord {
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        sha256,
    }
}

/// A small file (a record, an index entry) under `dir`, read without following symlinks.
fn read_small(dir: &OwnedFd, name: &OsStr) -> Option<Vec<u8>> {
    let file = at::open_read(dir, name).ok()?;
    let mut bytes = Vec::new();
    file.take(1 << 20).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// The folder behind `fd` must be the caller's and not writable by group or others; returns its mode.
fn check_private(fd: &impl AsFd, path: &Path, uid: u32) -> Result<u32, Error> {
    let st = nix::sys::stat::fstat(fd).map_err(|e| io("inspect", path)(e.into()))?;
    private(path, st.st_uid, st.st_mode, uid)
}

/// A folder of `owner` with `mode` must be `uid`'s and not writable by group or others; returns its
/// permission bits.
fn private(path: &Path, owner: u32, mode: u32, uid: u32) -> Result<u32, Error> {
    let mode = mode & 0o7777;
    if owner != uid || mode & 0o022 != 0 {
        return Err(Error::CacheNotPrivate { path: path.to_owned(), owner, mode, uid });
    }
    Ok(mode)
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
