//! What a fetch asks the mirror for (the `download` feature): resolving, downloading, checking the
//! signature, and remembering a mirror that could not be reached.

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Alpine, Request};
use crate::cache::{Cache, FailureRecord, mirror_key};
use crate::http::{Http, Kind};
use crate::resolve::{Resolved, resolve};
use crate::{Error, Progress, Rootfs, Verification};

impl Alpine {
    /// What the cache lacks, from the mirror.
    pub(super) fn online(&self, cache: &Cache, req: &Request) -> Result<Rootfs, Error> {
        // One process at a time talks to a mirror: the others then find its work in the cache, or
        // the failure it recorded.
        let waiting = || {
            tracing::info!(mirror = %crate::mirror::shown(&req.mirror), "waiting for another process fetching from this mirror");
            self.report(Progress::Waiting);
        };
        let _mirror = cache.lock_named_or_say(&format!("mirror-{}", mirror_key(&req.mirror)), &waiting)?;
        if let Some(rootfs) = self.cached(cache, req)? {
            return Ok(rootfs);
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let ttl = self.network.failure_ttl.as_secs();
        if let Some(f) = cache.failure(&req.mirror)
            && now.saturating_sub(f.at_unix) < ttl
        {
            let age_secs = now.saturating_sub(f.at_unix);
            return Err(Error::MirrorUnreachable {
                mirror: f.mirror,
                url: f.url,
                cause: f.cause,
                age_secs,
                left_secs: ttl - age_secs,
            });
        }
        let result = self.downloaded(cache, req);
        match &result {
            Err(e @ Error::Network { url, .. }) if ttl > 0 => {
                let cause = std::iter::successors(std::error::Error::source(e), |s| s.source())
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(": ");
                let record = FailureRecord { mirror: req.mirror.clone(), url: url.clone(), cause, at_unix: now };
                if let Err(w) = cache.put_failure(&record) {
                    tracing::warn!(error = %w, "could not record the mirror failure");
                }
            }
            Ok(_) if cache.failure(&req.mirror).is_some() => cache.clear_failure(&req.mirror)?,
            _ => {}
        }
        result
    }

    /// Resolves against the mirror, downloads what the cache lacks, checks the signature, unpacks.
    fn downloaded(&self, cache: &Cache, req: &Request) -> Result<Rootfs, Error> {
        let http = Http::new(self.network)?;
        let Resolved { release, url, digest, trust, sha512 } =
            resolve(&http, &req.mirror, &req.spec, req.arch, req.known.clone())?;
        if req.require_pin && !trust.is_pinned() {
            return Err(Error::NotPinned { url, version: release.to_string(), arch: req.arch });
        }
        // A range the mirror answers with an older release than it gave before (the index), or, in
        // strict mode, than the built-in table holds for it, is refused: a mirror must not move a
        // range back (the twenty-fifth outside review: `latest-stable` went from 3.21.0 to 3.19.0,
        // and in strict mode a genuine old release was fetched as "built-in").
        if !matches!(req.spec, crate::VersionSpec::Exact(_)) {
            // Only what this request's policy would take counts: one weaker answer (the mirror's own
            // word, once) must not block a strict or signed request for good (the twenty-sixth).
            let usable = |e: &crate::cache::IndexEntry| {
                crate::resolve::index_entry_usable(e, req.pin.as_deref(), req.require_pin, req.require_signature)
            };
            let given = cache
                .index_find(&req.mirror, req.arch, &req.spec, usable)
                .and_then(|e| e.version.parse::<crate::Release>().ok());
            let table = crate::checksums::newest_official(&req.spec, req.arch).filter(|_| req.require_pin);
            if let Some(known) = given.max(table).filter(|known| *known > release) {
                return Err(Error::Downgrade {
                    url,
                    spec: req.spec.to_string(),
                    offered: release.to_string(),
                    known: known.to_string(),
                });
            }
        }
        let signature = http.get_text(&format!("{url}.asc"), "a .asc signature")?;
        if signature.is_none() && req.require_signature {
            return Err(Error::Signature { url, problem: crate::SignatureProblem::Missing });
        }
        let lock = cache.lock(&digest)?;
        // The official sha512 and the signature, over the bytes: checked before a download enters
        // the cache (crate::cache::Cache::put_blob), and again over a blob already there.
        let check = |file: &std::fs::File| -> Result<Option<String>, Error> {
            let reader = || {
                let mut f = file.try_clone().ok()?;
                std::io::Seek::rewind(&mut f).ok()?;
                Some(Box::new(std::io::BufReader::new(f)) as Box<dyn Read>)
            };
            if let Some(expected) = sha512 {
                let bytes = reader().ok_or_else(|| crate::error::io("read", &url)(std::io::ErrorKind::Other.into()))?;
                let actual = crate::hash::sha512_of(bytes).map_err(crate::error::io("read", &url))?;
                if actual != expected {
                    let (url, expected) = (url.clone(), expected.to_owned());
                    return Err(Error::Sha512Mismatch { url, expected, actual });
                }
            }
            match &signature {
                Some(sig) => self.check_signature(sig, &url, &reader).map(Some),
                None => Ok(None),
            }
        };
        let signed_by = if cache.has_blob(&digest)? {
            let blob = cache.open_blob(&digest)?;
            check(&blob).or_else(|e| {
                cache.drop_blob(&digest, &lock)?;
                Err(e)
            })?
        } else {
            let mut signed_by = None;
            cache.put_blob(
                &digest,
                &lock,
                |file| http.get_into(&url, Kind::Tarball, file, self.progress.as_deref()).map(drop),
                |actual| Error::ChecksumMismatch { url: url.clone(), expected: digest.clone(), trust, actual },
                |file| {
                    signed_by = check(file)?;
                    Ok(())
                },
            )?;
            signed_by
        };
        let tree = cache.ensure_tree(&digest, req.owner, &self.limits, &lock, &|| self.report(Progress::Unpacking))?;
        // A signature binds the bytes to Alpine's key, not to the release or the arch asked for: a
        // mirror could serve any tarball Alpine ever signed (an older release, another arch) with its
        // genuine `.asc` (the twenty-fifth outside review). What the signed tree says it is must be
        // what was asked for. (The bytes stay cached under their own digest: they are genuine.)
        if signed_by.is_some() {
            let release_says = crate::rootfs::tree_text(&tree, &["etc", "alpine-release"]);
            let arch_says = crate::rootfs::tree_text(&tree, &["etc", "apk", "arch"]);
            let asked = release.to_string();
            let release_ok = release_says.as_deref().and_then(|v| v.split('-').next()) == Some(asked.as_str());
            let arch_ok = arch_says.as_deref().is_none_or(|a| a == req.arch.as_str());
            if !release_ok || !arch_ok {
                return Err(Error::NotWhatWasAsked {
                    url,
                    asked: format!("{asked} ({})", req.arch.as_str()),
                    found: format!(
                        "{} ({})",
                        release_says.as_deref().unwrap_or("no etc/alpine-release"),
                        arch_says.as_deref().unwrap_or("no etc/apk/arch")
                    ),
                });
            }
        }
        let verification = Verification { digest: trust, signed_by };
        self.record(cache, req, &release, &digest, url, &verification)?;
        Ok(Rootfs::cached(tree, digest, release.to_string(), req.arch, verification))
    }

    /// Verifies `signature` over the bytes `data` opens; the signer's name.
    fn check_signature(
        &self,
        signature: &str,
        url: &str,
        data: &dyn Fn() -> Option<Box<dyn Read>>,
    ) -> Result<String, Error> {
        let refuse = |problem| Error::Signature { url: url.to_owned(), problem };
        let keys = crate::signature::trusted_keys(&self.test_keys).map_err(refuse)?;
        crate::signature::verify(signature, data, &keys).map_err(refuse)
    }
}
