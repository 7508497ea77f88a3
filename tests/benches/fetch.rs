//! Fetch benchmark: a cold fetch + verify + unpack from the loopback mirror, and a warm cache hit,
//! against `curl | sha256sum` + `tar -xzf` of the same file, measured in the same run, interleaved.
//!
//! `cargo bench -p system-tests --bench fetch` (or `cargo xtask bench fetch`). Prints medians and
//! ratios; asserts nothing about time.

use std::process::Command;
use std::time::{Duration, Instant};

use sandbox_fixtures::{MiniRootfs, Mirror};

const ROUNDS: usize = 25;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
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
