//! A user's flaky system tests, each made safe to run in parallel by one attribute: they bind port 80,
//! change the hostname, rewrite /etc, start and kill daemons, fill /tmp and `kill -9 -1`, all at
//! once, on one machine. Then the same suite runs again as root and as an unprivileged user in child
//! processes, and the host must be unchanged.
//!
//! The rootfs is `$SANDBOX_ROOTFS` (CI points it at a fixture), else the pinned Alpine release.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;

use sandbox::sandbox_test;

mod user_suite {
    use super::*;

    fn serve_once_on_80() -> String {
        let listener = TcpListener::bind("0.0.0.0:80").expect("port 80 is ours in this sandbox");
        let client = std::thread::spawn(|| {
            let mut s = TcpStream::connect("127.0.0.1:80").expect("connect");
            let mut reply = String::new();
            s.read_to_string(&mut reply).expect("read");
            reply
        });
        let (mut conn, _) = listener.accept().expect("accept");
        conn.write_all(b"hello from :80").expect("write");
        drop(conn);
        client.join().expect("client")
    }

    #[sandbox_test]
    fn binds_port_80_first() {
        assert_eq!(serve_once_on_80(), "hello from :80");
    }

    #[sandbox_test]
    fn binds_port_80_second() {
        assert_eq!(serve_once_on_80(), "hello from :80");
    }

    #[sandbox_test]
    fn binds_port_80_third() {
        assert_eq!(serve_once_on_80(), "hello from :80");
    }

    #[sandbox_test(hostname = "web1")]
    fn has_the_hostname_it_asked_for() {
        assert_eq!(nix::unistd::gethostname().expect("hostname").to_string_lossy(), "web1");
        assert_eq!(std::fs::read_to_string("/etc/hostname").expect("read"), "web1\n");
    }

    #[sandbox_test]
    fn sets_its_own_hostname() {
        nix::unistd::sethostname("changed-by-test").expect("sethostname needs root: we are, in here");
        let out = Command::new("/bin/hostname").output().expect("Alpine's hostname");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "changed-by-test\n");
    }

    #[sandbox_test]
    fn sets_another_hostname_at_the_same_time() {
        nix::unistd::sethostname("other-name").expect("sethostname");
        assert_eq!(nix::unistd::gethostname().expect("hostname").to_string_lossy(), "other-name");
    }

    #[sandbox_test]
    fn rewrites_etc_hosts() {
        std::fs::write("/etc/hosts", "10.9.8.7\tdb.internal\n").expect("write /etc/hosts");
        assert_eq!(std::fs::read_to_string("/etc/hosts").expect("read"), "10.9.8.7\tdb.internal\n");
    }

    #[sandbox_test]
    fn adds_a_user_to_etc_passwd() {
        let mut passwd = std::fs::read_to_string("/etc/passwd").expect("read");
        passwd.push_str("app:x:1000:1000::/home/app:/bin/sh\n");
        std::fs::write("/etc/passwd", passwd).expect("write");
        let out = Command::new("/bin/sh").args(["-c", "grep -c '^app:' /etc/passwd"]).output().expect("grep");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    }

    #[sandbox_test]
    fn starts_and_kills_a_daemon() {
        let mut daemon = Command::new("/bin/sleep").arg("1000").spawn().expect("start sleep");
        daemon.kill().expect("kill it");
        assert!(daemon.wait().expect("reap").code().is_none());
    }

    #[sandbox_test]
    fn runs_a_server_daemon() {
        // Alpine's busybox has no httpd: nc serves each connection (-ll) with one line, in the
        // background, and stays after the shell that started it has gone.
        let script =
            "nc -ll -p 8080 -e echo it works & until grep -q ':1F90 ' /proc/net/tcp /proc/net/tcp6; do :; done";
        assert!(Command::new("/bin/sh").args(["-c", script]).status().expect("start nc").success());
        let out = Command::new("/bin/sh").args(["-c", "nc 127.0.0.1 8080 </dev/null"]).output().expect("nc");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it works\n");
    }

    #[sandbox_test]
    fn fills_tmp() {
        let chunk = vec![0x5a_u8; 1 << 20];
        let mut f = std::fs::File::create("/tmp/big").expect("create");
        for _ in 0..64 {
            f.write_all(&chunk).expect("write");
        }
        assert_eq!(std::fs::metadata("/tmp/big").expect("stat").len(), 64 << 20);
    }

    #[sandbox_test]
    #[should_panic(expected = "SIGKILL")]
    fn kill_9_minus_1_kills_only_its_own_sandbox() {
        // On a host this would kill every process root can reach; here, only this sandbox's processes,
        // this test's own process included: the test dies of SIGKILL, nothing else does.
        let _ = Command::new("/bin/sh").args(["-c", "kill -9 -1"]).status();
        unreachable!("kill -9 -1 must have killed this process");
    }

    /// A new user's review: a body that exits with 0 was reported as a crash.
    #[sandbox_test]
    #[should_panic(expected = "before the test returned (std::process::exit in the test?)")]
    fn a_body_that_exits_is_told_apart_from_a_crash() {
        std::process::exit(0);
    }

    #[sandbox_test]
    fn deletes_a_system_binary() {
        std::fs::remove_file("/bin/busybox").expect("remove busybox: only in this sandbox");
        assert!(Command::new("/bin/ls").status().is_err(), "no busybox, no ls");
    }

    #[sandbox_test]
    fn is_pid_2_under_an_init() {
        assert_eq!(std::process::id(), 2);
        let init = std::fs::read_to_string("/proc/1/status").expect("init's status");
        assert!(init.contains("PPid:\t0"), "{init}");
    }

    #[sandbox_test(network = "none")]
    fn has_no_network_at_all() {
        // The address exists, but with lo down nothing can reach it, not even from inside.
        let _listener = TcpListener::bind("127.0.0.1:80").expect("bind");
        let err = TcpStream::connect("127.0.0.1:80").expect_err("no route, even to ourselves");
        assert_eq!(err.raw_os_error(), Some(nix::libc::ENETUNREACH), "{err}");
    }

    #[sandbox_test(env(APP_MODE = "test", RUST_LOG = "debug"))]
    fn sees_its_environment() {
        assert_eq!(std::env::var("APP_MODE").as_deref(), Ok("test"));
        assert_eq!(std::env::var("RUST_LOG").as_deref(), Ok("debug"));
        assert_eq!(std::env::var("HOSTNAME").as_deref(), Ok("sandbox"));
    }

    #[sandbox_test(timeout = "300ms")]
    #[should_panic(expected = "timed out")]
    fn runaway_test_is_killed_at_its_deadline() {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    #[sandbox_test]
    fn returns_a_result() -> Result<(), Box<dyn std::error::Error>> {
        let release = std::fs::read_to_string("/etc/alpine-release")?;
        assert!(!release.trim().is_empty());
        Ok(())
    }

    #[sandbox_test]
    #[should_panic(expected = "boom")]
    fn panics_like_a_test() {
        panic!("boom");
    }

    #[sandbox_test]
    fn mounts_a_tmpfs_as_root() {
        std::fs::create_dir_all("/mnt/scratch").expect("mkdir");
        let st = Command::new("/bin/busybox")
            .args(["mount", "-t", "tmpfs", "none", "/mnt/scratch"])
            .status()
            .expect("mount");
        assert!(st.success());
        std::fs::write("/mnt/scratch/x", "y").expect("write");
    }

    #[sandbox_test]
    #[ignore = "shows that #[ignore] composes"]
    fn ignored_unless_asked() {}
}

/// What the suite touches on a host, to compare before and after.
fn host_state() -> (String, Vec<u8>, Vec<u8>, Vec<u8>, usize) {
    let hostname = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let read = |p: &str| std::fs::read(p).unwrap_or_default();
    let sleepers = system_tests::pids_matching("sleep 1000").len();
    (hostname, read("/etc/hosts"), read("/etc/passwd"), read("/etc/hostname"), sleepers)
}

#[test]
fn suite_passes_in_parallel_and_leaves_the_host_unchanged() {
    let before = host_state();
    system_tests::ChildTest::filter("user_suite::").assert_success();
    assert_eq!(host_state(), before, "the host's hostname, /etc and processes are unchanged");
}

#[test]
fn suite_passes_rootless_too() {
    if !system_tests::is_root() {
        return; // already unprivileged: the suite itself ran rootless
    }
    let Some((_, uid, gid)) = system_tests::test_user() else {
        return system_tests::skip(
            "no unprivileged test user: create one (`useradd sandbox-test`) or set $SANDBOX_TEST_USER",
        );
    };
    let home = system_tests::dir_owned_by(uid, gid);
    let mut child = system_tests::ChildTest::filter("user_suite::")
        .as_user(uid, gid)
        .env("SANDBOX_CACHE_DIR", home.path().join("cache"));
    // The rootfs must be readable by that user: a copy of $SANDBOX_ROOTFS, or the default release.
    if let Some(rootfs) = std::env::var_os("SANDBOX_ROOTFS") {
        let copy = home.path().join("rootfs.tar.gz");
        std::fs::copy(&rootfs, &copy).expect("copy $SANDBOX_ROOTFS for the test user");
        std::os::unix::fs::chown(&copy, Some(uid), Some(gid)).expect("chown");
        child = child.env("SANDBOX_ROOTFS", &copy);
    }
    let before = host_state();
    child.assert_success();
    assert_eq!(host_state(), before);
}

#[test]
fn rootfs_option_fetches_that_alpine_version() {
    let mirror = sandbox_fixtures::Mirror::start().expect("mirror");
    for v in ["3.19.1", "3.19.4"] {
        mirror.add_release(
            v,
            fetch::Arch::host().map_or("x86_64", |a| a.as_str()),
            sandbox_fixtures::MiniRootfs::new(v).build().expect("fixture"),
        );
    }
    let cache = tempfile::tempdir().expect("tempdir");
    system_tests::ChildTest::new("child_with_rootfs_option")
        .env("SANDBOX_ALPINE_MIRROR", mirror.url())
        .env("SANDBOX_CACHE_DIR", cache.path())
        .env("SANDBOX_OFFLINE", "0")
        .assert_success();
    assert_eq!(mirror.hits(".tar.gz"), 1, "fetched once, by the parent; the sandbox's process did not fetch again");
}

#[sandbox_test(rootfs = "alpine:3.19")]
#[ignore = "run by its parent test, with a loopback mirror"]
fn child_with_rootfs_option() {
    assert_eq!(std::fs::read_to_string("/etc/alpine-release").expect("release"), "3.19.4-fixture\n");
}

// Bug 6: the tree used to be built in `<repo>/target` even when CARGO_TARGET_DIR was elsewhere; it
// lives in this build's target directory now (a relative `rootfs_dir` is checked by the macro's tests).
#[test]
fn rootfs_dir_option_takes_a_tree_the_test_built() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandbox-rootfs-dir-fixture");
    if !dir.join("etc/alpine-release").exists() {
        let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
        std::fs::create_dir_all(&tmp).expect("mkdir");
        let tarball = sandbox_fixtures::MiniRootfs::new("3.18.9").build().expect("fixture");
        fetch::unpack(&tarball[..], &tmp, &Default::default(), fetch::Ownership::Caller).expect("unpack");
        // Another test process may have won the race: then its tree is as good as ours.
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    system_tests::ChildTest::new("child_with_rootfs_dir_option").assert_success();
    let repo_target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let repo_target = repo_target.canonicalize().unwrap_or(repo_target);
    if !std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).starts_with(&repo_target) {
        let in_repo = repo_target.join("sandbox-rootfs-dir-fixture");
        assert!(!in_repo.exists(), "nothing written to {} when the target directory is elsewhere", in_repo.display());
    }
}

#[sandbox_test(rootfs_dir = concat!(env!("CARGO_TARGET_TMPDIR"), "/sandbox-rootfs-dir-fixture"), hostname = "from-dir")]
#[ignore = "run by its parent test, which prepares the directory"]
fn child_with_rootfs_dir_option() {
    assert_eq!(std::fs::read_to_string("/etc/alpine-release").expect("release"), "3.18.9-fixture\n");
    assert_eq!(nix::unistd::gethostname().expect("hostname").to_string_lossy(), "from-dir");
}

#[sandbox_test(mount(bind = "data", at = "/data", read_only), mount(tmpfs = "/scratch", size = "1M"))]
fn volumes_from_the_attribute() {
    assert_eq!(std::fs::read_to_string("/data/readme.txt").expect("read"), "fixture data for volume tests\n");
    let err = std::fs::write("/data/new", "x").expect_err("read-only volume");
    assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS), "{err}");
    let big = vec![0u8; 2 << 20];
    let err = std::fs::write("/scratch/big", big).expect_err("a 1 MiB tmpfs");
    assert_eq!(err.raw_os_error(), Some(nix::libc::ENOSPC), "{err}");
}

#[sandbox_test(writable_size = "4M")]
fn writable_size_from_the_attribute() {
    let big = vec![0u8; 8 << 20];
    for path in ["/big", "/tmp/big"] {
        let err = std::fs::write(path, &big).expect_err("a 4 MiB writable layer and /tmp");
        assert_eq!(err.raw_os_error(), Some(nix::libc::ENOSPC), "{path}: {err}");
        std::fs::remove_file(path).expect("remove what was written");
    }
}

#[test]
fn memory_limit_from_the_attribute() {
    let v1 = !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if !system_tests::is_root() && v1 {
        return system_tests::skip("limits on cgroup v1 need root");
    }
    system_tests::ChildTest::new("child_memory_hog_fails_with_the_limit_in_the_message").assert_success();
}

#[sandbox_test(memory = "32M", pids = 64, cpus = 1)]
#[should_panic(expected = "memory limit of 32 MiB exceeded")]
#[ignore = "run by its parent test, which knows whether limits are possible here"]
fn child_memory_hog_fails_with_the_limit_in_the_message() {
    let mut hog: Vec<Vec<u8>> = Vec::new();
    loop {
        hog.push(vec![1u8; 1 << 20]);
    }
}

/// A new user's review: a `#[should_panic]` test passed whenever its sandbox failed (a missing
/// rootfs, a timeout), though its body never panicked; on a broken machine every such test was green.
/// A sandbox that cannot be set up meets no `#[should_panic]`, `expected` text or not, and a bare
/// `#[should_panic]` is met by a panic of the body alone: the test fails as libtest says ("did not
/// panic as expected"), with the reason on stderr.
#[test]
fn should_panic_is_met_by_the_body_s_panic_not_by_a_failed_sandbox() {
    for (child, reason) in [
        ("child_should_panic_without_its_rootfs", "has no rootfs"),
        ("child_should_panic_expecting_the_setup_message", "has no rootfs"),
        ("child_bare_should_panic_times_out", "timed out after"),
    ] {
        let out = system_tests::ChildTest::new(child).env("SANDBOX_TEST_TIMEOUT", "60s").output();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(
            !out.status.success() && stdout.contains("did not panic as expected") && stderr.contains(reason),
            "{child} should fail, saying why ({reason}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
    }
    // What the body does still meets an `expected` text: its panic, its timeout (suite's user_suite).
    system_tests::ChildTest::new("child_should_panic_panics").assert_success();
}

/// The 34th outside review: a hung test whose `#[should_panic(expected = …)]` text was in a command
/// line it was running (`nc 127.0.0.1 8080`, expected "8080") passed: the timeout's message listed
/// the sandbox's processes. They go to stderr now; the message says only that it timed out.
#[test]
fn a_hung_test_does_not_meet_an_expected_text_through_what_it_was_running() {
    let out = system_tests::ChildTest::new("child_hangs_in_a_program_named_like_its_expected_text").output();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        !out.status.success() && stdout.contains("panic did not contain expected string"),
        "the hung test must fail:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(stderr.contains("timed out after") && stderr.contains("sleep 4242"), "what it ran, on stderr:\n{stderr}");
}

#[sandbox_test(timeout = "2s")]
#[should_panic(expected = "4242")]
#[ignore = "run by its parent test, which checks that it fails"]
fn child_hangs_in_a_program_named_like_its_expected_text() {
    let status = std::process::Command::new("/bin/sleep").arg("4242").status();
    panic!("sleep ended before the deadline: {status:?}");
}

#[sandbox_test(rootfs_dir = "does/not/exist")]
#[should_panic]
#[ignore = "run by its parent test, which checks that it fails"]
fn child_should_panic_without_its_rootfs() {}

#[sandbox_test(rootfs_dir = "does/not/exist")]
#[should_panic(expected = "has no rootfs")]
#[ignore = "run by its parent test, which checks that it fails"]
fn child_should_panic_expecting_the_setup_message() {}

#[sandbox_test(timeout = "300ms")]
#[should_panic]
#[ignore = "run by its parent test, which checks that it fails"]
fn child_bare_should_panic_times_out() {
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[sandbox_test]
#[should_panic]
#[ignore = "run by its parent test"]
fn child_should_panic_panics() {
    panic!("the body's own panic");
}

/// A skipped `#[should_panic]` test passes, as every skipped test does: rootless, where a switch
/// network cannot be had, the child below prints its `SKIP:` line and passes (as root its body runs,
/// panics with the expected text, and passes).
#[test]
fn a_skipped_should_panic_test_passes() {
    let child = || {
        system_tests::ChildTest::new("child_should_panic_requires_a_switch")
            .env("CI", "false")
            .env("SANDBOX_TEST_STRICT", "0")
    };
    if system_tests::is_root() {
        child().assert_success();
    }
    let Some((_, uid, gid)) = system_tests::test_user() else {
        return system_tests::skip("no unprivileged test user: create one (`useradd sandbox-test`)");
    };
    if !system_tests::is_root() {
        return; // the rootless half needs root to switch users
    }
    let out = child().as_user(uid, gid).assert_success();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SKIP: a switch network needs root"), "{stderr}");
}

#[sandbox_test(requires = "switch")]
#[should_panic(expected = "boom")]
#[ignore = "run by its parent test, as root and as an unprivileged user"]
fn child_should_panic_requires_a_switch() {
    panic!("boom");
}

#[test]
fn requires_skips_where_the_machine_cannot_and_runs_where_it_can() {
    let child =
        || system_tests::ChildTest::new("child_requires_a_switch").env("CI", "false").env("SANDBOX_TEST_STRICT", "0");
    if system_tests::is_root() {
        let out = child().assert_success();
        assert!(String::from_utf8_lossy(&out.stdout).contains("the body ran"), "as root the test runs");
    }
    let Some((_, uid, gid)) = system_tests::test_user() else {
        return system_tests::skip("no unprivileged test user: create one (`useradd sandbox-test`)");
    };
    if !system_tests::is_root() {
        return; // the rootless half needs root to switch users
    }
    let out = child().as_user(uid, gid).assert_success();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains("the body ran") && stderr.contains("SKIP: a switch network needs root"), "{stderr}");
    let strict = child().as_user(uid, gid).env("SANDBOX_TEST_STRICT", "1").output();
    assert!(!strict.status.success(), "strict mode turns the skip into a failure");
}

#[sandbox_test(requires = "switch")]
#[ignore = "run by its parent test, as root and as an unprivileged user"]
fn child_requires_a_switch() {
    println!("the body ran");
}

/// Where limits cannot be had (rootless on cgroup v1, or on v2 without a delegated subtree), the skip
/// line says how to get them, as a failed start does (a new user's review: it named the cgroup and
/// the errno only).
#[test]
fn a_limits_skip_says_how_to_get_limits() {
    let Some((_, uid, gid)) = system_tests::test_user() else {
        return system_tests::skip("no unprivileged test user: create one (`useradd sandbox-test`)");
    };
    if !system_tests::is_root() {
        return; // it needs root to switch users
    }
    let out = system_tests::ChildTest::new("child_requires_limits")
        .env("CI", "false")
        .env("SANDBOX_TEST_STRICT", "0")
        .as_user(uid, gid)
        .assert_success();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !stdout.contains("the body ran") {
        let skip = stderr.lines().find(|l| l.starts_with("SKIP:")).unwrap_or_default();
        assert!(skip.contains("resource limits need a cgroup") && skip.contains("Delegate=yes"), "{stderr}");
    }
}

#[sandbox_test(requires = "limits", pids = 64)]
#[ignore = "run by its parent test, as an unprivileged user"]
fn child_requires_limits() {
    println!("the body ran");
}

/// Review 18: a `$SANDBOX_TEST_TIMEOUT` that does not parse (`1.5m`, `abc`) is silently replaced by
/// the 5-minute default: a user who set it to bound a hang waits 5 minutes instead, with no word.
/// Bad input should get a clear error (the test fails, naming the variable and what it takes).
#[test]
fn an_invalid_sandbox_test_timeout_is_an_error() {
    for bad in ["1.5m", "abc"] {
        let out =
            system_tests::ChildTest::new("child_uses_the_default_timeout").env("SANDBOX_TEST_TIMEOUT", bad).output();
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success() && all.contains("SANDBOX_TEST_TIMEOUT"), "SANDBOX_TEST_TIMEOUT={bad}:\n{all}");
    }
    // The 34th outside review: empty (as unset), hours, and `none` (no deadline, for a debugger)
    // failed every test.
    for good in ["", "1h", "none", "90s"] {
        let out =
            system_tests::ChildTest::new("child_uses_the_default_timeout").env("SANDBOX_TEST_TIMEOUT", good).output();
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "SANDBOX_TEST_TIMEOUT={good:?}:\n{all}");
    }
}

#[sandbox_test]
#[ignore = "run by its parent test, with $SANDBOX_TEST_TIMEOUT set"]
fn child_uses_the_default_timeout() {}

/// A new user's review: with sandbox-run's wrapper choosing a `#[sandbox_test]` test as well, the
/// test ran inside a sandbox already, failed to make its own, and said only what failed (a missing
/// rootfs, a refused id map). It now says that sandboxes do not nest and what to do. Here the test's
/// function runs as a closure in a sandbox, as under the wrapper (its PID 1 is `sandbox-init`).
#[test]
fn a_sandbox_test_run_inside_a_sandbox_says_that_sandboxes_do_not_nest() {
    // (A closure's environment is clean: no `$SANDBOX_ROOTFS`; the error said so before, as a failed
    // download, a new user's review.)
    let sb = sandbox::Sandbox::builder().build().expect("build");
    let err = sb.run(child_uses_the_default_timeout).expect_err("a sandbox made inside a sandbox");
    let text = err.to_string();
    for part in ["sandboxes do not nest", "leave #[sandbox_test] tests out of sandbox-run's wrapper filter"] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    // The library says the same, to any caller inside.
    let inner = sb.run(|| sandbox::Sandbox::builder().build().map(drop).map_err(|e| e.to_string())).expect("run");
    assert!(inner.as_ref().is_err_and(|e| e.contains("sandboxes do not nest")), "{inner:?}");
}
