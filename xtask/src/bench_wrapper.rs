//! `cargo xtask bench wrapper`: what `sandbox-run` costs, against references measured in the same run.
//!
//! 1. Per test under nextest: 100 trivial tests under nextest with the sandbox wrapper against the same
//!    tests under plain nextest (profiles `sandboxed` and `plain` of one generated crate), interleaved.
//! 2. One shot: `sandbox-run --rootfs DIR -- /bin/true` against
//!    `bwrap --bind DIR / --proc /proc --dev /dev --unshare-all /bin/true`, interleaved.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

const TESTS: usize = 100;
const ROUNDS: usize = 5;
const ONE_SHOTS: usize = 200;

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("locate the workspace")?.to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let status = cargo().args(["build", "--release", "-p", "sandbox-cli"]).current_dir(&root).status()?;
    ensure!(status.success(), "building sandbox-run failed");
    let bin_dir = target.join("release");
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());

    let bench = target.join("bench-wrapper");
    trivial_crate(&bench)?;
    let nextest = |profile: &str| {
        let mut c = cargo();
        c.args(["nextest", "run", "--release", "--profile", profile])
            .current_dir(&bench)
            .env("PATH", &path)
            .env("CARGO_TARGET_DIR", bench.join("target"));
        c
    };
    timed(&mut nextest("plain")).context("build and run the trivial suite")?;
    let (mut plain, mut wrapped) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        plain.push(timed(&mut nextest("plain"))?);
        wrapped.push(timed(&mut nextest("sandboxed"))?);
    }
    let (p, w) = (median(plain), median(wrapped));
    println!("nextest, {TESTS} trivial tests, median of {ROUNDS} interleaved runs (2 CPUs, default parallelism):");
    println!("  plain nextest            {:9.1} ms", ms(p));
    println!("  nextest + sandbox-run    {:9.1} ms", ms(w));
    println!(
        "  per-test overhead of the wrapper: {:.2} ms of wall time ({:.2}x plain)",
        (ms(w) - ms(p)) / TESTS as f64,
        ms(w) / ms(p)
    );

    // One shot, on an unpacked rootfs both tools can use.
    let rootfs = sandbox::fetch::default_rootfs().context("a rootfs for the one-shot comparison ($SANDBOX_ROOTFS)")?;
    let dir = rootfs.path().to_owned();
    let sandbox_run = bin_dir.join("sandbox-run");
    let have_bwrap = Command::new("bwrap").arg("--version").output().is_ok_and(|o| o.status.success());
    let mut ours = Vec::new();
    let mut bwrap = Vec::new();
    for _ in 0..ONE_SHOTS {
        ours.push(timed(Command::new(&sandbox_run).arg("--rootfs").arg(&dir).args(["--", "/bin/true"]))?);
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
    let o = median(ours);
    println!("one shot, /bin/true, median of {ONE_SHOTS} interleaved runs:");
    println!("  sandbox-run --rootfs DIR  {:7.2} ms", ms(o));
    if have_bwrap {
        let b = median(bwrap);
        println!("  bwrap --unshare-all       {:7.2} ms", ms(b));
        println!("  ratio: {:.2}x bubblewrap", ms(o) / ms(b));
    } else {
        println!("  (bubblewrap is not installed: no reference)");
    }
    Ok(())
}
