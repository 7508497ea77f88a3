//! What a fetch asks the mirror for (the `download` feature): resolving, downloading, checking the
//! signature, and remembering a mirror that could not be reached.

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Alpine, Request};
use crate::cache::{Cache, DigestLock, FailureRecord, mirror_key};
use crate::http::{Http, Kind};
use crate::resolve::{Resolved, resolve};
use crate::{Error, Progress, Rootfs, Trust, Verification};

impl Alpine {
    /// What the cache lacks, from the mirror.
    pub(super) fn online(&self, cache: &Cache, req: &Request) -> Result<Rootfs, Error> {
        // One process at a time talks to a mirror: the others then find its work in the cache, or
        // the failure it recorded.
        let _mirror = cache.lock_named(&format!("mirror-{}", mirror_key(&req.mirror)))?;
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
        let signature = http.get_text(&format!("{url}.asc"), "a .asc signature")?;
        if signature.is_none() && req.require_signature {
            return Err(Error::Signature { url, problem: crate::SignatureProblem::Missing });
        }
        let lock = cache.lock(&digest)?;
        if !cache.has_blob(&digest)? {
            self.download(&http, cache, &lock, &url, &digest, trust)?;
        }
        if let Some(expected) = sha512 {
            let blob = cache.open_blob(&digest)?;
            let actual = crate::hash::sha512_of(blob).map_err(crate::error::io("read", &url))?;
            if actual != expected {
                cache.drop_blob(&digest, &lock)?;
                return Err(Error::ChecksumMismatch { url, expected: expected.to_owned(), trust, actual });
            }
        }
        let signed_by = match signature {
            Some(sig) => Some(self.check_signature(cache, &lock, &sig, &url, &digest)?),
            None => None,
        };
        let tree = cache.ensure_tree(&digest, req.owner, &self.limits, &lock, &|| self.report(Progress::Unpacking))?;
        let verification = Verification { digest: trust, signed_by };
        self.record(cache, req, &release, &digest, url, &verification)?;
        Ok(Rootfs::cached(tree, digest, release.to_string(), req.arch, verification))
    }

    /// Verifies `signature` over the cached blob; a refused release leaves no blob behind.
    fn check_signature(
        &self,
        cache: &Cache,
        lock: &DigestLock,
        signature: &str,
        url: &str,
        digest: &str,
    ) -> Result<String, Error> {
        let refuse = |problem| Error::Signature { url: url.to_owned(), problem };
        let keys = crate::signature::trusted_keys(&self.test_keys).map_err(refuse)?;
        let open = || cache.open_blob(digest).ok().map(|f| Box::new(std::io::BufReader::new(f)) as Box<dyn Read>);
        crate::signature::verify(signature, &open, &keys).or_else(|problem| {
            cache.drop_blob(digest, lock)?;
            Err(refuse(problem))
        })
    }

    fn download(
        &self,
        http: &Http,
        cache: &Cache,
        lock: &DigestLock,
        url: &str,
        digest: &str,
        trust: Trust,
    ) -> Result<(), Error> {
        cache.put_blob(
            digest,
            lock,
            |file| http.get_into(url, Kind::Tarball, file, self.progress.as_deref()).map(drop),
            |actual| Error::ChecksumMismatch { url: url.to_owned(), expected: digest.to_owned(), trust, actual },
        )
    }
}
