//! How downloads behave (timeouts, size caps, deadline, retries) and how they report progress: plain
//! data, there with or without the `download` feature; `crate::http` does the downloading.

use std::time::Duration;

/// How downloads behave on a slow or flaky network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// How long to wait for a TCP (and TLS) connection. Default: 15 s.
    pub connect_timeout: Duration,
    /// How long a response may send nothing before it counts as stalled. Default: 30 s.
    pub stall_timeout: Duration,
    /// Attempts per URL for transient failures (connection errors, timeouts, truncated bodies, HTTP 5xx
    /// and 429). Default: 4.
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each further one. Default: 250 ms.
    pub backoff: Duration,
    /// The longest one URL may take, all attempts together, however steadily bytes arrive (a server
    /// that drips a byte a second never stalls). Default: 10 min.
    pub deadline: Duration,
    /// The most bytes a tarball may have. Default: 256 MiB ($SANDBOX_MAX_TARBALL_BYTES overrides it);
    /// an Alpine minirootfs has about 3.5 MiB.
    pub max_tarball_bytes: u64,
    /// The most bytes a `latest-releases.yaml`, `.sha256` or `.asc` may have. Default: 1 MiB.
    pub max_text_bytes: u64,
    /// How long a failure to reach the mirror is remembered, so that the other processes of a test run
    /// fail at once with the same message instead of each retrying. Default: 60 s.
    pub failure_ttl: Duration,
}

impl Default for NetworkPolicy {
    fn default() -> Self {
        let max_tarball_bytes =
            std::env::var("SANDBOX_MAX_TARBALL_BYTES").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(256 << 20);
        NetworkPolicy {
            connect_timeout: Duration::from_secs(15),
            stall_timeout: Duration::from_secs(30),
            attempts: 4,
            backoff: Duration::from_millis(250),
            deadline: Duration::from_secs(600),
            max_tarball_bytes,
            max_text_bytes: 1 << 20,
            failure_ttl: Duration::from_secs(60),
        }
    }
}

/// Progress of a download, as handed to the callback of [`crate::Alpine::progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// Bytes received so far, and the size the server announced.
    Downloading {
        /// Bytes received.
        done: u64,
        /// `Content-Length`, if sent.
        total: Option<u64>,
    },
    /// The tarball is verified and is being unpacked.
    Unpacking,
    /// Another process on this machine is fetching from the same mirror: this one waits until it is
    /// done (and then finds its work in the cache, or the failure it recorded). Said once, before
    /// the wait.
    Waiting,
}

pub(crate) type ProgressFn = dyn Fn(Progress) + Send + Sync;
