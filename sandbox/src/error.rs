//! The crate's error type. Every message names the operation and its object, and where the kernel
//! refused something, what to do about it.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while building, starting or running a sandbox.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A builder or command setting is invalid; nothing was started.
    #[error("invalid {what} `{value}`: {reason}")]
    InvalidConfig {
        /// The setting ("hostname", "current_dir", …).
        what: &'static str,
        /// The value given, escaped for display.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The rootfs could not be fetched or opened.
    #[error(transparent)]
    Rootfs(#[from] fetch::Error),
    /// The program could not be started inside the sandbox (`source.kind()` is `NotFound` for a
    /// program missing from the rootfs, as with `std::process::Command`).
    #[error("failed to execute `{program}` in the sandbox{}", missing_suffix(source))]
    Spawn {
        /// The program, as given.
        program: String,
        /// Why exec failed.
        #[source]
        source: io::Error,
    },
    /// A setup step failed inside the new namespaces; nothing of the sandbox remains.
    #[error("sandbox setup failed: {step}{}{}", path_suffix(path), hint_suffix(hint))]
    Setup {
        /// The step, e.g. "mount the overlay root".
        step: String,
        /// The path it acted on, if any.
        path: Option<String>,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
        /// What to do about it, when known.
        hint: Option<String>,
    },
    /// The sandbox's memory limit was exceeded and the kernel's OOM killer ended its program.
    #[error("memory limit of {} exceeded{}: the kernel's OOM killer ended the program", mib(*limit), peak.map(|p| format!(" (peak {})", mib(p))).unwrap_or_default())]
    MemoryLimitExceeded {
        /// The limit, in bytes.
        limit: u64,
        /// The highest use seen, in bytes.
        peak: Option<u64>,
    },
    /// The sandbox's deadline passed; every process in it was killed.
    #[error("the sandbox timed out after {after:?}; every process in it was killed{}", doing_then(doing))]
    TimedOut {
        /// The configured timeout.
        after: Duration,
        /// What the sandbox was doing at the deadline, to diagnose a hang: one line per process
        /// (`pid state command line`) and, with limits, one for the cgroup (use, limit, and how often it
        /// was hit). Empty when unknown (the program had stopped the sandbox's init).
        doing: Vec<String>,
    },
    /// The sandbox helper process ended without saying why (killed from outside, or a bug).
    #[error("the sandbox helper process ended unexpectedly{}", status.map(|s| format!(" ({s})")).unwrap_or_default())]
    HelperDied {
        /// Its exit status, when it was this process's child.
        status: Option<std::process::ExitStatus>,
    },
    /// The process running a closure ended before the closure returned: it died of a signal (a
    /// crash, an abort: a panic under `panic = "abort"`, or killed from outside) or exited
    /// (`std::process::exit` in the closure).
    #[error("the closure's process inside the sandbox died: {status}")]
    Crashed {
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// A closure run with [`crate::Sandbox::run`] panicked inside the sandbox.
    #[error("the closure panicked inside the sandbox{}: {message}", location.as_ref().map(|l| format!(" at {l}")).unwrap_or_default())]
    Panicked {
        /// The panic message.
        message: String,
        /// Where (`file:line:column`), when known.
        location: Option<String>,
    },
    /// A closure's result could not be had: its input or its value did not serialize or deserialize
    /// (JSON holds no map with keys other than strings, no NaN).
    #[error("failed to get the closure's result out of the sandbox: {reason}")]
    ClosureResult {
        /// What went wrong.
        reason: String,
    },
    /// A host-side operation failed.
    #[error("failed to {op} `{path}`")]
    Io {
        /// The operation.
        op: &'static str,
        /// The object.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The message with its causes, as `Display` and each `source()` say them: what `unwrap()`, `expect`
/// and a test returning `Err` print (a new user's review: the derived form showed the variant's
/// fields and hid what to do).
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fetch::fmt_chain(self, f)
    }
}

impl Error {
    /// The same error again, for a second [`crate::Child::wait`] (std's returns the same status each
    /// time; a second wait after a timeout said "the helper ended unexpectedly", a new user's
    /// review): OS errors again by code (or kind and text). `None` for a rootfs error, which no wait
    /// returns.
    pub(crate) fn again(&self) -> Option<Error> {
        let os = |e: &io::Error| {
            e.raw_os_error().map_or_else(|| io::Error::new(e.kind(), e.to_string()), io::Error::from_raw_os_error)
        };
        Some(match self {
            Error::InvalidConfig { what, value, reason } => {
                Error::InvalidConfig { what, value: value.clone(), reason: reason.clone() }
            }
            Error::Rootfs(_) => return None,
            Error::Spawn { program, source } => Error::Spawn { program: program.clone(), source: os(source) },
            Error::Setup { step, path, source, hint } => {
                Error::Setup { step: step.clone(), path: path.clone(), source: os(source), hint: hint.clone() }
            }
            Error::MemoryLimitExceeded { limit, peak } => Error::MemoryLimitExceeded { limit: *limit, peak: *peak },
            Error::TimedOut { after, doing } => Error::TimedOut { after: *after, doing: doing.clone() },
            Error::HelperDied { status } => Error::HelperDied { status: *status },
            Error::Crashed { status } => Error::Crashed { status: *status },
            Error::Panicked { message, location } => {
                Error::Panicked { message: message.clone(), location: location.clone() }
            }
            Error::ClosureResult { reason } => Error::ClosureResult { reason: reason.clone() },
            Error::Io { op, path, source } => Error::Io { op, path: path.clone(), source: os(source) },
        })
    }
}

fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// For a program the rootfs does not have (a new user's review: `Display` said only "failed to
/// execute", the reason was in `source()`), where it was looked for.
fn missing_suffix(source: &io::Error) -> &'static str {
    if source.kind() == io::ErrorKind::NotFound {
        ": not found in the sandbox's root filesystem (a path inside it, or a name looked up in its $PATH)"
    } else {
        ""
    }
}

fn path_suffix(path: &Option<String>) -> String {
    path.as_ref().map(|p| format!(" `{p}`")).unwrap_or_default()
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default()
}

impl Error {
    /// The closest `std::io::ErrorKind`, for code that treats sandbox errors like std's.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            Error::Spawn { source, .. } | Error::Setup { source, .. } | Error::Io { source, .. } => source.kind(),
            Error::TimedOut { .. } => io::ErrorKind::TimedOut,
            Error::InvalidConfig { .. } => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::Other,
        }
    }
}

/// `TimedOut`'s `doing`, for its message.
fn doing_then(doing: &[String]) -> String {
    if doing.is_empty() {
        return String::new();
    }
    format!("; at the deadline it was running:\n  {}", doing.join("\n  "))
}

/// An error and every cause below it, on one line: `a: b: c` (each `Display` in this project says
/// only its own part; this is what `anyhow`'s `{:#}` prints).
///
/// # Examples
/// ```
/// let e = sandbox::Error::Io {
///     op: "read",
///     path: "/etc/x".into(),
///     source: std::io::Error::from_raw_os_error(2),
/// };
/// assert!(sandbox::error_chain(&e).starts_with("failed to read `/etc/x`: No such file"));
/// ```
pub fn error_chain(error: &dyn std::error::Error) -> String {
    std::iter::successors(Some(error), |e| e.source()).map(ToString::to_string).collect::<Vec<_>>().join(": ")
}

pub(crate) fn io<P: Into<PathBuf>>(op: &'static str, path: P) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}

pub(crate) fn invalid(what: &'static str, value: &str, reason: &str) -> Error {
    invalid_os(what, value.as_ref(), reason)
}

/// [`invalid`] for a value that may not be UTF-8 (a program, an argument, a path).
pub(crate) fn invalid_os(what: &'static str, value: &std::ffi::OsStr, reason: &str) -> Error {
    Error::InvalidConfig { what, value: shown(value), reason: reason.to_owned() }
}

/// `value` as an error shows it: escaped as Rust escapes a string (`\n`), bytes that are not UTF-8
/// as `\xff` (two such names had read alike, both as U+FFFD), and cut after 200 characters as shown
/// (an argument refused for a NUL could be a megabyte long, and was shown whole: an outside review;
/// a `\xff` counts four).
pub(crate) fn shown(value: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    const MOST: usize = 200;
    let mut escaped = String::new();
    let mut count = 0;
    for chunk in value.as_bytes().utf8_chunks() {
        let invalid = chunk.invalid().iter().map(|b| format!("\\x{b:02x}"));
        let text = chunk.valid().chars().map(|c| match c {
            '"' | '\'' => c.to_string(),
            _ => c.escape_debug().to_string(),
        });
        for piece in text.chain(invalid) {
            let width = piece.chars().count();
            if count + width > MOST {
                escaped.push('…');
                return escaped;
            }
            escaped.push_str(&piece);
            count += width;
        }
    }
    escaped
}

/// The outcome of a `sandbox_validate` check of the setting `what`, as this crate's error.
pub(crate) fn checked(what: &'static str, value: &str, check: Result<(), &'static str>) -> Result<(), Error> {
    check.map_err(|reason| invalid(what, value, reason))
}

/// A working directory as a sandbox takes it: UTF-8, absolute, inside the root.
pub(crate) fn utf8_dir(dir: &std::path::Path) -> Result<&str, Error> {
    let text = dir.to_str().ok_or_else(|| invalid_os("current_dir", dir.as_os_str(), "must be UTF-8"))?;
    checked("current_dir", text, sandbox_validate::path_inside(text)).map(|()| text)
}

/// An environment variable's name and value.
pub(crate) fn check_env(key: &str, value: &str) -> Result<(), Error> {
    checked("environment variable name", key, sandbox_validate::env_key(key))?;
    checked("environment variable value", value, sandbox_validate::env_value(value))
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_cut() {
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(shown(std::ffi::OsStr::from_bytes(b"/bin/caf\xe9\n")), "/bin/caf\\xe9\\n");
        assert_eq!(shown("a\0b".as_ref()), "a\\0b");
        let long = shown("x".repeat(1_000_000).as_ref());
        assert_eq!(long.chars().count(), 201);
        let bytes = shown(std::ffi::OsStr::from_bytes(&[0xff; 1000]));
        assert!(bytes.chars().count() <= 201 && bytes.ends_with('…'), "{bytes}");
        assert!(long.ends_with('…'));
    }

    #[test]
    fn memory_message_is_in_mib() {
        let e = Error::MemoryLimitExceeded { limit: 64 << 20, peak: Some(64 << 20) };
        assert_eq!(
            e.to_string(),
            "memory limit of 64 MiB exceeded (peak 64 MiB): the kernel's OOM killer ended the program"
        );
    }

    /// What `unwrap()` prints is the message, its causes and what to do, not the variant's fields;
    /// an error returned again by a second wait reads the same.
    #[test]
    fn debug_is_the_message_with_its_causes() {
        let e = Error::Setup {
            step: "mount the overlay root".into(),
            path: Some("/newroot".into()),
            source: io::Error::from_raw_os_error(libc::EPERM),
            hint: Some("do this".into()),
        };
        let debug = format!("{e:?}");
        assert!(
            debug.starts_with(&e.to_string())
                && debug.ends_with(&io::Error::from_raw_os_error(libc::EPERM).to_string()),
            "{debug}"
        );
        assert_eq!(format!("{:?}", e.again().expect("again")), debug);
    }
}
