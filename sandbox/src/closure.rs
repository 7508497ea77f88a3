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

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::Job;
use crate::report::Record;
use crate::spawn::handle::{HelperHandle, Stage, exit_status, with_fallback};
use crate::{Error, Stdio};

impl crate::Sandbox {
    /// Runs `f` inside a fresh sandbox and returns its result. Must be called from a test (libtest
    /// or nextest): see the crate docs for how, and for what runs twice.
    ///
    /// # Errors
    /// [`Error::Panicked`] if `f` panics, [`Error::Setup`] / [`Error::TimedOut`] / [`Error::Crashed`]
    /// as for commands, [`Error::NotInTest`] outside a test thread.
    pub fn run<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        crate::closure::run(self, f)
    }
}

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
    let args =
        vec![name, "--exact".into(), "--nocapture".into(), "--test-threads=1".into(), "--include-ignored".into()];
    let (null, piped) = (Stdio::null(), Stdio::piped());
    let ending = with_fallback(|| {
        let start = sandbox.config(Job::Closure { index }, None)?;
        let mut handle = HelperHandle::start(start, [&null, &piped, &piped], &args, Stage::Launched)?;
        // Forward the child's output through print!, so that the harness captures it like the test's own.
        let out = handle.stdout.take().map(|s| std::thread::spawn(move || forward(s, false)));
        let err = handle.stderr.take().map(|s| std::thread::spawn(move || forward(s, true)));
        let ending = handle.wait_end();
        for t in [out, err].into_iter().flatten() {
            let _ = t.join();
        }
        ending
    })?;
    match ending.value {
        Some(Record::Value { json }) => serde_json::from_str(&json)
            .map_err(|e| Error::ClosureResult { reason: format!("cannot deserialize it: {e}") }),
        Some(Record::Panicked { message }) => Err(Error::Panicked { message }),
        _ => match ending.status.map(exit_status).or(ending.helper) {
            Some(status) if status.success() => Err(Error::ClosureResult {
                reason: format!(
                    "the re-executed test binary did not reach the closure (is `{}` a test of this binary?)",
                    thread.name().unwrap_or("?")
                ),
            }),
            Some(status) => Err(Error::Crashed { status }),
            None => Err(Error::HelperDied { status: None }),
        },
    }
}

/// Copies a child's output to this process's, through `print!`/`eprint!` (which the test harness
/// captures), byte for byte: a UTF-8 sequence split across two reads is held back until complete.
/// Bytes that are not UTF-8 at all show as U+FFFD: `print!` carries text only.
fn forward(mut from: impl Read, stderr: bool) {
    let mut buf = [0u8; 8192];
    let mut pending = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let ready = complete_prefix(&pending);
        emit(&pending[..ready], stderr);
        pending.drain(..ready);
    }
    emit(&pending, stderr);
}

fn emit(bytes: &[u8], stderr: bool) {
    if bytes.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    if stderr {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}

/// The length of `bytes` without an incomplete UTF-8 sequence at its end (the start of a character
/// whose other bytes have not arrived yet).
fn complete_prefix(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let at = bytes.len() - back;
        let b = bytes[at];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: look further back for the lead byte
        }
        let needed = match b {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        return if needed > back { at } else { bytes.len() };
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::complete_prefix;

    // Bug 1: a character split across two 8 KiB reads printed as two U+FFFD.
    #[test]
    fn an_incomplete_character_at_the_end_waits_for_the_rest() {
        let text = "aé€😀".as_bytes();
        assert_eq!(complete_prefix(text), text.len());
        for cut in 1..text.len() {
            let head = &text[..cut];
            let ready = complete_prefix(head);
            assert!(std::str::from_utf8(&head[..ready]).is_ok(), "cut at {cut}");
            assert!(std::str::from_utf8(&text[ready..]).is_ok(), "the rest is whole, cut at {cut}");
        }
        assert_eq!(complete_prefix(b"ab\xff"), 3, "an invalid byte is not held back");
    }
}
