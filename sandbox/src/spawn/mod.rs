//! Starting a sandbox, one module per process involved:
//!
//! - `parent`: the calling process (possibly the multi-threaded test harness). It never forks by
//!   hand: it spawns its own executable (`/proc/self/exe`) with `std::process::Command`, handing over
//!   the configuration in a memfd and a pipe for reports.
//! - `helper`: that re-executed binary, which a constructor diverts before `main` runs, while it is
//!   still single-threaded. It creates the namespaces, forks init, waits, and relays the outcome.
//! - `init`: PID 1 of the new pid namespace. It builds the root filesystem (`crate::plan`), starts
//!   the program, reaps zombies, forwards signals and enforces the deadline.
//! - `child`: the program's process: it execs the program, or returns into the test harness to run a
//!   closure.

pub(crate) mod child;
pub(crate) mod closure;
pub(crate) mod handle;
pub(crate) mod helper;
pub(crate) mod idmap;
pub(crate) mod init;
pub(crate) mod netns;
pub(crate) mod parent;
pub(crate) mod pump;
pub(crate) mod server;
pub(crate) mod subids;
pub(crate) mod userns;

use crate::sys::SingleThreaded;

// Every process of a binary linking this crate passes here before `main`; the fork server and the
// helpers never reach `main` (except a closure's child, on purpose).
crate::sys::run_before_main!(BEFORE_MAIN, enter_before_main);

fn enter_before_main(t: SingleThreaded) {
    server::enter_if_server(t);
    helper::enter_if_helper(t);
}

/// CLOCK_MONOTONIC now, which `Instant` reads too and which every process shares: a deadline that
/// one process reckons and another checks (a session's, for its commands' helpers).
pub(crate) fn monotonic_now() -> Option<std::time::Duration> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    Some(std::time::Duration::from(now))
}
