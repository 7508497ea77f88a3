//! Sandbox start-up benchmark: start a fresh sandbox with its private writable rootfs, run
//! `/bin/true`, wait for every process in it and tear it all down; side by side, interleaved, with
//! bubblewrap, `unshare … chroot` and plain `chroot` on the same unpacked rootfs. Then the default
//! and privileged sandboxes again from a caller with threads (the fork servers' path, as tests run),
//! and throughput with 2 and 4 sandboxes in flight.
//!
//! `cargo bench -p system-tests --bench sandbox` (or `cargo xtask bench sandbox`). Prints medians and
//! ratios; asserts nothing about time. The references need root (and Debian's bubblewrap).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 300;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let work = tempfile::tempdir().expect("tempdir");
    let tarball = work.path().join("rootfs.tar.gz");
    sandbox_fixtures::MiniRootfs::new("3.19.1").write_to(&tarball).expect("fixture rootfs (busybox-static installed?)");
    let rootfs = fetch::Rootfs::from_tarball_in(&tarball, Some(work.path().join("cache"))).expect("unpack");
    let root = rootfs.path().to_owned();
    let sb = sandbox::Sandbox::builder().rootfs(&rootfs).build().expect("sandbox");
    // The same without the hardening that takes powers away (issue 9): what it costs, in this run.
    let privileged = sandbox::Sandbox::builder().rootfs(&rootfs).privileged().build().expect("sandbox");
    let root_s = root.display().to_string();
    let is_root = nix::unistd::geteuid().is_root();
    let have = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };

    let mut references: Vec<(&str, Vec<String>)> = Vec::new();
    if have("bwrap") {
        references.push((
            "bwrap --bind ROOTFS / --proc --dev --unshare-all",
            vec![
                "bwrap".into(),
                "--bind".into(),
                root_s.clone(),
                "/".into(),
                "--proc".into(),
                "/proc".into(),
                "--dev".into(),
                "/dev".into(),
                "--unshare-all".into(),
                "/bin/true".into(),
            ],
        ));
    }
    if is_root {
        references.push((
            "unshare --fork --pid --mount --uts --ipc --net --mount-proc chroot",
            vec![
                "unshare".into(),
                "--fork".into(),
                "--pid".into(),
                "--mount".into(),
                "--uts".into(),
                "--ipc".into(),
                "--net".into(),
                format!("--mount-proc={root_s}/proc"),
                "chroot".into(),
                root_s.clone(),
                "/bin/true".into(),
            ],
        ));
        references.push(("chroot ROOTFS /bin/true (floor)", vec!["chroot".into(), root_s.clone(), "/bin/true".into()]));
    }

    // Warm up (page cache, first spawn of the spawner thread).
    for _ in 0..20 {
        sb.command("/bin/true").status().expect("sandbox run");
    }
    // The default sandbox, the same privileged() and the closure, in each of their six orders in turn:
    // each is first, and follows each of the others, as often, so that what one leaves behind
    // (namespaces the kernel frees after its end) weighs on all alike.
    const ORDERS: [[usize; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    let mut ours: [Vec<Duration>; 3] = std::array::from_fn(|_| Vec::with_capacity(ROUNDS));
    let mut theirs: Vec<Vec<Duration>> = vec![Vec::with_capacity(ROUNDS); references.len()];
    for round in 0..ROUNDS {
        for which in ORDERS[round % ORDERS.len()] {
            let t = Instant::now();
            match which {
                0 => assert!(sb.command("/bin/true").status().expect("sandbox run").success()),
                1 => assert!(privileged.command("/bin/true").status().expect("privileged sandbox run").success()),
                _ => assert_eq!(sb.run(std::process::id).expect("closure run"), 2),
            }
            ours[which].push(t.elapsed());
        }
        for (i, (_, argv)) in references.iter().enumerate() {
            let t = Instant::now();
            let status = Command::new(&argv[0]).args(&argv[1..]).stdin(Stdio::null()).status().expect("reference run");
            theirs[i].push(t.elapsed());
            assert!(status.success(), "{argv:?} failed");
        }
    }
    let [ours, unhardened, closures] = ours;
    let ours = median(ours);
    println!("sandbox start + /bin/true + teardown, {ROUNDS} interleaved rounds, medians:");
    let label = if is_root {
        "sandbox (private overlay root; pid/mnt/uts/ipc/net/cgroup ns)"
    } else {
        "sandbox (private overlay root; user/pid/mnt/uts/ipc/net/cgroup ns)"
    };
    println!("  {label:<70} {:7.2} ms", ms(ours));
    let unhardened = median(unhardened);
    println!(
        "  {:<70} {:7.2} ms   hardening costs {:+.2} ms",
        "the same, Builder::privileged() (no user namespace as root, no seccomp, no masks)",
        ms(unhardened),
        ms(ours) - ms(unhardened)
    );
    let closure = median(closures);
    // With backtraces asked for, a closure's start also makes the link that names its frames.
    let backtraces = ["RUST_BACKTRACE", "RUST_LIB_BACKTRACE"].iter().any(|v| std::env::var_os(v).is_some());
    println!(
        "  {:<70} {:7.2} ms   closure/command = {:.2}x{}",
        "the same sandbox running a closure (Sandbox::run)",
        ms(closure),
        ms(closure) / ms(ours),
        if backtraces { " (RUST_BACKTRACE set: with the link to the binary)" } else { "" }
    );
    for ((name, _), times) in references.iter().zip(theirs) {
        let m = median(times);
        println!("  {name:<70} {:7.2} ms   sandbox/this = {:.2}x", ms(m), ms(ours) / ms(m));
    }
    if references.is_empty() {
        println!("  (no reference: run as root with bubblewrap installed)");
    }

    // The same two from a caller with threads, as a test harness is: sandboxes then go through the
    // fork server, and as root the default ones through the filtered one, which installed the seccomp
    // filter once for all of them (docs/design/process-model.md).
    let (park, parked) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let _ = parked.recv();
    });
    for _ in 0..20 {
        sb.command("/bin/true").status().expect("sandbox run");
        privileged.command("/bin/true").status().expect("privileged sandbox run");
    }
    let (mut served, mut served_unhardened) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
    for round in 0..ROUNDS {
        let mut pair = [(&sb, &mut served), (&privileged, &mut served_unhardened)];
        pair.rotate_left(round % 2);
        for (sandbox, times) in pair {
            let t = Instant::now();
            assert!(sandbox.command("/bin/true").status().expect("sandbox run").success());
            times.push(t.elapsed());
        }
    }
    drop(park);
    let _ = thread.join();
    let (served, served_unhardened) = (median(served), median(served_unhardened));
    println!("from a caller with threads (a test harness: the fork servers), {ROUNDS} interleaved rounds, medians:");
    println!("  {label:<70} {:7.2} ms", ms(served));
    println!(
        "  {:<70} {:7.2} ms   hardening costs {:+.2} ms",
        "the same, Builder::privileged()",
        ms(served_unhardened),
        ms(served) - ms(served_unhardened)
    );

    for in_flight in [1usize, 2, 4] {
        let total = 400;
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..in_flight {
                s.spawn(|| {
                    for _ in 0..total / in_flight {
                        sb.command("/bin/true").status().expect("sandbox run");
                    }
                });
            }
        });
        let per_sec = total as f64 / t.elapsed().as_secs_f64();
        println!("throughput with {in_flight} in flight: {per_sec:7.0} sandboxes/s");
    }
}
