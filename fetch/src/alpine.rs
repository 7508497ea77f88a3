//! The `Alpine` builder: which release, from where, trusted how, cached where.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cache::{Cache, IndexEntry, TreeOwner};
use crate::download::{NetworkPolicy, Progress, ProgressFn};
use crate::mirror::{self, check_digest};
use crate::resolve::{index_entry_usable, known_digest};
use crate::{Arch, Error, Release, Rootfs, Signature, Trust, UnpackLimits, Verification, VersionSpec};

#[cfg(feature = "download")]
mod online;

/// A request for an Alpine minirootfs: configure it, then [`fetch`](Alpine::fetch) it.
///
/// Every setter documents its default; defaults that come from the environment are read when `fetch`
/// runs, not when the builder is made.
///
/// # Examples
/// ```no_run
/// let rootfs = fetch::Alpine::new("3.20.3")
///     .arch(fetch::Arch::X86_64)
///     .mirror("http://127.0.0.1:8080/alpine")
///     .sha256("d4e6fd67dcf75e40c451560ac7265166c2b72a0f38ddc9aae756a7de3d1efa0c")
///     .cache_dir("/some/dir")
///     .offline(false)
///     .fetch()?;
/// println!("{} is Alpine {:?}", rootfs.path().display(), rootfs.version());
/// # Ok::<(), fetch::Error>(())
/// ```
#[derive(Clone)]
pub struct Alpine {
    version: String,
    arch: Option<Arch>,
    mirror: Option<String>,
    sha256: Option<String>,
    cache_dir: Option<PathBuf>,
    offline: Option<bool>,
    require_pin: Option<bool>,
    signature: Option<Signature>,
    test_keys: Vec<String>,
    network: NetworkPolicy,
    limits: UnpackLimits,
    progress: Option<Arc<ProgressFn>>,
}

impl fmt::Debug for Alpine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alpine")
            .field("version", &self.version)
            .field("arch", &self.arch)
            .field("mirror", &self.mirror)
            .field("sha256", &self.sha256)
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .field("require_pin", &self.require_pin)
            .field("signature", &self.signature)
            .finish_non_exhaustive()
    }
}

impl Default for Alpine {
    /// The project's default release: `$SANDBOX_ALPINE_VERSION`, else [`crate::DEFAULT_RELEASE`].
    fn default() -> Self {
        let version = std::env::var("SANDBOX_ALPINE_VERSION")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| crate::DEFAULT_RELEASE.to_owned());
        Alpine::new(version)
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"))
}

impl Alpine {
    /// A request for `version`: `"3.20.3"` (exact), `"3.20"` (newest patch of the branch) or
    /// `"latest-stable"`. The string is checked by [`fetch`](Alpine::fetch).
    pub fn new(version: impl Into<String>) -> Alpine {
        Alpine {
            version: version.into(),
            arch: None,
            mirror: None,
            sha256: None,
            cache_dir: None,
            offline: None,
            require_pin: None,
            signature: None,
            test_keys: Vec::new(),
            network: NetworkPolicy::default(),
            limits: UnpackLimits::default(),
            progress: None,
        }
    }

    /// The architecture. Default: the host's ([`Arch::host`]).
    pub fn arch(mut self, arch: Arch) -> Self {
        self.arch = Some(arch);
        self
    }

    /// The mirror's base URL, the folder that holds `v3.20/`, `latest-stable/`, …
    /// Default: `$SANDBOX_ALPINE_MIRROR`, else [`crate::DEFAULT_MIRROR`]. Without the `download`
    /// feature it names whose releases in the cache are used (the cache keeps each mirror's apart).
    pub fn mirror(mut self, url: impl Into<String>) -> Self {
        self.mirror = Some(url.into());
        self
    }

    /// Pins the tarball's sha256 (64 hex digits). Default: no pin; the built-in table of official
    /// checksums, else the mirror's own `latest-releases.yaml` or `.sha256` sidecar, is trusted.
    pub fn sha256(mut self, digest: impl Into<String>) -> Self {
        self.sha256 = Some(digest.into());
        self
    }

    /// The cache directory. Default: `$SANDBOX_CACHE_DIR`, else `$XDG_CACHE_HOME/sandbox`, else
    /// `~/.cache/sandbox`.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Use the cache only, never the network. Default: `$SANDBOX_OFFLINE=1`.
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = Some(offline);
        self
    }

    /// Refuse tarballs whose digest only the mirror vouches for. Default: `$SANDBOX_REQUIRE_PIN=1`.
    pub fn require_pin(mut self, require: bool) -> Self {
        self.require_pin = Some(require);
        self
    }

    /// Whether a release must be signed. Default: [`Signature::Required`] if
    /// `$SANDBOX_REQUIRE_SIGNATURE=1`, else [`Signature::IfPresent`] (a `.asc` the mirror has is checked,
    /// and a bad one refused, either way).
    pub fn signature(mut self, policy: Signature) -> Self {
        self.signature = Some(policy);
        self
    }

    /// **Test-only hook.** Trusts the armored OpenPGP public key `armored` besides Alpine's own, so
    /// that tests can serve releases signed by a key of their own from a fixture mirror
    /// (`sandbox_fixtures::Mirror::sign_release`). Never use it for real releases: any key given here can
    /// vouch for any tarball. Default: only Alpine's key
    /// ([`ALPINE_KEY_FINGERPRINT`](crate::ALPINE_KEY_FINGERPRINT)).
    pub fn test_signing_key(mut self, armored: impl Into<String>) -> Self {
        self.test_keys.push(armored.into());
        self
    }

    /// Timeouts, retries, size caps and the overall deadline. Default: [`NetworkPolicy::default`].
    /// Without the `download` feature nothing is downloaded and this has no effect.
    pub fn network_policy(mut self, policy: NetworkPolicy) -> Self {
        self.network = policy;
        self
    }

    /// Caps on the unpacked size and entry count. Default: [`UnpackLimits::default`].
    pub fn unpack_limits(mut self, limits: UnpackLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Called as the download advances, and once when unpacking starts (without the `download`
    /// feature, only that). Default: none.
    pub fn progress(mut self, f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// The cache directory this request uses, after defaults and environment.
    ///
    /// # Errors
    /// [`Error::NoCacheDir`] when no default applies.
    pub fn resolved_cache_dir(&self) -> Result<PathBuf, Error> {
        if let Some(dir) = &self.cache_dir {
            return Ok(dir.clone());
        }
        default_cache_dir()
    }

    /// `.mirror()`, else `$SANDBOX_ALPINE_MIRROR`, else the CDN; checked ([`mirror::checked`]). A
    /// variable that is not UTF-8 is refused, not skipped (the thirty-first outside review: a private
    /// mirror's setting quietly became requests to the public CDN).
    fn resolved_mirror(&self) -> Result<String, Error> {
        let given = match (&self.mirror, std::env::var("SANDBOX_ALPINE_MIRROR")) {
            (Some(m), _) => m.clone(),
            (None, Ok(m)) if !m.is_empty() => m,
            (None, Err(std::env::VarError::NotUnicode(m))) => {
                let mirror = m.to_string_lossy().into_owned();
                return Err(Error::InvalidMirror { mirror, reason: "$SANDBOX_ALPINE_MIRROR is not UTF-8" });
            }
            (None, _) => mirror::DEFAULT_MIRROR.to_owned(),
        };
        mirror::checked(given)
    }

    /// Resolves, downloads, verifies, caches and unpacks the rootfs, doing only what the cache does not
    /// already hold. Safe to call from many processes at once: one downloads, the others wait and reuse.
    ///
    /// # Errors
    /// Bad arguments ([`Error::InvalidVersion`], [`Error::InvalidDigest`]); network and HTTP failures
    /// after retries ([`Error::Network`], [`Error::HttpStatus`]), or at once when another process just
    /// found the mirror unreachable ([`Error::MirrorUnreachable`]); a response past its cap or its
    /// deadline ([`Error::DownloadTooLarge`], [`Error::DownloadDeadline`]); [`Error::ChecksumMismatch`];
    /// [`Error::Signature`]; [`Error::NotPinned`] in strict mode; [`Error::NotCached`] offline;
    /// [`Error::CannotDownload`] without the `download` feature; [`Error::Unpack`] for a bad archive;
    /// [`Error::CacheNotPrivate`] and [`Error::Io`] for the cache.
    pub fn fetch(&self) -> Result<Rootfs, Error> {
        let req = self.request()?;
        let cache = Cache::open(&req.cache_dir)?;
        cache.sweep()?;
        if let Some(rootfs) = self.cached(&cache, &req)? {
            return Ok(rootfs);
        }
        if req.offline {
            return Err(refusal(&cache, &req).unwrap_or_else(|| Error::NotCached {
                spec: req.spec.to_string(),
                arch: req.arch,
                mirror: req.mirror,
                default: false,
                cache: req.cache_dir,
            }));
        }
        self.online(&cache, &req)
    }

    /// What the cache lacks, when this build cannot download; or what it holds but the policy refuses.
    #[cfg(not(feature = "download"))]
    fn online(&self, cache: &Cache, req: &Request) -> Result<Rootfs, Error> {
        Err(refusal(cache, req).unwrap_or_else(|| Error::CannotDownload {
            spec: req.spec.to_string(),
            arch: req.arch,
            cache: req.cache_dir.clone(),
            mirror: req.mirror.clone(),
        }))
    }

    /// The request with defaults and environment applied.
    fn request(&self) -> Result<Request, Error> {
        let spec: VersionSpec = self.version.parse()?;
        let arch = self.arch.or_else(Arch::host).ok_or_else(|| Error::UnknownArch {
            name: std::env::consts::ARCH.to_owned(),
            known: "x86_64, x86, aarch64, armv7, armhf, ppc64le, s390x, riscv64, loongarch64",
        })?;
        let pin = self.sha256.as_deref().map(|d| check_digest(d, "the .sha256() pin")).transpose()?;
        let signature = self.signature.unwrap_or_else(|| {
            if env_flag("SANDBOX_REQUIRE_SIGNATURE") { Signature::Required } else { Signature::IfPresent }
        });
        Ok(Request {
            known: known_digest(&spec, pin.as_deref(), arch),
            spec,
            arch,
            pin,
            offline: self.offline.unwrap_or_else(|| env_flag("SANDBOX_OFFLINE")),
            require_pin: self.require_pin.unwrap_or_else(|| env_flag("SANDBOX_REQUIRE_PIN")),
            require_signature: signature == Signature::Required,
            cache_dir: self.resolved_cache_dir()?,
            mirror: self.resolved_mirror()?,
            owner: TreeOwner::current(),
        })
    }

    /// What the cache alone can answer: a known digest's tree (or blob), or what the index recorded
    /// for this mirror. A warm exact release costs no network request.
    fn cached(&self, cache: &Cache, req: &Request) -> Result<Option<Rootfs>, Error> {
        if let (VersionSpec::Exact(r), Some((digest, trust))) = (&req.spec, &req.known) {
            let signed_by = cache
                .index_get(&req.mirror, req.arch, &r.to_string())
                .filter(|e| &e.sha256 == digest)
                .and_then(|e| e.verification.signed_by);
            if req.require_signature && signed_by.is_none() {
                return Ok(None);
            }
            let verification = Verification { digest: *trust, signed_by };
            return self.cached_rootfs(cache, req, digest, verification, r);
        }
        // Online, a range is answered by the mirror; a build that cannot download answers it from
        // the index, as offline.
        if !req.offline && cfg!(feature = "download") && !matches!(req.spec, VersionSpec::Exact(_)) {
            return Ok(None);
        }
        // The newest release the policy takes whose bytes are still here (a tree or its blob): one
        // whose files were removed from the cache does not hide an older one that is.
        let usable = |e: &IndexEntry| {
            index_entry_usable(e, req.pin.as_deref(), req.require_pin, req.require_signature)
                && (matches!(cache.tree(&e.sha256, req.owner), Ok(Some(_)))
                    || cache.has_blob(&e.sha256).unwrap_or(false))
        };
        let Some(mut entry) = cache.index_find(&req.mirror, req.arch, &req.spec, usable) else { return Ok(None) };
        if req.pin.as_deref() == Some(entry.sha256.as_str()) {
            entry.verification.digest = Trust::Pinned;
        }
        let Ok(release) = entry.version.parse::<Release>() else { return Ok(None) };
        self.cached_rootfs(cache, req, &entry.sha256, entry.verification, &release)
    }

    /// The cached tree for `digest`, unpacking the cached blob if only that is there.
    fn cached_rootfs(
        &self,
        cache: &Cache,
        req: &Request,
        digest: &str,
        verification: Verification,
        release: &Release,
    ) -> Result<Option<Rootfs>, Error> {
        let tree = match cache.tree(digest, req.owner)? {
            Some(tree) => tree,
            None if cache.has_blob(digest)? => {
                let lock = cache.lock(digest)?;
                let tree =
                    cache.ensure_tree(digest, req.owner, &self.limits, &lock, &|| self.report(Progress::Unpacking))?;
                let url = mirror::tarball_url(&req.mirror, release, req.arch);
                self.record(cache, req, release, digest, url, &verification)?;
                tree
            }
            None => return Ok(None),
        };
        Ok(Some(Rootfs::cached(tree, digest.to_owned(), release.to_string(), req.arch, verification)))
    }

    fn record(
        &self,
        cache: &Cache,
        req: &Request,
        release: &Release,
        digest: &str,
        url: String,
        verification: &Verification,
    ) -> Result<(), Error> {
        // What an earlier fetch of the same bytes established stays: a later fetch through a range
        // (digest from the mirror, no .asc) must not turn a pinned or signed entry into a weaker one.
        let mut verification = verification.clone();
        if let Some(earlier) = cache.index_get(&req.mirror, req.arch, &release.to_string())
            && earlier.sha256 == digest
        {
            if earlier.verification.digest.is_pinned() && !verification.digest.is_pinned() {
                verification.digest = earlier.verification.digest;
            }
            verification.signed_by = verification.signed_by.or(earlier.verification.signed_by);
        }
        cache.index_put(&IndexEntry {
            version: release.to_string(),
            arch: req.arch,
            sha256: digest.to_owned(),
            url,
            mirror: req.mirror.clone(),
            verification,
        })
    }

    fn report(&self, p: Progress) {
        if let Some(f) = &self.progress {
            f(p);
        }
    }
}

/// Why the newest release the cache holds for `req` is refused by the pin or signature policy, if it
/// is: filling the cache again would not help, so this beats "not in the cache".
fn refusal(cache: &Cache, req: &Request) -> Option<Error> {
    let entry = cache.index_find(&req.mirror, req.arch, &req.spec, |_| true)?;
    if req.require_signature && entry.verification.signed_by.is_none() {
        return Some(Error::Signature { url: entry.url, problem: crate::SignatureProblem::Missing });
    }
    if req.require_pin && req.known.is_none() && !entry.verification.digest.is_pinned() {
        return Some(Error::NotPinned { url: entry.url, version: entry.version, arch: req.arch });
    }
    None
}

/// A request with every default applied.
#[derive(Debug)]
struct Request {
    spec: VersionSpec,
    arch: Arch,
    pin: Option<String>,
    known: Option<(String, Trust)>,
    offline: bool,
    require_pin: bool,
    require_signature: bool,
    cache_dir: PathBuf,
    mirror: String,
    owner: TreeOwner,
}

/// `$SANDBOX_CACHE_DIR`, else `$XDG_CACHE_HOME/sandbox`, else `$HOME/.cache/sandbox`.
///
/// # Errors
/// [`Error::NoCacheDir`] when none of these variables is set.
pub fn default_cache_dir() -> Result<PathBuf, Error> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("SANDBOX_CACHE_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(dir.join("sandbox"));
    }
    var("HOME").map(|h| h.join(".cache").join("sandbox")).ok_or(Error::NoCacheDir)
}

pub(crate) fn cache_for(dir: Option<&Path>) -> Result<Cache, Error> {
    let dir = match dir {
        Some(d) => d.to_owned(),
        None => default_cache_dir()?,
    };
    Cache::open(&dir)
}

#[cfg(all(test, not(feature = "download")))]
mod without_download {
    use std::path::{Path, PathBuf};

    use crate::cache::{Cache, IndexEntry};
    use crate::{Alpine, Arch, DEFAULT_MIRROR, Error, Rootfs, Signature, SignatureProblem, Trust, Verification};

    /// A cache (in a temporary folder) holding the tree of a local tarball, and that tree.
    fn cached_tarball() -> (tempfile::TempDir, PathBuf, Rootfs) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        tarball(&dir.path().join("rootfs.tar.gz"));
        let local = Rootfs::from_tarball_in(dir.path().join("rootfs.tar.gz"), Some(&cache)).expect("a local tarball");
        (dir, cache, local)
    }

    /// A gzipped tarball holding `etc/alpine-release`.
    fn tarball(path: &Path) {
        let file = std::fs::File::create(path).expect("create the tarball");
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()));
        let body = b"3.20.3\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        tar.append_data(&mut header, "etc/alpine-release", &body[..]).expect("append");
        tar.into_inner().and_then(|gz| gz.finish()).expect("finish the tarball");
    }

    #[test]
    fn what_the_cache_holds_is_served_and_what_it_lacks_is_a_clear_error() {
        let (_dir, cache, local) = cached_tarball();
        let digest = local.sha256().expect("its digest").to_owned();
        // Pinned to what the cache holds: no download needed.
        let cached = Alpine::new("3.20.3").sha256(&digest).cache_dir(&cache).offline(false).fetch().expect("cached");
        assert_eq!(cached.path(), local.path());
        // Not in the cache: the error says why and what to do, online or not.
        for offline in [false, true] {
            let err = Alpine::new("3.21.2").cache_dir(&cache).offline(offline).fetch().expect_err("not cached");
            if offline {
                assert!(matches!(err, Error::NotCached { .. }), "{err:?}");
                continue;
            }
            assert!(matches!(err, Error::CannotDownload { .. }), "{err:?}");
            let text = err.to_string();
            for hint in ["3.21.2", "`download` feature", "sandbox-run --rootfs alpine:3.21.2", "$SANDBOX_ROOTFS"] {
                assert!(text.contains(hint), "{hint:?} in {text}");
            }
        }
    }

    /// The outside review of the feature: a range (`3.19`, `latest-stable`) was never answered from
    /// the cache, and a release refused by the pin or signature policy was reported as not cached.
    #[test]
    fn a_range_is_answered_from_the_index_and_a_refusal_says_why() {
        let (_dir, cache, local) = cached_tarball();
        let mirror = "http://127.0.0.1:9/alpine";
        let entry = IndexEntry {
            version: "3.19.99".into(),
            arch: Arch::host().expect("a known architecture"),
            sha256: local.sha256().expect("its digest").to_owned(),
            url: format!("{mirror}/v3.19/releases/x/alpine-minirootfs-3.19.99-x.tar.gz"),
            mirror: mirror.into(),
            verification: Verification { digest: Trust::MirrorSidecar, signed_by: None },
        };
        Cache::open(&cache).and_then(|c| c.index_put(&entry)).expect("an index entry");
        let range = || Alpine::new("3.19").mirror(mirror).cache_dir(&cache).offline(false);
        assert_eq!(range().fetch().expect("served from the index").path(), local.path());
        // A newer entry whose files are gone from the cache does not hide it.
        let gone = IndexEntry { version: "3.19.100".into(), sha256: "0".repeat(64), ..entry.clone() };
        Cache::open(&cache).and_then(|c| c.index_put(&gone)).expect("a stale entry");
        assert_eq!(range().fetch().expect("the release that is here").version(), Some("3.19.99"));
        let err = range().require_pin(true).fetch().expect_err("not pinned");
        assert!(matches!(err, Error::NotPinned { .. }), "{err:?}");
        let err = range().signature(Signature::Required).fetch().expect_err("not signed");
        assert!(matches!(err, Error::Signature { problem: SignatureProblem::Missing, .. }), "{err:?}");
        // A range with a pin of its own is served by that pin, under strict pinning too, and an
        // unpinned one offline is refused by name.
        let pinned = range().sha256(&entry.sha256).require_pin(true).fetch().expect("served by its pin");
        assert_eq!(pinned.verification().map(|v| v.digest), Some(Trust::Pinned));
        let err = range().require_pin(true).offline(true).fetch().expect_err("not pinned, offline");
        assert!(matches!(err, Error::NotPinned { .. }), "{err:?}");
        // Each mirror's releases are its own.
        let other = Alpine::new("3.19").cache_dir(&cache).mirror(DEFAULT_MIRROR).offline(false);
        let err = other.fetch().expect_err("another mirror");
        assert!(matches!(&err, Error::CannotDownload { .. }) && err.to_string().contains(DEFAULT_MIRROR), "{err}");
    }
}
