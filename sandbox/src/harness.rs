//! What `#[sandbox_test]` expands to: build the sandbox from the options, run the test's body in it
//! with [`crate::Sandbox::run`], and turn every outcome into what libtest expects of a test. Not an API
//! of its own: use the attribute.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Network, Sandbox};

/// The attribute's options.
#[derive(Debug)]
pub struct TestOptions {
    /// `hostname = "…"`.
    pub hostname: Option<&'static str>,
    /// `network = "…"`.
    pub network: Option<Network>,
    /// `timeout = "…"`.
    pub timeout: Option<Duration>,
    /// `env(KEY = "value", …)`.
    pub env: &'static [(&'static str, &'static str)],
    /// `rootfs = "alpine:…"` or `rootfs_dir = "…"`.
    pub rootfs: RootfsOption,
    /// `sys`.
    pub sys: bool,
    /// `Builder::privileged`: the body is the host's root (as root).
    pub privileged: bool,
    /// `mount(...)`, in order.
    pub mounts: &'static [MountOption],
    /// `memory = "64M"`, in bytes.
    pub memory: Option<u64>,
    /// `pids = 64`.
    pub pids: Option<u64>,
    /// `writable_size = "2G"`, in bytes.
    pub writable_size: Option<u64>,
    /// `cpus = 0.5`.
    pub cpus: Option<f64>,
    /// `requires = "limits, switch, userns"`: what the test needs of the machine; without it the
    /// test is skipped (a `SKIP:` line), or fails in strict mode (`CI=true`, `SANDBOX_TEST_STRICT=1`).
    pub requires: &'static [&'static str],
    /// The test's `#[should_panic]`: `Some(None)` bare, `Some(Some(text))` with `expected = text`.
    pub should_panic: Option<Option<&'static str>>,
}

/// One `mount(...)` option.
#[derive(Debug, Clone, Copy)]
pub enum MountOption {
    /// `mount(bind = "…", at = "…", read_only)`; a relative source is already made absolute.
    Bind {
        /// Host path.
        source: &'static str,
        /// Path inside.
        target: &'static str,
        /// `read_only`.
        read_only: bool,
    },
    /// `mount(tmpfs = "…", size = "…")`.
    Tmpfs {
        /// Path inside.
        target: &'static str,
        /// Bytes.
        size: Option<u64>,
        /// `read_only`.
        read_only: bool,
    },
}

/// Where the test's rootfs comes from.
#[derive(Debug, Clone, Copy)]
pub enum RootfsOption {
    /// `$SANDBOX_ROOTFS`, else the pinned release from the cache, fetched on first use.
    Default,
    /// An Alpine version, as `fetch::Alpine::new` takes it.
    Alpine(&'static str),
    /// An unpacked tree.
    Dir(&'static str),
}

/// What a test body returned, in a form that crosses the process boundary.
#[derive(Debug, Serialize, Deserialize)]
pub enum Outcome {
    /// `()` or `Ok(())`.
    Passed,
    /// `Err(e)`, as `{e:?}`.
    Failed(String),
}

/// The return types a `#[sandbox_test]` body may have, as with `#[test]`.
pub trait TestResult {
    /// The outcome to report.
    fn into_outcome(self) -> Outcome;
}

impl TestResult for () {
    fn into_outcome(self) -> Outcome {
        Outcome::Passed
    }
}

impl<E: std::fmt::Debug> TestResult for Result<(), E> {
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(()) => Outcome::Passed,
            Err(e) => Outcome::Failed(format!("{e:?}")),
        }
    }
}

/// The deadline of a `#[sandbox_test]` without a `timeout` option: `$SANDBOX_TEST_TIMEOUT` (`90s`,
/// `10m`, `1h`, …; `none` for no deadline, to sit in a debugger; empty as unset), else
/// [`DEFAULT_TEST_TIMEOUT`]. A value that does not parse is an error, not the default: whoever set it
/// meant to bound the test.
fn default_test_timeout() -> Result<Option<Duration>, Error> {
    let value = std::env::var_os("SANDBOX_TEST_TIMEOUT").unwrap_or_default();
    let value = value.to_string_lossy();
    match value.trim() {
        "" => return Ok(Some(DEFAULT_TEST_TIMEOUT)),
        "none" => return Ok(None),
        _ => {}
    }
    let parsed = sandbox_validate::duration_ms(&value).map(Duration::from_millis);
    parsed.map(Some).ok_or_else(|| Error::InvalidConfig {
        what: "$SANDBOX_TEST_TIMEOUT",
        value: value.escape_debug().to_string(),
        reason: "expected a whole number above 0 with a unit (500ms, 90s, 10m, 1h), or none".into(),
    })
}

/// Five minutes: far above any sane system test, far below a CI job's limit.
pub const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(300);

fn build(options: &TestOptions) -> Result<Sandbox, Error> {
    // Said before the rootfs is looked for: inside a sandbox, the closure's clean environment has no
    // `$SANDBOX_ROOTFS` (crate::hints::nested).
    if let Some(reason) = crate::hints::nested() {
        return Err(crate::error::invalid("sandbox", "inside a sandbox", reason));
    }
    let rootfs = match options.rootfs {
        RootfsOption::Default => fetch::default_rootfs()?,
        RootfsOption::Alpine(version) => fetch::Alpine::new(version).fetch()?,
        RootfsOption::Dir(dir) => fetch::Rootfs::from_dir(dir)?,
    };
    let mut builder = Sandbox::builder().rootfs(&rootfs).sys(options.sys);
    if options.privileged {
        builder = builder.privileged();
    }
    if let Some(h) = options.hostname {
        builder = builder.hostname(h);
    }
    if let Some(n) = &options.network {
        builder = builder.network(n.clone());
    }
    // A sandbox never hangs silently: without its own `timeout`, a test gets the default deadline.
    let timeout = match options.timeout {
        Some(t) => Some(t),
        None => default_test_timeout()?,
    };
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    for (k, v) in options.env {
        builder = builder.env(*k, *v);
    }
    if let Some(m) = options.memory {
        builder = builder.memory_limit(m);
    }
    if let Some(p) = options.pids {
        builder = builder.pids_limit(p);
    }
    if let Some(bytes) = options.writable_size {
        builder = builder.writable_size(bytes);
    }
    if let Some(c) = options.cpus {
        builder = builder.cpu_limit(c);
    }
    for m in options.mounts {
        let mount = match *m {
            MountOption::Bind { source, target, read_only } => {
                let b = crate::Mount::bind(source, target);
                if read_only { b.read_only() } else { b }
            }
            MountOption::Tmpfs { target, size, read_only } => {
                let mut t = crate::Mount::tmpfs(target);
                if let Some(n) = size {
                    t = t.size(n);
                }
                if read_only { t.read_only() } else { t }
            }
        };
        builder = builder.mount(mount);
    }
    builder.build()
}

/// Runs `body` in a fresh sandbox configured by `options`; fails the test as `#[test]` would. `body`
/// is the test's function (a function item: no data), run as a closure with [`Sandbox::run`].
///
/// With `#[should_panic]`, the test passes when its body panics, or (with `expected = "…"`) when it
/// ends otherwise with a failure whose message holds the text: a timeout, a crash, the memory limit.
/// A sandbox that cannot be set up never passes it, nor does a bare `#[should_panic]` test whose
/// body never panicked (a new user's review: a missing rootfs or a timeout passed every
/// `#[should_panic]` test): the test returns, libtest fails it as "did not panic as expected", and
/// stderr says why.
///
/// # Panics
/// When the body panics (with its message, for `#[should_panic(expected = …)]`), returns `Err`, times
/// out, crashes, or when the sandbox cannot be set up; each with a message of its own.
#[track_caller]
pub fn run_test<R: TestResult, B: FnOnce() -> R + Copy>(options: &TestOptions, body: B) {
    if let Some(missing) = options.requires.iter().find_map(|r| missing(r)) {
        let strict = ["SANDBOX_TEST_STRICT", "CI"]
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|x| matches!(x.as_str(), "1" | "true" | "yes")));
        assert!(!strict, "#[sandbox_test] requirement missing (strict mode: CI or SANDBOX_TEST_STRICT=1): {missing}");
        eprintln!("SKIP: {missing}");
        // A skip passes, as a test that returns does; a #[should_panic] test passes by panicking
        // with its expected text (no hook runs: no "panicked at" line).
        if let Some(expected) = options.should_panic {
            let expected = expected.map(|text| format!(" ({text})")).unwrap_or_default();
            std::panic::resume_unwind(Box::new(format!("SKIP: {missing}{expected}")));
        }
        return;
    }
    let failure = match build(options) {
        Ok(sb) => match sb.run(move || body().into_outcome()) {
            Ok(Outcome::Passed) => return,
            Ok(Outcome::Failed(e)) => Failure::Body(format!("Error: {e}"), String::new()),
            // The child already printed "thread … panicked at file:line"; the payload goes on unchanged.
            Err(Error::Panicked { message, .. }) => std::panic::resume_unwind(Box::new(message)),
            Err(e) => ended(e),
        },
        Err(e) => ended(e),
    };
    let (text, details, passes, why) = match failure {
        Failure::Body(text, details) => {
            (text, details, options.should_panic != Some(None), "a bare #[should_panic] is met by a panic alone")
        }
        Failure::Sandbox(text) => (
            text,
            String::new(),
            options.should_panic.is_none(),
            "a sandbox that cannot be set up meets no #[should_panic]",
        ),
    };
    // The details (what a hung test was running: command lines of the test's own choosing) go to
    // stderr, not into the panic's message, which a `#[should_panic(expected = …)]` is matched
    // against: a test expecting "8080" passed when it hung in `nc 127.0.0.1 8080` (an outside review).
    if !details.is_empty() {
        eprintln!("{details}");
    }
    if passes {
        panic!("{text}");
    }
    eprintln!("{text}\n(#[sandbox_test]: the body did not panic; {why})");
}

/// How a test failed when its body did not panic.
enum Failure {
    /// The body's own doing: it returned `Err`, ran past its timeout, crashed, exited, or ran out of
    /// memory; and details printed apart from the message.
    Body(String, String),
    /// The sandbox could not be had: no rootfs, a failed setup, an invalid option.
    Sandbox(String),
}

/// The failure `e` (any but a panic of the body) says, in its own words.
fn ended(e: Error) -> Failure {
    match e {
        Error::TimedOut { after, doing } => {
            let doing = match doing.is_empty() {
                true => "#[sandbox_test]: no word from the sandbox's init of what it was running".to_owned(),
                false => format!(
                    "#[sandbox_test]: when its deadline passed, the test's sandbox was running:{}",
                    doing.iter().map(|l| format!("\n  {l}")).collect::<String>()
                ),
            };
            Failure::Body(
                format!("#[sandbox_test] timed out after {after:?}: every process in the test's sandbox was killed"),
                doing,
            )
        }
        // A body that ends its process itself (std::process::exit) never returns its outcome.
        Error::Crashed { status } if status.code().is_some() => Failure::Body(
            format!(
                "the test's process ended inside its sandbox with {status} before the test returned (std::process::exit in the test?)"
            ),
            String::new(),
        ),
        Error::Crashed { status } => Failure::Body(
            format!("the test's process died inside its sandbox: {status} (a crash or abort in the test, or a kill)"),
            String::new(),
        ),
        e @ Error::MemoryLimitExceeded { .. } => Failure::Body(e.to_string(), String::new()),
        e @ Error::Rootfs(_) => Failure::Sandbox(format!("#[sandbox_test] has no rootfs: {}", crate::error_chain(&e))),
        e @ (Error::Setup { .. } | Error::InvalidConfig { .. }) => {
            Failure::Sandbox(format!("#[sandbox_test] could not set up the test's sandbox: {}", crate::error_chain(&e)))
        }
        e => Failure::Sandbox(format!("#[sandbox_test] failed: {}", crate::error_chain(&e))),
    }
}

/// Why this machine cannot give a test what `requirement` names, if it cannot.
fn missing(requirement: &str) -> Option<String> {
    let root = nix::unistd::geteuid().is_root();
    let sysctl = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    match requirement {
        "switch" if !root => Some("a switch network needs root".to_owned()),
        "userns"
            if !root
                && (sysctl("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0")
                    || sysctl("/proc/sys/user/max_user_namespaces").as_deref() == Some("0")) =>
        {
            Some("unprivileged user namespaces are disabled on this machine".to_owned())
        }
        // Ubuntu 23.10 and later: a binary without an AppArmor profile that allows `userns` (a test
        // binary has none) gets no user namespace it can use (the 34th outside review: the test
        // failed instead of skipping).
        "userns"
            if !root && sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") =>
        {
            Some(
                "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)"
                    .to_owned(),
            )
        }
        "limits" => crate::cgroups::unusable_reason(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Errors: errno text printed twice in a chain, since Display repeated the #[source].
    #[test]
    fn the_chain_names_the_errno_once() {
        let e = Error::Setup {
            step: "mount /proc".into(),
            path: Some("/proc".into()),
            source: std::io::Error::from_raw_os_error(libc::EPERM),
            hint: None,
        };
        let text = crate::error_chain(&e);
        assert_eq!(text.matches("Operation not permitted").count(), 1, "{text}");
        assert!(text.starts_with("sandbox setup failed: mount /proc `/proc`: Operation not permitted"), "{text}");
    }
}
