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
pub(crate) fn run_entry(report: &OwnedFd, entry: usize, build: &str, input: &[u8], mounts: &[crate::Mount]) -> ! {
    let Some(entry) = crate::sys::code::entry_at(entry, build) else {
        let what = "find the closure: the sandbox's process runs another build of this binary";
        send_setup_failed(report, StepKind::Helper, what, Errno::ENOEXEC);
        std::process::exit(127);
    };
    // The panic's place, for the caller's error; the default hook still prints message and backtrace.
    static PLACE: Mutex<Option<String>> = Mutex::new(None);
    // Host folders bound in: the link to the binary is never made in one (see reach_own_binary).
    let volumes: Vec<std::path::PathBuf> = mounts
        .iter()
        .filter(|m| matches!(m.kind, crate::volume::MountKind::Bind { .. }))
        .map(|m| std::path::PathBuf::from(&m.target))
        .collect();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(l) = info.location() {
            *PLACE.lock().unwrap_or_else(|p| p.into_inner()) = Some(l.to_string());
        }
        reach_own_binary(&volumes);
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

/// A backtrace names its frames from the symbols of the binary at the path `current_exe` gives: the
/// caller's path, outside this sandbox's root. When a backtrace is asked for (`RUST_BACKTRACE` or
/// `RUST_LIB_BACKTRACE`, as the caller had them), that path is made to lead to this process's own
/// executable, a symlink to `/proc/self/exe`, at the first panic: the closure's frames are named, and
/// no start pays for a mount and its directories. Only where nothing is at that path, and only on the
/// sandbox's own file systems: never in a volume (`volumes`, the targets of host folders bound in),
/// which would leave the link on the host. Elsewhere, frames go unnamed.
fn reach_own_binary(volumes: &[std::path::PathBuf]) {
    let asked =
        ["RUST_BACKTRACE", "RUST_LIB_BACKTRACE"].into_iter().any(|k| std::env::var_os(k).is_some_and(|v| v != "0"));
    let Some(exe) = std::env::current_exe().ok().filter(|_| asked) else { return };
    if std::fs::symlink_metadata(&exe).is_ok() {
        return; // reachable already (a root or a volume that holds it; a second panic), or not ours
    }
    // The deepest folder of the path that exists, resolved: where the new entries would go.
    let Some(base) = exe.ancestors().skip(1).find(|a| a.exists()).and_then(|a| a.canonicalize().ok()) else { return };
    if volumes.iter().any(|v| base.starts_with(v.canonicalize().as_deref().unwrap_or(v))) {
        return;
    }
    if let Some(dir) = exe.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::os::unix::fs::symlink("/proc/self/exe", &exe);
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".to_owned())
}
