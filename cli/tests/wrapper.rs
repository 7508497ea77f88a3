//! An existing, unmodified flaky suite (`tests/flaky-demo`: fixed port 8080, /etc/hosts, the hostname,
//! daemons by name, a fixed /tmp file) fails when run in parallel on the host, and passes under
//! `sandbox-run --per-test` and under nextest's wrapper, as root and as an unprivileged user, leaving
//! the host unchanged.

#![forbid(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use system_tests::{is_root, skip, test_user};

const SANDBOX_RUN: &str = env!("CARGO_BIN_EXE_sandbox-run");
const DEMO_TESTS: usize = 22;

/// The workspace's target folder (where cargo put sandbox-run).
fn target_dir() -> PathBuf {
    let exe = Path::new(SANDBOX_RUN);
    exe.parent().and_then(Path::parent).map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/flaky-demo")
}

/// Builds the demo suite once (it has no dependencies: offline) and returns its test binary.
fn demo_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["test", "--no-run", "--message-format=json", "--manifest-path"])
            .arg(demo_dir().join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", target_dir().join("flaky-demo"))
            .output()
            .expect("run cargo to build the demo suite");
        assert!(out.status.success(), "building the demo failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v.get("executable").and_then(|e| e.as_str()).map(PathBuf::from))
            .expect("cargo reported the demo's test executable")
    })
}

/// What a run must leave as it found it.
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    hostname: String,
    etc_hosts: String,
    fixed_tmp_file: bool,
}

fn host_state() -> HostState {
    HostState {
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default(),
        etc_hosts: std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        fixed_tmp_file: Path::new("/tmp/fixed-name").exists(),
    }
}

/// An executable `check.sh` holding `body`, in a new world-readable folder under `/tmp` named from
/// `prefix` (gone with the returned folder).
fn script_under_tmp(prefix: &str, body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let script = dir.path().join("check.sh");
    std::fs::write(&script, body).expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (dir, script)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Copies sandbox-run and the demo binary where `uid` can run them (the build tree may be under /root).
fn copies_for_user() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::Builder::new().prefix("sandbox-run-test-").tempdir().expect("temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let run = dir.path().join("sandbox-run");
    let demo = dir.path().join("flaky-demo-system");
    std::fs::copy(SANDBOX_RUN, &run).expect("copy sandbox-run");
    std::fs::copy(demo_binary(), &demo).expect("copy the demo binary");
    (dir, run, demo)
}

/// `cmd` as the unprivileged test user, with a cache of its own.
fn as_user(cmd: &mut Command, uid: u32, gid: u32, home: &Path) {
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
    let mut wrapped = Command::new("setpriv");
    wrapped.args([format!("--reuid={uid}"), format!("--regid={gid}"), "--clear-groups".into(), "--".into()]);
    wrapped.arg(program).args(args).env("HOME", home).env("SANDBOX_CACHE_DIR", home.join("cache")).current_dir(home);
    *cmd = wrapped;
}

#[test]
fn the_demo_collides_when_run_in_parallel_on_the_host() {
    // Only the port tests run bare: the others would change the host's hostname and /etc/hosts.
    let out = Command::new(demo_binary()).args(["port_", "--test-threads", "12"]).output().expect("run the demo");
    assert!(!out.status.success(), "12 tests binding port 8080 at once all passed:\n{}", text(&out));
    assert!(text(&out).contains("AddrInUse"), "expected EADDRINUSE:\n{}", text(&out));
}

fn assert_all_passed(out: &Output, what: &str) {
    let all = text(out);
    assert!(out.status.success(), "{what} failed:\n{all}");
    let expected = [
        format!("test result: ok. {DEMO_TESTS} passed; 0 failed"),
        format!("{DEMO_TESTS} tests run: {DEMO_TESTS} passed"),
    ];
    assert!(expected.iter().any(|e| all.contains(e)), "{what}: not every test ran and passed:\n{all}");
}

#[test]
fn per_test_runs_each_test_in_its_own_sandbox_as_root() {
    if !is_root() {
        return skip("needs root (the rootless variant runs too)");
    }
    let before = host_state();
    let out = Command::new(SANDBOX_RUN).args(["--per-test", "-j", "4", "--"]).arg(demo_binary()).output().expect("run");
    assert_all_passed(&out, "sandbox-run --per-test");
    assert_eq!(host_state(), before, "the host changed");
}

#[test]
fn per_test_runs_each_test_in_its_own_sandbox_rootless() {
    let Some((_, uid, gid)) = test_user().filter(|_| is_root()) else {
        return skip("needs root and the sandbox-test user to run as that user");
    };
    let (dir, run, demo) = copies_for_user();
    let before = host_state();
    let mut cmd = Command::new(&run);
    cmd.args(["--per-test", "-j", "4", "--"]).arg(&demo);
    as_user(&mut cmd, uid, gid, dir.path());
    let out = cmd.output().expect("run");
    assert_all_passed(&out, "sandbox-run --per-test (rootless)");
    assert_eq!(host_state(), before, "the host changed");
}

fn nextest_available() -> bool {
    Command::new("cargo-nextest").arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn nextest_wrapper_runs_each_test_in_its_own_sandbox() {
    if !is_root() {
        return skip("needs root (the per-test variant covers rootless)");
    }
    if !nextest_available() {
        return skip("cargo-nextest is not installed");
    }
    demo_binary();
    let before = host_state();
    let bin_dir = Path::new(SANDBOX_RUN).parent().map(Path::to_path_buf).unwrap_or_default();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The `ci` profile of docs/ci.md, as the README's snippet defines it (a new user's review: the
    // snippet had none, and `--profile ci` failed with "profile 'ci' not found").
    // nextest keeps its reports under the workspace's own `target/nextest` (its store), whatever
    // CARGO_TARGET_DIR says.
    let store = demo_dir().join("target");
    let junit = store.join("nextest/ci/junit.xml");
    let _ = std::fs::remove_file(&junit);
    let out = Command::new(cargo)
        .args(["nextest", "run", "--profile", "ci"])
        .current_dir(demo_dir())
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", target_dir().join("flaky-demo"))
        .output()
        .expect("run cargo nextest");
    assert_all_passed(&out, "cargo nextest run --profile ci with the sandbox wrapper");
    assert_eq!(host_state(), before, "the host changed");
    let report = std::fs::read_to_string(&junit).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&store);
    assert_eq!(report.matches("<testcase ").count(), DEMO_TESTS, "the ci profile's JUnit report: {report}");
}

/// Rootless, as CI runners that shard an archive run it: `cargo nextest archive` once (here as root),
/// then `cargo-nextest` alone (no cargo, no toolchain) as an ordinary user, with the wrapper on PATH.
#[test]
fn nextest_wrapper_runs_each_test_in_its_own_sandbox_rootless_from_an_archive() {
    let Some((_, uid, gid)) = test_user().filter(|_| is_root()) else {
        return skip("needs root and the sandbox-test user to run as that user");
    };
    if !nextest_available() {
        return skip("cargo-nextest is not installed");
    }
    demo_binary();
    let (dir, run, _demo) = copies_for_user();
    let archive = dir.path().join("demo.tar.zst");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["nextest", "archive", "--archive-file"])
        .arg(&archive)
        .current_dir(demo_dir())
        .env("CARGO_TARGET_DIR", target_dir().join("flaky-demo"))
        .output()
        .expect("run cargo nextest archive");
    assert!(out.status.success(), "cargo nextest archive: {}", text(&out));
    // The workspace as the runner checks it out: its .config/nextest.toml names the wrapper.
    let workspace = dir.path().join("workspace");
    let copied = Command::new("cp").arg("-r").arg(demo_dir()).arg(&workspace).status().expect("cp");
    assert!(copied.success(), "copy the demo workspace");
    std::fs::create_dir(dir.path().join("extract")).expect("mkdir");
    let chowned = Command::new("chown").arg("-R").arg(format!("{uid}:{gid}")).arg(dir.path()).status().expect("chown");
    assert!(chowned.success(), "give the copies to the test user");
    let before = host_state();
    let mut cmd = Command::new("cargo-nextest");
    cmd.args(["nextest", "run", "--no-fail-fast", "--archive-file"])
        .arg(&archive)
        .arg("--workspace-remap")
        .arg(&workspace)
        .arg("--extract-to")
        .arg(dir.path().join("extract"));
    as_user(&mut cmd, uid, gid, dir.path());
    let bin_dir = run.parent().map(Path::to_path_buf).unwrap_or_default();
    cmd.env("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", bin_dir.display()));
    let out = cmd.output().expect("run cargo-nextest as the test user");
    assert_all_passed(&out, "cargo-nextest run from an archive, rootless, with the sandbox wrapper");
    assert_eq!(host_state(), before, "the host changed");
}

#[test]
fn exit_codes_are_the_programs_and_our_own() {
    let code = |args: &[&str]| Command::new(SANDBOX_RUN).args(args).output().map(|o| o.status.code()).ok().flatten();
    assert_eq!(code(&["--", "/bin/sh", "-c", "exit 7"]), Some(7));
    assert_eq!(code(&["--", "/bin/sh", "-c", "kill -TERM $$"]), Some(128 + 15));
    assert_eq!(code(&["--", "/no/such/program"]), Some(127));
    assert_eq!(code(&["--timeout", "300ms", "--", "/bin/sleep", "10"]), Some(124));
    assert_eq!(code(&["--memory", "lots", "--", "/bin/true"]), Some(125));
    assert_eq!(code(&["--rootfs", "/no/such/rootfs.tar.gz", "--", "/bin/true"]), Some(125));
}

/// An argument that is not UTF-8 reaches the program as given (clap refused it before: "invalid
/// UTF-8 was detected in one or more arguments", exit 125).
#[test]
fn arguments_reach_the_program_byte_for_byte() {
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new(SANDBOX_RUN)
        .args(["--", "/bin/echo"])
        .arg(std::ffi::OsStr::from_bytes(b"caf\xe9"))
        .output()
        .expect("run sandbox-run");
    assert_eq!(out.stdout, b"caf\xe9\n", "{}", String::from_utf8_lossy(&out.stderr));
    // The program's own path is looked up on the host first: it must be UTF-8, and says so.
    let out =
        Command::new(SANDBOX_RUN).arg("--").arg(std::ffi::OsStr::from_bytes(b"/bin/caf\xe9")).output().expect("run");
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid program `/bin/caf\\xE9`"), "{}", text(&out));
}

/// `--writable-size` sizes the writable layer and `/tmp`; too small a size is refused with our code.
#[test]
fn writable_size_sizes_the_writable_layer_and_tmp() {
    let script = "df -k / /tmp | tail -n +2 | awk '{print $6, $2}'";
    let out = Command::new(SANDBOX_RUN)
        .args(["--writable-size", "8M", "--", "/bin/sh", "-c", script])
        .output()
        .expect("run sandbox-run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text(&out), "/ 8192\n/tmp 8192\n");
    let out = Command::new(SANDBOX_RUN).args(["--writable-size", "4K", "--", "/bin/true"]).output().expect("run");
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 1 MiB"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A size within a page of 2^64 would wrap to tmpfs's size=0: no limit. 1P is the most.
    for args in [["--writable-size", "18446744073709551615"], ["--tmpfs", "/v:18446744073709551615"]] {
        let refused = Command::new(SANDBOX_RUN).args(args).args(["--", "/bin/true"]).output().expect("run");
        assert_eq!(refused.status.code(), Some(125), "{args:?}");
        assert!(String::from_utf8_lossy(&refused.stderr).contains("at most 1 PiB"), "{args:?}");
    }
}

/// As root, `--keep-failed` refuses a folder the program could write (here under the working
/// directory, which lies under /tmp and is bound read-write): sandbox-run walks, writes and removes
/// there by path once the program ended, and a link the program planted there, or at the old path of
/// a folder above it that it renamed, made root write and delete any host file (two outside
/// reviews). Nor does a link at the `--json-usage` path redirect the usage.
#[test]
fn a_program_cannot_plant_links_where_sandbox_run_writes() {
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
    let (work, victim) = (dir.path().join("work"), dir.path().join("victim"));
    std::fs::create_dir(&work).expect("mkdir");
    std::fs::write(&victim, "SECRET").expect("write the victim");
    let (keep, usage) = (work.join("kf"), work.join("usage.json"));
    let run = |options: &[&std::ffi::OsStr], script: String| {
        Command::new(SANDBOX_RUN)
            .current_dir(&work)
            .args(["--rootfs", "host"])
            .args(options)
            .args(["--", "/bin/sh", "-c", &script])
            .output()
            .expect("run sandbox-run")
    };
    let script = format!("ln -s {} {}/run; exit 3", victim.display(), keep.display());
    let out = run(&["--keep-failed".as_ref(), keep.as_os_str()], script);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lies in a folder the sandbox can write"), "{}", text(&out));
    assert_eq!(system_tests::list(&keep), Vec::<String>::new(), "nothing ran, nothing kept");
    // A link at the usage path is not written through: sandbox-run fails with its own code instead.
    let out =
        run(&["--json-usage".as_ref(), usage.as_os_str()], format!("ln -sf {} {}", victim.display(), usage.display()));
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&victim).expect("the victim"), "SECRET");
    // Nor does a FIFO with no reader there hang sandbox-run once the program ended (an outside
    // review): it fails with its own code at once. (`timeout` ends a hang with 124.) The link the
    // last program left is removed first: sandbox-run would refuse it before this one ran.
    std::fs::remove_file(&usage).expect("remove the planted link");
    let out = Command::new("timeout")
        .current_dir(&work)
        .args(["60", SANDBOX_RUN, "--rootfs", "host", "--json-usage"])
        .arg(&usage)
        .args(["--", "/bin/sh", "-c"])
        .arg(format!("rm -f {u}; mkfifo {u}", u = usage.display()))
        .output()
        .expect("run sandbox-run");
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FIFO no process reads"), "{}", text(&out));
    // Left by an earlier sandbox in a folder this one cannot write (here the test's own, outside
    // the working directory), it is refused as well, not waited for (the sixth review).
    // (`timeout` ends a hang with 124.)
    let usage_into = |fifo: &Path| {
        Command::new("timeout")
            .current_dir(&work)
            .args(["60", SANDBOX_RUN, "--rootfs", "host", "--json-usage"])
            .arg(fifo)
            .args(["--", "/bin/true"])
            .output()
            .expect("run sandbox-run")
    };
    let elsewhere = dir.path().join("left-fifo");
    assert!(Command::new("mkfifo").arg(&elsewhere).status().expect("mkfifo").success());
    let out = usage_into(&elsewhere);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    // Into /dev/stdout redirected to a file, the usage is appended after the program's output.
    let script = format!(
        "{SANDBOX_RUN} --rootfs host --json-usage /dev/stdout -- /bin/echo out > {0}; cat {0}",
        dir.path().join("out.txt").display()
    );
    let out = Command::new("bash").current_dir(&work).args(["-c", &script]).output().expect("run bash");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.starts_with("out\n{") && shown.contains("peak_memory_bytes"), "{}", text(&out));
    // And what the caller writes there next goes after it, not over it (a new user's review: the
    // usage was written at the file's end through a description of its own, and the caller's next
    // line, at the offset it had, overwrote it).
    let script = format!(
        "( echo header; {SANDBOX_RUN} --rootfs host --json-usage /dev/stdout -- /bin/echo out; echo after ) > {0}; cat {0}",
        dir.path().join("out2.txt").display()
    );
    let out = Command::new("bash").current_dir(&work).args(["-c", &script]).output().expect("run bash");
    let shown = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = shown.lines().collect();
    assert!(
        lines.len() == 4
            && lines[..2] == ["header", "out"]
            && lines[2].starts_with("{\"")
            && lines[2].contains("peak_memory_bytes")
            && lines[3] == "after",
        "{}",
        text(&out)
    );
    // Nor one whose reader reads nothing, its buffer full (another sandbox holding it open: the
    // eighth review): the write gives up after a few seconds instead of waiting for good.
    let full = dir.path().join("full-fifo");
    assert!(Command::new("mkfifo").arg(&full).status().expect("mkfifo").success());
    let holder = std::fs::OpenOptions::new().read(true).write(true).open(&full).expect("hold the FIFO");
    nix::fcntl::fcntl(&holder, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).expect("fcntl");
    while std::io::Write::write(&mut &holder, &[0u8; 4096]).is_ok() {}
    let out = usage_into(&full);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("took nothing"), "{}", text(&out));
    drop(holder);
    // The caller's own pipe, bash's `>(cat)`: /dev/fd/N, a link of the kernel's, is followed.
    let script = format!("{SANDBOX_RUN} --rootfs host --json-usage >(cat) -- /bin/true; wait");
    let out = Command::new("bash").current_dir(&work).args(["-c", &script]).output().expect("run bash");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("peak_memory_bytes"),
        "{}",
        text(&out)
    );
}

/// `DIR` reached through a link is refused before anything is made, wherever the link lies: one in a
/// folder a sandbox can write, or written there through another sandbox's volume (root's, like the
/// caller's own), made root make the layer, with the program's files, wherever it pointed (the fifth
/// and eighth outside reviews; the eighth with `DIR/`, whose trailing slash made the check follow the
/// link). So is a read-write `--mount` inside `DIR`. If `DIR`'s parent is moved and a link put in its
/// place while the program runs (here by the test, as a concurrent sandbox that could write there
/// would), sandbox-run still removes (program passed) or writes into (failed) the folder it made,
/// through its descriptor, never where the path now leads (the third outside review).
#[test]
fn a_relinked_keep_folder_redirects_nothing() {
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
    let [work, links, outside, moved, victim] =
        ["work", "links", "outside", "moved", "victim"].map(|n| dir.path().join(n));
    for d in [&work, &links, &outside.join("kept"), &victim.join("kept/run")] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(victim.join("kept/run/data"), "precious").expect("write the victim");
    let sandbox_run = |keep: &Path, extra: &[&str], script: &str| {
        let mut c = Command::new(SANDBOX_RUN);
        c.current_dir(&work).args(["--rootfs", "host", "--keep-failed"]).arg(keep).args(extra);
        c.args(["--", "/bin/sh", "-c", script]);
        c
    };
    // Planted where the sandbox writes, or elsewhere: refused, at DIR itself (with or without a
    // trailing slash) and above it.
    let planted = work.join("planted");
    let elsewhere = links.join("link");
    for link in [&planted, &elsewhere] {
        std::os::unix::fs::symlink(&victim, link).expect("link");
    }
    let with_slash = PathBuf::from(format!("{}/", elsewhere.display()));
    for keep in [planted.clone(), planted.join("kept"), elsewhere.clone(), with_slash, elsewhere.join("kept")] {
        let out = sandbox_run(&keep, &[], "exit 1").output().expect("run sandbox-run");
        assert_eq!(out.status.code(), Some(125), "{}: {}", keep.display(), text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("leads through the link"), "{}", text(&out));
    }
    assert_eq!(system_tests::list(&victim), ["kept"], "nothing made where the links lead");
    let sub = outside.join("kept/sub");
    std::fs::create_dir(&sub).expect("mkdir");
    let mount = format!("{}:/data", sub.display());
    let out = sandbox_run(&outside.join("kept"), &["--mount", &mount], "exit 1").output().expect("run sandbox-run");
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("which the sandbox can write"), "{}", text(&out));
    std::fs::remove_dir(&sub).expect("rmdir");
    // DIR's parent moved away, and a link to the victim put in its place, while the program runs.
    let [ready, go] = ["ready", "go"].map(|n| work.join(n));
    for fifo in [&ready, &go] {
        assert!(Command::new("mkfifo").arg(fifo).status().expect("mkfifo").success());
    }
    for code in [0, 1] {
        let script = format!("echo ready > {}; read line < {}; exit {code}", ready.display(), go.display());
        let child = sandbox_run(&outside.join("kept"), &[], &script)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start sandbox-run");
        // The program is running once it wrote; no sleep needed.
        assert_eq!(std::fs::read_to_string(&ready).expect("wait for the program"), "ready\n");
        std::fs::rename(&outside, &moved).expect("move DIR's parent");
        std::os::unix::fs::symlink(&victim, &outside).expect("link in its place");
        std::fs::write(&go, "go\n").expect("let the program end");
        let out = child.wait_with_output().expect("wait for sandbox-run");
        assert_eq!(out.status.code(), Some(code), "{}", text(&out));
        assert_eq!(system_tests::list(&victim.join("kept/run")), ["data"], "exit {code}: {}", text(&out));
        std::fs::remove_file(&outside).expect("unlink");
        std::fs::rename(&moved, &outside).expect("move DIR's parent back");
    }
    assert!(outside.join("kept/run/changes.txt").is_file(), "the failed run's layer is kept where it was made");
    // As root, --shell-from takes only a folder a sandbox kept (the range's, 0700): one another
    // sandbox made in DIR, with an `upper` and a record of its choosing, is refused.
    let forged = outside.join("kept/forged");
    std::fs::create_dir_all(forged.join("upper")).expect("mkdir");
    std::fs::set_permissions(&forged, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::write(forged.join("sandbox.json"), r#"{"rootfs":"host","command":["x"],"outcome":"exit code 1"}"#)
        .expect("write");
    let out = Command::new(SANDBOX_RUN).arg("--shell-from").arg(&forged).output().expect("run sandbox-run");
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a folder a sandbox kept"), "{}", text(&out));
}

/// With the host's root, its folders' overlays are `nodev`, as the rootfs's own overlay is: a
/// device node in a host folder (a chroot's /dev) opens nothing.
#[test]
fn host_folders_are_nodev() {
    let script = "grep ' - overlay ' /proc/self/mountinfo";
    let out =
        Command::new(SANDBOX_RUN).args(["--rootfs", "host", "--", "/bin/sh", "-c", script]).output().expect("run");
    let mounts = text(&out);
    assert!(mounts.lines().count() > 3, "{mounts}");
    for line in mounts.lines() {
        let options = line.split_whitespace().nth(5).unwrap_or_default();
        assert!(options.split(',').any(|o| o == "nodev"), "{line}");
    }
}

/// The twenty-seventh outside review: a program that changed a device node of a directory rootfs
/// (`chmod 666`) had overlayfs copy it up, with the mode it chose, and `--keep-failed` kept that copy:
/// a working node on the host's disk. The copy-up is refused now (EPERM, as rootless): nothing is
/// kept of it, and the node stays as the rootfs has it.
#[test]
fn a_kept_layer_holds_no_device_node_the_program_changed() {
    if !is_root() {
        return skip("needs root (to make a device node in a rootfs folder)");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).expect("mkdir");
    let rootfs = std::env::var_os("SANDBOX_ROOTFS").expect("$SANDBOX_ROOTFS: the test rootfs tarball");
    let unpacked = Command::new("tar").arg("-xzf").arg(&rootfs).arg("-C").arg(&tree).status().expect("tar");
    assert!(unpacked.success());
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
    nix::sys::stat::mknod(&tree.join("devnode"), nix::sys::stat::SFlag::S_IFCHR, mode, nix::libc::makedev(1, 3))
        .expect("mknod");
    let keep = dir.path().join("kept");
    let script = "chmod 666 /devnode 2>/dev/null; echo chmod=$?; stat -c %a /devnode; exit 1";
    let out = Command::new(SANDBOX_RUN)
        .arg("--keep-failed")
        .arg(&keep)
        .arg("--rootfs")
        .arg(&tree)
        .args(["--", "/bin/sh", "-c", script])
        .output()
        .expect("run sandbox-run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "chmod=1\n600\n", "{}", text(&out));
    let upper = keep.join("run/upper");
    assert!(upper.is_dir(), "{}", text(&out));
    assert!(!upper.join("devnode").exists(), "a device node was kept");
    let changes = std::fs::read_to_string(keep.join("run/changes.txt")).expect("changes.txt");
    assert!(!changes.contains("devnode"), "{changes}");
}

/// `--keep-failed` keeps what a failed program changed (and nothing of a passing one), and
/// `--shell-from` starts again on that state.
fn keeps_what_a_failed_run_changed(user: Option<(u32, u32)>) {
    let (dir, run, _demo) = copies_for_user();
    let keep = dir.path().join("kept");
    let with_user = |cmd: &mut Command| {
        if let Some((uid, gid)) = user {
            as_user(cmd, uid, gid, dir.path());
        }
    };
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
    }
    let mut failing = Command::new(&run);
    failing.arg("--keep-failed").arg(&keep).args([
        "--rootfs",
        "alpine",
        "--",
        "/bin/sh",
        "-c",
        "echo broken > /etc/motd; mkdir -p /srv/state && echo 1 > /srv/state/step; rm /etc/profile; \
         d=$(printf '/z\\nD /etc') && mkdir -p \"$d\" && touch \"$d/shadow\"; exit 3",
    ]);
    with_user(&mut failing);
    let out = failing.output().expect("run");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let kept = keep.join("run");
    let changes = std::fs::read_to_string(kept.join("changes.txt")).expect("changes.txt");
    for line in ["C /etc/motd", "A /srv/state/step", "D /etc/profile", r#"A "/z\nD /etc/shadow""#] {
        assert!(changes.lines().any(|l| l == line), "{line:?} missing from:\n{changes}");
    }
    // A name with a newline forges no line of its own (an outside review).
    assert!(!changes.lines().any(|l| l == "D /etc/shadow"), "{changes}");
    let mut shell = Command::new(&run);
    shell.arg("--shell-from").arg(&kept);
    with_user(&mut shell);
    let mut child =
        shell.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().expect("shell");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"cat /etc/motd /srv/state/step; test -e /etc/profile || echo no-profile\n")
        .expect("write");
    let out = child.wait_with_output().expect("shell ends");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "broken\n1\nno-profile\n");
    let mut passing = Command::new(&run);
    // Folders the program left unwritable do not stop the removal (rootless, an outside review).
    let script = "echo fine > /etc/motd; mkdir -p /srv/a/b/c && chmod 0500 /srv/a/b /srv/a";
    passing.arg("--keep-failed").arg(&keep).args(["--", "/bin/sh", "-c", script]);
    with_user(&mut passing);
    assert!(passing.status().expect("run").success());
    let left: Vec<_> = std::fs::read_dir(&keep).expect("list").flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, [std::ffi::OsString::from("run")], "a passing run keeps nothing");
}

/// Twenty-second outside review: `--shell-from` bound the opener's workspace read-write and passed
/// their whole environment, and the kept files (the failed program's) run as the shell starts: a
/// failed test that replaced `/bin/sh` wrote, as root, into a project it never could reach, and read
/// the opener's variables. The shell now gets nothing of the opener's it is not given by name.
#[test]
fn shell_from_gives_the_kept_files_nothing_of_the_opener_s() {
    if !is_root() {
        return skip("needs root (what the planted shell could do as root is the point)");
    }
    let (dir, run, _demo) = copies_for_user();
    let keep = dir.path().join("kept");
    let [failed_in, opened_in] = ["failed-in", "opened-in"].map(|name| {
        let project = dir.path().join(name);
        std::fs::create_dir(&project).expect("mkdir");
        std::fs::write(project.join("Cargo.lock"), "").expect("a cargo workspace");
        project
    });
    // The failed test replaces the shell: it says what it sees, and writes where the opener works.
    let plant = r#"real=$(readlink -f /bin/sh)
mkdir -p /usr/local/bin && cp "$real" /usr/local/bin/real-sh && rm "$real"
{ echo '#!/usr/local/bin/real-sh'
  echo 'echo "secret=${SECRET:-unset} in=$PWD"'
  echo "touch '$1/PLANTED' 2>/dev/null"
  echo 'exec /usr/local/bin/real-sh "$@"'; } > "$real"
chmod 755 "$real"
exit 3"#;
    let out = Command::new(&run)
        .current_dir(&failed_in)
        .arg("--keep-failed")
        .arg(&keep)
        .args(["--rootfs", "host", "--", "/bin/sh", "-c", plant, "sh"])
        .arg(&opened_in)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let mut shell = Command::new(&run);
    shell.current_dir(&opened_in).env("SECRET", "hunter2").arg("--shell-from").arg(keep.join("run"));
    let mut child =
        shell.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().expect("shell");
    use std::io::Write as _;
    child.stdin.take().expect("stdin").write_all(b"echo done\n").expect("write");
    let out = child.wait_with_output().expect("shell ends");
    // The state is the failed test's (its shell runs), with nothing of the opener's.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "secret=unset in=/\ndone\n", "{}", text(&out));
    assert!(!opened_in.join("PLANTED").exists(), "the kept files wrote into the opener's project");
}

/// Twenty-second outside review: a `--keep-failed` run killed with SIGKILL left its layer's folder
/// for good (no record, so `--shell-from` refuses it, and nothing removed it). The next run with the
/// same `DIR` removes it, and leaves alone the layer of a run that is still going.
#[test]
fn keep_failed_layers_of_killed_runs_are_swept_by_the_next_run() {
    if !is_root() {
        return skip("needs root (the layer folders are given to the sandboxes' id range)");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let keep = dir.path().join("kept");
    let start = || {
        Command::new(SANDBOX_RUN)
            .current_dir(dir.path())
            .arg("--keep-failed")
            .arg(&keep)
            .args(["--rootfs", "alpine", "--", "/bin/sleep", "1000"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start")
    };
    // Until `folder`'s sandbox is set up (its layer is there), or its lock is free.
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::yield_now();
        }
    };
    // A folder of the same owner and mode that merely looks like a layer (the twenty-third outside
    // review: rootless, a `mktemp -d` folder with a `work` folder in it was removed whole).
    // Nor one laid out as an overlay's layer exactly, made by hand (the twenty-fourth: a user's own).
    let lookalike = keep.join("lookalike");
    std::fs::create_dir_all(lookalike.join("work")).expect("mkdir");
    std::fs::write(lookalike.join("work/thesis.tex"), "precious").expect("write");
    let by_hand = keep.join("by-hand");
    std::fs::create_dir_all(by_hand.join("work/work")).expect("mkdir");
    std::fs::create_dir_all(by_hand.join("upper/home")).expect("mkdir");
    std::fs::write(by_hand.join("upper/home/notes.txt"), "precious").expect("write");
    let owner = sandbox::kept_layer_owner().expect("the kept layers' owner").expect("as root");
    for folder in [&lookalike, &by_hand] {
        std::os::unix::fs::chown(folder, Some(owner), Some(owner)).expect("chown");
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let (killed, killed_dir) = (start(), keep.join("run"));
    until("the first run's layer", &|| killed_dir.join("upper").exists());
    let mut alive = start();
    let alive_dir = keep.join("run-2");
    until("the second run's layer", &|| alive_dir.join("upper").exists());
    let mut killed = killed;
    killed.kill().expect("SIGKILL sandbox-run");
    let _ = killed.wait();
    // Its helper ends with it (its parent-death signal): then nothing holds the folder's lock.
    until("the killed run's lock to be free", &|| {
        std::fs::File::open(&killed_dir)
            .is_ok_and(|f| rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok())
    });
    assert!(!killed_dir.join("sandbox.json").exists(), "a killed run writes no record");
    let out = Command::new(SANDBOX_RUN)
        .current_dir(dir.path())
        .arg("--keep-failed")
        .arg(&keep)
        .args(["--rootfs", "alpine", "--", "/bin/true"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let left: Vec<String> = std::fs::read_dir(&keep)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let _ = alive.kill();
    let _ = alive.wait();
    let mut left = left;
    left.sort();
    assert_eq!(left, ["by-hand", "lookalike", "run-2"], "the killed run's layer is swept, the live one's kept");
    assert!(lookalike.join("work/thesis.tex").exists(), "a folder that is no layer is left alone");
    assert!(by_hand.join("upper/home/notes.txt").exists(), "a layer sandbox-run did not make is left alone");
}

/// Twenty-third outside review: `--shell-from` used the tree its record names by path, unchecked;
/// once a folder on the way was another user's (a cleaner removed it, they made it again with a tree
/// of theirs), their `/bin/sh` ran as root in the shell's sandbox. The way to the tree is checked as
/// the cache's is.
#[test]
fn shell_from_refuses_a_tree_another_user_could_have_replaced() {
    if !is_root() {
        return skip("needs root (another user's folder is the point)");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (ci, keep) = (dir.path().join("ci"), dir.path().join("kept"));
    let out = Command::new(SANDBOX_RUN)
        .current_dir(dir.path())
        .env("SANDBOX_CACHE_DIR", ci.join("cache"))
        .arg("--keep-failed")
        .arg(&keep)
        .args(["--rootfs", "alpine", "--", "/bin/sh", "-c", "exit 3"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    // The folder above the cache is now someone else's.
    std::os::unix::fs::chown(&ci, Some(4242), Some(4242)).expect("chown");
    let out = Command::new(SANDBOX_RUN)
        .current_dir(dir.path())
        .arg("--shell-from")
        .arg(keep.join("run"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("shell");
    let all = text(&out);
    assert!(
        !out.status.success() && all.contains("belongs to uid 4242") && all.contains(&ci.display().to_string()),
        "{all}"
    );
}

#[test]
fn keep_failed_and_shell_from_as_root() {
    if !is_root() {
        return skip("needs root (the rootless variant runs too)");
    }
    keeps_what_a_failed_run_changed(None);
}

#[test]
fn keep_failed_and_shell_from_rootless() {
    let Some((_, uid, gid)) = test_user().filter(|_| is_root()) else {
        return skip("needs root and the sandbox-test user to run as that user");
    };
    keeps_what_a_failed_run_changed(Some((uid, gid)));
}

/// A scratch service of the test user's (mode 0600) at `/tmp/tmux-<random>/default`, as tmux's server
/// would be: it answers "HOST SERVICE REACHED" to the first program that connects.
struct Service {
    folder: tempfile::TempDir,
    sock: PathBuf,
    server: std::thread::JoinHandle<()>,
}

impl Service {
    fn start(uid: u32, gid: u32) -> Service {
        use std::io::Write;
        let folder = tempfile::Builder::new().prefix("tmux-").tempdir_in("/tmp").expect("service folder");
        let sock = folder.path().join("default");
        let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind the scratch service");
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).expect("chmod the socket");
        for p in [folder.path(), sock.as_path()] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("give the service to the test user");
        }
        let server = std::thread::spawn(move || {
            if let Ok((mut conn, _)) = listener.accept() {
                let _ = conn.write_all(b"HOST SERVICE REACHED\n");
            }
        });
        Service { folder, sock, server }
    }

    /// Ends the service, unblocking it first if the program never connected.
    fn stop(self) {
        let _ = std::os::unix::net::UnixStream::connect(&self.sock);
        self.server.join().expect("the service");
    }
}

/// Runs `inner` (its program, arguments and environment) from `dir` in a mount namespace of its own,
/// after the shell commands `mounts` have run there (`... && exec "$@"`).
fn in_own_mount_namespace(mounts: &str, inner: &Command, dir: &Path) -> Output {
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", mounts, "sh"]).arg(inner.get_program()).args(inner.get_args());
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.current_dir(dir).output().expect("run in a mount namespace of its own")
}

/// As the test user, from `cwd` (with `$CARGO_TARGET_DIR` set to `target`, if given), runs
/// `sandbox-run --rootfs host -- perl CONNECT` while a [`Service`] listens, with `$SOCK` the path
/// `sock` gives for it; returns the output. `None` rootless (the root run does it as the test user),
/// or after a skip line without the test user.
fn connect_to_a_service(cwd: &Path, target: Option<&Path>, sock: impl Fn(&Service) -> PathBuf) -> Option<String> {
    if !is_root() {
        return None;
    }
    let Some((_, uid, gid)) = test_user() else {
        skip("no unprivileged test user: create one (`useradd sandbox-test`) or set $SANDBOX_TEST_USER");
        return None;
    };
    let (copies, run, _) = copies_for_user();
    let home = tempfile::Builder::new().prefix("sandbox-run-home-").tempdir().expect("home");
    std::os::unix::fs::chown(home.path(), Some(uid), Some(gid)).expect("chown the home");
    let service = Service::start(uid, gid);
    let mut cmd = Command::new(&run);
    cmd.args(["--rootfs", "host", "--", "/usr/bin/perl", "-e", CONNECT]);
    as_user(&mut cmd, uid, gid, home.path());
    if let Some(t) = target {
        cmd.env("CARGO_TARGET_DIR", t);
    }
    let out = cmd.current_dir(cwd).env("SOCK", sock(&service)).output().expect("run sandbox-run as the test user");
    service.stop();
    drop(copies);
    Some(text(&out))
}

/// A perl program that connects to the unix socket `$SOCK` and prints what it answers, or `errno=N`.
const CONNECT: &str = r#"socket(my $s, 1, 1, 0) or die "socket: $!";
        if (connect($s, pack("S Z108", 1, $ENV{SOCK}))) { print scalar <$s> } else { print "errno=", $!+0, "\n" }"#;

/// `sandbox-run` started from `/tmp` itself (a test binary downloaded there, `cd /tmp && sandbox-run
/// -- ./t`), rootless, `--rootfs host`: setup::workspace_dirs binds the working directory read-write
/// when it is under `/tmp`, so the host's whole `/tmp` is the program's, the caller's services
/// listening there with it: tmux's server (`/tmp/tmux-UID/default`: `tmux -S … run-shell` runs any
/// command on the host as the caller), ssh-agent's (`/tmp/ssh-*/agent.*`), X11's (`/tmp/.X11-unix`).
/// Here a scratch service of the caller's (mode 0600) at `/tmp/<random>/default`.
#[test]
fn started_from_tmp_reaches_no_service_of_the_callers_there() {
    let Some(text) = connect_to_a_service(Path::new("/tmp"), None, |service| service.sock.clone()) else { return };
    assert!(
        !text.contains("HOST SERVICE REACHED"),
        "a service of the caller's in the host's /tmp is reachable: {text}"
    );
    assert!(text.starts_with("errno="), "{text}");
}

/// `sandbox-run --rootfs host`, rootless, with `$CARGO_TARGET_DIR` naming a symlink to `/tmp` (a target
/// folder put on tmpfs: `ln -s /tmp ~/build`, or a shared build cache's path): setup::workspace_dirs
/// refuses `/`, a top-level folder, `/var/tmp` and `/dev/shm` by the path as written, never by where
/// it leads, and the sandbox binds the symlink, so the host's whole `/tmp` is the program's,
/// read-write, at that path: the caller's services listening there with it (tmux's server runs any
/// command on the host as the caller; ssh-agent's; X11's). Here a scratch service of the caller's
/// (mode 0600) at `/tmp/<random>/default`, reached as `$CARGO_TARGET_DIR/<random>/default`.
#[test]
fn a_target_folder_that_is_a_symlink_to_tmp_reaches_no_service_of_the_callers_there() {
    // The symlink lies outside /tmp, as a user's own would (`~/build`).
    let outside = tempfile::Builder::new().prefix("sandbox-run-target-").tempdir_in("/var/tmp").expect("folder");
    std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let target = outside.path().join("build");
    std::os::unix::fs::symlink("/tmp", &target).expect("symlink the target folder to /tmp");
    let through = |service: &Service| target.join(service.folder.path().file_name().expect("a name")).join("default");
    let Some(text) = connect_to_a_service(Path::new("/"), Some(&target), through) else { return };
    assert!(
        !text.contains("HOST SERVICE REACHED"),
        "a service of the caller's in the host's /tmp is reachable through a target folder symlinked there: {text}"
    );
    assert!(text.starts_with("errno="), "{text}");
}

/// `sandbox-run --rootfs host`, rootless, a top-level host folder with a mount below it (rebuilt entry
/// by entry, plan::host_overlay, at most 512 files, in name order, counted across the whole top-level
/// folder): anyone who may write in it (here `/srv`, mode 0777; or a program in another sandbox
/// through a read-write volume) puts 512 empty files `a1`… there, and every later name in it, and in
/// every rebuilt folder below it, is gone from everyone's sandboxes: the caller's `/srv/zz-fixture`
/// here. The README promises "a warning names it"; the warning is a `tracing` event and sandbox-run
/// installs no subscriber, so nothing is printed and the test fails with a bare ENOENT.
#[test]
fn a_host_file_crowded_out_of_a_rebuilt_folder_is_named_on_stderr() {
    let Some((_, uid, gid)) = test_user().filter(|_| is_root()) else {
        return skip("needs root and the sandbox-test user to run as that user");
    };
    if !Path::new("/srv").is_dir() {
        return skip("needs a /srv folder to mount a scratch tmpfs on, in a mount namespace of the test's own");
    }
    let (dir, run, _demo) = copies_for_user();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
    let mut reading = Command::new(&run);
    reading.args(["--rootfs", "host", "--", "/bin/cat", "/srv/zz-fixture"]);
    as_user(&mut reading, uid, gid, dir.path());
    let mounts = "mount --make-rprivate / && mount -t tmpfs -o mode=0777,size=1m scratch /srv && mkdir /srv/lock && \
                  mount -t tmpfs -o size=1m lock /srv/lock && echo fixture > /srv/zz-fixture && \
                  (cd /srv && seq -f 'a%g' 1 512 | xargs touch) && exec \"$@\"";
    let out = in_own_mount_namespace(mounts, &reading, dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || (stderr.contains("/srv") && stderr.contains("512")),
        "a host file is gone and nothing says why: {}",
        text(&out)
    );
}

/// Ninth outside review. `sandbox-run --rootfs host`, rootless, a top-level host folder with a mount
/// below it, rebuilt entry by entry: the README says "at most 512 entries a folder", but
/// plan::host_overlay counts the entries of the whole tree, depth first, in name order, against one
/// cap. Whoever may fill one rebuilt subfolder (their own, given a mount below it: a FUSE mount in a
/// home folder is any user's to make) hides every later sibling of it, in folders of 2 entries, from
/// every rootless host-rootfs sandbox on the machine. Here `/srv` holds a subfolder `a` (a tmpfs of 600
/// files, with a mount below it) and a file `zz-fixture`: the file is gone (failing).
#[test]
fn a_host_file_is_not_crowded_out_by_a_full_subfolder_of_its_folder() {
    let Some((_, uid, gid)) = test_user().filter(|_| is_root()) else {
        return skip("needs root and the sandbox-test user to run as that user");
    };
    if !Path::new("/srv").is_dir() {
        return skip("needs a /srv folder to mount a scratch tmpfs on, in a mount namespace of the test's own");
    }
    let (dir, run, _demo) = copies_for_user();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
    let mut reading = Command::new(&run);
    reading.args(["--rootfs", "host", "--", "/bin/cat", "/srv/zz-fixture"]);
    as_user(&mut reading, uid, gid, dir.path());
    let mounts = "mount --make-rprivate / && mount -t tmpfs -o mode=0755,size=1m scratch /srv && mkdir /srv/a && \
                  mount -t tmpfs -o mode=0777,size=1m theirs /srv/a && mkdir /srv/a/m && \
                  mount -t tmpfs -o size=1m fuse /srv/a/m && (cd /srv/a && seq -f 'f%g' 1 600 | xargs touch) && \
                  echo fixture > /srv/zz-fixture && exec \"$@\"";
    let out = in_own_mount_namespace(mounts, &reading, dir.path());
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout) == "fixture\n",
        "a file of a host folder of 2 entries is gone: {}",
        text(&out)
    );
}

/// Ninth outside review. `sandbox-run --rootfs host`, rootless, `$CARGO_TARGET_DIR=/run/lock`:
/// setup::workspace_dirs refuses a fixed list (`/`, top-level folders, `/var/tmp`, `/dev/shm`), not
/// what makes them everyone's (world-writable, sticky). `/run/lock` (`/var/lock`, mode 1777) is every
/// service's and user's lock folder, and the sandbox's `/run` is its own for that reason (README), yet
/// it is bound read-write: the program sees and may remove others' locks. Here a lock file of root's
/// made by the test is visible (failing). Also `/var/crash`, PHP's session folder and the like.
#[test]
fn a_target_folder_every_user_shares_below_a_top_level_one_is_not_bound() {
    let Some((_, uid, gid)) = test_user().filter(|_| is_root()) else {
        return skip("needs root and the sandbox-test user to run as that user");
    };
    let shared = std::fs::metadata("/run/lock").is_ok_and(|m| m.permissions().mode() & 0o1777 == 0o1777);
    if !shared {
        return skip("needs a host /run/lock of mode 1777");
    }
    let lock = tempfile::Builder::new().prefix("sandbox-run-review-").tempfile_in("/run/lock").expect("a lock file");
    let (dir, run, _demo) = copies_for_user();
    let mut cmd = Command::new(&run);
    cmd.args(["--rootfs", "host", "--", "/bin/ls", "/run/lock"]);
    as_user(&mut cmd, uid, gid, dir.path());
    let out = cmd.env("CARGO_TARGET_DIR", "/run/lock").output().expect("run sandbox-run");
    let name = lock.path().file_name().expect("a name").to_string_lossy().into_owned();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&name), "the host's /run/lock is bound: {}", text(&out));
}

/// `sandbox-run --rootfs DIR|alpine -- ./t`, a host program on another rootfs: elf::closure reads the
/// program's `PT_INTERP` and runs that file, `INTERP --list ./t`, on the host, outside any sandbox,
/// as the caller (root here), to learn its libraries. A hostile test binary names its own
/// interpreter (any path: a script shipped beside it, or the binary itself, which sees `--list` in
/// its arguments), and runs what it likes on the host before any sandbox exists. Here a copy of the
/// demo binary whose `PT_INTERP` names a script that writes a marker file.
#[test]
fn a_host_program_on_another_rootfs_runs_nothing_of_its_choice_on_the_host() {
    let dir = tempfile::Builder::new().prefix("sbr").tempdir_in("/tmp").expect("temporary directory");
    let interp = dir.path().join("i");
    let marker = dir.path().join("ran-on-the-host");
    std::fs::write(&interp, format!("#!/bin/sh\nid -u > {}\n", marker.display())).expect("write the script");
    std::fs::set_permissions(&interp, std::fs::Permissions::from_mode(0o755)).expect("chmod the script");
    let program = dir.path().join("t");
    if !with_interpreter(&interp, &program) {
        return;
    }
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).expect("a rootfs folder");
    let out = Command::new(SANDBOX_RUN)
        .arg("--rootfs")
        .arg(&rootfs)
        .arg("--")
        .arg(&program)
        .output()
        .expect("run sandbox-run");
    let ran = std::fs::read_to_string(&marker).ok();
    assert!(ran.is_none(), "the program's chosen interpreter ran on the host as uid {ran:?}: {}", text(&out));
}

/// Writes the demo binary to `program` with its ELF interpreter (`PT_INTERP`) replaced by `interp`;
/// `false` (after a `SKIP:` line) when the demo binary's loader is not x86_64 glibc's.
fn with_interpreter(interp: &Path, program: &Path) -> bool {
    let mut elf = std::fs::read(demo_binary()).expect("read the demo binary");
    let loader = b"/lib64/ld-linux-x86-64.so.2\0";
    let Some(at) = elf.windows(loader.len()).position(|w| w == loader) else {
        skip("the demo binary's loader is not /lib64/ld-linux-x86-64.so.2 (not x86_64 glibc)");
        return false;
    };
    let name = interp.as_os_str().as_encoded_bytes();
    assert!(name.len() < loader.len(), "{} too long for PT_INTERP", interp.display());
    let mut patched = name.to_vec();
    patched.resize(loader.len(), 0);
    elf[at..at + loader.len()].copy_from_slice(&patched);
    std::fs::write(program, &elf).expect("write the hostile program");
    std::fs::set_permissions(program, std::fs::Permissions::from_mode(0o755)).expect("chmod the program");
    true
}

/// Builds `dir/p`, a program needing a library by its absolute path (`DT_NEEDED`, its `-soname`),
/// `dir/f`, which is then made a FIFO; its path, or `None` (after a `SKIP:` line) without a C compiler.
fn program_needing_a_fifo(dir: &Path) -> Option<PathBuf> {
    let fifo = dir.join("f");
    let soname = format!("-Wl,-soname,{}", fifo.display());
    let lib_dir = format!("-L{}", dir.display());
    let built = cc_into(
        dir,
        &[
            ("libfoo.so", "int foo(void) { return 0; }\n", &["-shared", "-fPIC", &soname]),
            ("p", "int foo(void);\nint main(void) { return foo(); }\n", &[&lib_dir, "-lfoo"]),
        ],
    );
    if !built {
        return None;
    }
    let made = Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo {}", fifo.display());
    Some(fifo)
}

/// Builds `files` ([(name, C source, extra `cc` arguments)]) into `dir` with the host's C compiler;
/// `false` (after a `SKIP:` line) when there is none.
fn cc_into(dir: &Path, files: &[(&str, &str, &[&str])]) -> bool {
    for (name, source, args) in files {
        let src = dir.join(format!("{name}.c"));
        std::fs::write(&src, source).expect("write the C source");
        let Ok(built) = Command::new("cc").arg("-o").arg(dir.join(name)).arg(&src).args(*args).status() else {
            skip("no C compiler (cc; Debian: gcc, libc6-dev)");
            return false;
        };
        assert!(built.success(), "cc could not build {name}");
    }
    true
}

/// Ninth outside review. `sandbox-run --rootfs DIR -- ./t`: `t`'s interpreter is the system's own
/// loader, so elf::closure runs `/lib64/ld-linux-x86-64.so.2 --list ./t` on the host. But `t` carries
/// a `DT_AUDIT` tag (`cc -Wl,--audit=LIB`), and glibc's loader (2.32+) loads a main program's audit
/// modules and calls their `la_version` before it lists anything, `--list` or not: code of the
/// program's choice runs on the host as the caller (root here), before any sandbox exists (failing).
#[test]
fn a_host_program_on_another_rootfs_runs_no_audit_module_of_its_choice_on_the_host() {
    let dir = tempfile::Builder::new().prefix("sbr").tempdir_in("/tmp").expect("temporary directory");
    let marker = dir.path().join("ran-on-the-host");
    let audit = format!(
        "#include <stdio.h>\n#include <unistd.h>\nunsigned la_version(unsigned v) {{ FILE *f = \
         fopen(\"{}\", \"w\"); if (f) {{ fprintf(f, \"%d\\n\", (int)getuid()); fclose(f); }} return v; }}\n",
        marker.display()
    );
    let audit_lib = dir.path().join("audit.so");
    let link = format!("-Wl,--audit={}", audit_lib.display());
    let built = cc_into(
        dir.path(),
        &[("audit.so", &audit, &["-shared", "-fPIC"]), ("t", "int main(void) { return 0; }\n", &[&link])],
    );
    if !built {
        return;
    }
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).expect("a rootfs folder");
    let out = Command::new(SANDBOX_RUN)
        .arg("--rootfs")
        .arg(&rootfs)
        .arg("--")
        .arg(dir.path().join("t"))
        .output()
        .expect("run sandbox-run");
    let ran = std::fs::read_to_string(&marker).ok();
    assert!(ran.is_none(), "the program's audit module ran on the host as uid {ran:?}: {}", text(&out));
}

/// Ninth outside review. `sandbox-run --rootfs DIR -- ./r` run from the program's folder: elf::closure
/// binds every ELF file named in `ld.so --list`'s output, which it splits at the last `=>` and the first
/// ` (`. The program's RUNPATH is a folder of its own named `x=> SECRET (`, holding its `libfoo.so`; the
/// loader prints `libfoo.so => …/x=> SECRET (/libfoo.so (0x…)`, and SECRET, a file the program names and
/// never loads, is bound into its sandbox. Here SECRET is a core dump (it starts as an ELF file does) in a
/// root-only folder: the program prints it from inside the sandbox (failing). Any ELF-looking file the
/// caller can read (core dumps, private binaries) can be had this way.
#[test]
fn a_host_program_on_another_rootfs_gets_no_file_its_library_folder_names() {
    let dir = tempfile::Builder::new().prefix("sbr").tempdir_in("/tmp").expect("temporary directory");
    let private = tempfile::Builder::new().prefix("sbr").tempdir_in("/tmp").expect("temporary directory");
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod the folder");
    let secret = private.path().join("core");
    std::fs::write(&secret, b"\x7fELF core of a process: SECRET-42\n").expect("write the core dump");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod the core dump");
    let libs = dir.path().join(format!("x=> {} (", secret.display()));
    std::fs::create_dir_all(&libs).expect("the library folder");
    let program = format!(
        "#include <stdio.h>\nint foo(void);\nint main(void) {{ char b[64] = {{0}}; FILE *f = fopen(\"{}\", \"r\"); \
         if (!f) return 1; fread(b, 1, sizeof b - 1, f); fputs(b, stdout); return foo(); }}\n",
        secret.display()
    );
    let (lib_dir, rpath) = (format!("-L{}", libs.display()), format!("-Wl,-rpath,{}", libs.display()));
    let lib = libs.join("libfoo.so").strip_prefix(dir.path()).expect("below the folder").display().to_string();
    let built = cc_into(
        dir.path(),
        &[
            (&lib, "int foo(void) { return 0; }\n", &["-shared", "-fPIC"]),
            ("r", &program, &[&lib_dir, &rpath, "-Wl,--no-as-needed", "-lfoo"]),
        ],
    );
    if !built {
        return;
    }
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).expect("a rootfs folder");
    let out = Command::new(SANDBOX_RUN)
        .arg("--rootfs")
        .arg(&rootfs)
        .args(["--", "./r"])
        .current_dir(dir.path())
        .output()
        .expect("run sandbox-run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("SECRET-42"), "a file the program named was bound into its sandbox: {}", text(&out));
}

/// Twelfth outside review. `sandbox-run --rootfs DIR -- ./own`: `own` names itself as its ELF
/// interpreter (`PT_INTERP`), a file beside the program, which elf::closure ran as `own --list ./own`
/// to list its libraries, in a sandbox showing the host's root as root: the program's own code read
/// root-only host files there and printed them as the listing's error (and could choose which files
/// to bind, to carry them into its real sandbox). Here a position-independent program without libc
/// whose `--list` mode prints a root-only file (failing: it is in sandbox-run's error message).
#[test]
fn a_host_program_on_another_rootfs_is_not_its_own_library_listing() {
    let dir = tempfile::Builder::new().prefix("sbr").tempdir_in("/tmp").expect("temporary directory");
    let private = tempfile::Builder::new().prefix("sbr").tempdir_in("/tmp").expect("temporary directory");
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod the folder");
    let secret = private.path().join("secret");
    std::fs::write(&secret, "SECRET-51\n").expect("write the secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod the secret");
    // argv[1] == "--list": exec /bin/sh -c 'cat SECRET >&2; exit 1'; else: exit 0.
    let source = format!(
        r#"static long sys3(long n, long a, long b, long c) {{ long r; __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory"); return r; }}
void cmain(long *sp) {{
  long argc = sp[0]; char **argv = (char **)(sp + 1); char **envp = argv + argc + 1;
  const char *l = "--list"; const char *a = argc > 1 ? argv[1] : "";
  while (*l && *l == *a) {{ l++; a++; }}
  if (*l == 0 && *a == 0) {{
    char *args[] = {{"sh", "-c", "cat {} >&2; exit 1", 0}};
    sys3(59, (long)"/bin/sh", (long)args, (long)envp);
  }}
  sys3(60, 0, 0, 0);
}}
__asm__(".globl _start\n_start:\n mov %rsp, %rdi\n and $-16, %rsp\n call cmain\n hlt\n");
"#,
        secret.display()
    );
    let own = dir.path().join("own");
    let interp = format!("-Wl,-dynamic-linker,{}", own.display());
    let args: [&str; 6] = ["-O1", "-fPIE", "-pie", "-nostdlib", "-fno-stack-protector", &interp];
    if !cc_into(dir.path(), &[("own", &source, &args)]) {
        return;
    }
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).expect("a rootfs folder");
    let out = Command::new(SANDBOX_RUN).arg("--rootfs").arg(&rootfs).arg("--").arg(&own).output().expect("run");
    assert!(!text(&out).contains("SECRET-51"), "the program's own listing read a root-only file: {}", text(&out));
}

/// Thirteenth outside review. The twelfth's fix ran only the system's loader to list a program's
/// libraries and refused a program naming an audit module (`DT_AUDIT`), found in its dynamic section
/// read from the file (`p_filesz` of `PT_DYNAMIC`); glibc's loader reads that section from memory up to
/// its end, so a program whose `p_filesz` says 16 hid its audit module, which the loader then ran in
/// the listing's sandbox, where the program's folder was visible to it as root: it printed a root-only
/// file there (failing: in sandbox-run's error message). Now nothing of the program's runs before its
/// own sandbox, where that file is not.
#[test]
fn a_host_program_on_another_rootfs_runs_no_audit_module_before_its_sandbox() {
    let dir = tempfile::Builder::new().prefix("sbr").tempdir_in("/tmp").expect("temporary directory");
    let private = dir.path().join("private");
    std::fs::create_dir(&private).expect("the private folder");
    let secret = private.join("secret");
    std::fs::write(&secret, "SECRET-88\n").expect("write the secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod the secret");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod the folder");
    let audit = format!(
        "#include <fcntl.h>\n#include <stdlib.h>\n#include <unistd.h>\nunsigned la_version(unsigned v) {{ char b[64]; \
         int fd = open(\"{}\", O_RDONLY); int n = fd >= 0 ? read(fd, b, sizeof b) : 0; if (n > 0) write(2, b, n); \
         exit(3); }}\n",
        secret.display()
    );
    let built = cc_into(
        dir.path(),
        &[
            ("audit.so", &audit, &["-shared", "-fPIC"]),
            ("t", "int main(void) { return 0; }\n", &["-Wl,--audit=audit.so", "-Wl,-rpath,$ORIGIN"]),
        ],
    );
    if !built {
        return;
    }
    hide_dynamic_section(&dir.path().join("t"));
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).expect("a rootfs folder");
    let out = Command::new(SANDBOX_RUN)
        .arg("--no-workspace")
        .arg("--rootfs")
        .arg(&rootfs)
        .arg("--")
        .arg(dir.path().join("t"))
        .current_dir("/")
        .output()
        .expect("run sandbox-run");
    assert!(!text(&out).contains("SECRET-88"), "the program's audit module read a root-only file: {}", text(&out));
}

/// Sets the size in the file of `program`'s dynamic section (`p_filesz` of `PT_DYNAMIC`) to one entry:
/// what the loader reads of it is unchanged (from memory, up to `DT_NULL`).
fn hide_dynamic_section(program: &Path) {
    let mut elf = std::fs::read(program).expect("read the program");
    let word = |b: &[u8], at: usize, n: usize| b[at..at + n].iter().rev().fold(0usize, |v, x| (v << 8) | *x as usize);
    let (phoff, phentsize, phnum) = (word(&elf, 0x20, 8), word(&elf, 0x36, 2), word(&elf, 0x38, 2));
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if word(&elf, ph, 4) == 2 {
            elf[ph + 0x20..ph + 0x28].copy_from_slice(&16u64.to_le_bytes());
        }
    }
    std::fs::write(program, &elf).expect("write the program");
}

/// Fourteenth outside review. To learn whether a library a program names (`DT_NEEDED` with a path,
/// or a file in its `RUNPATH`) is an ELF file, sandbox-run opened it for reading, as root, before it
/// looked at what it was: a FIFO (whose blocked writers that open wakes) or a device (whose open has
/// effects of its own). Here a FIFO the program needs by its path, watched for opens (failing: one).
#[test]
fn a_host_program_on_another_rootfs_gets_no_fifo_it_names_opened() {
    use rustix::fs::inotify;
    let dir = tempfile::Builder::new().prefix("sbr").tempdir_in("/tmp").expect("temporary directory");
    let Some(fifo) = program_needing_a_fifo(dir.path()) else { return };
    let watch = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).expect("inotify");
    inotify::add_watch(&watch, &fifo, inotify::WatchFlags::OPEN).expect("watch the FIFO");
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).expect("a rootfs folder");
    // The FIFO out of the sandbox's sight (no workspace, run from /): only sandbox-run could open it.
    let out = Command::new(SANDBOX_RUN)
        .args(["--no-workspace", "--timeout", "10s", "--rootfs"])
        .arg(&rootfs)
        .arg("--")
        .arg(dir.path().join("p"))
        .current_dir("/")
        .output()
        .expect("run sandbox-run");
    let mut events = [0u8; 256];
    let read = rustix::io::read(&watch, &mut events);
    assert_eq!(read.err(), Some(rustix::io::Errno::AGAIN), "the FIFO was opened: {}", text(&out));
}

/// Fourteenth outside review. A program run on another rootfs through a link to it (`./tool`, a link
/// to `bin/tool`) did not start: its libraries beside it (`RUNPATH $ORIGIN/lib`) were bound where
/// the real file lies, while the loader inside looked beside the link. It runs from its real path.
#[test]
fn a_host_program_on_another_rootfs_starts_through_a_link() {
    let dir = tempfile::Builder::new().prefix("sbr").tempdir_in("/tmp").expect("temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod the folder");
    let (bin, lib) = (dir.path().join("bin"), dir.path().join("bin/lib"));
    std::fs::create_dir_all(&lib).expect("the folders");
    let lib_dir = format!("-L{}", lib.display());
    let built = cc_into(
        &bin,
        &[
            ("lib/libfoo.so", "int foo(void) { return 42; }\n", &["-shared", "-fPIC"]),
            (
                "tool",
                "#include <stdio.h>\nint foo(void);\nint main(void) { printf(\"foo=%d\\n\", foo()); return 0; }\n",
                &[&lib_dir, "-Wl,-rpath,$ORIGIN/lib", "-lfoo"],
            ),
        ],
    );
    if !built {
        return;
    }
    let link = dir.path().join("tool");
    std::os::unix::fs::symlink("bin/tool", &link).expect("link");
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).expect("a rootfs folder");
    let out = Command::new(SANDBOX_RUN)
        .args(["--no-workspace", "--rootfs"])
        .arg(&rootfs)
        .arg("--")
        .arg(&link)
        .current_dir("/")
        .output()
        .expect("run sandbox-run");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "foo=42\n", "{}", text(&out));
}

/// Fourteenth outside review. A library anyone may read, beside a program in a folder only root may
/// enter, was bound into the program's sandbox: a file no other user could reach. A program naming it
/// (its `RUNPATH` is its folder) read it inside (failing: its text is printed). Only files anyone may
/// reach are given; a program there starts with `--mount` of its folder.
#[test]
fn a_host_program_on_another_rootfs_gets_no_library_from_a_folder_only_root_may_enter() {
    if !is_root() {
        return skip("needs root: the folder is root's, 0700");
    }
    // Not in /tmp's tree the sandbox replaces, nor in this workspace (bound whole): --no-workspace.
    let dir =
        tempfile::Builder::new().prefix("sbr").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let program = format!(
        "#include <stdio.h>\nint secret(void);\nstatic char b[1 << 16];\nint main(void) {{ FILE *f = fopen(\"{}\", \"r\"); \
         if (!f) return 1; size_t n = fread(b, 1, sizeof b, f); fwrite(b, 1, n, stdout); return secret(); }}\n",
        dir.path().join("libsecret.so").display()
    );
    let lib_dir = format!("-L{}", dir.path().display());
    let built = cc_into(
        dir.path(),
        &[
            (
                "libsecret.so",
                "const char *text = \"SECRET-74\";\nint secret(void) { return 0; }\n",
                &["-shared", "-fPIC"],
            ),
            ("r", &program, &[&lib_dir, "-Wl,-rpath,$ORIGIN", "-Wl,--no-as-needed", "-lsecret"]),
        ],
    );
    if !built {
        return;
    }
    std::fs::set_permissions(dir.path().join("libsecret.so"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod the folder");
    let rootfs = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(rootfs.path().join("etc")).expect("a rootfs folder");
    let out = Command::new(SANDBOX_RUN)
        .args(["--no-workspace", "--rootfs"])
        .arg(rootfs.path())
        .arg("--")
        .arg(dir.path().join("r"))
        .current_dir("/")
        .output()
        .expect("run sandbox-run");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("SECRET-74"), "a private library was bound: {}", text(&out));
}

/// Fifteenth outside review. `sandbox-run --per-test --keep-failed DIR` on another rootfs prepares
/// each test's sandbox anew, and opened the test binary by its path each time: a test renamed the
/// binary's folder (the target folder, bound read-write) and put a link to a root-only `#!` script at
/// the binary's path, and a later test's error named that script's interpreter, its first word
/// (failing: it is printed). Each test is prepared from the binary the tests were listed from.
#[test]
fn per_test_prepares_each_test_from_the_binary_it_listed() {
    if !is_root() {
        return skip("needs root: the script is root's, 0700");
    }
    let dir = tempfile::Builder::new().prefix("sbr").tempdir_in("/tmp").expect("temporary directory");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "#!SECRET-WORD-39\n").expect("write the script");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).expect("chmod the script");
    let deps = dir.path().join("w/target/debug/deps");
    std::fs::create_dir_all(&deps).expect("the target folder");
    // A libtest-like binary: test `a` puts the link in place of the binary, `b` passes.
    let source = format!(
        "#include <libgen.h>\n#include <stdio.h>\n#include <string.h>\n#include <sys/stat.h>\n#include <unistd.h>\n\
         int main(int c, char **v) {{\n\
           if (c > 2 && !strcmp(v[1], \"--list\") && !strcmp(v[2], \"--ignored\")) {{ puts(\"0 tests, 0 benchmarks\"); return 0; }}\n\
           if (c > 1 && !strcmp(v[1], \"--list\")) {{ puts(\"a: test\\nb: test\\n\\n2 tests, 0 benchmarks\"); return 0; }}\n\
           if (c > 2 && !strcmp(v[2], \"a\")) {{ char d[4096], o[4096]; snprintf(d, sizeof d, \"%s\", v[0]);\n\
             dirname(d); snprintf(o, sizeof o, \"%s.old\", d); rename(d, o); mkdir(d, 0755);\n\
             symlink(\"{}\", v[0]); return 1; }}\n\
           if (c > 2 && !strcmp(v[2], \"b\")) puts(\"test b ... ok\");\n\
           return 0;\n\
         }}\n",
        secret.display()
    );
    if !cc_into(&deps, &[("t-1", &source, &[])]) {
        return;
    }
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).expect("a rootfs folder");
    let keep = tempfile::tempdir().expect("tempdir");
    let out = Command::new(SANDBOX_RUN)
        .args(["--per-test", "-j", "1", "--keep-failed"])
        .arg(keep.path().join("kept"))
        .arg("--rootfs")
        .arg(&rootfs)
        .arg("--")
        .arg(deps.join("t-1"))
        .env_remove("CARGO_TARGET_DIR")
        .current_dir("/")
        .output()
        .expect("run sandbox-run");
    assert!(!text(&out).contains("SECRET-WORD-39"), "a root-only script's first line was shown: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("test b ... ok"), "{}", text(&out));
}

/// Twelfth outside review. elf::closure bound any ELF file the listing named below the program's
/// folder, whoever could read it: a library only root may read (in a folder only root may enter)
/// beside a program, found by the system's loader through the program's `RUNPATH`, was bound into
/// the program's sandbox, which read it (failing: the library's text is printed). Only files anyone
/// on the host may read are given.
#[test]
fn a_host_program_on_another_rootfs_gets_no_library_only_root_may_read() {
    if !is_root() {
        return skip("needs root: the library is root's, 0600, in a 0700 folder");
    }
    // Not in /tmp, which the listing's sandbox has of its own.
    let dir =
        tempfile::Builder::new().prefix("sbr").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod the folder");
    let private = dir.path().join("private");
    std::fs::create_dir(&private).expect("the private folder");
    let lib = "private/libsecret.so";
    let (lib_dir, rpath) = (format!("-L{}", private.display()), "-Wl,-rpath,$ORIGIN/private".to_owned());
    let program = format!(
        "#include <stdio.h>\nint secret(void);\nstatic char b[1 << 16];\nint main(void) {{ FILE *f = fopen(\"{}\", \"r\"); \
         if (!f) return 1; size_t n = fread(b, 1, sizeof b, f); fwrite(b, 1, n, stdout); return secret(); }}\n",
        dir.path().join(lib).display()
    );
    let built = cc_into(
        dir.path(),
        &[
            (lib, "const char *text = \"SECRET-63\";\nint secret(void) { return 0; }\n", &["-shared", "-fPIC"]),
            ("r", &program, &[&lib_dir, &rpath, "-Wl,--no-as-needed", "-lsecret"]),
        ],
    );
    if !built {
        return;
    }
    std::fs::set_permissions(dir.path().join(lib), std::fs::Permissions::from_mode(0o600)).expect("chmod the library");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod the folder");
    // A root with an etc folder, where the program (its loader and libraries bound in) runs.
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).expect("a rootfs folder");
    let out = Command::new(SANDBOX_RUN)
        .arg("--rootfs")
        .arg(&rootfs)
        // The workspace (this one, the program's folder lies in its target folder) is bound as a whole.
        .arg("--no-workspace")
        .args(["--", "./r"])
        .current_dir(dir.path())
        .output()
        .expect("run sandbox-run");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("SECRET-63"),
        "a root-only library was bound: {}",
        text(&out)
    );
}

/// Ninth outside review. elf::closure runs a host program's `PT_INTERP` as `INTERP --list PROGRAM` when it
/// is any root-owned file under /lib or /usr/lib, loader or not; Debian has hundreds of root's helpers
/// there (646 here), e.g. `/usr/lib/udev/hwclock-set` (`hwclock --rtc=$1 --systz; hwclock --hctosys`)
/// and dpkg's `/usr/lib/dpkg/methods/apt/update` (apt-get update). As root, a program naming one gets
/// it run on the host with its arguments. Stand-in (not to reset this machine's clock): a root-owned
/// script on a tmpfs over a folder of /usr/lib, in a mount namespace of the test's own (failing).
#[test]
fn a_host_program_on_another_rootfs_runs_no_root_helper_as_its_loader() {
    if !is_root() {
        return skip("needs root to put a root-owned helper under /usr/lib (in a mount namespace of its own)");
    }
    let Some(lib) =
        ["/usr/lib/udev", "/usr/lib/modules", "/usr/lib/locale"].into_iter().find(|d| Path::new(d).is_dir())
    else {
        return skip("needs one of /usr/lib/udev, /usr/lib/modules, /usr/lib/locale to mount a scratch tmpfs on");
    };
    let dir = tempfile::Builder::new().prefix("sbr").tempdir_in("/tmp").expect("temporary directory");
    let marker = dir.path().join("ran-on-the-host");
    let helper = Path::new(lib).join("h");
    let program = dir.path().join("t");
    if !with_interpreter(&helper, &program) {
        return;
    }
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).expect("a rootfs folder");
    let script = format!("#!/bin/sh\necho \"$(id -u) $*\" > {}\n", marker.display());
    let setup = "mount --make-rprivate / && mount -t tmpfs -o mode=0755,size=1m helper \"$1\" && \
                 printf '%s' \"$2\" > \"$1/h\" && chmod 0755 \"$1/h\" && shift 2 && exec \"$@\"";
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", setup, "sh", lib, &script, SANDBOX_RUN, "--rootfs"])
        .arg(&rootfs)
        .arg("--")
        .arg(&program)
        .output()
        .expect("run sandbox-run in a mount namespace of its own");
    let ran = std::fs::read_to_string(&marker).ok();
    assert!(ran.is_none(), "root's helper ran on the host as the program's loader: {ran:?}: {}", text(&out));
}

/// Ninth outside review. `sandbox-run --timeout 2s --rootfs DIR -- ./p`: elf::closure runs
/// `ld.so --list ./p` on the host with no time limit, before the sandbox and its timeout exist. `p`
/// needs a library by an absolute path (`DT_NEEDED`, a library's `-soname`) that is a FIFO: the loader
/// blocks in open(2) for ever, and so does sandbox-run, whatever its `--timeout` (a SIGKILL of
/// sandbox-run alone leaves the loader behind). Here `timeout 20` ends it (failing: it takes 20 s).
#[test]
fn a_host_program_on_another_rootfs_cannot_hang_its_library_listing() {
    let dir = tempfile::Builder::new().prefix("sbr").tempdir_in("/tmp").expect("temporary directory");
    if program_needing_a_fifo(dir.path()).is_none() {
        return;
    }
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).expect("a rootfs folder");
    let started = std::time::Instant::now();
    let out = Command::new("timeout")
        .args(["-k", "1", "20", SANDBOX_RUN, "--timeout", "2s", "--rootfs"])
        .arg(&rootfs)
        .args(["--", "./p"])
        .current_dir(dir.path())
        .output()
        .expect("run sandbox-run under timeout");
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(15), "sandbox-run --timeout 2s took {took:?}: {}", text(&out));
}

/// `--keep-failed`, rootless, `--rootfs host`, a top-level host folder with a mount below it (rebuilt
/// entry by entry, plan::host_overlay): a file the failed program made in its subfolder (an overlay)
/// is kept and listed in `changes.txt`. One made directly in the rebuilt folder lands on the sandbox's
/// root tmpfs, in no writable layer, and is not kept (README, "Rootfs"). Here `/srv`, a scratch tmpfs
/// with one below it, in a mount namespace of the test's own.
#[test]
fn keep_failed_keeps_a_file_made_below_a_host_folder_with_a_mount_below_it() {
    let Some((_, uid, gid)) = test_user().filter(|_| is_root()) else {
        return skip("needs root and the sandbox-test user to run as that user");
    };
    if !Path::new("/srv").is_dir() {
        return skip("needs a /srv folder to mount a scratch tmpfs on, in a mount namespace of the test's own");
    }
    let (dir, run, _demo) = copies_for_user();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
    // Not in the working directory, which the sandbox can write (--keep-failed refuses that).
    let kept = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::chown(kept.path(), Some(uid), Some(gid)).expect("chown");
    let keep = kept.path().join("kept");
    let mut failing = Command::new(&run);
    failing.arg("--keep-failed").arg(&keep).args([
        "--rootfs",
        "host",
        "--",
        "/bin/sh",
        "-c",
        "echo 1 > /srv/made; echo 2 > /srv/lock/made; exit 3",
    ]);
    as_user(&mut failing, uid, gid, dir.path());
    let mounts = "mount --make-rprivate / && mount -t tmpfs -o mode=0777,size=1m scratch /srv && mkdir /srv/lock && \
                  mount -t tmpfs -o size=1m lock /srv/lock && exec \"$@\"";
    let out = in_own_mount_namespace(mounts, &failing, dir.path());
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let changes = std::fs::read_to_string(keep.join("run").join("changes.txt")).expect("changes.txt");
    assert!(changes.lines().any(|l| l == "A /srv/lock/made"), "missing from:\n{changes}");
    assert!(!changes.lines().any(|l| l == "A /srv/made"), "the README says it is not kept:\n{changes}");
}

/// Review 18: `--workdir`'s help and the README say the working directory is "the current directory
/// with `--rootfs host`, else `/root`"; on Alpine the program starts in `/` (also `--shell`).
#[test]
fn the_default_working_directory_off_the_host_is_root() {
    let out = Command::new(SANDBOX_RUN).args(["--rootfs", "alpine", "--", "/bin/pwd"]).output().expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/root\n", "the working directory on Alpine");
}

/// A `--json-usage` path that cannot be written is refused before the program runs: a folder there,
/// a link there, a folder the caller may not write. The thirty-fourth outside review: it failed only
/// once the program had ended, and the program's exit code (3) was lost to sandbox-run's 125.
#[test]
fn an_unwritable_usage_path_is_refused_before_the_program_runs() {
    // The test user's copy of sandbox-run, its home, and the paths, in a folder it may read.
    let (dir, user_run, _) = copies_for_user();
    let (folder, link, locked) = (dir.path().join("folder"), dir.path().join("link"), dir.path().join("locked"));
    std::fs::create_dir(&folder).expect("mkdir");
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).expect("symlink");
    std::fs::create_dir(&locked).expect("mkdir");
    let run = |usage: &Path, user: Option<(u32, u32)>| {
        let mut cmd = Command::new(if user.is_some() { user_run.as_path() } else { Path::new(SANDBOX_RUN) });
        cmd.args(["--rootfs", "host", "--json-usage"]).arg(usage).args(["--", "/bin/sh", "-c", "echo RAN; exit 3"]);
        if let Some((uid, gid)) = user {
            as_user(&mut cmd, uid, gid, dir.path());
        }
        cmd.output().expect("run sandbox-run")
    };
    let socket = dir.path().join("socket");
    let _listening = std::os::unix::net::UnixListener::bind(&socket).expect("bind a unix socket");
    let mut cases = vec![
        (folder.clone(), None, "Is a directory"),
        (link.clone(), None, "symbolic link"),
        (socket.clone(), None, "a socket is there"),
    ];
    match test_user() {
        Some((_, uid, gid)) if is_root() => {
            cases.push((locked.join("usage.json"), Some((uid, gid)), "Permission denied"))
        }
        _ => eprintln!("SKIP: a folder the caller may not write: needs root and the test user"),
    }
    for (usage, user, said) in cases {
        let out = run(&usage, user);
        assert_eq!(out.status.code(), Some(125), "{}: {}", usage.display(), text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(said), "{}: {}", usage.display(), text(&out));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("RAN"), "{}: the program ran", usage.display());
    }
    // A usage file that can be written: the program runs and its code is sandbox-run's.
    let out = run(&dir.path().join("usage.json"), None);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "RAN\n", "{}", text(&out));
    assert!(dir.path().join("usage.json").exists(), "{}", text(&out));
}

/// Review 18: `--json-usage` after `--memory` was exceeded (exit 137) writes
/// `{"cpu_time_seconds":null,"oom_kills":0,"peak_memory_bytes":null}`: the one run whose usage a
/// user wants to see says no OOM kill happened. It should count the OOM kill and give the peak.
#[test]
fn json_usage_counts_the_oom_kill_of_a_memory_limit() {
    if !is_root() {
        return skip("needs root (limits on this cgroup v1 machine)");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let usage = dir.path().join("usage.json");
    let out = Command::new(SANDBOX_RUN)
        .args(["--memory", "32M", "--json-usage"])
        .arg(&usage)
        .args(["--", "/bin/sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(137), "{}", text(&out));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&usage).expect("the usage file")).expect("JSON");
    assert!(json["oom_kills"].as_u64().is_some_and(|n| n >= 1), "{json}");
    assert!(json["peak_memory_bytes"].as_u64().is_some_and(|p| p >= 30 << 20), "{json}");
}

/// Review 18: the program starts with SIGPIPE at its default action, as on the host and as
/// `std::process::Command` gives its children. sandbox-run's Rust runtime ignores SIGPIPE, and its
/// sandboxes' programs inherit that (SigIgn 0x1004: SIGPIPE and SIGQUIT; a single-threaded library
/// caller such as tests/bin/one-sandbox.rs too): `yes | head -n 1` prints "yes: (null): Broken
/// pipe", and `sh -c 'while true; do echo x; done | head -1'` never ends (it runs to its deadline,
/// writing "write error: Broken pipe" without end), where on the host it ends at once.
#[test]
fn the_program_starts_with_sigpipe_at_its_default_action() {
    let out = Command::new(SANDBOX_RUN)
        .args(["--rootfs", "alpine", "--timeout", "10s", "--", "/bin/sh", "-c"])
        .arg("grep SigIgn /proc/self/status; yes | head -n 1; while true; do echo x; done | head -1 >/dev/null; echo ended")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ignored =
        stdout.lines().find_map(|l| l.strip_prefix("SigIgn:\t")).and_then(|m| u64::from_str_radix(m, 16).ok());
    assert_eq!(ignored.map(|m| m & (1 << (13 - 1))), Some(0), "SIGPIPE is ignored: {}", text(&out));
    assert!(
        stdout.ends_with("y\nended\n") && out.stderr.is_empty(),
        "{}",
        text(&out).chars().take(2000).collect::<String>()
    );
}

/// Review 18: `--tmpfs /data --mount SRC:/data/in` hides the bind: sandbox-run adds every `--mount`
/// before every `--tmpfs`, whatever their order on the command line (the library mounts in the
/// order given), so the tmpfs covers the bind and `/data/in` does not exist inside (the mount table
/// lists it below the tmpfs). The volumes should be mounted in the order given.
#[test]
fn a_mount_inside_a_tmpfs_given_before_it_is_visible() {
    let host = tempfile::tempdir().expect("tempdir");
    std::fs::write(host.path().join("f"), "from the host\n").expect("write");
    let out = Command::new(SANDBOX_RUN)
        .args(["--rootfs", "alpine", "--tmpfs", "/data:1M", "--mount"])
        .arg(format!("{}:/data/in:ro", host.path().display()))
        .args(["--", "/bin/cat", "/data/in/f"])
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from the host\n", "{}", text(&out));
}

/// Prints a marker and passes: the test binary `per_test_shows_a_passing_tests_output_with_nocapture`
/// hands to `sandbox-run --per-test`.
#[test]
#[ignore = "run by per_test_shows_a_passing_tests_output_with_nocapture"]
fn child_prints_a_marker() {
    println!("marker printed by a passing test");
}

/// Review 18: `sandbox-run --per-test -- TESTBIN --nocapture` (or `--show-output`) shows nothing of
/// a passing test's output: the flags are accepted and dropped (each test's output is kept and
/// printed only when it fails), where libtest, whose lines --per-test prints, shows it.
#[test]
fn per_test_shows_a_passing_tests_output_with_nocapture() {
    let me = std::env::current_exe().expect("this test binary");
    for flag in ["--nocapture", "--show-output"] {
        let out = Command::new(SANDBOX_RUN)
            .args(["--per-test", "--"])
            .arg(&me)
            .args(["--exact", "child_prints_a_marker", "--ignored", flag])
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("marker printed by a passing test"), "{flag}: {}", text(&out));
    }
}

/// `--per-test` takes a harness that lists as libtest-mimic (`harness = false` tests) does: `name:
/// test` lines and no `N tests, M benchmarks` summary, nothing at all for a selection of none. The
/// thirty-fourth outside review: such a binary was refused ("it printed no libtest list"), though
/// nextest runs it. Here a script stands in for one. A test passes only if the harness says it ran
/// (`test NAME ... ok`): `ghost` exits 0 without running anything, as a harness that ignores
/// `--exact` does, and fails (two outside reviews: such a run read as a pass).
#[test]
fn per_test_runs_a_harness_whose_list_has_no_summary_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let harness = dir.path().join("harness");
    std::fs::write(
        &harness,
        r#"#!/bin/sh
case "$1" in
--list)
    shift
    case "$*" in *--ignored*) exit 0 ;; esac
    for t in alpha beta ghost; do case "$t" in *"$1"*) echo "$t: test" ;; esac; done ;;
--exact)
    [ "$2" = ghost ] && exit 0
    echo "$2 ran in $(hostname)"; [ "$2" = alpha ] && echo "test $2 ... ok" ;;
*) exit 2 ;;
esac
"#,
    )
    .expect("write the harness");
    std::fs::set_permissions(&harness, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let run = |filter: &str| {
        Command::new(SANDBOX_RUN).args(["--per-test", "--"]).arg(&harness).arg(filter).output().expect("run")
    };
    let out = run("");
    assert_eq!(out.status.code(), Some(101), "beta fails: {}", text(&out));
    let all = text(&out);
    assert!(all.contains("test alpha ... ok") && all.contains("test beta ... FAILED"), "{all}");
    assert!(all.contains("test ghost ... FAILED") && all.contains("no test of that name ran"), "{all}");
    assert!(all.contains("beta ran in sandbox"), "{all}");
    assert!(all.contains("1 passed; 2 failed; 0 ignored"), "{all}");
    // A filter that selects nothing: an empty list, not a refused binary.
    let out = run("zzz");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("0 passed; 0 failed; 0 ignored; 0 measured; 3 filtered out"), "{}", text(&out));
}

/// A host program on another rootfs runs at its real path (its `$ORIGIN`), but keeps the name it was
/// given as `argv[0]`: a multi-call program (a rustup proxy, a busybox link) picks what it does
/// from it. The thirty-fourth outside review: a link to busybox said "applet not found".
#[test]
fn a_host_program_on_another_rootfs_keeps_its_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let busybox = ["/bin/busybox", "/usr/bin/busybox"].into_iter().find(|p| Path::new(p).exists());
    let Some(busybox) = busybox else { return skip("no busybox on the host (apt-get install busybox-static)") };
    let echo = dir.path().join("echo");
    std::os::unix::fs::symlink(busybox, &echo).expect("symlink");
    let out =
        Command::new(SANDBOX_RUN).args(["--rootfs", "alpine", "--"]).arg(&echo).arg("named").output().expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "named\n", "{}", text(&out));
}

/// A host "program" on another rootfs that is nothing executable (a folder, a device, a text file)
/// exits 126, "cannot be executed", as on the host's root and as a shell says; not 125, which says
/// sandbox-run itself failed (the thirty-fourth outside review).
#[test]
fn a_host_file_that_cannot_be_executed_exits_126() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text_file = dir.path().join("notes.txt");
    std::fs::write(&text_file, "just text\n").expect("write");
    std::fs::set_permissions(&text_file, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for (program, said) in
        [(dir.path(), "not a regular file"), (Path::new("/dev/null"), "not a regular file"), (&text_file, "neither")]
    {
        let out = Command::new(SANDBOX_RUN).args(["--rootfs", "alpine", "--"]).arg(program).output().expect("run");
        assert_eq!(out.status.code(), Some(126), "{}: {}", program.display(), text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(said), "{}: {}", program.display(), text(&out));
    }
}

/// `--shell-from` opens the rootfs the failed run kept: a `--rootfs` beside it is refused, not
/// silently ignored (the 34th outside review: the shell saw the host's Debian).
#[test]
fn shell_from_refuses_a_rootfs_of_its_own() {
    let out = Command::new(SANDBOX_RUN).args(["--shell-from", "/tmp", "--rootfs", "alpine"]).output().expect("run");
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"), "{}", text(&out));
}

/// Review 18: an invalid option value that clap lets through is reported under the library's
/// builder names, not the option the user typed: `--workdir etc` says "invalid current_dir `etc`",
/// `--cpus 0` "invalid cpu_limit `0`" (while `--timeout 0` and `--memory 0` name no option at all).
/// The message should name the option (`--workdir`, `--cpus`).
#[test]
fn an_invalid_option_value_is_named_by_its_option() {
    for (option, value) in [("--workdir", "etc"), ("--cpus", "0")] {
        let out = Command::new(SANDBOX_RUN)
            .args(["--rootfs", "alpine", option, value, "--", "/bin/true"])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(125), "{}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(option), "{option} {value}: {}", text(&out));
    }
}

/// Review 18: a host program under `/tmp` (a binary or script copied there), run from another
/// folder, is not found: the default `--rootfs host` gives the sandbox a `/tmp` of its own and binds
/// neither the program nor its folder, so `sandbox-run -- /tmp/…/check.sh` fails with "failed to
/// execute `/tmp/…/check.sh` in the sandbox: No such file or directory" (exit 127) for a file that
/// exists. The program given should run, as one anywhere else on the host does.
#[test]
fn a_host_program_under_tmp_runs_from_another_folder() {
    let (_dir, script) = script_under_tmp("sandbox-run-prog-", "#!/bin/sh\necho ran\n");
    let out = Command::new(SANDBOX_RUN).arg("--").arg(&script).current_dir("/").output().expect("run");
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).as_ref()),
        (Some(0), "ran\n"),
        "{}",
        text(&out)
    );
}

/// Review 18: with the host's environment kept (`--rootfs host`, the default for a test binary, or
/// `--keep-env`), `$HOSTNAME` inside is the host's (Docker-based CI runners export it) while
/// `hostname` says the sandbox's: a test that reads `$HOSTNAME` sees the host it was isolated from.
/// `$HOSTNAME` should be the sandbox's hostname, as in the default environment.
#[test]
fn hostname_variable_is_the_sandboxs_with_the_hosts_environment() {
    for rootfs in ["host", "alpine"] {
        let out = Command::new(SANDBOX_RUN)
            .args(["--rootfs", rootfs, "--keep-env", "--hostname", "inbox", "--", "/bin/sh", "-c", "echo $HOSTNAME"])
            .env("HOSTNAME", "the-host")
            .output()
            .expect("run");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "inbox\n", "--rootfs {rootfs}: {}", text(&out));
    }
}

/// Review 18: SIGTERM (or SIGINT) sent to sandbox-run, as nextest's timeout, a CI runner's cancel
/// or `kill` sends it, never reaches the program: sandbox-run dies of it and the sandbox is killed
/// with SIGKILL, so a program's handler (flush a log into a volume, stop a daemon cleanly) never
/// runs. The program is in a session of its own, so a terminal's ^C does not reach it either. The
/// signal should be forwarded, and sandbox-run exit with the program's code.
#[test]
fn sigterm_to_sandbox_run_reaches_the_program() {
    use std::io::BufRead;
    let mut child = Command::new(SANDBOX_RUN)
        .args(["--rootfs", "alpine", "--timeout", "30s", "--", "/bin/sh", "-c"])
        .arg("trap 'echo got-term; exit 7' TERM; echo ready; sleep 20 & wait")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line, "ready\n");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read");
    let status = child.wait().expect("wait");
    assert_eq!((status.code(), rest.as_str()), (Some(7), "got-term\n"), "{status}");
}

/// Review 18: `--json-usage FILE` is silently ignored with `--per-test` (and `--shell`): the run
/// succeeds and FILE is never written, so a CI step that reads it finds nothing. Either FILE should
/// be written, or the combination refused as `--per-test --shell` is.
#[test]
fn json_usage_with_per_test_is_written_or_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let usage = dir.path().join("usage.json");
    let me = std::env::current_exe().expect("this test binary");
    let out = Command::new(SANDBOX_RUN)
        .args(["--per-test", "--json-usage"])
        .arg(&usage)
        .arg("--")
        .arg(&me)
        .args(["--exact", "child_prints_a_marker", "--ignored"])
        .output()
        .expect("run");
    let refused = out.status.code() == Some(125) && String::from_utf8_lossy(&out.stderr).contains("--json-usage");
    assert!(usage.exists() || refused, "exit {:?}, no {}:\n{}", out.status.code(), usage.display(), text(&out));
}

fn winsize(rows: u16, cols: u16) -> rustix::termios::Winsize {
    rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 }
}

/// `sandbox-run --rootfs alpine --shell` (20 s deadline) on a new terminal of `rows` x `cols`, and the
/// terminal's master side, as a terminal emulator holds it.
fn shell_on_a_terminal(rows: u16, cols: u16) -> (std::process::Child, std::fs::File) {
    let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal for the test");
    rustix::termios::tcsetwinsize(&pty.master, winsize(rows, cols)).expect("size the test's terminal");
    let slave = std::fs::File::from(pty.slave);
    let clone = || slave.try_clone().expect("dup");
    let child = Command::new(SANDBOX_RUN)
        .args(["--rootfs", "alpine", "--timeout", "20s", "--shell"])
        .stdin(clone())
        .stdout(clone())
        .stderr(clone())
        .spawn()
        .expect("run");
    (child, std::fs::File::from(pty.master))
}

/// Review 18: `sandbox-run --shell` (and `cargo xtask shell`) on a terminal gives the shell a
/// pseudo-terminal of the host's devpts, which the sandbox's own `/dev/pts` does not hold: inside,
/// `tty` says "not a tty", and whatever looks its terminal up by name (`ttyname`: `tty`, `ssh` and
/// `gpg` prompts, `script`) fails, in the shell the README calls "an interactive Alpine shell on a
/// pseudo-terminal of its own". The shell's terminal should be reachable by its name inside.
/// Fixed: the terminal is made in the sandbox's devpts (`Command::pty`).
#[test]
fn the_shells_terminal_has_a_name_inside() {
    use std::io::{Read, Write};
    let (mut child, mut master) = shell_on_a_terminal(24, 80);
    master.write_all(b"tty; exit\n").expect("write to the terminal");
    let mut seen = Vec::new();
    let _ = master.read_to_end(&mut seen); // EIO once sandbox-run's end of the terminal is closed
    let status = child.wait().expect("wait");
    let seen = String::from_utf8_lossy(&seen);
    assert!(status.success() && !seen.contains("not a tty") && seen.contains("/dev/pts/"), "{status}:\n{seen}");
}

/// `sandbox-run --shell` gives the shell a terminal as big as its own, and resizes it when its own
/// window is resized (SIGWINCH), as a terminal emulator's shell sees it.
#[test]
fn the_shells_terminal_follows_a_resized_window() {
    use std::io::{Read, Write};
    let (mut child, mut master) = shell_on_a_terminal(24, 80);
    let mut seen = String::new();
    // The sizes `stty size` printed so far, each on a line of its own.
    let sizes = |seen: &str| {
        let lines: Vec<&str> = seen.split("\r\n").collect();
        lines[..lines.len() - 1].iter().filter_map(|l| l.strip_prefix("size=")).map(str::to_owned).collect::<Vec<_>>()
    };
    let ask = |master: &mut std::fs::File, seen: &mut String| {
        let before = sizes(seen).len();
        master.write_all(b"stty size | sed s/^/size=/\n").expect("type");
        let mut buf = [0u8; 4096];
        while sizes(seen).len() == before {
            // EIO (the shell gone: the deadline passed) fails the test here.
            let n = master.read(&mut buf).unwrap_or_else(|e| panic!("{e}: {seen:?}"));
            assert!(n > 0, "{seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        sizes(seen).last().cloned().unwrap_or_default()
    };
    assert_eq!(ask(&mut master, &mut seen), "24 80", "the shell's terminal is as big as sandbox-run's");
    rustix::termios::tcsetwinsize(&master, winsize(50, 132)).expect("resize the test's terminal");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGWINCH)
        .expect("SIGWINCH, as a terminal sends its foreground group");
    // sandbox-run resizes on its own time: ask until it has (the 20 s deadline bounds this).
    while ask(&mut master, &mut seen) != "50 132" {}
    master.write_all(b"exit\n").expect("type");
    let _ = master.read_to_end(&mut Vec::new()); // EIO once sandbox-run's end of the terminal is closed
    assert!(child.wait().expect("wait").success(), "{seen:?}");
}

/// `sandbox-run -t` runs a program on a terminal of the sandbox's own, as `docker run -t` does: `tty`
/// names it, piped input reaches the program as typed (echoed by the terminal), the end of that input
/// is ^D (a `cat` waiting for more ends), and the program's exit code is sandbox-run's.
#[test]
fn tty_runs_a_program_on_a_terminal_of_its_own() {
    let run = |script: &str, input: &[u8]| {
        let mut child = Command::new(SANDBOX_RUN)
            .args(["--rootfs", "alpine", "--timeout", "20s", "-t", "--", "/bin/sh", "-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input).expect("input");
        child.wait_with_output().expect("wait")
    };
    let out = run("tty; read line; echo \"got $line\"; exit 7", b"hello\n");
    // The terminal's echo of the input comes whenever it is written: before or after `tty`'s line.
    let seen = String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<&str> = seen.split_inclusive("\r\n").collect();
    lines.sort_unstable();
    assert_eq!(
        (out.status.code(), lines),
        (Some(7), vec!["/dev/pts/0\r\n", "got hello\r\n", "hello\r\n"]),
        "{}",
        text(&out)
    );
    let out = run("cat; echo done", b"");
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).as_ref()),
        (Some(0), "done\r\n"),
        "{}",
        text(&out)
    );
}

/// A host program on Alpine whose library is found through `LD_LIBRARY_PATH` (cargo's way for a test
/// needing a dylib of the workspace): with the variable given to the sandbox (`--env`, or
/// `--keep-env`), the library is bound and the program runs, as on the host; without it, the loader
/// inside names the library it misses, as it would on the host.
#[test]
fn a_host_program_on_alpine_finds_its_library_through_ld_library_path() {
    let dir =
        tempfile::Builder::new().prefix("sbr").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod the folder");
    std::fs::create_dir(dir.path().join("libs")).expect("the library folder");
    let lib_dir = format!("-L{}", dir.path().join("libs").display());
    let built = cc_into(
        dir.path(),
        &[
            ("libs/libfoo.so", "int foo(void) { return 42; }\n", &["-shared", "-fPIC"]),
            (
                "p",
                "#include <stdio.h>\nint foo(void);\nint main(void) { printf(\"foo %d\\n\", foo()); return 0; }\n",
                &[&lib_dir, "-lfoo"],
            ),
        ],
    );
    if !built {
        return;
    }
    let run = |env: Option<String>| {
        let mut cmd = Command::new(SANDBOX_RUN);
        cmd.args(["--rootfs", "alpine", "--no-workspace"]);
        if let Some(value) = env {
            cmd.arg("--env").arg(format!("LD_LIBRARY_PATH={value}"));
        }
        cmd.arg("--").arg(dir.path().join("p")).env_remove("LD_LIBRARY_PATH").output().expect("run sandbox-run")
    };
    for value in [dir.path().join("libs").display().to_string(), "/nowhere:$ORIGIN/libs".to_owned()] {
        let out = run(Some(value.clone()));
        assert_eq!(
            (out.status.code(), String::from_utf8_lossy(&out.stdout).as_ref()),
            (Some(0), "foo 42\n"),
            "LD_LIBRARY_PATH={value}: {}",
            text(&out)
        );
    }
    let out = run(None);
    assert!(
        out.status.code() != Some(0) && String::from_utf8_lossy(&out.stderr).contains("libfoo.so"),
        "without LD_LIBRARY_PATH the loader should miss libfoo.so: {}",
        text(&out)
    );
}

/// Review 18: a host shell script on Alpine (`sandbox-run --rootfs alpine -- ./check.sh`, a
/// `#!/bin/sh` script whose interpreter Alpine has) is refused with "invalid program
/// `…/check.sh`: expected an ELF64 executable" (exit 125): only ELF host programs are brought in,
/// though the README says "a host program still runs there". The script should run on Alpine.
#[test]
fn a_host_script_runs_on_alpine() {
    let (_dir, script) =
        script_under_tmp("sandbox-run-script-", "#!/bin/sh\ncat /etc/alpine-release >/dev/null && echo on alpine\n");
    let out = Command::new(SANDBOX_RUN).args(["--rootfs", "alpine", "--"]).arg(&script).output().expect("run");
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).as_ref()),
        (Some(0), "on alpine\n"),
        "{}",
        text(&out)
    );
}

/// Review 19: once its program has ended, sandbox-run can no longer be stopped with SIGTERM or
/// SIGINT (^C): its forwarding thread still takes them and sends them to the sandbox's helper, which
/// is gone (reaped: its pid free for any other process of the host). Anything slow after the
/// program (`--json-usage` into a FIFO or onto a hung network share, `--keep-failed` of a large
/// layer) then runs on, deaf to the runner's timeout. Here `--json-usage` names a FIFO nobody reads:
/// sandbox-run waits to open it and outlives SIGTERM. Once nothing is left to forward to, the
/// signals should act on sandbox-run again (it ends).
#[test]
fn sigterm_ends_sandbox_run_after_its_program_ended() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("usage.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let mut child = Command::new(SANDBOX_RUN)
        .args(["--rootfs", "alpine", "--json-usage"])
        .arg(&fifo)
        .args(["--", "/bin/echo", "done"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let pid = i32::try_from(child.id()).expect("pid");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line, "done\n");
    // The program has ended; so has the sandbox once sandbox-run's helper has (gone, or a zombie).
    let running = |child: &i32| {
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        stat.rsplit_once(')').is_some_and(|(_, rest)| rest.split_whitespace().next() != Some("Z"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while system_tests::children_of(pid).iter().any(running) && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        match child.try_wait() {
            Ok(None) if std::time::Instant::now() < deadline => std::thread::yield_now(),
            other => break other.ok().flatten(),
        }
    };
    if status.is_none() {
        // Let it go: a reader at the FIFO's other end.
        let _ = std::fs::File::open(&fifo);
        let _ = child.wait();
    }
    assert!(status.is_some(), "sandbox-run still ran 10 s after SIGTERM, its program long ended");
}

/// Review 19: `--timeout 999999999999999999m` (or as many `h`) makes sandbox-run panic ("attempt to
/// multiply with overflow" in its duration parser, exit 101; a release build wraps around to some
/// other deadline), and `--timeout 18446744073709551615s` is taken, then fails as "the sandbox
/// helper process ended unexpectedly". A duration too large should be refused as the option's
/// invalid value, as `--timeout 0ms` is.
#[test]
fn a_timeout_too_large_is_refused_as_an_invalid_value() {
    let run = |value: &str| {
        Command::new(SANDBOX_RUN)
            .args(["--rootfs", "alpine", "--timeout", value, "--", "/bin/true"])
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run")
    };
    let zero = run("0ms");
    assert!(String::from_utf8_lossy(&zero.stderr).contains("invalid value '0ms' for '--timeout"), "{}", text(&zero));
    for value in ["999999999999999999m", "100000000000000000h", "18446744073709551615s"] {
        let out = run(value);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == zero.status.code()
                && stderr.contains(&format!("invalid value '{value}' for '--timeout")),
            "--timeout {value}: {}: {stderr}",
            out.status
        );
    }
}

/// Review 19: a host `#!/bin/bash` script on Alpine (which has no bash) fails with "failed to
/// execute `/tmp/…/check.sh` in the sandbox: No such file or directory": the script is there (bound
/// in); what is missing is the interpreter its first line names, which the message does not say.
/// The error should name the missing interpreter (`/bin/bash`), as a shell's "bad interpreter" does.
#[test]
fn a_host_script_whose_interpreter_the_rootfs_lacks_names_it() {
    let (_dir, script) = script_under_tmp("sandbox-run-script-", "#!/bin/bash\necho on alpine\n");
    let out = Command::new(SANDBOX_RUN).args(["--rootfs", "alpine", "--"]).arg(&script).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(127) && stderr.contains("/bin/bash"), "{}: {stderr}", out.status);
}

/// The tenth outside review: a `--mount` source through a link (one a sandbox could have planted in
/// the workspace) bound whatever it led to, read-write as root. Refused; the folder itself works.
#[test]
fn a_mount_source_through_a_link_is_refused() {
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
    let (real, link) = (dir.path().join("real"), dir.path().join("link"));
    std::fs::create_dir(&real).expect("mkdir");
    std::os::unix::fs::symlink(&real, &link).expect("link");
    let run = |source: &Path| {
        Command::new(SANDBOX_RUN)
            .current_dir("/")
            .args(["--rootfs", "host", "--mount"])
            .arg(format!("{}:/data", source.display()))
            .args(["--", "/bin/true"])
            .output()
            .expect("run sandbox-run")
    };
    let out = run(&link);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("leads through the link"), "{}", text(&out));
    let out = run(&real);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// The tenth outside review: `--per-test` kept all a test printed (350 MB/s of `yes` grew
/// sandbox-run's memory past a gigabyte) and printed test names with escape sequences as they came
/// (one hid a FAILED behind a forged summary). Output is cut at 16 MiB, the test ended; a name with a
/// control character is refused.
#[test]
fn per_test_output_is_bounded_and_names_are_plain() {
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
    let fake = |name: &str, list: &str| {
        let path = dir.path().join(name);
        let script = format!(
            "#!/bin/sh\ncase \"$*\" in\n*--ignored*) printf '\\n0 tests, 0 benchmarks\\n' ;;\n*--list*) printf '{list}: test\\n\\n1 test, 0 benchmarks\\n' ;;\n*) exec yes AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA ;;\nesac\n"
        );
        std::fs::write(&path, script).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    };
    let spew = fake("spew", "spew");
    let out = Command::new("timeout")
        .current_dir("/")
        .args(["120", SANDBOX_RUN, "--per-test", "--"])
        .arg(&spew)
        .output()
        .expect("run sandbox-run");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(sandbox_cli::TESTS_FAILED), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(shown.contains("output cut at 16 MiB") && shown.len() < 40 << 20, "{} bytes", shown.len());
    // Nor does all of it add up: 6 failing tests printing just under the cap on both streams (the
    // sixteenth review: 80 of them made sandbox-run hold 2.8 GB for the summary). At most 64 MiB of
    // all tests' output is kept for it.
    let many = dir.path().join("many");
    let script = "#!/bin/sh\ncase \"$*\" in\n*--ignored*) printf '\\n0 tests, 0 benchmarks\\n' ;;\n\
                  *--list*) printf 't1: test\\nt2: test\\nt3: test\\nt4: test\\nt5: test\\nt6: test\\n\\n6 tests, 0 benchmarks\\n' ;;\n\
                  *) head -c 16773120 /dev/zero | tr '\\0' A; head -c 16773120 /dev/zero | tr '\\0' B >&2; exit 1 ;;\nesac\n";
    std::fs::write(&many, script).expect("write");
    std::fs::set_permissions(&many, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = Command::new(SANDBOX_RUN).current_dir("/").args(["--per-test", "--"]).arg(&many).output().expect("run");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(sandbox_cli::TESTS_FAILED), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(shown.contains("keeps at most 64 MiB") && shown.len() < 70 << 20, "{} bytes", shown.len());
    assert!(shown.contains("test t6 ... FAILED") && shown.contains("    t6"), "every test is still listed");
    let forged = fake("forged", "real\\033E\\033Etest result: ok");
    let out = Command::new(SANDBOX_RUN).current_dir("/").args(["--per-test", "--"]).arg(&forged).output().expect("run");
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("control character"), "{}", text(&out));
}
