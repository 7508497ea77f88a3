//! HTTP GET with timeouts, size caps, an overall deadline and retries (the `download` feature).

use std::io::{Read, Write};
use std::time::Instant;

use crate::Error;
use crate::download::{NetworkPolicy, Progress, ProgressFn};

/// What is being downloaded: sets the size cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tarball,
    Text(&'static str),
}

pub(crate) struct Http {
    client: reqwest::blocking::Client,
    policy: NetworkPolicy,
}

/// Whether a failure may go away on its own.
enum Failure {
    Transient(Box<dyn std::error::Error + Send + Sync>),
    Final(Error),
}

impl Http {
    pub(crate) fn new(policy: NetworkPolicy) -> Result<Http, Error> {
        let builder = reqwest::blocking::Client::builder();
        // glibc linked in: host names through getent where NSS would load a module (crate::getent).
        #[cfg(all(target_env = "gnu", target_feature = "crt-static"))]
        let builder = if crate::getent::builtin_only("hosts") {
            builder
        } else {
            builder.dns_resolver(std::sync::Arc::new(crate::getent::Getent { timeout: policy.connect_timeout }))
        };
        let client = builder
            .connect_timeout(policy.connect_timeout)
            // The blocking client applies this to the wait for the response headers and to each read
            // of the body, not to the whole transfer: a slow but steady download is never cut, a
            // silent server is.
            .timeout(policy.stall_timeout)
            .user_agent(concat!("sandbox-fetch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::HttpClient { source: Box::new(e) })?;
        Ok(Http { client, policy })
    }

    /// The body of `url` (a small text file: `what`) as text, or `None` on 404.
    pub(crate) fn get_text(&self, url: &str, what: &'static str) -> Result<Option<String>, Error> {
        let mut body = Vec::new();
        match self.get_into(url, Kind::Text(what), &mut body, None) {
            Ok(_) => Ok(Some(String::from_utf8_lossy(&body).into_owned())),
            Err(Error::HttpStatus { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether `url` exists (HEAD answers 2xx), retrying transient failures like a download.
    pub(crate) fn exists(&self, url: &str) -> Result<bool, Error> {
        let mut last = None;
        let mut wait = self.policy.backoff;
        for attempt in 1..=self.policy.attempts.max(1) {
            match self.client.head(url).send() {
                Ok(r) if r.status().is_success() => return Ok(true),
                Ok(r) if r.status().as_u16() == 404 || r.status().as_u16() == 410 => return Ok(false),
                Ok(r) => last = Some(Box::<dyn std::error::Error + Send + Sync>::from(format!("HTTP {}", r.status()))),
                Err(e) if e.is_redirect() => return Err(redirects(url, &e)),
                Err(e) => last = Some(Box::new(e.without_url())),
            }
            if attempt < self.policy.attempts {
                std::thread::sleep(wait);
                wait = wait.saturating_mul(2);
            }
        }
        Err(Error::Network {
            url: url.to_owned(),
            attempts: self.policy.attempts.max(1),
            source: last.unwrap_or_else(|| "no attempt made".into()),
        })
    }

    /// Streams `url` into `out`, returning the length of what was written. Each retry starts `out`
    /// over, so `out` must be truncatable: pass a fresh buffer or file.
    pub(crate) fn get_into<W: Write + Rewind>(
        &self,
        url: &str,
        kind: Kind,
        out: &mut W,
        progress: Option<&ProgressFn>,
    ) -> Result<u64, Error> {
        let mut wait = self.policy.backoff;
        let attempts = self.policy.attempts.max(1);
        let deadline = Instant::now() + self.policy.deadline;
        for attempt in 1..=attempts {
            out.rewind_to_start().map_err(|e| Error::Network {
                url: url.to_owned(),
                attempts: attempt,
                source: Box::new(e),
            })?;
            match self.try_once(url, kind, deadline, out, progress) {
                Ok(done) => return Ok(done),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Transient(source)) if attempt == attempts => {
                    return Err(Error::Network { url: url.to_owned(), attempts, source });
                }
                Err(Failure::Transient(_)) if Instant::now() + wait > deadline => {
                    return Err(Error::DownloadDeadline { url: url.to_owned(), deadline: self.policy.deadline });
                }
                Err(Failure::Transient(source)) => {
                    tracing::warn!(url = %crate::mirror::shown(url), attempt, error = %source, "download failed, retrying in {wait:?}");
                    std::thread::sleep(wait);
                    wait = wait.saturating_mul(2);
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    fn try_once<W: Write>(
        &self,
        url: &str,
        kind: Kind,
        deadline: Instant,
        out: &mut W,
        progress: Option<&ProgressFn>,
    ) -> Result<u64, Failure> {
        let mut resp = self.client.get(url).send().map_err(|e| failure(url, e))?;
        let status = resp.status();
        if !status.is_success() {
            if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
                return Err(Failure::Transient(format!("HTTP {status}").into()));
            }
            let hint = if status.as_u16() == 404 {
                " (no such file on the mirror: check the version, the arch and the mirror URL)"
            } else {
                ""
            };
            return Err(Failure::Final(Error::HttpStatus { url: url.to_owned(), status: status.as_u16(), hint }));
        }
        let total = resp.content_length();
        let (limit, what, knob) = match kind {
            Kind::Tarball => (self.policy.max_tarball_bytes, "a tarball", "max_tarball_bytes"),
            Kind::Text(what) => (self.policy.max_text_bytes, what, "max_text_bytes"),
        };
        let too_large = || Failure::Final(Error::DownloadTooLarge { url: url.to_owned(), limit, what, knob });
        if total.is_some_and(|t| t > limit) {
            return Err(too_large());
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut done = 0u64;
        if let Some(p) = progress {
            p(Progress::Downloading { done, total });
        }
        loop {
            let n = match resp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if Instant::now() >= deadline => {
                    tracing::debug!(url = %crate::mirror::shown(url), error = %e, "read failed past the deadline");
                    return Err(Failure::Final(Error::DownloadDeadline {
                        url: url.to_owned(),
                        deadline: self.policy.deadline,
                    }));
                }
                Err(e) => return Err(Failure::Transient(Box::new(e))),
            };
            done += n as u64;
            if done > limit {
                return Err(too_large());
            }
            if Instant::now() >= deadline {
                return Err(Failure::Final(Error::DownloadDeadline {
                    url: url.to_owned(),
                    deadline: self.policy.deadline,
                }));
            }
            out.write_all(&buf[..n]).map_err(|e| Failure::Final(write_error(url, e)))?;
            if let Some(p) = progress {
                p(Progress::Downloading { done, total });
            }
        }
        if let Some(expected) = total
            && done != expected
        {
            return Err(Failure::Transient(format!("body truncated: got {done} of {expected} announced bytes").into()));
        }
        out.flush().map_err(|e| Failure::Final(write_error(url, e)))?;
        Ok(done)
    }
}

fn write_error(url: &str, source: std::io::Error) -> Error {
    Error::Io { op: "write the download of", path: url.into(), source }
}

/// A sink that a retry can start over.
pub(crate) trait Rewind {
    fn rewind_to_start(&mut self) -> std::io::Result<()>;
}

impl Rewind for Vec<u8> {
    fn rewind_to_start(&mut self) -> std::io::Result<()> {
        self.clear();
        Ok(())
    }
}

impl Rewind for std::fs::File {
    fn rewind_to_start(&mut self) -> std::io::Result<()> {
        self.set_len(0)?;
        std::io::Seek::rewind(self)
    }
}

/// A failed request: final when the mirror redirects without end, transient otherwise (connect,
/// TLS, reset, timeout).
fn failure(url: &str, e: reqwest::Error) -> Failure {
    if e.is_redirect() {
        return Failure::Final(redirects(url, &e));
    }
    Failure::Transient(Box::new(e.without_url()))
}

/// [`Error::Redirects`] for `url`, naming the last place `e` was sent to.
fn redirects(url: &str, e: &reqwest::Error) -> Error {
    Error::Redirects { url: url.to_owned(), last: e.url().map_or_else(|| url.to_owned(), |u| u.as_str().to_owned()) }
}
