//! Resource limits and usage: a memory hog is stopped at 32 MiB; CPU time is capped at half a core.
//! Needs root on cgroup v1, or a delegated cgroup v2 subtree.
//!
//! `SANDBOX_ROOTFS=/tmp/rootfs.tar.gz cargo run -p sandbox --example limits`

fn main() -> Result<(), sandbox::Error> {
    let sb = sandbox::Sandbox::builder().memory_limit(32 << 20).cpu_limit(0.5).pids_limit(64).build()?;
    match sb.command("/bin/sh").args(["-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a)"]).status() {
        Err(e @ sandbox::Error::MemoryLimitExceeded { .. }) => println!("as expected: {e}"),
        other => println!("unexpected: {other:?}"),
    }
    let mut busy = sb.command("/bin/busybox").args(["timeout", "1", "sh", "-c", "while :; do :; done"]).spawn()?;
    busy.wait()?;
    println!("a second of busy loop used {:?}", busy.usage());
    Ok(())
}
