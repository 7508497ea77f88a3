//! `cargo xtask bench wrapper`: what `sandbox-run` costs, against references measured in the same run.
//!
//! 1. Per test under nextest: 100 trivial tests under nextest with the sandbox wrapper against the same
//!    tests under plain nextest (profiles `sandboxed` and `plain` of one generated crate), interleaved.
//! 2. One shot: `sandbox-run --rootfs DIR -- /bin/true` against
//!    `bwrap --bind DIR / --proc /proc --dev /dev --unshare-all /bin/true`, interleaved.
//!
//! Both with each build of `sandbox-run`: `cargo build -p sandbox-cli --release` (what
//! `cargo install --path cli` installs: dynamically linked) and the static-pie of
//! `cargo xtask install-cli` (crate::install_cli).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

const TESTS: usize = 100;
const ROUNDS: usize = 5;
const ONE_SHOTS: usize = 200;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn timed(cmd: &mut Command) -> anyhow::Result<Duration> {
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let t = Instant::now();
    let status = cmd.status().with_context(|| format!("run {cmd:?}"))?;
    let elapsed = t.elapsed();
    ensure!(status.success(), "{cmd:?} failed: {status}");
    Ok(elapsed)
}

/// A crate of `TESTS` trivial tests with two nextest profiles: `plain` and `sandboxed` (every test
/// wrapped in `sandbox-run`).
fn trivial_crate(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("tests"))?;
    std::fs::create_dir_all(dir.join(".config"))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"wrapper-bench\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n[workspace]\n",
    )?;
    let tests: String =
        (0..TESTS).map(|i| format!("#[test]\nfn t{i:03}() {{ assert_eq!({i} + 1, {} ); }}\n", i + 1)).collect();
    std::fs::write(dir.join("tests/trivial.rs"), tests)?;
    std::fs::write(
        dir.join(".config/nextest.toml"),
        "experimental = [\"wrapper-scripts\"]\n\n[scripts.wrapper.sandbox]\ncommand = 'sandbox-run --'\n\n\
         [profile.plain]\n\n[profile.sandboxed]\n\n[[profile.sandboxed.scripts]]\nfilter = 'all()'\nrun-wrapper = 'sandbox'\n",
    )?;
    Ok(())
}

pub fn run() -> anyhow::Result<()> {
    let root = crate::workspace_root()?;
    let target = crate::target_dir();
    let status = crate::cargo().args(["build", "--release", "-p", "sandbox-cli"]).current_dir(&root).status()?;
    ensure!(status.success(), "building sandbox-run failed");
    let dynamic = target.join("release/sandbox-run");
    let linked_in = crate::install_cli::build(&root)?;
    let builds = [("dynamic", dynamic), ("static-pie", linked_in)];
    println!("sandbox-run builds: dynamic (cargo install --path cli), static-pie (cargo xtask install-cli)");

    let bench = target.join("bench-wrapper");
    trivial_crate(&bench)?;
    let nextest = |profile: &str, sandbox_run: &Path| -> anyhow::Result<Command> {
        let bin_dir = sandbox_run.parent().context("sandbox-run's folder")?;
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        let mut c = crate::cargo();
        c.args(["nextest", "run", "--release", "--profile", profile])
            .current_dir(&bench)
            .env("PATH", path)
            .env("CARGO_TARGET_DIR", bench.join("target"));
        Ok(c)
    };
    timed(&mut nextest("plain", &builds[0].1)?).context("build and run the trivial suite")?;
    let mut plain = Vec::new();
    let mut wrapped = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        plain.push(timed(&mut nextest("plain", &builds[0].1)?)?);
        for (times, (_, sandbox_run)) in wrapped.iter_mut().zip(&builds) {
            times.push(timed(&mut nextest("sandboxed", sandbox_run)?)?);
        }
    }
    let p = median(plain);
    println!("nextest, {TESTS} trivial tests, median of {ROUNDS} interleaved runs (2 CPUs, default parallelism):");
    println!("  {:<36} {:9.1} ms", "plain nextest", ms(p));
    for (times, (how, _)) in wrapped.into_iter().zip(&builds) {
        let w = median(times);
        println!(
            "  {:<36} {:9.1} ms: {:.2} ms of wall time per test ({:.2}x plain)",
            format!("nextest + sandbox-run, {how}"),
            ms(w),
            (ms(w) - ms(p)) / TESTS as f64,
            ms(w) / ms(p)
        );
    }

    // One shot, on an unpacked rootfs both tools can use.
    let rootfs = sandbox::fetch::default_rootfs().context("a rootfs for the one-shot comparison ($SANDBOX_ROOTFS)")?;
    let dir = rootfs.path().to_owned();
    let have_bwrap = Command::new("bwrap").arg("--version").output().is_ok_and(|o| o.status.success());
    let mut ours = [Vec::new(), Vec::new()];
    let mut bwrap = Vec::new();
    for _ in 0..ONE_SHOTS {
        for (times, (_, sandbox_run)) in ours.iter_mut().zip(&builds) {
            times.push(timed(Command::new(sandbox_run).arg("--rootfs").arg(&dir).args(["--", "/bin/true"]))?);
        }
        if have_bwrap {
            bwrap.push(timed(Command::new("bwrap").arg("--bind").arg(&dir).args([
                "/",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "--unshare-all",
                "/bin/true",
            ]))?);
        }
    }
    let b = have_bwrap.then(|| median(bwrap));
    println!("one shot, /bin/true, median of {ONE_SHOTS} interleaved runs:");
    if let Some(b) = b {
        println!("  {:<36} {:7.2} ms", "bwrap --unshare-all", ms(b));
    }
    for (times, (how, _)) in ours.into_iter().zip(&builds) {
        let o = median(times);
        match b {
            Some(b) => println!(
                "  {:<36} {:7.2} ms: {:.2}x bubblewrap",
                format!("sandbox-run --rootfs DIR, {how}"),
                ms(o),
                ms(o) / ms(b)
            ),
            None => println!("  {:<36} {:7.2} ms", format!("sandbox-run --rootfs DIR, {how}"), ms(o)),
        }
    }
    if b.is_none() {
        println!("  (bubblewrap is not installed: no reference)");
    }
    Ok(())
}
