//! `Sandbox::run`: a Rust closure inside a fresh sandbox.
//!
//! The closure cannot be sent to another process, and forking the multi-threaded test harness is
//! unsound, so, like rusty-fork, the parent re-executes the test binary to run the same test again
//! (`--exact <name>`), inside a new sandbox. There, the same `run` call finds it is the child and calls
//! the closure; its result comes back as JSON. The test binary never has to exist inside the rootfs:
//! it is already loaded when the root is switched.
//!
//! Consequence: in the child, the test's code before the `run` call runs again. It runs in the
//! sandbox's namespaces (hostname, pids, network) but still sees the host's files, so that fetching the
//! rootfs and building the sandbox work there as they did in the parent; the root is switched only when
//! the closure is reached. Keep that code free of side effects on the host. Earlier `run` calls of the
//! same test run directly inside that one sandbox.

use std::io::Read;
use std::process::Stdio;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::config::Job;
use crate::report::Record;

/// Whether this process is a sandbox's child running a closure.
pub fn in_sandbox_child() -> bool {
    crate::spawn::closure::in_child()
}

pub(crate) fn run<T, F>(sandbox: &crate::Sandbox, f: F) -> Result<T, Error>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> T,
{
    run_lazy(|| Ok(sandbox.clone()), f)
}

/// [`run`] with the sandbox built only in the parent: in the child, which runs the closure, `build`
/// is not called (it would fetch the rootfs and build a sandbox again for nothing).
pub(crate) fn run_lazy<T, F, B>(build: B, f: F) -> Result<T, Error>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> T,
    B: FnOnce() -> Result<crate::Sandbox, Error>,
{
    let index = crate::spawn::closure::next_index();
    if let Some(stage) = crate::spawn::closure::stage_for(index) {
        crate::spawn::closure::run_here(stage, f);
    }
    if crate::spawn::closure::in_child() {
        // An earlier or later `run` of the test whose closure this child runs: inside this sandbox.
        return Ok(f());
    }
    let sandbox = &build()?;
    let thread = std::thread::current();
    let name = match thread.name() {
        Some(n) if n != "main" => n.to_owned(),
        other => return Err(Error::NotInTest { thread: other.map(str::to_owned) }),
    };
    let config = sandbox.config(Job::Closure { index }, None)?;
    let args =
        vec![name, "--exact".into(), "--nocapture".into(), "--test-threads=1".into(), "--include-ignored".into()];
    let stdio = crate::spawn::parent::Stdio3::Std([Stdio::null(), Stdio::piped(), Stdio::piped()]);
    let launched = crate::spawn::parent::launch(&config, stdio, &args)?;
    let crate::spawn::parent::Helper::Executed(mut child) = launched.helper else {
        return Err(Error::Result { reason: "a closure's helper must be executed, not forked".to_owned() });
    };
    let mut reports = launched.reports;
    // Kept open until the end: closing it would tear the sandbox down.
    let _kill = launched.kill;
    // Forward the child's output through print!, so that the harness captures it like the test's own.
    let out = launched.stdout.map(|s| std::thread::spawn(move || forward(s, false)));
    let err = launched.stderr.map(|s| std::thread::spawn(move || forward(s, true)));
    let mut outcome = None;
    let mut setup = None;
    let mut timed_out = false;
    let mut usage = None;
    while let Some(r) = reports.next() {
        match r {
            Record::Value { .. } | Record::Panicked { .. } => outcome = Some(r),
            Record::SetupFailed { .. } => setup = Some(r),
            Record::Exited { timed_out: t, .. } => timed_out = t,
            Record::Usage(u) => usage = Some(u),
            _ => {}
        }
    }
    let status = child.wait().map_err(crate::error::io("wait for", "the sandbox helper"))?;
    for t in [out, err].into_iter().flatten() {
        let _ = t.join();
    }
    if let Some(Record::SetupFailed { kind, what, path, errno }) = setup {
        return Err(crate::spawn::parent::setup_error(kind, what, path, errno, sandbox));
    }
    if timed_out {
        return Err(Error::TimedOut { after: config.timeout.unwrap_or_default() });
    }
    match outcome {
        Some(Record::Value { json }) => {
            serde_json::from_str(&json).map_err(|e| Error::Result { reason: format!("cannot deserialize it: {e}") })
        }
        Some(Record::Panicked { message }) => Err(Error::Panicked { message }),
        _ if usage.is_some_and(|u| u.oom_kills > 0) && config.limits.memory.is_some() => {
            Err(Error::MemoryLimitExceeded {
                limit: config.limits.memory.unwrap_or_default(),
                peak: usage.and_then(|u| u.peak_memory),
            })
        }
        _ if status.success() => Err(Error::Result {
            reason: format!(
                "the re-executed test binary did not reach the closure (is `{}` a test of this binary?)",
                thread.name().unwrap_or("?")
            ),
        }),
        _ => Err(Error::Crashed { status }),
    }
}

fn forward(mut from: impl Read, stderr: bool) {
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                if stderr {
                    eprint!("{text}");
                } else {
                    print!("{text}");
                }
            }
        }
    }
}
