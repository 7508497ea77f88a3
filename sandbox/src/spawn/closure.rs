//! The sandbox's side of `Sandbox::run`: the program's process, forked by init like any program's,
//! runs the closure instead of exec'ing, reports its value or its panic, and ends. The closure is named
//! by its entry's offset in this binary (`sys::code`), checked against the build id.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;

use nix::errno::Errno;

use crate::report::{Record, StepKind, send, send_setup_failed};

/// Runs the closure whose entry is at `entry`, on `input`; reports; ends the process.
pub(crate) fn run_entry(report: &OwnedFd, entry: usize, build: &str, input: &[u8]) -> ! {
    let Some(entry) = crate::sys::code::entry_at(entry, build) else {
        let what = "find the closure: the sandbox's process runs another build of this binary";
        send_setup_failed(report, StepKind::Helper, what, Errno::ENOEXEC);
        std::process::exit(127);
    };
    // The panic's place, for the caller's error; the default hook still prints message and backtrace.
    static PLACE: Mutex<Option<String>> = Mutex::new(None);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(l) = info.location() {
            *PLACE.lock().unwrap_or_else(|p| p.into_inner()) = Some(l.to_string());
        }
        default_hook(info);
    }));
    let record = match std::panic::catch_unwind(AssertUnwindSafe(|| entry(input))) {
        Ok(Ok(json)) => Record::Value { json: String::from_utf8_lossy(&json).into_owned() },
        Ok(Err(message)) => Record::Panicked { message, location: None },
        Err(payload) => Record::Panicked {
            message: panic_message(payload.as_ref()),
            location: PLACE.lock().unwrap_or_else(|p| p.into_inner()).take(),
        },
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    send(report, &record);
    std::process::exit(0);
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".to_owned())
}
