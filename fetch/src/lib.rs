//! Alpine minirootfs trees for sandboxes: resolved, downloaded, verified, cached and unpacked safely,
//! once per machine.
//!
//! ```no_run
//! let rootfs = fetch::Alpine::new("3.20.3").fetch()?; // or fetch::default_rootfs()
//! println!("Alpine {:?} at {}", rootfs.version(), rootfs.path().display());
//! # Ok::<(), fetch::Error>(())
//! ```
//!
//! # How it works
//! A version (`3.20.3`, `3.20`, `latest-stable`) is resolved against the mirror's CDN layout
//! (`latest-releases.yaml` for branches). The tarball's expected sha256 comes, strongest first, from an
//! explicit pin, the built-in table of official checksums ([`official_sha256`]), or the mirror's own
//! `latest-releases.yaml` / `.sha256` sidecar. The download is hashed as it streams into a temporary
//! file in the cache and renamed into place only when the digest matches. The tarball is then unpacked
//! by [`unpack()`], which refuses anything that could write outside the tree.
//!
//! The cache is content-addressed and shared between processes: a per-digest `flock(2)` makes sixteen
//! test processes that ask for the same rootfs at once download and unpack it exactly once. An exact
//! release with a known digest that is already cached costs no network request at all.
//!
//! # Environment
//! | variable | effect |
//! |---|---|
//! | `SANDBOX_ALPINE_VERSION` | the default release (else [`DEFAULT_RELEASE`]) |
//! | `SANDBOX_ALPINE_MIRROR` | the mirror (else [`DEFAULT_MIRROR`]) |
//! | `SANDBOX_CACHE_DIR` | the cache (else `$XDG_CACHE_HOME/sandbox`, else `~/.cache/sandbox`) |
//! | `SANDBOX_OFFLINE=1` | cache only |
//! | `SANDBOX_REQUIRE_PIN=1` | refuse digests that only the mirror vouches for |
//! | `SANDBOX_REQUIRE_SIGNATURE=1` | refuse releases without a good signature ([`Signature::Required`]) |
//! | `SANDBOX_MAX_TARBALL_BYTES` | the tarball size cap ([`NetworkPolicy::max_tarball_bytes`]) |
//! | `SANDBOX_ROOTFS` | a tarball or a directory used by [`default_rootfs`] instead of any download |
//!
//! # Features
//! `download` (on by default) is what talks to a mirror: reqwest with rustls, and pgp for signatures.
//! Without it (`default-features = false`) the crate builds in a fraction of the time, and a fetch is
//! served by the cache alone: a release the cache holds (filled by a build with the feature, with the
//! same cache directory and mirror), a local tarball ([`Rootfs::from_tarball`]) or tree ([`Rootfs::from_dir`]),
//! `$SANDBOX_ROOTFS`; anything else is [`Error::CannotDownload`], which says how to fill the cache.
//!
//! # Security
//! A mismatching download never enters the cache; a `.asc` signature the mirror publishes is checked
//! against Alpine's key ([`ALPINE_KEY_FINGERPRINT`]). Downloads are capped in size and time. A hostile
//! archive (`..`, absolute paths, writes through symlinks, hard links out of the tree, device nodes,
//! sparse files, bombs, deep paths, truncation) is refused before it writes anything outside its
//! temporary directory, which is then removed. The cache is used only if it belongs to the caller and
//! nobody else can write it; its `v1/` folder is private (0700), files in it are opened by descriptor
//! without following symlinks, and a blob is hashed again each time it becomes a tree.
//!
//! # Resource leaking
//! A process killed mid-download or mid-unpack leaves a partial entry under `tmp/`; it is never read,
//! and the next process that takes that digest's lock (or any `fetch`, which sweeps) removes it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod alpine;
mod arch;
mod at;
mod cache;
mod checksums;
mod download;
mod error;
// Used by static builds only (here and by sandbox's subordinate ids); its tests run in every build.
#[doc(hidden)]
#[cfg_attr(not(all(target_env = "gnu", target_feature = "crt-static", feature = "download")), allow(dead_code))]
pub mod getent;
mod hash;
#[cfg(feature = "download")]
mod http;
mod mirror;
mod resolve;
mod rootfs;
mod signature;
mod trust;
pub mod unpack;
mod version;
pub mod way;

pub use alpine::{Alpine, default_cache_dir};
pub use arch::Arch;
pub use checksums::{DEFAULT_RELEASE, OfficialDigest, official_digest, official_sha256};
pub use download::{NetworkPolicy, Progress};
pub use error::{Error, Result, fmt_chain};
pub use mirror::DEFAULT_MIRROR;
pub use rootfs::{Rootfs, default_rootfs};
pub use signature::{ALPINE_KEY_FINGERPRINT, SignatureProblem};
pub use trust::{Signature, Trust, Verification};
pub use unpack::{Ownership, UnpackError, UnpackLimits, UnpackStats, unpack};
pub use version::{Release, VersionSpec};
