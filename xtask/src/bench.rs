//! `cargo xtask bench [fetch|sandbox|overhead|wrapper]`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

pub fn run(filter: Option<String>) -> anyhow::Result<()> {
    match filter.as_deref() {
        Some("overhead") => overhead(),
        Some("wrapper") => crate::bench_wrapper::run(),
        Some(name) => cargo_bench(Some(name)),
        None => {
            cargo_bench(None)?;
            overhead()?;
            crate::bench_wrapper::run()
        }
    }
}

fn cargo_bench(name: Option<&str>) -> anyhow::Result<()> {
    let mut cmd = crate::cargo();
    cmd.args(["bench", "--package", "system-tests"]);
    if let Some(n) = name {
        cmd.args(["--bench", n]);
    }
    let status = cmd.status().context("failed to run cargo bench")?;
    anyhow::ensure!(status.success(), "cargo bench failed: {status}");
    Ok(())
}

/// A rootfs for the benchmark: `$SANDBOX_ROOTFS`, else a fixture built under target/.
fn rootfs() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SANDBOX_ROOTFS") {
        return Ok(PathBuf::from(p));
    }
    let path = PathBuf::from("target/bench-fixture-rootfs.tar.gz");
    sandbox_fixtures::MiniRootfs::new("3.19.1").write_to(&path).context("build the fixture rootfs")?;
    Ok(std::path::absolute(path)?)
}

fn time(mut cmd: Command) -> anyhow::Result<Duration> {
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let t = Instant::now();
    let status = cmd.status().context("run the benchmark tests")?;
    let elapsed = t.elapsed();
    anyhow::ensure!(status.success(), "benchmark tests failed: {status}");
    Ok(elapsed)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// 200 trivial `#[sandbox_test]`s against the same 200 as `#[test]`, under libtest and nextest.
fn overhead() -> anyhow::Result<()> {
    let rootfs = rootfs()?;
    let build = crate::cargo()
        .args(["test", "--release", "-p", "system-tests", "--test", "overhead", "--no-run", "--message-format=json"])
        .output()
        .context("build the overhead tests")?;
    anyhow::ensure!(build.status.success(), "building the overhead tests failed");
    let binary = String::from_utf8_lossy(&build.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| {
            (v["target"]["name"] == "overhead").then(|| v["executable"].as_str().map(PathBuf::from)).flatten()
        })
        .context("no overhead test binary in cargo's output")?;
    let rounds = 5;
    let mut rows = Vec::new();
    for (runner, set) in
        [("cargo test", "plain::"), ("cargo test", "sandboxed::"), ("nextest", "plain::"), ("nextest", "sandboxed::")]
    {
        let mut times = Vec::new();
        for _ in 0..rounds {
            let cmd = if runner == "cargo test" {
                let mut c = Command::new(&binary);
                c.args(["--ignored", set]);
                c
            } else {
                let mut c = crate::cargo();
                c.args([
                    "nextest",
                    "run",
                    "--release",
                    "-p",
                    "system-tests",
                    "--test",
                    "overhead",
                    "--run-ignored",
                    "ignored-only",
                    "-E",
                ]);
                c.arg(format!("test(/^{set}/)"));
                c
            };
            let mut cmd = cmd;
            cmd.env("SANDBOX_ROOTFS", &rootfs);
            times.push(time(cmd)?);
        }
        rows.push((runner, set, median(times)));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("200 trivial tests, median of {rounds} runs, wall time (2 CPUs, default parallelism):");
    for (runner, set, t) in &rows {
        println!("  {runner:<10} {set:<12} {:9.1} ms", ms(*t));
    }
    for runner in ["cargo test", "nextest"] {
        let get = |s: &str| rows.iter().find(|r| r.0 == runner && r.1 == s).map(|r| r.2).unwrap_or_default();
        let (plain, sb) = (get("plain::"), get("sandboxed::"));
        println!(
            "  {runner}: per-test overhead of #[sandbox_test] = {:.2} ms of wall time ({:.1}x the plain suite)",
            (ms(sb) - ms(plain)) / 200.0,
            ms(sb) / ms(plain)
        );
    }
    Ok(())
}
