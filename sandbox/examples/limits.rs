//! Resource limits and usage: a memory hog is stopped at 32 MiB; CPU time is capped at half a core.
//! Exits non-zero unless both hold. Needs root on cgroup v1, or a delegated cgroup v2 subtree.
//!
//! `SANDBOX_ROOTFS=/tmp/rootfs.tar.gz cargo run -p sandbox --example limits`

use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sb = sandbox::Sandbox::builder().memory_limit(32 << 20).cpu_limit(0.5).pids_limit(64).build()?;
    match sb.command("/bin/sh").args(["-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a)"]).status() {
        Err(e @ sandbox::Error::MemoryLimitExceeded { .. }) => println!("as expected: {e}"),
        other => return Err(format!("expected the memory limit to stop it, got {other:?}").into()),
    }
    let mut busy = sb.command("/bin/busybox").args(["timeout", "1", "sh", "-c", "while :; do :; done"]).spawn()?;
    busy.wait()?;
    let usage = busy.usage().ok_or("no usage figures, although limits are set")?;
    println!("a second of busy loop used {usage:?}");
    // Half a core for about a second: well under the second an unlimited loop would use.
    match usage.cpu_time {
        Some(cpu) if cpu > Duration::from_millis(100) && cpu < Duration::from_millis(800) => Ok(()),
        other => Err(format!("expected about 0.5 s of CPU time, got {other:?}").into()),
    }
}
