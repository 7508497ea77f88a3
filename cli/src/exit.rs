//! `sandbox-run`'s exit codes: the program's own, or one of these for what happened around it.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use crate::Error;

/// The sandbox's deadline passed (`--timeout`), as with `timeout(1)`.
pub const TIMED_OUT: i32 = 124;
/// `sandbox-run` itself failed: an invalid option, no rootfs, a setup step refused (podman's and
/// docker's code for the same).
pub const SANDBOX_FAILED: i32 = 125;
/// The program exists but could not be executed.
pub const CANNOT_EXECUTE: i32 = 126;
/// The program does not exist in the sandbox.
pub const NOT_FOUND: i32 = 127;
/// The memory limit was exceeded and the program was killed (128 + SIGKILL).
pub const OUT_OF_MEMORY: i32 = 137;

/// The program's exit code, or 128 + the signal that killed it, as a shell reports it.
pub fn of_status(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        _ => SANDBOX_FAILED,
    }
}

/// The exit code for an error of `sandbox-run`.
pub fn of_error(error: &Error) -> i32 {
    match error {
        Error::Sandbox(sandbox::Error::TimedOut { .. }) => TIMED_OUT,
        Error::Sandbox(sandbox::Error::MemoryLimitExceeded { .. }) => OUT_OF_MEMORY,
        Error::Sandbox(sandbox::Error::Spawn { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            NOT_FOUND
        }
        Error::Sandbox(sandbox::Error::Spawn { .. }) | Error::CannotExecute { .. } => CANNOT_EXECUTE,
        // As a shell's "bad interpreter": the program cannot be found to run.
        Error::Interpreter { .. } => NOT_FOUND,
        _ => SANDBOX_FAILED,
    }
}
