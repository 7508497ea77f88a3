//! Fetch benchmark, every figure against a reference measured in the same run, interleaved:
//! - a cold fetch + verify + unpack from the loopback mirror, and a warm cache hit, against
//!   `curl | sha256sum` + `tar -xzf` of the same file;
//! - the per-test cost of `$SANDBOX_ROOTFS=<tarball>` against `$SANDBOX_ROOTFS=<unpacked dir>`: one
//!   process of the *debug* test binary per test, as nextest runs them;
//! - unpacking deep paths (2,000 entries 60 and 500 folders deep) against `tar -xzf`.
//!
//! `cargo bench -p system-tests --bench fetch` (or `cargo xtask bench fetch`). Prints medians and
//! ratios; asserts nothing about time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sandbox_fixtures::{MiniRootfs, Mirror, hostile};

const ROUNDS: usize = 25;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    fetch_bench();
    per_test_cost();
    deep_unpack();
}

fn fetch_bench() {
    let tarball = MiniRootfs::new("3.19.1").build().expect("build the fixture rootfs (busybox-static installed?)");
    let mirror = Mirror::start().expect("mirror");
    mirror.add_release("3.19.1", "x86_64", tarball.clone());
    let url = format!("{}/v3.19/releases/x86_64/alpine-minirootfs-3.19.1-x86_64.tar.gz", mirror.url());
    let have_curl = Command::new("curl").arg("--version").output().is_ok_and(|o| o.status.success());
    let work = tempfile::tempdir().expect("tempdir");
    let warm_cache = work.path().join("warm");
    let fetch = |cache: &std::path::Path| {
        fetch::Alpine::new("3.19.1")
            .arch(fetch::Arch::X86_64)
            .mirror(mirror.url())
            .cache_dir(cache)
            .offline(false)
            .fetch()
            .expect("fetch")
    };
    fetch(&warm_cache);

    let (mut cold, mut warm, mut reference) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let cache = work.path().join(format!("cold-{i}"));
        let t = Instant::now();
        fetch(&cache);
        cold.push(t.elapsed());

        let t = Instant::now();
        fetch(&warm_cache);
        warm.push(t.elapsed());

        if have_curl {
            let dir = work.path().join(format!("ref-{i}"));
            let script = format!(
                "set -e; mkdir -p {d}/tree; curl -fsS {url} -o {d}/f.tar.gz; sha256sum {d}/f.tar.gz >/dev/null; tar -xzf {d}/f.tar.gz -C {d}/tree",
                d = dir.display()
            );
            let t = Instant::now();
            let ok = Command::new("sh").args(["-c", &script]).status().is_ok_and(|s| s.success());
            reference.push(t.elapsed());
            assert!(ok, "reference pipeline failed");
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (cold, warm) = (median(cold), median(warm));
    println!("fetch benchmark: {} byte tarball, {ROUNDS} rounds, medians", tarball.len());
    println!("  cold fetch+verify+unpack (sandbox-fetch): {:8.2} ms", ms(cold));
    println!("  warm cache hit (sandbox-fetch):           {:8.3} ms", ms(warm));
    if have_curl {
        let r = median(reference);
        println!("  reference curl + sha256sum + tar -xzf:    {:8.2} ms", ms(r));
        println!("  ratio cold / reference: {:.2}x", ms(cold) / ms(r));
        println!("  ratio warm / reference: {:.4}x", ms(warm) / ms(r));
    } else {
        println!("  reference skipped: curl is not installed");
    }
}

/// The debug build of the fetch test binary (built if needed).
fn debug_test_binary() -> Option<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["test", "-p", "system-tests", "--test", "fetch", "--no-run", "--message-format=json"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let at = l.find("\"executable\":\"")? + "\"executable\":\"".len();
        let rest = &l[at..];
        let path = &rest[..rest.find('"')?];
        (l.contains("\"name\":\"fetch\"") && path.contains("/debug/")).then(|| PathBuf::from(path))
    })
}

/// One test process that takes its rootfs from `$SANDBOX_ROOTFS` (`child_default_rootfs`).
fn one_test_process(binary: &Path, rootfs: &Path, cache: &Path) -> Duration {
    let t = Instant::now();
    let out = Command::new(binary)
        .args(["child_default_rootfs", "--exact", "--include-ignored", "--test-threads=1"])
        .env("SANDBOX_TEST_CHILD", "child_default_rootfs")
        .env("SANDBOX_ROOTFS", rootfs)
        .env("SANDBOX_CACHE_DIR", cache)
        .env("EXPECT_VERSION", "3.19.1")
        .output()
        .expect("run the test binary");
    let elapsed = t.elapsed();
    assert!(out.status.success(), "test process failed: {}", String::from_utf8_lossy(&out.stdout));
    elapsed
}

fn per_test_cost() {
    let Some(binary) = debug_test_binary() else {
        println!("per-test cost skipped: could not build the debug fetch test binary");
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let tarball = work.path().join("rootfs.tar.gz");
    // A tarball of an Alpine minirootfs's size: the fixture plus 3 MiB of incompressible data.
    let mut noise = vec![0u8; 3 << 20];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for b in &mut noise {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    MiniRootfs::new("3.19.1")
        .file("usr/share/noise", noise, 0o644)
        .write_to(&tarball)
        .expect("build the fixture rootfs (busybox-static installed?)");
    let cache = work.path().join("cache");
    let dir = fetch::Rootfs::from_tarball_in(&tarball, Some(&cache)).expect("unpack").path().to_owned();
    one_test_process(&binary, &tarball, &cache); // warm: the digest is recorded
    let (mut from_tarball, mut from_dir) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        from_tarball.push(one_test_process(&binary, &tarball, &cache));
        from_dir.push(one_test_process(&binary, &dir, &cache));
    }
    let hash = {
        let t = Instant::now();
        let bytes = std::fs::read(&tarball).expect("read");
        sandbox_fixtures::sha256_hex(&bytes);
        t.elapsed()
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (t, d) = (median(from_tarball), median(from_dir));
    println!(
        "per-test cost, one debug test process each ({} byte tarball, {ROUNDS} rounds, medians):",
        std::fs::metadata(&tarball).map(|m| m.len()).unwrap_or(0)
    );
    println!("  SANDBOX_ROOTFS=<tarball>:     {:8.2} ms", ms(t));
    println!("  SANDBOX_ROOTFS=<unpacked dir>: {:8.2} ms (reference)", ms(d));
    println!("  ratio tarball / dir: {:.2}x (hashing the tarball once costs {:.2} ms)", ms(t) / ms(d), ms(hash));
}

fn deep_unpack() {
    let have_tar = Command::new("tar").arg("--version").output().is_ok_and(|o| o.status.success());
    if !have_tar {
        println!("deep-path unpack skipped: tar is not installed");
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    for depth in [60usize, 500] {
        let archive = hostile::deep_paths(2000, depth);
        let file = work.path().join(format!("deep-{depth}.tar.gz"));
        std::fs::write(&file, &archive).expect("write");
        let limits = fetch::UnpackLimits { max_depth: depth + 1, max_path_bytes: 4 * depth + 64, ..Default::default() };
        let (mut ours, mut reference) = (Vec::new(), Vec::new());
        for i in 0..5 {
            let dest = work.path().join(format!("ours-{depth}-{i}"));
            std::fs::create_dir(&dest).expect("mkdir");
            let t = Instant::now();
            fetch::unpack(&archive[..], &dest, &limits, fetch::Ownership::Caller).expect("unpack");
            ours.push(t.elapsed());

            let dest = work.path().join(format!("tar-{depth}-{i}"));
            std::fs::create_dir(&dest).expect("mkdir");
            let t = Instant::now();
            let ok =
                Command::new("tar").arg("-xzf").arg(&file).arg("-C").arg(&dest).status().is_ok_and(|s| s.success());
            reference.push(t.elapsed());
            assert!(ok, "tar -xzf failed");
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let (o, r) = (median(ours), median(reference));
        println!("deep-path unpack, 2000 entries {depth} folders deep (median of 5):");
        println!("  fetch::unpack: {:8.2} ms   tar -xzf: {:8.2} ms   ratio {:.2}x", ms(o), ms(r), ms(o) / ms(r));
    }
}
