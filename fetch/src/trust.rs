//! Where the expected digest of a tarball came from, and whether a signature vouched for it.

use std::fmt;

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

/// Whether a release must carry a good OpenPGP signature (`<tarball>.asc`).
///
/// A signature the mirror publishes is always checked, and a bad one always refused; the policy only
/// decides what happens when there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Signature {
    /// Verify the `.asc` when the mirror has one; accept an unsigned release (its digest is still
    /// checked). The default, unless `$SANDBOX_REQUIRE_SIGNATURE=1`.
    #[default]
    IfPresent,
    /// Refuse a release without a good signature by a trusted key.
    Required,
}

/// How the tarball behind a tree was verified, as [`crate::Rootfs::verification`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verification {
    /// Where the digest the bytes were checked against came from.
    pub digest: Trust,
    /// The fingerprint (upper-case hex) of the key whose good signature was checked over the tarball,
    /// if one was.
    pub signed_by: Option<String>,
}

impl Verification {
    /// The verification kinds as words, strongest first: `signature`, then the digest's source
    /// (`pinned`, `built-in`, `mirror-yaml`, `mirror-sidecar`, `local-file`).
    pub fn kinds(&self) -> Vec<&'static str> {
        let digest = match self.digest {
            Trust::Pinned => "pinned",
            Trust::BuiltIn => "built-in",
            Trust::MirrorYaml => "mirror-yaml",
            Trust::MirrorSidecar => "mirror-sidecar",
            Trust::LocalFile => "local-file",
        };
        let mut kinds = Vec::new();
        if self.signed_by.is_some() {
            kinds.push("signature");
        }
        kinds.push(digest);
        kinds
    }
}
