//! From a version request to a release, its URL and the digest to check it against, strongest
//! source first: a pin, the built-in table, then the mirror's own word. Also the rule for when an
//! index entry (what an earlier fetch resolved) may stand in for that.

#[cfg(feature = "download")]
use crate::Error;
use crate::cache::IndexEntry;
#[cfg(feature = "download")]
use crate::http::Http;
#[cfg(feature = "download")]
use crate::mirror::{self, check_digest};
use crate::{Arch, Release, Trust, VersionSpec, official_sha256};

/// A release resolved against a mirror.
#[cfg(feature = "download")]
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub release: Release,
    pub url: String,
    pub digest: String,
    pub trust: Trust,
    /// The built-in table's sha512, which the bytes must match too (then `trust` is `BuiltIn`).
    pub sha512: Option<&'static str>,
}

/// The digest known without asking anyone: the pin, else the built-in table for an exact release.
pub(crate) fn known_digest(spec: &VersionSpec, pin: Option<&str>, arch: Arch) -> Option<(String, Trust)> {
    match (spec, pin) {
        (_, Some(d)) => Some((d.to_owned(), Trust::Pinned)),
        (VersionSpec::Exact(r), None) => official_sha256(r, arch).map(|d| (d.to_owned(), Trust::BuiltIn)),
        _ => None,
    }
}

/// Whether an index entry may be used for this request. An entry never overrides a pin or the
/// built-in table: its digest must agree with both, and in strict mode its trust must be a pin's.
pub(crate) fn index_entry_usable(
    entry: &IndexEntry,
    pin: Option<&str>,
    require_pin: bool,
    require_signature: bool,
) -> bool {
    let Ok(release) = entry.version.parse::<Release>() else { return false };
    let official = official_sha256(&release, entry.arch);
    // A release the table holds by sha512 cannot be compared by sha256 here: without the same pin
    // again, only an entry whose blob was checked against the table itself may stand for it.
    let by_sha512 = crate::checksums::official_sha512(&release, entry.arch).is_some();
    pin.is_none_or(|p| p == entry.sha256)
        && official.is_none_or(|d| d == entry.sha256)
        && (!by_sha512 || pin.is_some() || matches!(entry.verification.digest, crate::Trust::BuiltIn))
        && (!require_pin || pin.is_some() || entry.verification.digest.is_pinned())
        && (!require_signature || entry.verification.signed_by.is_some())
}

/// Turns a spec into a release, its URL, its expected digest and where that digest came from.
#[cfg(feature = "download")]
pub(crate) fn resolve(
    http: &Http,
    mirror: &str,
    spec: &VersionSpec,
    arch: Arch,
    known: Option<(String, Trust)>,
) -> Result<Resolved, Error> {
    let (release, url, yaml_digest) = match spec {
        VersionSpec::Exact(r) => (*r, mirror::tarball_url(mirror, r, arch), None),
        _ => {
            let yaml_url = mirror::yaml_url(mirror, spec, arch);
            let text = http.get_text(&yaml_url, "latest-releases.yaml")?.ok_or_else(|| Error::Resolve {
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
    // A release the table knows by sha512 only: the mirror names the sha256, the table vouches.
    let sha512 = crate::checksums::official_sha512(&release, arch).filter(|_| known.is_none());
    let resolved = |digest, trust| {
        let trust = if sha512.is_some() { Trust::BuiltIn } else { trust };
        Ok(Resolved { release, url: url.clone(), digest, trust, sha512 })
    };
    if let Some((digest, trust)) =
        known.or_else(|| official_sha256(&release, arch).map(|d| (d.to_owned(), Trust::BuiltIn)))
    {
        return resolved(digest, trust);
    }
    if let Some(digest) = yaml_digest {
        return resolved(digest, Trust::MirrorYaml);
    }
    let sidecar_url = format!("{url}.sha256");
    match http.get_text(&sidecar_url, "a .sha256 file")? {
        Some(text) => resolved(mirror::parse_sidecar(&text, &sidecar_url)?, Trust::MirrorSidecar),
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
