//! The child half of `Sandbox::run`: the sandbox's process that returns into the re-executed test
//! binary, reaches the `run` call whose closure it is to run, switches into the sandbox's root and
//! runs it, then reports the value (or the panic) as a record.

use std::cell::Cell;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;

use serde::Serialize;

use crate::config::Config;
use crate::report::{Failure, Record, StepKind, send, send_failure};

#[derive(Debug)]
pub(crate) struct ChildStage {
    report: OwnedFd,
    config: Config,
    index: u64,
    stdout: Option<OwnedFd>,
}

static CHILD: OnceLock<ChildStage> = OnceLock::new();

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

/// Called in the sandbox's child process, before `main`, when it is to run a closure.
pub(crate) fn enter_child(report: &OwnedFd, config: &Config, index: u64) {
    let Ok(report) = report.try_clone() else { std::process::exit(127) };
    // The harness's own banner ("running 1 test") goes nowhere; the closure's output goes out.
    let stdout = crate::sys::silence_stdout();
    let _ = CHILD.set(ChildStage { report, config: config.clone(), index, stdout });
}

/// In the child, when the test reaches the closure: build the sandbox's root and switch into it.
fn switch_root(stage: &ChildStage) {
    if let Err(f) = crate::plan::run(&crate::plan::filesystem_phase(&stage.config), &crate::sys::Kernel) {
        send_failure(&stage.report, &f);
        std::process::exit(1);
    }
    if let Err(errno) = nix::unistd::chdir(stage.config.current_dir.as_str()) {
        let f = Failure {
            kind: StepKind::CurrentDir,
            what: "enter the working directory",
            path: Some(stage.config.current_dir.clone()),
            errno,
        };
        send_failure(&stage.report, &f);
        std::process::exit(1);
    }
}

/// Whether this process is a sandbox's child running a closure.
pub(crate) fn in_child() -> bool {
    CHILD.get().is_some()
}

/// The number of this `run` call in the current test thread.
pub(crate) fn next_index() -> u64 {
    CALLS.with(|c| {
        let i = c.get();
        c.set(i + 1);
        i
    })
}

/// The stage, when this process is the child that is to run closure number `index`.
pub(crate) fn stage_for(index: u64) -> Option<&'static ChildStage> {
    CHILD.get().filter(|s| s.index == index)
}

/// Switches into the sandbox's root, runs `f`, reports its value or its panic, and ends the process.
pub(crate) fn run_here<T: Serialize, F: FnOnce() -> T>(stage: &ChildStage, f: F) -> ! {
    switch_root(stage);
    if let Some(saved) = &stage.stdout {
        crate::sys::restore_stdout(saved);
    }
    let record = match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => match serde_json::to_string(&value) {
            Ok(json) => Record::Value { json },
            Err(e) => Record::Panicked { message: format!("cannot serialize the closure's result: {e}") },
        },
        Err(payload) => Record::Panicked { message: panic_message(payload.as_ref()) },
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    send(&stage.report, &record);
    std::process::exit(0);
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".to_owned())
}
