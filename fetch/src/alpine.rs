//! The `Alpine` builder: which release, from where, trusted how, cached where.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cache::{Cache, IndexEntry, TreeOwner};
use crate::download::{Http, NetworkPolicy, Progress, ProgressFn};
use crate::mirror::{self, check_digest};
use crate::{Arch, Error, Release, Rootfs, UnpackLimits, VersionSpec, official_sha256};

/// Where the expected sha256 of a tarball came from, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Trust {
    /// An explicit `.sha256()` pin.
    Pinned,
    /// The built-in table of official checksums ([`crate::official_sha256`]).
    BuiltIn,
    /// The `sha256` field of the mirror's `latest-releases.yaml`.
    MirrorYaml,
    /// The mirror's `.sha256` sidecar file.
    MirrorSidecar,
    /// The digest of a local tarball, taken when it was first read.
    LocalFile,
}

impl Trust {
    /// Whether this digest came from somewhere other than the mirror that served the bytes.
    pub fn is_pinned(self) -> bool {
        matches!(self, Trust::Pinned | Trust::BuiltIn | Trust::LocalFile)
    }
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trust::Pinned => "pinned",
            Trust::BuiltIn => "built-in official checksum",
            Trust::MirrorYaml => "from the mirror's latest-releases.yaml",
            Trust::MirrorSidecar => "from the mirror's .sha256 file",
            Trust::LocalFile => "digest of the local file",
        })
    }
}

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
    /// Default: `$SANDBOX_ALPINE_MIRROR`, else [`crate::DEFAULT_MIRROR`].
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

    /// Timeouts and retries. Default: [`NetworkPolicy::default`].
    pub fn network_policy(mut self, policy: NetworkPolicy) -> Self {
        self.network = policy;
        self
    }

    /// Caps on the unpacked size and entry count. Default: [`UnpackLimits::default`].
    pub fn unpack_limits(mut self, limits: UnpackLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Called as the download advances, and once when unpacking starts. Default: none.
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

    fn resolved_mirror(&self) -> String {
        self.mirror
            .clone()
            .or_else(|| std::env::var("SANDBOX_ALPINE_MIRROR").ok().filter(|m| !m.is_empty()))
            .unwrap_or_else(|| mirror::DEFAULT_MIRROR.to_owned())
    }

    /// Resolves, downloads, verifies, caches and unpacks the rootfs, doing only what the cache does not
    /// already hold. Safe to call from many processes at once: one downloads, the others wait and reuse.
    ///
    /// # Errors
    /// Bad arguments ([`Error::InvalidVersion`], [`Error::InvalidDigest`]); network and HTTP failures
    /// after retries ([`Error::Network`], [`Error::HttpStatus`]); [`Error::ChecksumMismatch`];
    /// [`Error::NotPinned`] in strict mode; [`Error::NotCached`] offline; [`Error::Unpack`] for a bad
    /// archive; [`Error::Io`] for the cache directory.
    pub fn fetch(&self) -> Result<Rootfs, Error> {
        let spec: VersionSpec = self.version.parse()?;
        let arch = match self.arch.or_else(Arch::host) {
            Some(a) => a,
            None => {
                return Err(Error::UnknownArch {
                    name: std::env::consts::ARCH.to_owned(),
                    known: "x86_64, x86, aarch64, armv7, armhf, ppc64le, s390x, riscv64, loongarch64",
                });
            }
        };
        let pin = self.sha256.as_deref().map(|d| check_digest(d, "the .sha256() pin")).transpose()?;
        let offline = self.offline.unwrap_or_else(|| env_flag("SANDBOX_OFFLINE"));
        let require_pin = self.require_pin.unwrap_or_else(|| env_flag("SANDBOX_REQUIRE_PIN"));
        let cache_dir = self.resolved_cache_dir()?;
        let cache = Cache::open(&cache_dir)?;
        cache.sweep()?;
        let owner = TreeOwner::current();

        // A known digest for an exact release: a warm cache needs no network at all.
        let known = match (&spec, &pin) {
            (_, Some(d)) => Some((d.clone(), crate::Trust::Pinned)),
            (VersionSpec::Exact(r), None) => official_sha256(r, arch).map(|d| (d.to_owned(), crate::Trust::BuiltIn)),
            _ => None,
        };
        if let (VersionSpec::Exact(r), Some((digest, trust))) = (&spec, &known)
            && let Some(rootfs) = self.cached_rootfs(&cache, owner, digest, *trust, r, arch)?
        {
            return Ok(rootfs);
        }
        // Offline, or an exact release whose digest only an earlier fetch (the index) knows.
        if offline || matches!(spec, VersionSpec::Exact(_)) && known.is_none() {
            if let Some(rootfs) = self.indexed_rootfs(&cache, owner, &spec, arch, pin.as_deref(), require_pin)? {
                return Ok(rootfs);
            }
            if offline {
                return Err(Error::NotCached { spec: spec.to_string(), arch, cache: cache_dir });
            }
        }

        let http = Http::new(self.network)?;
        let mirror = self.resolved_mirror();
        let (release, url, digest, trust) = resolve(&http, &mirror, &spec, arch, known)?;
        if require_pin && !trust.is_pinned() {
            return Err(Error::NotPinned { url, version: release.to_string(), arch });
        }
        let _lock = cache.lock(&digest)?;
        let path = match cache.tree(&digest, owner) {
            Some(tree) => tree,
            None => {
                if !cache.blob_path(&digest).is_file() {
                    self.download(&http, &cache, &url, &digest, trust)?;
                }
                if let Some(p) = &self.progress {
                    p(Progress::Unpacking);
                }
                cache.unpack_blob(&digest, owner, &self.limits)?
            }
        };
        cache.index_put(&IndexEntry { version: release.to_string(), arch, sha256: digest.clone(), url, trust })?;
        Ok(Rootfs::cached(path, digest, release.to_string(), arch))
    }

    /// The newest cached release the index lists for `spec`, if its digest agrees with the pin and its
    /// trust satisfies strict mode.
    fn indexed_rootfs(
        &self,
        cache: &Cache,
        owner: TreeOwner,
        spec: &VersionSpec,
        arch: Arch,
        pin: Option<&str>,
        require_pin: bool,
    ) -> Result<Option<Rootfs>, Error> {
        let Some(entry) = cache.index_find(arch, spec) else { return Ok(None) };
        let Ok(release) = entry.version.parse::<Release>() else { return Ok(None) };
        if pin.is_some_and(|p| p != entry.sha256) || (require_pin && !entry.trust.is_pinned()) {
            return Ok(None);
        }
        self.cached_rootfs(cache, owner, &entry.sha256, entry.trust, &release, arch)
    }

    /// The cached tree for `digest`, unpacking the cached blob if only that is there.
    fn cached_rootfs(
        &self,
        cache: &Cache,
        owner: TreeOwner,
        digest: &str,
        trust: crate::Trust,
        release: &Release,
        arch: Arch,
    ) -> Result<Option<Rootfs>, Error> {
        let found = |path| Some(Rootfs::cached(path, digest.to_owned(), release.to_string(), arch));
        if let Some(tree) = cache.tree(digest, owner) {
            return Ok(found(tree));
        }
        if !cache.blob_path(digest).is_file() {
            return Ok(None);
        }
        let _lock = cache.lock(digest)?;
        let tree = match cache.tree(digest, owner) {
            Some(tree) => tree,
            None => cache.unpack_blob(digest, owner, &self.limits)?,
        };
        let url = mirror::tarball_url(&self.resolved_mirror(), release, arch);
        cache.index_put(&IndexEntry { version: release.to_string(), arch, sha256: digest.to_owned(), url, trust })?;
        Ok(found(tree))
    }

    fn download(&self, http: &Http, cache: &Cache, url: &str, digest: &str, trust: crate::Trust) -> Result<(), Error> {
        let (mut file, staged) = cache.blob_staging(digest)?;
        let result = http.get_into(url, &mut file, self.progress.as_deref());
        drop(file);
        let outcome = match result {
            Ok((actual, _)) if actual == digest => cache.commit_blob(&staged, digest).map(|_| ()),
            Ok((actual, _)) => {
                Err(Error::ChecksumMismatch { url: url.to_owned(), expected: digest.to_owned(), trust, actual })
            }
            Err(e) => Err(e),
        };
        if outcome.is_err() {
            // Nothing of a failed download stays in the cache.
            crate::cache::remove_tree(&staged)?;
        }
        outcome
    }
}

/// Turns a spec into a release, its URL, its expected digest and where that digest came from.
fn resolve(
    http: &Http,
    mirror: &str,
    spec: &VersionSpec,
    arch: Arch,
    known: Option<(String, crate::Trust)>,
) -> Result<(Release, String, String, crate::Trust), Error> {
    let (release, url, yaml_digest) = match spec {
        VersionSpec::Exact(r) => (*r, mirror::tarball_url(mirror, r, arch), None),
        _ => {
            let yaml_url = mirror::yaml_url(mirror, spec, arch);
            let text = http.get_text(&yaml_url)?.ok_or_else(|| Error::Resolve {
                spec: spec.to_string(),
                url: yaml_url.clone(),
                reason: "the mirror has no such file (HTTP 404): check the version, the arch and the mirror URL"
                    .to_owned(),
            })?;
            let entry = mirror::parse_latest_releases(&text, spec, arch, &yaml_url)?;
            let url = format!(
                "{}/{}",
                mirror::tarball_url(mirror, &entry.release, arch).rsplit_once('/').map_or("", |(dir, _)| dir),
                entry.file
            );
            let digest = entry.sha256.map(|d| check_digest(&d, &yaml_url)).transpose()?;
            (entry.release, url, digest)
        }
    };
    if let Some((digest, trust)) =
        known.or_else(|| official_sha256(&release, arch).map(|d| (d.to_owned(), crate::Trust::BuiltIn)))
    {
        return Ok((release, url, digest, trust));
    }
    if let Some(digest) = yaml_digest {
        return Ok((release, url, digest, crate::Trust::MirrorYaml));
    }
    let sidecar_url = format!("{url}.sha256");
    match http.get_text(&sidecar_url)? {
        Some(text) => {
            let digest = mirror::parse_sidecar(&text, &sidecar_url)?;
            Ok((release, url, digest, crate::Trust::MirrorSidecar))
        }
        // No sidecar: most often the release itself does not exist, which deserves the plainer error.
        None if !http.exists(&url)? => Err(Error::HttpStatus {
            url,
            status: 404,
            hint: " (no such file on the mirror: check the version, the arch and the mirror URL)",
        }),
        None => Err(Error::Resolve {
            spec: spec.to_string(),
            url: sidecar_url,
            reason: "the mirror publishes no checksum for this tarball and it is not pinned: pass .sha256() / --sha256"
                .to_owned(),
        }),
    }
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
