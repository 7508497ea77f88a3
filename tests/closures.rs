//! Closures in a sandbox, as a user writes them: `run` and `run_with` calls anywhere in a test, on any
//! thread; only the closure runs inside, once; failures read like test failures.

use std::io::Write;

use sandbox::{Error, Sandbox};

fn sandbox(hostname: &str) -> Sandbox {
    let rootfs = system_tests::fixture_rootfs(env!("CARGO_TARGET_TMPDIR"));
    Sandbox::builder().rootfs(&rootfs).hostname(hostname).build().expect("build")
}

mod user {
    use super::*;

    fn log_line(log: &std::path::Path, line: &str) {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open the log");
        writeln!(f, "{line}").expect("log");
    }

    #[test]
    fn the_callers_code_runs_once_around_several_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        log_line(&log, "before");
        let sb = sandbox("inner");
        let release: String =
            sb.run(|| std::fs::read_to_string("/etc/alpine-release").expect("release")).expect("first");
        log_line(&log, "between");
        let host: String = sb.run(|| std::fs::read_to_string("/etc/hostname").expect("hostname")).expect("second");
        log_line(&log, "after");
        assert_eq!((release.as_str(), host.as_str()), ("3.19.1-fixture\n", "inner\n"));
        assert_eq!(std::fs::read_to_string(&log).expect("read the log"), "before\nbetween\nafter\n");
    }

    /// A helper that two tests call: each call is its own sandbox, whatever the caller.
    fn pid_inside(sb: &Sandbox) -> u32 {
        sb.run(std::process::id).expect("run")
    }

    #[test]
    fn a_run_in_a_helper_and_a_loop() {
        let sb = sandbox("looped");
        for _ in 0..3 {
            assert_eq!(pid_inside(&sb), 2, "the closure is PID 2 under the sandbox's init, every time");
        }
    }

    /// More output than a pipe holds on both streams, and a value larger than one too: neither
    /// waits for the other (the caller moves the output while it awaits the value).
    #[test]
    fn a_large_value_and_large_outputs_at_once() {
        let rootfs = system_tests::fixture_rootfs(env!("CARGO_TARGET_TMPDIR"));
        // A stall would end at the deadline, as an error, rather than hang the suite.
        let sb = Sandbox::builder().rootfs(&rootfs).timeout(std::time::Duration::from_secs(60)).build().expect("build");
        let value: String = sb
            .run(|| {
                let line = "0123456789abcdef".repeat(64);
                for _ in 0..256 {
                    println!("{line}");
                    eprintln!("{line}");
                }
                "v".repeat(1 << 20)
            })
            .expect("run");
        assert_eq!(value.len(), 1 << 20);
    }

    #[test]
    fn run_with_passes_inputs() {
        let sb = sandbox("inputs");
        let doubled: u64 = sb.run_with(21u32, |n| u64::from(n) * 2).expect("u32");
        assert_eq!(doubled, 42);
        let path = "/etc/hostname".to_owned();
        let (read, name): (String, String) =
            sb.run_with(path, |p| (std::fs::read_to_string(&p).expect("read"), p)).expect("String");
        assert_eq!((read.as_str(), name.as_str()), ("inputs\n", "/etc/hostname"));
    }

    #[test]
    fn a_panic_is_an_error_with_its_message_and_place() {
        let sb = sandbox("panics");
        let err = sb.run(|| -> () { assert_eq!(1 + 1, 3, "arithmetic inside") }).expect_err("panicked");
        let text = err.to_string();
        assert!(
            matches!(&err, Error::Panicked { location: Some(l), .. } if l.starts_with("tests/closures.rs:")),
            "{err:?}"
        );
        assert!(text.contains("arithmetic inside") && text.contains("tests/closures.rs:"), "{text}");
    }

    /// A value JSON cannot hold is no panic of the closure's (a new user's review: it was reported as
    /// `Panicked` without a place).
    #[test]
    fn a_value_that_cannot_travel_is_a_result_error_not_a_panic() {
        let sb = sandbox("unencodable");
        let err = sb
            .run(|| std::collections::HashMap::from([((1u8, 2u8), 3u8)]))
            .expect_err("a map with tuple keys has no JSON form");
        assert!(matches!(&err, Error::ClosureResult { reason } if reason.contains("key must be a string")), "{err:?}");
    }

    #[test]
    fn eight_threads_at_once() {
        let sb = sandbox("threads");
        let handles: Vec<_> = (0..8u32)
            .map(|i| {
                let sb = sb.clone();
                std::thread::spawn(move || {
                    sb.run_with(i, |i| {
                        std::fs::write("/tmp/mine", i.to_string()).expect("write");
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        std::fs::read_to_string("/tmp/mine").expect("read")
                    })
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().expect("thread").expect("run"), i.to_string(), "each closure has its own /tmp");
        }
    }

    #[test]
    fn works_outside_a_test_thread_too() {
        // A closure from a thread that is no test's (as in a tool's `main`).
        let sb = sandbox("anywhere");
        let host = std::thread::Builder::new()
            .name("main".into())
            .spawn(move || sb.run(|| std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname")))
            .expect("spawn")
            .join()
            .expect("join");
        assert_eq!(host.expect("run"), "anywhere\n");
    }
}

#[test]
fn closures_work_rootless_too() {
    if !system_tests::is_root() {
        return; // this run is already unprivileged
    }
    let Some((_, uid, gid)) = system_tests::test_user() else {
        return system_tests::skip("no unprivileged test user: create one (`useradd sandbox-test`)");
    };
    let home = system_tests::dir_owned_by(uid, gid);
    system_tests::ChildTest::filter("user::")
        .as_user(uid, gid)
        .env("SANDBOX_TEST_CACHE", home.path().join("cache"))
        .env("TMPDIR", home.path())
        .assert_success();
}

#[test]
fn a_panic_inside_has_a_symbolised_backtrace() {
    let out = system_tests::ChildTest::new("child_panics_in_a_closure").env("RUST_BACKTRACE", "1").output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("deliberate, deep inside"), "{stderr}");
    assert!(stderr.contains("closures::body_that_panics"), "the body's frame is named:\n{stderr}");
    assert!(
        stderr.contains("thread 'child_panics_in_a_closure' ("),
        "the test's name, as libtest prints it:\n{stderr}"
    );
}

/// As an unprivileged user the binary is reached the same way (root inside writes the link).
#[test]
fn rootless_a_panic_inside_has_a_symbolised_backtrace() {
    if !system_tests::is_root() {
        return; // this run is already unprivileged: the test above is this one
    }
    let Some((_, uid, gid)) = system_tests::test_user() else {
        return system_tests::skip("no unprivileged test user: create one (`useradd sandbox-test`)");
    };
    let home = system_tests::dir_owned_by(uid, gid);
    let out = system_tests::ChildTest::new("child_panics_in_a_closure")
        .as_user(uid, gid)
        .env("SANDBOX_TEST_CACHE", home.path().join("cache"))
        .env("TMPDIR", home.path())
        .env("RUST_BACKTRACE", "1")
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("closures::body_that_panics"), "the body's frame is named:\n{stderr}");
    assert!(stderr.contains("thread 'child_panics_in_a_closure' ("), "the test's name:\n{stderr}");
}

/// The link that names a backtrace's frames is made on the sandbox's own file systems only, never in
/// a volume: with the binary's top folder bound read-write from the host, a panic leaves that host
/// folder as it was (and the frames unnamed).
#[test]
fn a_panics_backtrace_leaves_nothing_in_a_volume() {
    let host = tempfile::tempdir().expect("tempdir");
    let out = system_tests::ChildTest::new("child_panics_over_a_volume")
        .env("RUST_BACKTRACE", "1")
        .env("SANDBOX_TEST_VOLUME", host.path())
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("deliberate, deep inside"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(host.path()).expect("read the volume").flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "the host folder got {left:?}");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_panics_over_a_volume() {
    if !system_tests::is_child("child_panics_over_a_volume") {
        return;
    }
    let source = std::env::var_os("SANDBOX_TEST_VOLUME").expect("SANDBOX_TEST_VOLUME");
    let exe = std::env::current_exe().expect("current_exe");
    let top = exe.ancestors().filter(|a| a.parent().is_some()).last().expect("a top folder");
    let rootfs = system_tests::fixture_rootfs(env!("CARGO_TARGET_TMPDIR"));
    let sb = Sandbox::builder()
        .rootfs(&rootfs)
        .mount(sandbox::Mount::bind(std::path::Path::new(&source), top.to_string_lossy()))
        .build()
        .expect("build");
    let err = sb.run(body_that_panics).expect_err("panics");
    assert!(err.to_string().contains("deliberate"), "{err}");
}

#[inline(never)]
fn body_that_panics() -> u32 {
    panic!("deliberate, deep inside")
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_panics_in_a_closure() {
    if !system_tests::is_child("child_panics_in_a_closure") {
        return;
    }
    let err = sandbox("backtrace").run(body_that_panics).expect_err("panics");
    assert!(err.to_string().contains("deliberate"), "{err}");
}

/// The closure's panic report takes the caller's thread's name by writing std's report to a memory
/// file through the process's stderr descriptor: never while other threads run. An outside review
/// found programs another thread of the closure started during a panic kept that file as their
/// stderr (their output lost), and the saved stderr leaked into them.
#[test]
fn a_panic_leaves_stderr_alone_for_programs_other_threads_start() {
    let out =
        system_tests::ChildTest::new("child_panics_while_a_thread_starts_programs").env("RUST_BACKTRACE", "1").output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_panics_while_a_thread_starts_programs() {
    if !system_tests::is_child("child_panics_while_a_thread_starts_programs") {
        return;
    }
    let sb = sandbox("busy");
    let seen: Vec<String> = sb
        .run(|| {
            let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = done.clone();
            let starter = std::thread::spawn(move || {
                let fds: Vec<String> = (0..30)
                    .map(|_| {
                        let out = std::process::Command::new("/bin/sh")
                            .args(["-c", "readlink /proc/$$/fd/2; ls -l /proc/$$/fd"])
                            .stderr(std::process::Stdio::inherit())
                            .output()
                            .expect("start sh");
                        String::from_utf8_lossy(&out.stdout).into_owned()
                    })
                    .collect();
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                fds
            });
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = std::panic::catch_unwind(|| panic!("deliberate, while programs start"));
            }
            starter.join().expect("join")
        })
        .expect("run");
    for fds in &seen {
        assert!(!fds.contains("memfd"), "a program got the panic's memory file as stderr: {fds}");
        // The shell's stdin, stdout and stderr: nothing inherited besides.
        assert_eq!(fds.lines().filter(|l| l.contains(" -> ")).count(), 3, "{fds}");
    }
}

/// A thread of the closure that holds stdout's lock for good (a logger) no longer keeps the closure
/// from ending: it flushed stdout through the lock, and waited for it.
#[test]
fn a_thread_holding_stdout_does_not_keep_a_closure_from_ending() {
    let sb = Sandbox::builder()
        .rootfs(&system_tests::fixture_rootfs(env!("CARGO_TARGET_TMPDIR")))
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("build");
    let value = sb.run(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "logger up");
            let _ = tx.send(());
            std::thread::sleep(std::time::Duration::from_secs(600));
        });
        rx.recv().expect("the logger holds stdout");
        7u32
    });
    assert_eq!(value.expect("run"), 7);
}

/// A last line without a newline reaches the caller although another thread of the closure takes
/// stdout's lock over and over (a review lost it in 4 of 20 runs once exit's own flush, which only
/// tries the lock, was all there was).
#[test]
fn a_last_partial_line_arrives_past_a_busy_stdout() {
    let out = system_tests::ChildTest::new("child_prints_a_partial_line_past_a_busy_stdout").output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches("RESULT=42").count(), 20, "{stdout}");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_prints_a_partial_line_past_a_busy_stdout() {
    if !system_tests::is_child("child_prints_a_partial_line_past_a_busy_stdout") {
        return;
    }
    let sb = sandbox("busy-stdout");
    for _ in 0..20 {
        let value = sb.run(|| {
            std::thread::spawn(|| {
                loop {
                    let held = std::io::stdout().lock();
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    drop(held);
                    std::thread::sleep(std::time::Duration::from_micros(20));
                }
            });
            std::thread::sleep(std::time::Duration::from_millis(3));
            print!("RESULT=42");
            12u32
        });
        assert_eq!(value.expect("run"), 12);
        println!();
    }
}

/// A tool that runs a closure while its own stdout is a pipe nobody reads any more (`tool | head -1`
/// once head has gone): the closure's output cannot be printed, and `run` says so as an error (as it
/// did before a317cad: the closure died of SIGPIPE, `Error::Crashed`), rather than aborting the
/// whole caller.
#[test]
fn a_caller_whose_stdout_is_gone_gets_an_answer_not_an_abort() {
    let out = system_tests::ChildTest::new("child_runs_with_stdout_gone").output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run returned: "), "Sandbox::run did not return ({}):\n{stderr}", out.status);
}

/// The same caller: that its stdout is gone is handled (run returns), so nothing reports a panic to
/// it. Failed before 82ea50c: the pump's print! panics and is caught (8a3a5e2), but the panic hook has already run,
/// so the caller's stderr gets "panicked at ... failed printing to stdout: Broken pipe" and a
/// backtrace (with `panic = "abort"`, as many tools' release profiles set, the process aborts there).
#[test]
fn a_caller_whose_stdout_is_gone_is_not_told_of_a_panic() {
    let out = system_tests::ChildTest::new("child_runs_with_stdout_gone").output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run returned: "), "Sandbox::run did not return ({}):\n{stderr}", out.status);
    assert!(!stderr.contains("panicked"), "a handled failure is reported as a panic:\n{stderr}");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_runs_with_stdout_gone() {
    if !system_tests::is_child("child_runs_with_stdout_gone") {
        return;
    }
    // This process's stdout (the harness prints nothing more before the test ends) becomes a pipe
    // whose reader is gone.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    nix::unistd::dup2_stdout(&writer).expect("dup2 onto stdout");
    let got = sandbox("stdout-gone").run(|| {
        for _ in 0..10_000 {
            println!("a line of the closure's output");
        }
        7u32
    });
    eprintln!("run returned: {got:?}");
}

/// A writable layer kept in a host folder (`Builder::writable_layer_in`) is the record of what the
/// sandbox changed, and it stays on the host: the link that names a backtrace's frames must not land
/// there, as it must not in a volume. Failed before 82ea50c: a panic with `RUST_BACKTRACE=1` leaves the binary's
/// folders and a link to `/proc/self/exe` at the binary's path in the host's `upper` folder, changes
/// the test never made (here the binary's top folder exists in the sandbox, as `/home`, `/opt` or
/// `/root` do in an Alpine rootfs).
#[test]
fn a_panics_backtrace_leaves_nothing_in_a_kept_writable_layer() {
    let kept = tempfile::tempdir().expect("tempdir");
    let out = system_tests::ChildTest::new("child_panics_with_a_kept_layer")
        .env("RUST_BACKTRACE", "1")
        .env("SANDBOX_TEST_LAYER", kept.path())
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("deliberate, deep inside"), "{stderr}");
    let exe = std::env::current_exe().expect("current_exe");
    let upper = kept.path().join("upper");
    let made = upper.join(exe.parent().expect("a folder").strip_prefix("/").expect("absolute"));
    assert!(
        std::fs::symlink_metadata(&made).is_err(),
        "the kept layer got {} (link at the binary's path: {:?})",
        made.display(),
        std::fs::read_link(upper.join(exe.strip_prefix("/").expect("absolute"))).ok()
    );
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_panics_with_a_kept_layer() {
    if !system_tests::is_child("child_panics_with_a_kept_layer") {
        return;
    }
    let dir = std::env::var_os("SANDBOX_TEST_LAYER").expect("SANDBOX_TEST_LAYER");
    let rootfs = system_tests::fixture_rootfs(env!("CARGO_TARGET_TMPDIR"));
    // The binary's top folder exists in the sandbox, as `/home` or `/opt` does in an Alpine rootfs.
    let exe = std::env::current_exe().expect("current_exe");
    let top = exe.ancestors().filter(|a| a.parent().is_some()).last().expect("a top folder");
    let sb = Sandbox::builder()
        .rootfs(&rootfs)
        .writable_layer_in(dir)
        .file(top.join(".here").to_string_lossy(), "")
        .build()
        .expect("build");
    let err = sb.run(body_that_panics).expect_err("panics");
    assert!(err.to_string().contains("deliberate"), "{err}");
}

/// Something other than the binary at the binary's path inside the sandbox (here a FIFO, from a
/// layer; the rootfs is not the test's to choose) must not stop a panic from being reported: the
/// frames may go unnamed, the panic is still an `Err` with its message. Failed before 82ea50c: the symboliser opens
/// the FIFO at `current_exe()`'s path (the link is not made where an entry exists, and the binary is
/// no longer bound there), which blocks forever, so the closure's process hangs in its panic hook
/// until the sandbox's deadline (`Error::TimedOut` instead of `Error::Panicked`).
#[test]
fn a_fifo_at_the_binarys_path_does_not_hang_a_panicking_closure() {
    let layer = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current_exe");
    let fifo = layer.path().join(exe.strip_prefix("/").expect("absolute"));
    std::fs::create_dir_all(fifo.parent().expect("a parent")).expect("the binary's folders in the layer");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    let out = system_tests::ChildTest::new("child_panics_over_a_fifo")
        .env("RUST_BACKTRACE", "1")
        .env("SANDBOX_TEST_LAYER", layer.path())
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_panics_over_a_fifo() {
    if !system_tests::is_child("child_panics_over_a_fifo") {
        return;
    }
    let layer = std::env::var_os("SANDBOX_TEST_LAYER").expect("SANDBOX_TEST_LAYER");
    let rootfs = system_tests::fixture_rootfs(env!("CARGO_TARGET_TMPDIR"));
    let sb = Sandbox::builder()
        .rootfs(&rootfs)
        .layer(layer)
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .expect("build");
    match sb.run(body_that_panics) {
        Err(Error::Panicked { message, .. }) => assert!(message.contains("deliberate"), "{message}"),
        other => panic!("a panic reported as {other:?}"),
    }
}

/// A closure that installs its own panic hook (as `color-backtrace`, `color-eyre` or a test's
/// `tracing` set-up do) and prints the backtrace from it: with `RUST_BACKTRACE=1` the frames are
/// named, as they are with the default hook and as they were while the binary was bound in. Failed before 82ea50c:
/// the link to the binary is made only by the library's own hook (spawn::closure::reach_own_binary),
/// which the closure's hook replaced, so the frames go unnamed.
#[test]
fn a_closures_own_panic_hook_gets_a_symbolised_backtrace() {
    let out = system_tests::ChildTest::new("child_panics_with_its_own_hook").env("RUST_BACKTRACE", "1").output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("own hook:"), "{stderr}");
    assert!(stderr.contains("closures::body_that_panics"), "the body's frame is named:\n{stderr}");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_panics_with_its_own_hook() {
    if !system_tests::is_child("child_panics_with_its_own_hook") {
        return;
    }
    let err = sandbox("own-hook")
        .run(|| {
            std::panic::set_hook(Box::new(|info| {
                eprintln!("own hook: {info}\n{}", std::backtrace::Backtrace::force_capture());
            }));
            body_that_panics()
        })
        .expect_err("panics");
    assert!(err.to_string().contains("deliberate"), "{err}");
}

/// A new user's review: a closure saw the statics its caller had set when the caller was
/// single-threaded (its sandbox was then forked from the caller itself), and the binary's initial
/// values once the caller had a second thread or `SANDBOX_NO_FORK_SERVER=1`. The README says a
/// closure's process is no fork of the caller; it is none, whatever the caller's threads: here a
/// single-threaded caller (tests/bin/one-sandbox.rs) sets a static to 7 and its closure sees 1.
#[test]
fn a_closure_sees_statics_as_the_binary_started_whoever_calls_it() {
    let rootfs = system_tests::fixture_rootfs(env!("CARGO_TARGET_TMPDIR"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_one-sandbox"))
        .arg("--closure-static")
        .env("SANDBOX_ROOTFS", rootfs.path())
        .output()
        .expect("run one-sandbox");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "closure saw 1\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And from this (multi-threaded) test process, the same.
    static MINE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    MINE.store(7, std::sync::atomic::Ordering::SeqCst);
    let sb = sandbox::Sandbox::builder().rootfs(&rootfs).build().expect("build");
    assert_eq!(sb.run(|| MINE.load(std::sync::atomic::Ordering::SeqCst)).expect("run"), 1);
}

/// The same FIFO, under a single-threaded caller (as `sandbox-run` or a tool's `main`, here
/// tests/bin/one-sandbox.rs) that had captured a backtrace of its own before (as every
/// `anyhow::Error` does with `RUST_BACKTRACE=1`), and a closure that prints a captured backtrace.
/// Failed before 895613b: the closure's process is a fork of the caller, and std decided whether to capture at the
/// caller's first capture (it keeps the variables' answer in a static); dropping the backtrace
/// variables from the closure's environment (spawn::closure::reach_own_binary) changes nothing in
/// that copy, so the closure's backtrace is symbolised, opens the FIFO at the binary's path and blocks
/// until the deadline: `Error::TimedOut`, the panic lost. Without the caller's own capture it passes.
#[test]
fn a_fifo_at_the_binarys_path_does_not_hang_a_closure_after_the_callers_own_backtrace() {
    let layer = tempfile::tempdir().expect("tempdir");
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_one-sandbox")).expect("the caller's binary");
    let fifo = layer.path().join(exe.strip_prefix("/").expect("absolute"));
    std::fs::create_dir_all(fifo.parent().expect("a parent")).expect("the binary's folders in the layer");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    let rootfs = system_tests::fixture_rootfs(env!("CARGO_TARGET_TMPDIR"));
    let out = std::process::Command::new(&exe)
        .arg("--closure-backtrace")
        .env("SANDBOX_ROOTFS", rootfs.path())
        .env("ONE_SANDBOX_LAYER", layer.path())
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run one-sandbox");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("one-sandbox: ") && last.contains("deliberate, in the closure"),
        "the closure's panic is not what run returned:\n{stderr}"
    );
}

/// A closure sees the same file systems whether or not backtraces are asked for: the folders the
/// link to the binary needs (the binary's folder and those above it up to the deepest one the rootfs
/// has: `/home/<user>/...` in an Alpine rootfs, `/work/...` here) are folders a test may use too
/// (a test that mirrors the host's layout, `adduser` of the host's user, a tool that writes next to
/// its binary). Failed before 895613b: with `RUST_BACKTRACE=1` the first of them is a 64 KiB `noexec` tmpfs
/// (spawn::closure::reach_own_binary, 15f0b51), so writing 1 MiB in the binary's folder fails with
/// ENOSPC ("No space left on device") and a program put there cannot be executed; without the
/// variable the same closure makes the folders in the sandbox's overlay and succeeds. Setting
/// `RUST_BACKTRACE=1` to look into a failure changes the failure.
#[test]
fn the_binarys_folders_are_ordinary_folders_with_backtraces_too() {
    let out = system_tests::ChildTest::new("child_writes_in_the_binarys_folder").env("RUST_BACKTRACE", "1").output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_writes_in_the_binarys_folder() {
    if !system_tests::is_child("child_writes_in_the_binarys_folder") {
        return;
    }
    let written = sandbox("binarys-folder").run(|| {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let dir = exe.parent().ok_or("no folder")?;
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let data = dir.join("data");
        std::fs::write(&data, vec![0u8; 1 << 20]).map_err(|e| format!("write 1 MiB in {}: {e}", data.display()))
    });
    assert_eq!(written.expect("run"), Ok(()));
}

/// A caller whose stdout is a non-blocking pipe (as a parent such as node, an editor's task runner or
/// an `ssh` session leaves it, O_NONBLOCK on the open file they share) read by a slower consumer: the
/// closure's output must reach it whole, as a program's output written by the caller would be
/// (waiting while the pipe is full). The caller in parent.rs already knows that such a stdout can be
/// full (82ea50c); the pump does not. Failed before 895613b: the pump's `print!` (spawn::pump::emit) gets EAGAIN the
/// first time the pipe is full, std panics with "failed printing to stdout: Resource temporarily
/// unavailable" (printed to the caller's stderr as a panic, though it is caught), and the sink
/// becomes `Gone`: every later byte of the closure's output is dropped without an error.
#[test]
fn a_closures_output_reaches_a_slow_nonblocking_stdout_whole() {
    let out = system_tests::ChildTest::new("child_prints_to_a_slow_nonblocking_stdout").output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("received 1048576 of 1048576 bytes"), "output lost:\n{stderr}");
    assert!(!stderr.contains("panicked"), "a panic reported to the caller:\n{stderr}");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_prints_to_a_slow_nonblocking_stdout() {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use std::io::Read;
    if !system_tests::is_child("child_prints_to_a_slow_nonblocking_stdout") {
        return;
    }
    let (mut reader, writer) = std::io::pipe().expect("pipe");
    fcntl(&writer, FcntlArg::F_SETPIPE_SZ(4096)).expect("a one-page pipe");
    fcntl(&writer, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("non-blocking");
    let saved = nix::unistd::dup(std::io::stdout()).expect("keep the real stdout");
    nix::unistd::dup2_stdout(&writer).expect("dup2 onto stdout");
    drop(writer);
    // A slow consumer: a byte at a time, until every writer is gone.
    let consumer = std::thread::spawn(move || {
        let (mut total, mut byte) = (0usize, [0u8; 1]);
        while matches!(reader.read(&mut byte), Ok(1)) {
            total += 1;
        }
        total
    });
    let got = sandbox("nonblocking").run(|| {
        let line = "x".repeat(1023);
        for _ in 0..1024 {
            println!("{line}");
        }
    });
    nix::unistd::dup2_stdout(&saved).expect("restore stdout");
    let total = consumer.join().expect("the consumer");
    eprintln!("run returned {got:?}; received {total} of 1048576 bytes");
}
