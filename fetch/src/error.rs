//! The crate's error type: every variant names the operation and the object it failed on.

use std::path::PathBuf;

/// Everything that can go wrong while resolving, downloading, verifying, caching or unpacking a rootfs.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The version string is neither `X.Y.Z`, `X.Y` nor `latest-stable`.
    #[error(
        "invalid Alpine version `{input}`: expected `X.Y.Z` (exact), `X.Y` (latest patch of a branch) or `latest-stable`"
    )]
    InvalidVersion {
        /// What was given.
        input: String,
    },
    /// The architecture name is not one Alpine publishes.
    #[error("unknown Alpine architecture `{name}`: expected one of {known}")]
    UnknownArch {
        /// What was given.
        name: String,
        /// The names Alpine publishes, comma-separated.
        known: &'static str,
    },
    /// The mirror URL (`.mirror()`, `$SANDBOX_ALPINE_MIRROR`) is no base folder URL: no `http://` or
    /// `https://`, or a `?query` or `#fragment`, which the paths appended to it would land in.
    #[error(
        "invalid mirror URL `{mirror}`: {reason}; give the folder holding `v3.20/` and `latest-stable/`, e.g. {example}",
        mirror = crate::mirror::shown_refused(.mirror), example = crate::mirror::DEFAULT_MIRROR
    )]
    InvalidMirror {
        /// What was given.
        mirror: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `.sha256()` pin or a sidecar is not 64 hex digits.
    #[error("invalid sha256 `{value}` ({origin}): expected 64 hexadecimal digits", origin = crate::mirror::shown(.origin))]
    InvalidDigest {
        /// What was given.
        value: String,
        /// Where it came from (a pin, a sidecar URL, …).
        origin: String,
    },
    /// The server answered with an error status.
    #[error("GET {url} failed: HTTP {status}{hint}", url = crate::mirror::shown(.url))]
    HttpStatus {
        /// The URL asked for.
        url: String,
        /// The status code.
        status: u16,
        /// A suggestion (for 404: check the version and arch).
        hint: &'static str,
    },
    /// The HTTP client could not be set up, before any request: most often a system without CA
    /// certificates, which the TLS verifier loads from the system.
    #[error(
        "cannot set up the HTTP client for downloads (a system without CA certificates has to install them: \
         `apt-get install ca-certificates` on Debian and Ubuntu, `apk add ca-certificates` on Alpine); or \
         set $SANDBOX_ROOTFS to an Alpine minirootfs tarball or unpacked tree, and nothing is downloaded"
    )]
    HttpClient {
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The request failed below HTTP: DNS, connect, TLS, timeout, truncated body.
    #[error("GET {url} failed after {attempts} attempt(s); {hint}", hint = OFFLINE_HINT, url = crate::mirror::shown(.url))]
    Network {
        /// The URL asked for.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An earlier process on this machine found the mirror unreachable moments ago; this one did not
    /// try again (see [`crate::NetworkPolicy::failure_ttl`]).
    #[error(
        "mirror {mirror} was unreachable {age_secs} s ago (GET {url}: {cause}); not retrying for another {left_secs} s; {hint}",
        hint = OFFLINE_HINT, url = crate::mirror::shown(.url), mirror = crate::mirror::shown(.mirror))]
    MirrorUnreachable {
        /// The mirror's base URL.
        mirror: String,
        /// The URL that failed.
        url: String,
        /// What the failing process saw, as text.
        cause: String,
        /// How long ago that was.
        age_secs: u64,
        /// How long until the next process tries again.
        left_secs: u64,
    },
    /// The mirror answered with redirects that do not end (a loop, or more than the client follows):
    /// a fault of the mirror's configuration, not of the network; not retried, and the mirror is not
    /// recorded as unreachable.
    #[error(
        "GET {url} failed: the mirror redirects without end (a loop, or more than 10; the last to {last}); fix the mirror URL or the mirror",
        url = crate::mirror::shown(.url), last = crate::mirror::shown(.last))]
    Redirects {
        /// The URL asked for.
        url: String,
        /// The last URL it was sent to.
        last: String,
    },
    /// The server sent more than the cap for this kind of file.
    #[error(
        "GET {url} refused: the response is larger than {limit} bytes, the cap for {what}; raise NetworkPolicy::{knob} if it is genuine{env}",
        env = if *knob == "max_tarball_bytes" { " ($SANDBOX_MAX_TARBALL_BYTES outside code)" } else { "" }, url = crate::mirror::shown(.url))]
    DownloadTooLarge {
        /// The URL asked for.
        url: String,
        /// The cap, in bytes.
        limit: u64,
        /// What was being downloaded.
        what: &'static str,
        /// The `NetworkPolicy` field that sets the cap.
        knob: &'static str,
    },
    /// The download did not finish within the overall deadline, however steadily bytes arrived.
    #[error(
        "GET {url} did not finish within {deadline:?} (NetworkPolicy::deadline): the mirror is too slow or drips; try another mirror", url = crate::mirror::shown(.url))]
    DownloadDeadline {
        /// The URL asked for.
        url: String,
        /// The deadline.
        deadline: std::time::Duration,
    },
    /// The release's OpenPGP signature is missing (and required), malformed or bad.
    #[error("refusing {url}: signature check failed", url = crate::mirror::shown(.url))]
    Signature {
        /// The tarball's URL.
        url: String,
        /// What was wrong.
        #[source]
        problem: crate::SignatureProblem,
    },
    /// The cache directory, or a folder in it, belongs to someone else or is writable by others.
    #[error(
        "refusing cache directory `{path}`: it belongs to uid {owner} with mode {mode:04o}, but must belong to uid {uid} (you) and not be writable by group or others; remove it (or `chmod go-w` it, if it is yours), or choose another with $SANDBOX_CACHE_DIR or .cache_dir()"
    )]
    CacheNotPrivate {
        /// The folder.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
        /// The caller's uid.
        uid: u32,
    },
    /// A folder or link on the way to the cache directory belongs to another user, or a folder on
    /// the way is writable by others and not sticky: they could put a cache of their own in its
    /// place between two uses (the twenty-second outside review: as root, a tree of another user's
    /// making ran as root inside with root's read-write volumes).
    #[error(
        "refusing cache directory `{cache}`: `{path}` on the way to it belongs to uid {owner} with mode {mode:04o}, so another user could put a cache of their own in its place; every folder and link on the way must belong to root or uid {uid} (you), and a folder others may write must be sticky (as /tmp is); choose another with $SANDBOX_CACHE_DIR or .cache_dir() (as root, e.g. /var/cache/sandbox)"
    )]
    CachePathNotSafe {
        /// The cache directory asked for.
        cache: PathBuf,
        /// The folder or link on the way.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
        /// The caller's uid.
        uid: u32,
    },
    /// The downloaded bytes do not have the expected digest; nothing of them was kept.
    #[error("sha256 mismatch for {url}: expected {expected} ({trust}), got {actual}; the download was discarded", url = crate::mirror::shown(.url))]
    ChecksumMismatch {
        /// The URL the bytes came from.
        url: String,
        /// The digest that was expected.
        expected: String,
        /// Where the expected digest came from.
        trust: crate::Trust,
        /// The digest of what arrived.
        actual: String,
    },
    /// The downloaded bytes do not have the sha512 Alpine published for the release (the built-in
    /// table's); nothing of them was kept.
    #[error(
        "sha512 mismatch for {url}: expected {expected} (built-in official checksum), got {actual}; the download was discarded", url = crate::mirror::shown(.url))]
    Sha512Mismatch {
        /// The URL the bytes came from.
        url: String,
        /// The sha512 that was expected.
        expected: String,
        /// The sha512 of what arrived.
        actual: String,
    },
    /// The mirror answered a range (`X.Y`, `latest-stable`) with an older release than one already
    /// known to stand for it: what it gave before, or (strict mode) the built-in table's.
    #[error(
        "refusing {url}: the mirror answers {spec} with Alpine {offered}, older than {known}, which is already known for it; a mirror must not move a range back (ask for {offered} by name to fetch it, or use another mirror; if {known} was never right, remove its entry from the cache's index/ folder)", url = crate::mirror::shown(.url))]
    Downgrade {
        /// The tarball's URL.
        url: String,
        /// The range asked for.
        spec: String,
        /// The release the mirror named.
        offered: String,
        /// The newer release known for the range.
        known: String,
    },
    /// A signed tarball holds another release or arch than the one asked for (its
    /// `etc/alpine-release`, `etc/apk/arch`): the mirror serves a genuine but other tarball under
    /// this name.
    #[error(
        "refusing {url}: it holds Alpine {found}, not {asked} as asked; its signature is Alpine's, but for another release: the mirror serves another tarball under this name, use another mirror", url = crate::mirror::shown(.url))]
    NotWhatWasAsked {
        /// The tarball's URL.
        url: String,
        /// The release and arch asked for.
        asked: String,
        /// What the tarball says it is.
        found: String,
    },
    /// `$SANDBOX_REQUIRE_PIN=1` and the digest would only come from the mirror itself.
    #[error(
        "refusing {url}: $SANDBOX_REQUIRE_PIN=1 and Alpine {version} ({arch}) is neither pinned with .sha256() nor in the built-in table of official checksums; pin it (`cargo xtask fetch-rootfs --sha256`, `.sha256(\"…\")` in code) or unset SANDBOX_REQUIRE_PIN", url = crate::mirror::shown(.url))]
    NotPinned {
        /// The tarball's URL.
        url: String,
        /// The resolved version.
        version: String,
        /// The architecture.
        arch: crate::Arch,
    },
    /// The mirror's `latest-releases.yaml` has no usable `alpine-minirootfs` entry.
    #[error("cannot resolve Alpine `{spec}` from {url}: {reason}", url = crate::mirror::shown(.url))]
    Resolve {
        /// The version asked for.
        spec: String,
        /// The `latest-releases.yaml` URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// Offline, and the cache does not hold the rootfs.
    #[error(
        "Alpine {spec} ({arch}) from {mirror} is not in the cache at `{cache}` and fetching is offline \
         ($SANDBOX_OFFLINE=1 or .offline(true)); {hint}",
        hint = not_cached_hint(spec, *default), mirror = crate::mirror::shown(.mirror))]
    NotCached {
        /// The version asked for.
        spec: String,
        /// The architecture.
        arch: crate::Arch,
        /// The mirror it would come from: the cache keeps what it fetched by mirror.
        mirror: String,
        /// Whether it was asked for as the default rootfs ([`crate::default_rootfs`]), for which
        /// `$SANDBOX_ROOTFS` stands in.
        default: bool,
        /// The cache directory that was searched.
        cache: PathBuf,
    },
    /// The cache holds no rootfs from this mirror for the request, and this build cannot download (the
    /// `download` feature is off).
    #[error(
        "Alpine {spec} ({arch}) from {mirror} is not in the cache at `{cache}`, and this build cannot download it \
         (the `download` feature of sandbox and sandbox-fetch is off); fill the cache with a build that can, with \
         the same $SANDBOX_CACHE_DIR and $SANDBOX_ALPINE_MIRROR (`sandbox-run --rootfs alpine:{spec} -- true`, or \
         `cargo xtask fetch-rootfs --version {spec}` in the sandbox workspace), turn the feature on, or use a \
         local tarball or tree ($SANDBOX_ROOTFS for the default rootfs, `rootfs_dir = \"…\"` in \
         #[sandbox_test], `Rootfs::from_tarball` or `Rootfs::from_dir` in code)", mirror = crate::mirror::shown(.mirror))]
    CannotDownload {
        /// The version asked for.
        spec: String,
        /// The architecture.
        arch: crate::Arch,
        /// The cache directory that was searched.
        cache: PathBuf,
        /// The mirror whose releases were looked for.
        mirror: String,
    },
    /// No cache directory could be chosen.
    #[error(
        "no cache directory: none of $SANDBOX_CACHE_DIR, $XDG_CACHE_HOME and $HOME is set; set $SANDBOX_CACHE_DIR or call .cache_dir()"
    )]
    NoCacheDir,
    /// `$SANDBOX_ROOTFS` (or a path given to [`crate::Rootfs`]) is neither a tarball nor a directory.
    #[error("rootfs `{path}` is neither a .tar.gz file nor a directory ({reason})")]
    BadRootfsPath {
        /// The path.
        path: PathBuf,
        /// What was found there.
        reason: String,
    },
    /// A filesystem operation failed.
    #[error("failed to {op} `{path}`")]
    Io {
        /// The operation, as a verb phrase ("create directory", "rename", …).
        op: &'static str,
        /// The path it was applied to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The archive could not be unpacked; nothing of it entered the cache.
    #[error("failed to unpack `{archive}`")]
    Unpack {
        /// The tarball.
        archive: PathBuf,
        /// Why.
        #[source]
        source: crate::unpack::UnpackError,
    },
}

/// The message with its causes, as `Display` and each `source()` say them: what `unwrap()`, `expect`
/// and a test returning `Err` print (a new user's review: the derived form showed the variant's
/// fields and hid what to do).
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fmt_chain(self, f)
    }
}

/// What a machine without the network can do, in any project (not only this workspace).
pub(crate) const OFFLINE_HINT: &str = "without network access, fetch once while online in a pre-fetch step (`cargo xtask fetch-rootfs` in this workspace, `sandbox::fetch::Alpine::default().fetch()` in your own) and keep the cache directory between CI runs (README: \"Caching the rootfs in CI\"); where the default rootfs is used (no version named), $SANDBOX_ROOTFS set to an Alpine minirootfs tarball or unpacked tree stands in for it";

/// How to get `spec` into the cache, or do without it; `default`: asked for as the default rootfs.
fn not_cached_hint(spec: &str, default: bool) -> String {
    let fetch = format!(
        "fetch it once while online, from the same mirror ($SANDBOX_ALPINE_MIRROR), in a pre-fetch step (`cargo \
         xtask fetch-rootfs --version {spec}` in this workspace, `sandbox-run --rootfs alpine:{spec} -- true`, or \
         `sandbox::fetch::Alpine::new(\"{spec}\").fetch()` in a build with the `download` feature) and keep the \
         cache directory between CI runs (README: \"Caching the rootfs in CI\")"
    );
    if default {
        format!("set $SANDBOX_ROOTFS to an Alpine minirootfs tarball or unpacked tree, or {fetch}")
    } else {
        format!("{fetch}; $SANDBOX_ROOTFS stands in for the default rootfs only, not for a version named in the code")
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds the `Error::Io` for `op` on `path`; used as `.map_err(io("create", &p))`.
pub(crate) fn io<P: Into<PathBuf>>(op: &'static str, path: P) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}

/// Writes `error` and its causes (each `source()`), joined by `: `: the `Debug` of this crate's and
/// `sandbox`'s errors.
#[doc(hidden)]
pub fn fmt_chain(error: &dyn std::error::Error, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    write!(f, "{error}")?;
    let mut next = error.source();
    while let Some(e) = next {
        write!(f, ": {e}")?;
        next = e.source();
    }
    Ok(())
}
