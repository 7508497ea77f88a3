//! Running one program in a fresh sandbox, its stdio passed through unchanged.

use std::path::Path;

use crate::Error;
use crate::options::SandboxOptions;
use crate::setup::prepare;

/// Runs `program args…` in a fresh sandbox built from `opts` and returns the exit code to leave with:
/// the program's own (128 + signal when killed).
///
/// # Errors
/// When the sandbox cannot be built or started, or ends by its deadline or memory limit
/// ([`crate::exit::of_error`] gives the exit code for each).
pub fn run(opts: &SandboxOptions, program: &str, args: &[String]) -> Result<i32, Error> {
    let prepared = prepare(opts, program)?;
    let mut child = prepared.sandbox.command(&prepared.program).args(args).spawn()?;
    let waited = child.wait();
    if let Some(path) = &opts.json_usage {
        write_usage(path, child.usage())?;
    }
    Ok(crate::exit::of_status(waited?))
}

/// Writes what the sandbox used as one JSON object (`null` fields where this machine cannot tell).
fn write_usage(path: &Path, usage: Option<sandbox::Usage>) -> Result<(), Error> {
    let usage = usage.unwrap_or_default();
    let json = serde_json::json!({
        "peak_memory_bytes": usage.peak_memory,
        "cpu_time_seconds": usage.cpu_time.map(|d| d.as_secs_f64()),
        "oom_kills": usage.oom_kills,
    });
    std::fs::write(path, format!("{json}\n")).map_err(crate::error::io("write the usage to", path))
}
