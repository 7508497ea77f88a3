//! The sandbox runtime, checked the way a user would: from the outside, with Alpine's own tools.
//!
//! Every check is a plain function run twice: as the invoking user (root in CI), and again as the
//! unprivileged `sandbox-test` user by `rootless_suite`.

use std::os::unix::process::ExitStatusExt;
use std::process::Output;
use std::time::Duration;

use sandbox::{Error, Network, Sandbox, Stdio};
use system_tests::{
    ChildTest, dir_owned_by, fixture_rootfs, host_mount_count, is_child, is_root, marker, pids_matching, skip,
    test_user, wait_until_gone,
};

fn rootfs() -> fetch::Rootfs {
    fixture_rootfs(env!("CARGO_TARGET_TMPDIR"))
}

/// The fixture's tarball, which [`rootfs`] unpacks.
fn fixture_tarball() -> std::path::PathBuf {
    system_tests::fixture_tarball(env!("CARGO_TARGET_TMPDIR"))
}

fn builder() -> sandbox::Builder {
    Sandbox::builder().rootfs(&rootfs())
}

fn sh(sb: &Sandbox, script: &str) -> Output {
    let out = sb.command("/bin/sh").args(["-c", script]).output().expect("run a shell in the sandbox");
    assert!(out.status.success(), "`{script}` failed with {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---- the checks ----

fn check_hostname() {
    let host_before = nix::unistd::gethostname().expect("host hostname");
    let sb = builder().hostname("box").build().expect("build");
    assert_eq!(text(&sh(&sb, "hostname; cat /etc/hostname")), "box\nbox\n");
    assert!(text(&sh(&sb, "cat /etc/hosts")).contains("box"));
    let other = builder().hostname("other-box").build().expect("build");
    assert_eq!(text(&sh(&other, "hostname")), "other-box\n");
    assert_eq!(nix::unistd::gethostname().expect("host hostname"), host_before, "the host's hostname is unchanged");
}

fn check_pid_namespace() {
    let sb = builder().build().expect("build");
    // The shell is PID 2, under the sandbox's init (PID 1, whose parent is outside); ps sees exactly
    // those two and itself.
    let out = text(&sh(&sb, "echo $$; ps -o pid,comm > /tmp/ps; tail -n +2 /tmp/ps | wc -l; grep PPid /proc/1/status"));
    assert_eq!(out, "2\n3\nPPid:\t0\n");
    // PID 1 shows as the sandbox's init, not with the caller's command line (init is its fork).
    let exe = std::env::current_exe().expect("this test's binary");
    let name = exe.file_name().expect("a file name").to_string_lossy().into_owned();
    let init = text(&sh(&sb, "tr '\\0' ' ' < /proc/1/cmdline; echo; cat /proc/1/comm"));
    assert!(init.starts_with("sandbox-init") && init.ends_with("\nsandbox-init\n"), "{init}");
    assert!(!init.contains(&name), "the caller's command line is visible inside: {init}");
}

fn check_no_host_path() {
    let host_dir = tempfile::tempdir().expect("tempdir");
    let marker_file = host_dir.path().join("host-only-marker");
    std::fs::write(&marker_file, b"host").expect("write marker");
    let sb = builder().build().expect("build");
    let script = format!(
        "test -e {m} && echo visible; test -e /oldroot && echo oldroot; test -e {cache} && echo cache; echo done",
        m = marker_file.display(),
        cache = sb.rootfs_path().display()
    );
    assert_eq!(text(&sh(&sb, &script)), "done\n");
    assert_eq!(
        text(&sh(&sb, "test -e /sys/kernel && echo sys; test -d /dev/shm -a -w /dev/shm && echo shm")),
        "shm\n",
        "no /sys unless asked for"
    );
    // The root is the rootfs, not the host's.
    assert_eq!(text(&sh(&sb, "cat /etc/alpine-release")), "3.19.1-fixture\n");
}

fn check_network_modes() {
    let lo = builder().sys(true).build().expect("build");
    let devices = text(&sh(&lo, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"));
    assert_eq!(devices, "lo\n", "only lo in the network namespace");
    assert_eq!(text(&sh(&lo, "cat /sys/class/net/lo/flags")).trim(), "0x9", "lo is up");
    // A fixed privileged port, on loopback, as root inside: the point of the whole thing.
    let served = sh(
        &lo,
        "nc -ll -p 80 -e echo hello & until grep -q ':0050 ' /proc/net/tcp /proc/net/tcp6; do :; done; nc 127.0.0.1 80 </dev/null",
    );
    assert_eq!(text(&served), "hello\n");

    let none = builder().network(Network::None).sys(true).build().expect("build");
    assert_eq!(text(&sh(&none, "cat /sys/class/net/lo/flags")).trim(), "0x8", "lo is down");
    // A listener exists (the loop waits until it is bound), yet nothing reaches it: with lo down
    // there is no route, even to ourselves. The same script with lo up connects.
    let probe = "nc -ll -p 81 -e true & until grep -q ':0051 ' /proc/net/tcp /proc/net/tcp6; do :; done; \
                 echo | nc 127.0.0.1 81 >/dev/null 2>&1; echo rc=$?; kill $!";
    assert_eq!(text(&sh(&none, probe)), "rc=1\n");
    assert_eq!(text(&sh(&lo, probe)), "rc=0\n");
}

fn check_writes_stay_private() {
    let sb = builder().build().expect("build");
    let motd_on_host = std::fs::read(sb.rootfs_path().join("etc/motd")).expect("host motd");
    sh(&sb, "echo mine > /etc/motd && touch /root/made-here && rm /bin/ls && test ! -e /bin/ls");
    assert_eq!(text(&sh(&sb, "cat /etc/motd")), String::from_utf8_lossy(&motd_on_host), "a new sandbox starts fresh");
    assert_eq!(text(&sh(&sb, "test -e /root/made-here || echo absent; test -e /bin/ls && echo ls")), "absent\nls\n");
    assert_eq!(
        std::fs::read(sb.rootfs_path().join("etc/motd")).expect("host motd"),
        motd_on_host,
        "the cache is untouched"
    );
    assert!(!sb.rootfs_path().join("root/made-here").exists());
}

fn check_exit_status() {
    use std::os::unix::process::ExitStatusExt;
    let sb = builder().build().expect("build");
    assert_eq!(sb.command("/bin/false").status().expect("status").code(), Some(1));
    assert_eq!(sb.command("/bin/sh").args(["-c", "exit 42"]).status().expect("status").code(), Some(42));
    let segv = sb.command("/bin/sh").args(["-c", "kill -SEGV $$"]).status().expect("status");
    assert_eq!((segv.code(), segv.signal()), (None, Some(11)), "{segv}");
    let term = sb.command("/bin/sh").args(["-c", "kill -TERM $$"]).status().expect("status");
    assert_eq!(term.signal(), Some(15));
}

fn check_timeout_kills_the_tree() {
    let m = marker();
    let sb = builder().timeout(Duration::from_millis(500)).build().expect("build");
    let err = sb
        .command("/bin/sh")
        .args(["-c", &format!("sleep {m} & sleep {m} & sleep {m}")])
        .status()
        .expect_err("must time out");
    let Error::TimedOut { doing, .. } = &err else { panic!("{err:?}") };
    // What it was running, for the error: the three sleeps (the shell exec'd the last one).
    assert_eq!(doing.iter().filter(|l| l.ends_with(&format!(" S sleep {m}"))).count(), 3, "{err}");
    assert!(err.to_string().contains(&format!("sleep {m}")), "{err}");
    assert_eq!(pids_matching(&format!("sleep {m}")), Vec::<i32>::new(), "grandchildren are dead when status() returns");
}

/// A timeout with limits also says where the limits stood: a hang at a limit is diagnosable.
#[test]
fn a_timeout_at_a_limit_says_so() {
    if !limits_usable() {
        return skip(NO_LIMITS);
    }
    // 3 s: at 800 ms an emulated guest (the VM lane) still had the shell's children on their way to
    // their exec when the deadline passed, and no `sleep 100` was listed.
    let sb = builder().timeout(Duration::from_secs(3)).pids_limit(4).build().expect("build");
    // Forks until the pids limit refuses, then waits: the kind of hang a limit causes.
    let err = sb
        .command("/bin/sh")
        .args(["-c", "(sleep 100 & sleep 100 & sleep 100 & wait) 2>/dev/null; exec sleep 100"])
        .status()
        .expect_err("must time out");
    let Error::TimedOut { doing, .. } = &err else { panic!("{err:?}") };
    let cgroup = doing.iter().find(|l| l.starts_with("cgroup: ")).unwrap_or_else(|| panic!("no cgroup line: {err}"));
    assert!(cgroup.contains(" of 4, limit hit "), "{cgroup}");
    assert!(!cgroup.ends_with("limit hit 0 times"), "the refused fork is counted: {cgroup}");
    assert!(doing.iter().any(|l| l.ends_with(" S sleep 100")), "{err}");
}

fn check_kill_and_drop() {
    use std::os::unix::process::ExitStatusExt;
    let sb = builder().build().expect("build");
    let m = marker();
    let mut child = sb.command("/bin/sleep").arg(&m).stdout(Stdio::piped()).spawn().expect("spawn");
    assert_eq!(pids_matching(&format!("sleep {m}")).len(), 1, "running");
    child.kill().expect("kill");
    assert_eq!(child.wait().expect("wait").signal(), Some(9));
    assert_eq!(pids_matching(&format!("sleep {m}")), Vec::<i32>::new(), "gone after wait");

    let m = marker();
    let child = sb.command("/bin/sh").args(["-c", &format!("sleep {m} & sleep {m}")]).spawn().expect("spawn");
    drop(child);
    assert_eq!(pids_matching(&format!("sleep {m}")), Vec::<i32>::new(), "gone after drop");
}

fn check_large_output() {
    let sb = builder().build().expect("build");
    let out = sb
        .command("/bin/sh")
        .args(["-c", "head -c 8000000 /dev/zero; head -c 8000000 /dev/zero >&2"])
        .output()
        .expect("run");
    assert_eq!((out.stdout.len(), out.stderr.len()), (8_000_000, 8_000_000));
    let quiet = sb.command("/bin/echo").arg("x").stdout(Stdio::null()).output().expect("run");
    assert!(quiet.stdout.is_empty() && quiet.status.success());
}

fn check_env_and_dir() {
    let sb = builder().env("KEY", "value").current_dir("/etc").build().expect("build");
    let out = text(&sh(&sb, "echo $KEY; pwd; echo $HOME; echo $PATH; echo ${CARGO:-clean}"));
    assert_eq!(out, format!("value\n/etc\n/root\n{}\nclean\n", sandbox::DEFAULT_PATH));
    let cmd = sb
        .command("/bin/sh")
        .args(["-c", "echo $KEY $EXTRA; pwd"])
        .env("EXTRA", "more")
        .env_remove("KEY")
        .current_dir("/tmp")
        .output()
        .expect("run");
    assert_eq!(text(&cmd), "more\n/tmp\n");
}

/// Arguments are bytes, as `std::process::Command` takes them: a path, a name that is not UTF-8.
fn check_arguments_are_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let sb = builder().build().expect("build");
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let out = sb.command(std::path::Path::new("/bin/echo")).arg(latin1).output().expect("run");
    assert_eq!(out.stdout, b"caf\xe9\n", "the argument's bytes, as given");
    let etc = std::path::PathBuf::from("/etc");
    let out = sb.command("/bin/cat").arg(etc.join("alpine-release")).current_dir(&etc).output().expect("run");
    assert!(out.status.success() && !out.stdout.is_empty(), "{out:?}");
    let dir = sb.command("/bin/true").current_dir(std::ffi::OsStr::from_bytes(b"/caf\xe9")).status();
    assert!(matches!(dir, Err(Error::InvalidConfig { what: "current_dir", .. })), "{dir:?}");
    let nul = sb.command("/bin/echo").arg(std::ffi::OsStr::from_bytes(b"a\0b")).status();
    assert!(matches!(nul, Err(Error::InvalidConfig { what: "argument", .. })), "{nul:?}");
    // Shown escaped and cut (it was the whole megabyte), and names that are not UTF-8 with `\xff`.
    let long = [b"x\0".as_slice(), &[b'y'; 1 << 20]].concat();
    let long = sb.command("/bin/echo").arg(std::ffi::OsStr::from_bytes(&long)).status().expect_err("NUL");
    assert!(long.to_string().len() < 1000, "{} bytes", long.to_string().len());
    let missing = sb.command(std::ffi::OsStr::from_bytes(b"/bin/\xff")).status().expect_err("no such program");
    assert!(missing.to_string().contains("/bin/\\xff"), "{missing}");
    let in_etc = builder().current_dir(std::path::PathBuf::from("/etc")).build().expect("build");
    assert_eq!(in_etc.command("/bin/pwd").output().expect("pwd").stdout, b"/etc\n");
    // argv[0], as std's `CommandExt::arg0` sets it: a multi-call binary picks its applet from it.
    let echo = sb.command("/bin/busybox").arg0("echo").arg("hi").output().expect("run");
    assert_eq!(echo.stdout, b"hi\n", "{echo:?}");
    let shown = sb.command("/bin/busybox").arg0("cat").arg("/proc/self/cmdline").output().expect("run");
    assert_eq!(shown.stdout, b"cat\0/proc/self/cmdline\0", "{shown:?}");
    let nul = sb.command("/bin/true").arg0(std::ffi::OsStr::from_bytes(b"a\0b")).status();
    assert!(matches!(nul, Err(Error::InvalidConfig { what: "argument", .. })), "{nul:?}");
}

fn check_bad_input() {
    let invalid = |b: sandbox::Builder| matches!(b.build(), Err(Error::InvalidConfig { .. }));
    assert!(invalid(Sandbox::builder().rootfs_dir("/nonexistent/rootfs")));
    assert!(invalid(Sandbox::builder().rootfs_dir("/etc/hostname")));
    assert!(invalid(builder().hostname("x".repeat(65))));
    assert!(invalid(builder().hostname("bad_name!")));
    assert!(invalid(builder().current_dir("relative")));
    assert!(invalid(builder().current_dir("/etc/../root")));
    assert!(invalid(builder().env("A=B", "c")));
    assert!(invalid(builder().env("A", "c\0d")));
    // An id range among the system's and its users' ids (the 34th outside review: with 1000, the
    // sandbox's root was a login user, who could signal its processes).
    assert!(invalid(builder().id_base(1000)));
    assert!(invalid(builder().id_base(99_999)));
    assert!(invalid(builder().sys(true).network(sandbox::Network::Host)));

    let sb = builder().build().expect("build");
    let missing = sb.command("/usr/bin/no-such-program").status().expect_err("missing program");
    assert_eq!(missing.io_kind(), std::io::ErrorKind::NotFound, "{missing}");
    assert!(missing.to_string().contains("no-such-program"), "{missing}");
    assert!(missing.to_string().contains("not found in the sandbox's root filesystem"), "{missing}");
    let missing_in_path = sb.command("no-such-program").output().expect_err("missing program");
    assert_eq!(missing_in_path.io_kind(), std::io::ErrorKind::NotFound);
    let bad_dir = sb.command("/bin/true").current_dir("/no/such/dir").status().expect_err("missing dir");
    match &bad_dir {
        Error::Setup { step, path, hint, .. } => {
            assert_eq!(step, "enter the working directory");
            assert_eq!(path.as_deref(), Some("/no/such/dir"));
            assert!(hint.is_some());
        }
        other => panic!("expected a setup error, got {other:?}"),
    }
    assert!(matches!(sb.command("/bin/true").env("B=", "x").status(), Err(Error::InvalidConfig { .. })));
}

/// A program on a pseudo-terminal of the sandbox's own: `tty` names it inside, `stty` sees its
/// size and a resize, the shell has job control on it; the same for a session's command.
fn check_pty() {
    use std::io::{Read, Write};
    // A deadline: a hang here ends the reads below (the terminal closes with the sandbox).
    let sb = builder().timeout(Duration::from_secs(30)).build().expect("build");
    let mut child = sb.command("/bin/sh").pty(30, 100).spawn().expect("spawn on a pty");
    let mut pty = child.pty.take().expect("the pty's master side");
    let mut seen = String::new();
    let read_until = |pty: &mut sandbox::Pty, seen: &mut String, end: &str| {
        let mut buf = [0u8; 4096];
        while !seen.contains(end) {
            let n = pty.read(&mut buf).expect("read the terminal");
            assert!(n > 0, "the terminal closed before {end:?}: {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    pty.write_all(b"tty; stty size; ls /dev/pts | tr '\\n' ' '; echo; set -o | grep -c 'monitor.*on' | sed s/^/jc=/\n")
        .expect("type");
    read_until(&mut pty, &mut seen, "\r\njc=1\r\n");
    assert!(seen.contains("/dev/pts/0\r\n30 100\r\n0 ptmx \r\njc=1\r\n"), "tty, size, the sandbox's devpts: {seen:?}");
    // Resized as a terminal window is; typed once the first line is done, so no echo interleaves.
    pty.resize(40, 120).expect("resize");
    pty.write_all(b"stty size; exit 3\n").expect("type");
    pty.read_to_string(&mut seen).expect("read the terminal to its end");
    assert_eq!(child.wait().expect("wait").code(), Some(3), "{seen}");
    assert!(seen.contains("\r\n40 120\r\n") && !seen.contains("not a tty"), "{seen:?}");
    // What output() cannot relay is refused, not left to hang.
    let err = sb.command("/bin/true").pty(24, 80).output().expect_err("output() on a pty");
    assert!(matches!(&err, Error::InvalidConfig { reason, .. } if reason.contains("spawn()")), "{err}");

    let session = sb.session().expect("session");
    let mut child = session.command("/usr/bin/tty").pty(24, 80).spawn().expect("spawn in the session");
    let mut seen = String::new();
    child.pty.take().expect("pty").read_to_string(&mut seen).expect("read");
    assert!(child.wait().expect("wait").success(), "{seen}");
    assert_eq!(seen, "/dev/pts/0\r\n");
}

#[test]
fn pty() {
    check_pty();
}

fn check_session() {
    let sb = builder().hostname("shared").build().expect("build");
    let m = marker();
    {
        let session = sb.session().expect("session");
        // The background job must have become `sleep` (its comm changes at exec) before this returns.
        let first = format!("echo kept > /tmp/f; sleep {m} & while [ \"$(cat /proc/$!/comm)\" != sleep ]; do :; done");
        session.command("/bin/sh").args(["-c", &first]).status().expect("first");
        let out = session
            .command("/bin/sh")
            .args(["-c", "cat /tmp/f; ps -o args | grep -c '^sleep'; hostname"])
            .output()
            .expect("second");
        assert_eq!(text(&out), "kept\n1\nshared\n", "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(pids_matching(&format!("sleep {m}")).len(), 1);
    }
    assert_eq!(pids_matching(&format!("sleep {m}")), Vec::<i32>::new(), "the session's processes die with it");
    let fresh = text(&sh(&sb, "cat /tmp/f 2>/dev/null || echo fresh"));
    assert_eq!(fresh, "fresh\n");
}

fn check_closure() {
    let sb = builder().hostname("closure-box").build().expect("build");
    let (host, procs, release): (String, usize, String) = sb
        .run(|| {
            let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
            let procs = std::fs::read_dir("/proc")
                .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok()).count())
                .unwrap_or(0);
            let release = std::fs::read_to_string("/etc/alpine-release").unwrap_or_default();
            (host, procs, release)
        })
        .expect("run a closure");
    assert_eq!(host, "closure-box");
    assert_eq!(release, "3.19.1-fixture\n");
    assert!(procs <= 3, "{procs} processes visible");
}

fn check_stdio_is_kept_for_the_next_spawn() {
    let sb = builder().build().expect("build");
    let log = tempfile::NamedTempFile::new().expect("temporary file");
    let file = log.reopen().expect("reopen");
    let mut cmd = sb.command("/bin/sh");
    cmd.args(["-c", "echo $$"]).stdout(file).stderr(Stdio::null());
    // Explicit stdio goes through the fork server too: the helper is not this process's child.
    let mut child = cmd.spawn().expect("first spawn");
    assert!(!system_tests::children_of(std::process::id() as i32).contains(&(child.id() as i32)));
    assert!(child.wait().expect("wait").success());
    assert!(cmd.status().expect("second spawn, same stdio").success());
    assert_eq!(std::fs::read_to_string(log.path()).expect("read the log"), "2\n2\n", "both programs wrote there");
}

/// Runs `runs` sandboxes one after the other, then checks that nothing is left: no mount in the
/// host's namespace, no entry in `$TMPDIR`, no child process. Run it in a process of its own (with
/// a private `$TMPDIR`), so that other tests' sandboxes do not count.
fn check_leaks_over_many_runs(runs: usize) {
    let mounts = host_mount_count();
    let tmp_before = system_tests::list(&std::env::temp_dir());
    let sb = builder().build().expect("build");
    for _ in 0..runs {
        let status = sb.command("/bin/true").status().expect("run");
        assert!(status.success());
    }
    assert_eq!(host_mount_count(), mounts, "no mount leaked onto the host");
    assert_eq!(system_tests::list(&std::env::temp_dir()), tmp_before, "no temporary file or directory left");
    // The fork server reaps a helper right after it ends, asynchronously: allow it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !system_tests::child_processes().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(system_tests::child_processes(), Vec::<i32>::new(), "no process left");
}

// ---- as the invoking user ----

#[test]
fn hostname_is_private() {
    check_hostname();
}

#[test]
fn writable_size_sizes_the_writable_layer_and_tmp() {
    check_writable_size();
}

#[test]
fn copied_rootfs_is_private_too() {
    check_copied_rootfs();
}

/// `writable_size` sizes the writable layer under `/`, `/tmp` and a tmpfs volume without a size of
/// its own (one with a size keeps it), and a writer past it gets ENOSPC; without it, `/` is larger.
fn check_writable_size() {
    let sizes = "df -k / /tmp /scratch /sized | tail -n +2 | awk '{print $6, $2}'";
    let sb = builder()
        .writable_size(8 << 20)
        .mount(sandbox::Mount::tmpfs("/scratch"))
        .mount(sandbox::Mount::tmpfs("/sized").size(32 << 20))
        .build()
        .expect("build");
    assert_eq!(text(&sh(&sb, sizes)), "/ 8192\n/tmp 8192\n/scratch 8192\n/sized 32768\n");
    let out = sb
        .command("/bin/sh")
        .args(["-c", "dd if=/dev/zero of=/fill bs=1M count=16 2>&1; echo rc=$?; rm /fill; echo alive"])
        .output()
        .expect("run the writer");
    let said = text(&out);
    assert!(said.contains("No space left on device") && said.ends_with("alive\n"), "{said}");
    let default = text(&sh(&builder().build().expect("build"), "df -k / | tail -n 1 | awk '{print $2}'"));
    assert!(default.trim().parse::<u64>().is_ok_and(|kib| kib > 8192), "default size of /: {default}");
    let err = builder().writable_size(4096).build().expect_err("4 KiB is too small");
    assert!(matches!(&err, Error::InvalidConfig { what: "writable_size", .. }), "{err:?}");
    // The outside review: tmpfs rounds a size up to whole pages, and one within a page of 2^64 wrapped
    // to size=0, no limit at all.
    let err = builder().writable_size(u64::MAX).build().expect_err("wraps to no limit");
    assert!(matches!(&err, Error::InvalidConfig { what: "writable_size", .. }), "{err:?}");
    let err = builder().mount(sandbox::Mount::tmpfs("/v").size(u64::MAX - 4095)).build().expect_err("wraps");
    assert!(matches!(&err, Error::InvalidConfig { what: "mount size", .. }), "{err:?}");
}

fn check_volumes() {
    use sandbox::Mount;
    let host = tempfile::tempdir().expect("tempdir");
    std::fs::write(host.path().join("data.txt"), "hello").expect("write");
    let rw = tempfile::tempdir().expect("tempdir");
    let sb = builder()
        .mount(Mount::bind(host.path(), "/data").read_only())
        .mount(Mount::bind(rw.path(), "/srv/rw"))
        .mount(Mount::bind(host.path().join("data.txt"), "/etc/data.txt").read_only())
        .mount(Mount::tmpfs("/scratch").size(1 << 20))
        .file("/etc/app.toml", "port = 80\n")
        .build()
        .expect("build");
    let out = sb
        .command("/bin/sh")
        .args([
            "-c",
            "cat /data/data.txt; echo; cat /etc/data.txt; echo; echo x > /data/new 2>&1 || echo ro; \
                      echo x > /srv/rw/made-inside && echo rw; cat /etc/app.toml; \
                      head -c 2000000 /dev/zero > /scratch/big 2>/dev/null || echo full; \
                      echo changed > /etc/app.toml",
        ])
        .output()
        .expect("run");
    let text_out = text(&out);
    assert_eq!(text_out, "hello\nhello\nro\nrw\nport = 80\nfull\n", "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "EROFS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!host.path().join("new").exists(), "nothing written through the read-only volume");
    assert_eq!(
        std::fs::read_to_string(rw.path().join("made-inside")).ok().as_deref(),
        Some("x\n"),
        "the writable volume is the host's"
    );
    let opts =
        text(&sh(&sb, "grep ' /data ' /proc/mounts | cut -d' ' -f4; grep ' /srv/rw ' /proc/mounts | cut -d' ' -f4"));
    let mut lines = opts.lines();
    let (ro, rw) = (lines.next().unwrap_or_default(), lines.next().unwrap_or_default());
    for (flags, want_ro) in [(ro, true), (rw, false)] {
        let flags: Vec<&str> = flags.split(',').collect();
        assert!(flags.contains(&"nosuid") && flags.contains(&"nodev"), "{flags:?}");
        assert_eq!(flags.contains(&"ro"), want_ro, "{flags:?}");
    }
    // A file of the builder is written afresh into each sandbox's private layer.
    assert_eq!(text(&sh(&sb, "cat /etc/app.toml")), "port = 80\n");
    assert!(!sb.rootfs_path().join("etc/app.toml").exists(), "the cache is untouched");

    let invalid = |b: sandbox::Builder| matches!(b.build(), Err(Error::InvalidConfig { .. }));
    assert!(invalid(builder().mount(Mount::bind("/no/such/source", "/data"))));
    assert!(invalid(builder().mount(Mount::bind(host.path(), "data"))));
    assert!(invalid(builder().mount(Mount::bind(host.path(), "/data/../../etc"))));
    assert!(invalid(builder().mount(Mount::tmpfs("/"))));
    assert!(invalid(builder().mount(Mount::bind(host.path(), "/d").size(1))));
    assert!(invalid(builder().file("relative/path", "x")));
}

#[test]
fn volumes_and_files() {
    check_volumes();
}

/// A read-write volume in the target folder: what the program writes there is the caller's on the
/// host. As root, where that folder's file system cannot be id-mapped (the VM lane: overlayfs over 9p
/// on Linux 6.1), the start is refused instead, naming the volume and how to fix it; a read-only
/// volume of the same folder still works there.
#[test]
fn a_written_volume_belongs_to_the_caller_or_is_refused_with_a_fix() {
    use std::os::unix::fs::MetadataExt;
    // (The target folder is root's: an unprivileged run takes its temporary folder.)
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).or_else(|_| tempfile::tempdir()).expect("tempdir");
    std::fs::write(dir.path().join("seen"), "seen\n").expect("write");
    let ro = builder().mount(sandbox::Mount::bind(dir.path(), "/data").read_only()).build().expect("build");
    assert_eq!(text(&sh(&ro, "cat /data/seen")), "seen\n", "a read-only volume works everywhere");
    let sb = builder().mount(sandbox::Mount::bind(dir.path(), "/data")).build().expect("build");
    match sb.command("/bin/sh").args(["-c", "echo x > /data/made && mkdir /data/sub"]).output() {
        Ok(out) => {
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            for made in ["made", "sub"] {
                let meta = std::fs::metadata(dir.path().join(made)).expect("written through the volume");
                assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw(), "{made} is the caller's");
                assert_eq!(meta.gid(), nix::unistd::getegid().as_raw(), "{made} is the caller's group's");
            }
        }
        Err(e) => {
            let message = format!("{e:#}");
            assert!(is_root(), "refused rootless: {message}");
            for part in ["cannot be id-mapped", "/data", "Mount::read_only", "privileged()"] {
                assert!(message.contains(part), "{part:?} missing from: {message}");
            }
            assert_eq!(system_tests::list(dir.path()), vec!["seen".to_owned()], "nothing written");
        }
    }
}

/// The host's cgroup directories where sandboxes of this process get theirs (v1: one per controller).
const NO_LIMITS: &str =
    "cgroup limits need root, or a delegated cgroup v2 subtree (see limits_without_a_usable_cgroup_are_explained)";

/// Where a sandbox with limits gets its cgroup v2 from: a subtree delegated to this user (systemd's
/// `user@UID.service`, or `cargo xtask vm --user NAME --delegate`), else the root.
fn v2_base() -> std::path::PathBuf {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let path = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/");
    let delegated = path.find("/user@").map(|at| path[at + 1..].find('/').map_or(path, |e| &path[..at + 1 + e]));
    std::path::Path::new("/sys/fs/cgroup").join(delegated.unwrap_or("/").trim_start_matches('/'))
}

/// Whether limits can work here: as root, or rootless in a cgroup v2 subtree this user owns.
fn limits_usable() -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::getuid().as_raw();
    is_root() || std::fs::metadata(v2_base().join("cgroup.subtree_control")).is_ok_and(|m| m.uid() == me)
}

fn sandbox_cgroup_parents() -> Vec<std::path::PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    own.lines()
        .filter_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctl, path) = (p.next()?, p.next()?, p.next()?);
            let dir = match ctl {
                "" => v2_base().join("sandbox.slice"),
                c if ["memory", "pids", "cpu", "cpuacct"].iter().any(|x| c.split(',').any(|y| y == *x)) => {
                    std::path::Path::new("/sys/fs/cgroup").join(c).join(path.trim_start_matches('/'))
                }
                _ => return None,
            };
            Some(dir)
        })
        .collect()
}

/// `sandbox-<pid>-…` cgroups whose helper is dead: what must never be left behind.
fn stale_sandbox_cgroups() -> Vec<String> {
    sandbox_cgroup_parents()
        .iter()
        .flat_map(|d| system_tests::list(d).into_iter().map(move |n| (d.clone(), n)))
        .filter(|(_, n)| n.starts_with("sandbox-"))
        .filter(|(_, n)| n.split('-').nth(1).is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()))
        .map(|(d, n)| d.join(n).display().to_string())
        .collect()
}

/// A new user's review: a second `wait` after a timeout (or an OOM kill) said "the sandbox helper
/// process ended unexpectedly", and `usage()` was gone. As std's, a later wait returns the same again.
#[test]
fn a_second_wait_returns_the_same_ending_and_keeps_the_usage() {
    let limited = |b: sandbox::Builder| if limits_usable() { b.memory_limit(64 << 20) } else { b };
    let sb = limited(builder().timeout(Duration::from_millis(300))).build().expect("build");
    let mut child = sb.command("/bin/sleep").arg("30").spawn().expect("spawn");
    let first = child.wait().expect_err("the deadline ends it");
    let usage = child.usage();
    let second = child.wait().expect_err("the same, again");
    assert!(matches!(first, Error::TimedOut { .. }), "{first:?}");
    assert_eq!(second.to_string(), first.to_string());
    assert_eq!(child.usage(), usage, "the usage stays");
    assert_eq!(usage.is_some(), limits_usable(), "a sandbox with limits has a usage");
    let mut passing = builder().build().expect("build").command("/bin/true").spawn().expect("spawn");
    let status = passing.wait().expect("wait");
    assert_eq!(passing.wait().expect("wait again"), status);
}

/// A new user's review: no `try_wait` to poll a daemon without blocking, and no `env_clear`, both of
/// which `std::process` has.
#[test]
fn try_wait_and_env_clear_behave_as_std_s() {
    let sb = builder().build().expect("build");
    let mut daemon = sb.command("/bin/sleep").arg("30").spawn().expect("spawn");
    assert!(daemon.try_wait().expect("try_wait").is_none(), "still running");
    daemon.kill().expect("kill");
    assert_eq!(daemon.wait().expect("wait").signal(), Some(9));
    assert_eq!(daemon.try_wait().expect("try_wait after wait").and_then(|s| s.signal()), Some(9));
    let mut quick = sb.command("/bin/sh").args(["-c", "exit 7"]).spawn().expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = quick.try_wait().expect("try_wait") {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "exit 7 never ended");
        std::thread::yield_now();
    };
    assert_eq!(status.code(), Some(7));
    let out = sb.command("/usr/bin/env").env("GONE", "1").env_clear().env("ONLY", "this").output().expect("env");
    assert_eq!(text(&out), "ONLY=this\n", "the sandbox's environment and earlier settings are cleared");
    assert_eq!(text(&sb.command("sh").env_clear().args(["-c", "echo found"]).output().expect("sh")), "found\n");
}

#[test]
fn memory_hog_is_oom_killed_and_reported() {
    if !limits_usable() {
        return skip(NO_LIMITS);
    }
    let sb = builder().memory_limit(32 << 20).build().expect("build");
    let err = sb
        .command("/bin/sh")
        .args(["-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}"])
        .output()
        .expect_err("the hog must be killed");
    match &err {
        Error::MemoryLimitExceeded { limit, peak } => {
            assert_eq!(*limit, 32 << 20);
            assert!(peak.is_some_and(|p| p >= 30 << 20), "peak {peak:?}");
        }
        other => panic!("expected MemoryLimitExceeded, got {other:?}"),
    }
    assert!(err.to_string().starts_with("memory limit of 32 MiB exceeded"), "{err}");
    // The host, and the next sandbox, are fine.
    assert_eq!(text(&sh(&sb, "echo ok")), "ok\n");
    assert_eq!(stale_sandbox_cgroups(), Vec::<String>::new());
}

/// Eighteenth outside review: the kernel counts a user namespace's inotify instances (and its
/// namespaces, ...) against per-user quotas up to the host's, for the namespace's owner; as root the
/// program's namespace was the host root's, and a program holding 128 instances left the host's root
/// none (`fs.inotify.max_user_instances`): its services' inotify_init1 failed with EMFILE. The
/// program's namespace now belongs to an id of a block no sandbox maps, one per helper. Here a
/// closure takes all the instances it can and holds them while this (root) process, and another
/// sandbox, make one.
#[test]
fn a_sandbox_cannot_take_the_host_root_s_inotify_instances() {
    use std::os::unix::fs::PermissionsExt;
    if !is_root() {
        return; // rootless, the quotas are the caller's own, which its sandboxes share with it
    }
    let sync = tempfile::tempdir().expect("tempdir");
    for fifo in ["ready", "go"] {
        let path = sync.path().join(fifo);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o666)).expect("mkfifo");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    }
    let sb = builder()
        .mount(sandbox::Mount::bind(sync.path(), "/sync"))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("build");
    let (held, host_made_one) = std::thread::scope(|scope| {
        let inside = scope.spawn(|| {
            sb.run(|| {
                use nix::sys::inotify::{InitFlags, Inotify};
                let mut held = Vec::new();
                while let Ok(fd) = Inotify::init(InitFlags::IN_CLOEXEC) {
                    held.push(fd);
                    if held.len() >= 1 << 16 {
                        break;
                    }
                }
                std::fs::write("/sync/ready", held.len().to_string()).expect("say how many");
                std::fs::read("/sync/go").expect("wait for the host");
                held.len()
            })
        });
        let held = std::fs::read_to_string(sync.path().join("ready")).expect("how many the sandbox holds");
        let host = nix::sys::inotify::Inotify::init(nix::sys::inotify::InitFlags::IN_CLOEXEC);
        // Nor another sandbox's (the twenty-first review: all root sandboxes had one owner, whose
        // quota the first took whole): each helper's namespace has an owner of its own.
        let other = builder().build().expect("build").run(|| {
            nix::sys::inotify::Inotify::init(nix::sys::inotify::InitFlags::IN_CLOEXEC)
                .map(drop)
                .map_err(|e| e.to_string())
        });
        std::fs::write(sync.path().join("go"), "go").expect("let the sandbox go");
        assert_eq!(other.expect("run"), Ok(()), "another sandbox could make no inotify instance");
        let ran = inside.join().expect("the sandbox's thread");
        assert_eq!(ran.expect("run").to_string(), held);
        (held, host.map(drop))
    });
    assert!(
        host_made_one.is_ok(),
        "{held} inotify instances held in a sandbox left the host's root none: {host_made_one:?}"
    );
}

/// Nineteenth and twentieth outside reviews: once the program's namespace belonged to the id its
/// root maps to (the fix above), a host process running as that id, which the setuid files of a
/// shifted rootfs copy carry, held every capability over every root sandbox: it ptraced programs and
/// entered their namespaces as root; with the owner at base + 65536, a second job with that base had
/// it. The owner is now one fixed id above every range: a process running as the base, or as the
/// next base's, without privileges, cannot enter a sandbox's user and UTS namespaces.
#[test]
fn a_process_running_as_the_id_base_cannot_enter_a_sandbox() {
    if !is_root() {
        return; // rootless, the namespace is the caller's own
    }
    if !std::path::Path::new("/usr/bin/setpriv").exists() || !std::path::Path::new("/usr/bin/nsenter").exists() {
        return skip("needs util-linux's setpriv and nsenter");
    }
    let sb = builder().id_base(3_000_000_000).hostname("inside").build().expect("build");
    let mut child = sb.command("/bin/sleep").arg("30").spawn().expect("spawn");
    // The program: the helper's descendant that runs sleep.
    let descendants = |root: u32| {
        let mut found = vec![root];
        let mut i = 0;
        while i < found.len() {
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok());
                if ppid == Some(found[i]) && !found.contains(&pid) {
                    found.push(pid);
                }
            }
            i += 1;
        }
        found
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let program = loop {
        let sleeping = descendants(child.id()).into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with("/bin/sleep"))
        });
        if let Some(pid) = sleeping {
            break pid;
        }
        assert!(std::time::Instant::now() < deadline, "no sleep under the helper {}", child.id());
        std::thread::yield_now();
    };
    let entered: Vec<(u32, Output)> = [3_000_000_000u32, 3_000_065_536]
        .into_iter()
        .map(|uid| {
            let out = std::process::Command::new("/usr/bin/setpriv")
                .args([format!("--reuid={uid}"), format!("--regid={uid}")])
                .args(["--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
                .args(["/usr/bin/nsenter", "-t", &program.to_string(), "-U", "-u", "/bin/hostname", "owned-from-host"])
                .output()
                .expect("run setpriv");
            (uid, out)
        })
        .filter(|(_, out)| out.status.success())
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert!(entered.is_empty(), "a process running as a sandbox id entered the sandbox: {entered:?}");
}

/// As root, where the rootfs's file system cannot be id-mapped (here a tree seen through overlayfs,
/// mounted in a mount namespace of the test's own; the VM lane's whole `/`), sandboxes run on a copy
/// whose owners are shifted into the id range, made next to the tree. Its setuid files belong to the
/// range's root: a host user running one would get the uid of the sandboxes' root (the twentieth
/// review). No host user can reach them: the copy sits in a folder only root may open.
#[test]
fn a_host_user_cannot_reach_the_shifted_copy_of_a_rootfs() {
    if !is_root() {
        return; // rootless, nothing is shifted on disk
    }
    if !std::path::Path::new("/usr/bin/setpriv").exists() || !std::path::Path::new("/usr/bin/unshare").exists() {
        return skip("needs util-linux's setpriv and unshare");
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let tree = rootfs().path().to_owned();
    // The mounts and the copy are the script's: nothing outside its mount namespace sees them (a
    // tmpfs, as the overlay's upper layer cannot be on the VM lane's overlayfs).
    let script = r#"set -e
mount -t tmpfs -o mode=0755 tmpfs "$1"
cd "$1"; mkdir upper work seen
mount -t overlay overlay -o "lowerdir=$2,upperdir=upper,workdir=work" seen
SANDBOX_ROOTFS="$1/seen" "$3" /bin/sh -c 'echo "inside: $(cat /etc/hostname)"'
for setuid in $(find . -path './seen.ids-*' -name bbsuid -perm -4000); do
  echo "setuid in the copy"
  setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$setuid" && echo "a host user reaches it"
done
umount seen"#;
    let out = std::process::Command::new("/usr/bin/unshare")
        .args(["-m", "--propagation", "private", "/bin/sh", "-c", script, "sh"])
        .arg(dir.path())
        .arg(&tree)
        .arg(env!("CARGO_BIN_EXE_one-sandbox"))
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout, "inside: sandbox\nsetuid in the copy\n", "{}", String::from_utf8_lossy(&out.stderr));
}

/// Eighteenth outside review: on cgroup v1 a memory limit did not hold the program's TCP socket
/// buffers (v1 charges them only to a cgroup with a TCP limit of its own): under 64 MiB a program
/// queued 1.5 to 2.2 GB on connections of its own loopback, from the host's shared TCP memory. Here a
/// closure under 32 MiB fills 64 connections without reading them (up to 10 MiB each on this
/// machine's defaults): what it could queue stays within the limit (v1: sends stop), or the sandbox is
/// ended at the limit (v2 charges socket buffers to the memory limit itself, and its OOM killer ends
/// the sandbox there).
#[test]
fn a_memory_limit_holds_tcp_socket_buffers() {
    if !limits_usable() {
        return skip(NO_LIMITS);
    }
    let sb = builder().memory_limit(32 << 20).timeout(Duration::from_secs(120)).build().expect("build");
    let run = sb.run(|| {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let at = listener.local_addr().expect("address");
        let mut pairs = Vec::new();
        let mut queued = 0u64;
        for _ in 0..64 {
            let Ok(mut out) = std::net::TcpStream::connect(at) else { break };
            let Ok((inn, _)) = listener.accept() else { break };
            out.set_nonblocking(true).expect("nonblocking");
            let chunk = [0x5au8; 1 << 16];
            while let Ok(n) = out.write(&chunk) {
                queued += n as u64;
            }
            pairs.push((out, inn));
        }
        queued
    });
    match run {
        Ok(queued) => assert!(queued < 48 << 20, "{} MiB queued in sockets under a 32 MiB limit", queued >> 20),
        Err(Error::MemoryLimitExceeded { limit, .. }) => assert_eq!(limit, 32 << 20),
        Err(e) => panic!("{e}"),
    }
}

/// The program tries to mount the cgroup file system (cgroup2, in its own cgroup namespace) and to
/// raise every limit there to `max`, then starts more processes than its limit allows: the limit
/// holds. Rootless on a delegated cgroup v2 subtree the sandbox's cgroup is the caller's, and so
/// would be writable by the program; its cgroup namespace belongs to a more privileged user namespace
/// than the program's, so it cannot mount a cgroup file system at all.
#[test]
fn a_program_cannot_raise_its_own_limits() {
    if !limits_usable() {
        return skip(NO_LIMITS);
    }
    let sb = builder().pids_limit(8).memory_limit(64 << 20).build().expect("build");
    let script = "mkdir -p /tmp/cg; mount -t cgroup2 none /tmp/cg 2>/dev/null; \
        for f in $(find /tmp/cg -name pids.max -o -name memory.max 2>/dev/null); do echo max > $f 2>/dev/null; done; \
        (for i in $(seq 20); do sleep 30 & done) 2>/dev/null; \
        set -- /proc/[0-9]*; echo $#";
    // A subshell starts the sleeps: a shell whose fork fails gives up. The count forks nothing.
    let out = sb.command("/bin/sh").args(["-c", script]).output().expect("run a shell in the sandbox");
    let processes: usize = text(&out)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("a count: {}{}", text(&out), String::from_utf8_lossy(&out.stderr)));
    // init, the shell and what the limit of 8 left for the sleeps.
    assert!(processes <= 8, "{processes} processes with a pids limit of 8: the limit was raised");
    assert!(
        processes >= 3,
        "{processes} processes: the sleeps did not start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A closure that allocates past its limit ends the same way, with a deadline far away: the error is
/// the memory limit's, not the timeout's (issue 14: on cgroup v2 it hung until killed from outside).
#[test]
fn a_closure_over_its_memory_limit_fails_fast() {
    if !limits_usable() {
        return skip(NO_LIMITS);
    }
    let sb = builder().memory_limit(32 << 20).timeout(Duration::from_secs(120)).build().expect("build");
    let err = sb
        .run(|| {
            let mut kept: Vec<Vec<u8>> = Vec::new();
            for _ in 0..200 {
                // Non-zero bytes: every page is touched, so it counts.
                kept.push(vec![1u8; 1 << 20]);
            }
            kept.len()
        })
        .expect_err("the closure must be killed");
    assert!(matches!(err, Error::MemoryLimitExceeded { limit, .. } if limit == 32 << 20), "{err:?}");
    assert_eq!(stale_sandbox_cgroups(), Vec::<String>::new());
}
/// A sandbox whose only possible OOM victim is its init: the program (privileged, so it may) makes
/// itself and its children unkillable, then fills a tmpfs past the memory limit. It must never hang
/// silently: it ends with the memory error, or (v1) the writer gets ENOMEM, or the kernel keeps
/// reclaiming at the limit without ever choosing a victim (seen on Debian's 6.1 with cgroup v2: `max`
/// hit tens of thousands of times, no OOM run) and the deadline ends it, saying so.
#[test]
fn a_sandbox_whose_init_is_the_only_victim_ends() {
    if !is_root() {
        return; // rootless, no program can make itself unkillable: the sandbox this is about cannot exist
    }
    if !limits_usable() {
        return skip(NO_LIMITS);
    }
    // capabilities(7): lowering oom_score_adj takes CAP_SYS_RESOURCE, which some hosts' root lacks
    // (this machine's: CapEff 000001fffeffffff). There the sandbox this test is about cannot exist.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim).unwrap_or("0");
    if u64::from_str_radix(cap_eff, 16).unwrap_or(0) & (1 << 24) == 0 {
        eprintln!("no CAP_SYS_RESOURCE here: no process can make itself unkillable, nothing to test");
        return;
    }
    // 30 s: in CI's emulated VM lane the writer once reached only 17 MiB in 10 s, never the limit.
    let sb = builder().privileged().memory_limit(32 << 20).timeout(Duration::from_secs(30)).build().expect("build");
    let started = std::time::Instant::now();
    let result = sb
        .command("/bin/sh")
        .args(["-c", "echo -1000 > /proc/self/oom_score_adj && head -c 48000000 /dev/zero > /dev/shm/fill"])
        .output();
    match &result {
        Err(Error::MemoryLimitExceeded { limit, .. }) => assert_eq!(*limit, 32 << 20),
        Ok(out) if !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() => {
            assert!(!out.status.success(), "the writer got ENOMEM: {}", String::from_utf8_lossy(&out.stderr));
        }
        Err(e @ Error::TimedOut { doing, .. }) => {
            let cgroup = doing.iter().find(|l| l.starts_with("cgroup: ")).unwrap_or_else(|| panic!("{e}"));
            let memory = cgroup.split("; pids").next().unwrap_or_default();
            assert!(memory.contains("of 32.0 MiB") && !memory.contains("limit hit 0 times"), "{e}");
        }
        other => panic!("expected the memory limit's error, or a deadline that says where memory stood: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(60), "it ended at its deadline at the latest");
    assert_eq!(stale_sandbox_cgroups(), Vec::<String>::new());
}

#[test]
fn fork_bomb_is_contained_by_the_pids_limit() {
    if !limits_usable() {
        return skip(NO_LIMITS);
    }
    let sb = builder().pids_limit(32).timeout(Duration::from_secs(2)).build().expect("build");
    // The classic bomb: without the limit it would exhaust the machine's pids. It grows for a second
    // (far past 32 processes unless contained), then the shell exits and the sandbox ends with it.
    match sb.command("/bin/sh").args(["-c", "b() { b | b & }; b; sleep 1"]).output() {
        Ok(out) => assert!(String::from_utf8_lossy(&out.stderr).contains("can't fork"), "the limit refused forks"),
        Err(Error::TimedOut { .. }) => {}
        Err(other) => panic!("unexpected: {other:?}"),
    }
    assert_eq!(text(&sh(&sb, "echo the host still forks")), "the host still forks\n");
    // A fork refused by the limit is the program's own error.
    let capped = builder().pids_limit(4).build().expect("build");
    let out = capped
        .command("/bin/sh")
        .args(["-c", "sleep 1 & sleep 1 & sleep 1 & sleep 1 & sleep 1 & wait"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("can't fork"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stale_sandbox_cgroups(), Vec::<String>::new());
}

#[test]
fn cpu_limit_gives_about_half_a_core_and_usage_is_reported() {
    if !limits_usable() {
        return skip(NO_LIMITS);
    }
    let sb = builder().cpu_limit(0.5).build().expect("build");
    let t = std::time::Instant::now();
    // Two spinners want two cores; the limit gives them half of one together.
    let spin = "busybox timeout 1 sh -c 'while :; do :; done' & busybox timeout 1 sh -c 'while :; do :; done'; wait";
    let mut child = sb.command("/bin/sh").args(["-c", spin]).spawn().expect("spawn");
    let _ = child.wait().expect("wait");
    let wall = t.elapsed().as_secs_f64();
    let usage = child.usage().expect("a sandbox with limits reports its usage");
    let cpu = usage.cpu_time.expect("cpu time").as_secs_f64();
    let share = cpu / wall;
    // The cap is what the limit promises; how much of it a loaded machine (2 CPUs shared with other
    // tests) grants is not, so the lower bound only says the program ran.
    assert!((0.1..0.7).contains(&share), "cpu {cpu:.2}s over {wall:.2}s wall = {share:.2} of a core");
    assert!(usage.peak_memory.is_some_and(|p| p > 0), "{usage:?}");
    assert_eq!(usage.oom_kills, 0);
}

#[test]
fn output_and_status_report_usage_too() {
    if !limits_usable() {
        return skip(NO_LIMITS);
    }
    let sb = builder().memory_limit(64 << 20).build().expect("build");
    let (out, usage) = sb.command("/bin/sh").args(["-c", "echo hi"]).output_with_usage().expect("output");
    assert_eq!(text(&out), "hi\n");
    let usage = usage.expect("a sandbox with limits reports its usage");
    assert!(usage.peak_memory.is_some_and(|p| p > 0) && usage.oom_kills == 0, "{usage:?}");
    let (status, usage) = sb.command("/bin/true").status_with_usage().expect("status");
    assert!(status.success() && usage.is_some());
}

#[test]
fn rlimits_apply_to_the_program() {
    let sb = builder().rlimit(sandbox::Rlimit::NoFile, 64).build().expect("build");
    assert_eq!(text(&sh(&sb, "ulimit -n")), "64\n");
}

/// A cache and a rootfs folder reached through links (a symlinked `~/.cache`, `/home -> var/home`)
/// start sandboxes: the 34th outside review, every start failed with ELOOP (setup opens a tree
/// following no link, and the paths it was given held the caller's links).
fn check_links_on_the_way_to_the_cache_and_the_rootfs() {
    let tree = rootfs().path().to_owned();
    let tarball = fixture_tarball();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("real")).expect("mkdir");
    std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("cache")).expect("symlink");
    std::os::unix::fs::symlink(&tree, dir.path().join("tree")).expect("symlink");
    let through_link = fetch::Rootfs::from_tarball_in(&tarball, Some(&dir.path().join("cache"))).expect("unpack");
    let sb = Sandbox::builder().rootfs(&through_link).build().expect("build");
    assert_eq!(text(&sh(&sb, "echo cached")), "cached\n");
    let sb = Sandbox::builder().rootfs_dir(dir.path().join("tree")).build().expect("build");
    assert_eq!(text(&sh(&sb, "echo folder")), "folder\n");
}

/// A default sandbox caps the processes of each user inside (`RLIMIT_NPROC`, counted in its own
/// user namespace), so that a fork bomb in one test cannot take the host's process ids: the 34th
/// outside review, 1000 `sleep &` in one sandbox were 1000 more host processes. Each sandbox counts
/// its own: two that each hold most of a small cap at once both get it.
fn check_processes_are_capped_by_default() {
    let caller = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NPROC).expect("getrlimit").0;
    // (A caller whose own limit is no higher passes it on as it is.)
    let cap = match caller {
        c if c > sandbox::DEFAULT_PROCESSES => sandbox::DEFAULT_PROCESSES.to_string(),
        nix::sys::resource::RLIM_INFINITY => "unlimited".to_owned(),
        c => c.to_string(),
    };
    let sb = builder().build().expect("build");
    assert_eq!(text(&sh(&sb, "ulimit -u")), format!("{cap}\n"));
    // One's own cap, and past it the program's own error.
    let small = builder().rlimit(sandbox::Rlimit::NProc, 12).build().expect("build");
    let hold = "i=0; while [ $i -lt 8 ]; do sleep 30 & i=$((i+1)); done; echo held; read _; kill $(jobs -p)";
    let mut first = small
        .command("/bin/sh")
        .args(["-c", hold])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(first.stdout.as_mut().expect("stdout")), &mut line)
        .expect("read");
    assert_eq!(line, "held\n", "the first sandbox holds 8 processes");
    let second = small
        .command("/bin/sh")
        .args(["-c", "i=0; while [ $i -lt 8 ]; do sleep 30 & i=$((i+1)); done; echo held; kill $(jobs -p)"])
        .output()
        .expect("run");
    assert_eq!(text(&second), "held\n", "another sandbox counts its own: {second:?}");
    let bomb = small
        .command("/bin/sh")
        .args(["-c", "i=0; while [ $i -lt 30 ]; do sleep 30 & i=$((i+1)); done; kill $(jobs -p)"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&bomb.stderr).contains("can't fork"), "past the cap: {bomb:?}");
    drop(first.stdin.take());
    first.wait().expect("wait");
}

/// A cgroup left by a killed run goes with the next run that has limits; one of another pid
/// namespace's sandbox (a container sharing the parent cgroup) goes only once empty for minutes.
#[test]
fn stale_cgroups_of_killed_runs_are_swept() {
    if !limits_usable() {
        return skip(NO_LIMITS);
    }
    // What a run killed with SIGKILL leaves: the cgroup of a helper that no longer exists.
    let parents = sandbox_cgroup_parents();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let Some(memory) =
        parents.iter().find(|p| if v2 { p.ends_with("sandbox.slice") } else { p.starts_with("/sys/fs/cgroup/memory") })
    else {
        return skip("no v1 memory hierarchy here");
    };
    let stale = memory.join("sandbox-999999999-stale");
    std::fs::create_dir_all(&stale).expect("make a stale cgroup");
    // Another pid namespace's (a container sharing this parent cgroup): its helper cannot be looked
    // for here. Empty for a moment, as while it starts, it stays; empty for 20 minutes, it is a
    // leftover of a namespace that died, and goes.
    use std::os::unix::fs::MetadataExt;
    let ours = std::fs::metadata("/proc/self/ns/pid").expect("this pid namespace").ino();
    let starting = memory.join(format!("sandbox-999999998-0-{:x}", ours + 1));
    let left = memory.join(format!("sandbox-999999997-0-{:x}", ours + 1));
    for dir in [&starting, &left] {
        std::fs::create_dir_all(dir).expect("make another namespace's cgroup");
    }
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(1200);
    std::fs::File::open(&left).and_then(|d| d.set_modified(long_ago)).expect("age the leftover");
    let sb = builder().memory_limit(64 << 20).build().expect("build");
    assert_eq!(text(&sh(&sb, "echo ok")), "ok\n");
    let (starting_kept, left_kept) = (starting.exists(), left.exists());
    let _ = std::fs::remove_dir(&starting);
    assert!(!stale.exists(), "the next run with limits swept it");
    assert!(starting_kept, "another pid namespace's sandbox, starting, was swept");
    assert!(!left_kept, "another pid namespace's leftover, empty for 20 minutes, was kept");
}

#[test]
fn session_limits_cover_its_commands() {
    if !limits_usable() {
        return skip(NO_LIMITS);
    }
    let sb = builder().pids_limit(6).build().expect("build");
    let session = sb.session().expect("session");
    let out = session
        .command("/bin/sh")
        .args(["-c", "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1 & done; wait"])
        .output()
        .expect("run");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("can't fork"),
        "the session's pids limit applies to its commands"
    );
    drop(session);
    assert_eq!(stale_sandbox_cgroups(), Vec::<String>::new());
}

/// The host's network interfaces, as its own network namespace lists them.
fn host_interfaces() -> Vec<String> {
    let dev = std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default();
    let mut names: Vec<String> =
        dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(|n| n.trim().to_owned()).collect();
    names.sort();
    names
}

#[test]
fn three_sandboxes_on_a_switch_talk_tcp_by_hostname() {
    if !is_root() {
        let err = sandbox::Net::new().expect_err("rootless");
        assert!(matches!(&err, Error::InvalidConfig { reason, .. } if reason.contains("needs root")), "{err:?}");
        return;
    }
    let interfaces = host_interfaces();
    let net = sandbox::Net::new().expect("a switch");
    let member = |name: &str| builder().network(Network::Switch(net.clone())).hostname(name).build().expect("build");
    let (db, cache, app) = (member("db"), member("cache"), member("app"));
    fn serving<'a>(sb: &'a Sandbox, name: &str) -> sandbox::Session<'a> {
        let session = sb.session().expect("session");
        // Alpine's busybox has no httpd: nc answers each connection (-ll) with one line.
        let script = format!(
            "nc -ll -p 8080 -e echo 'I am {name}' & until grep -q ':1F90 ' /proc/net/tcp /proc/net/tcp6; do :; done"
        );
        let status = session.command("/bin/sh").args(["-c", &script]).status().expect("start a server");
        assert!(status.success());
        session
    }
    let (db_session, cache_session) = (serving(&db, "db"), serving(&cache, "cache"));
    assert_eq!(host_interfaces(), interfaces, "the host's network namespace is never modified");
    let out = sh(
        &app,
        "nc db 8080 </dev/null; nc cache 8080 </dev/null; grep -c 10.89.0 /etc/hosts; ip -4 -o addr show eth0 | awk '{print $4}'",
    );
    assert_eq!(text(&out), "I am db\nI am cache\n3\n10.89.0.4/24\n");
    // A sandbox that is not on the switch reaches none of them.
    let outsider = builder().build().expect("build");
    let out = outsider
        .command("/bin/sh")
        .args(["-c", "nc -w 1 10.89.0.2 8080 </dev/null >/dev/null 2>&1; echo rc=$?"])
        .output()
        .expect("run");
    assert_ne!(text(&out), "rc=0\n");
    drop((db_session, cache_session, net));
    assert_eq!(host_interfaces(), interfaces);
}

// Bug 7: two overlapping starts of one switch member shared one address.
#[test]
fn overlapping_starts_of_a_switch_member_get_addresses_of_their_own() {
    if !is_root() {
        return; // a switch needs root (checked above)
    }
    let net = sandbox::Net::new().expect("a switch");
    let twin = builder().network(Network::Switch(net.clone())).hostname("twin").build().expect("build");
    let (first, second) = (twin.session().expect("first"), twin.session().expect("second"));
    let address = |s: &sandbox::Session<'_>| {
        let out = s.command("/bin/sh").args(["-c", "ip -4 -o addr show eth0 | awk '{print $4}'"]).output();
        text(&out.expect("ip")).trim().trim_end_matches("/24").to_owned()
    };
    let (a, b) = (address(&first), address(&second));
    assert!(a.starts_with("10.89.0.") && b.starts_with("10.89.0."), "{a} {b}");
    assert_ne!(a, b, "each start has its own address");
    let hosts = second.command("/bin/cat").arg("/etc/hosts").output().expect("hosts");
    assert!(text(&hosts).contains(&format!("{a}\ttwin")), "the running member is listed: {}", text(&hosts));
    let ping = second.command("/bin/ping").args(["-c", "1", "-W", "2", &a]).output().expect("ping");
    assert!(ping.status.success(), "the second reaches the first: {}", String::from_utf8_lossy(&ping.stdout));
}

// Bug 3: a cgroup made for limits leaked when a later setup step (here: opening the switch) failed.
#[test]
fn a_failed_start_with_limits_leaves_no_cgroup() {
    if !is_root() {
        return; // limits and switches need root here
    }
    ChildTest::new("child_starts_on_a_dead_switch").assert_success();
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_starts_on_a_dead_switch() {
    if !is_child("child_starts_on_a_dead_switch") {
        return;
    }
    let net = sandbox::Net::new().expect("a switch");
    let sb = builder().network(Network::Switch(net.clone())).memory_limit(64 << 20).build().expect("build");
    system_tests::kill_switch_holder();
    // Every sandbox cgroup next to ours (this process starts no other sandbox).
    let cgroups = || {
        sandbox_cgroup_parents()
            .iter()
            .flat_map(|d| {
                system_tests::list(d).into_iter().filter(|n| n.starts_with("sandbox-")).map(move |n| d.join(n))
            })
            .collect::<Vec<_>>()
    };
    let before = cgroups();
    let err = sb.command("/bin/true").status().expect_err("the switch is gone");
    assert!(matches!(&err, Error::Setup { step, .. } if step.contains("switch")), "{err:?}");
    // (A start sweeps leftovers of dead helpers, so the list may shrink; it must not grow.) Other
    // tests' sandboxes come and go next to ours: a leftover is a cgroup whose helper (the pid in its
    // name, `sandbox-PID-…`) is gone while the cgroup is still there; a helper removes its cgroup
    // before it exits.
    let helper_gone = |c: &std::path::PathBuf| {
        let name = c.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let pid = name.strip_prefix("sandbox-").and_then(|r| r.split('-').next()).unwrap_or("0");
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    };
    let new: Vec<_> = cgroups().into_iter().filter(|c| !before.contains(c) && helper_gone(c) && c.exists()).collect();
    assert_eq!(new, Vec::<std::path::PathBuf>::new(), "the failed start removed its cgroup");
}

/// A caller that closed its stdin: the sandbox's program inherits `/dev/null` there, not a
/// descriptor of the library's own. The 34th outside review: the configuration memfd took fd 0, and
/// programs read the whole configuration from their stdin (environment values, files' contents).
#[test]
fn a_caller_without_stdin_hands_its_programs_no_descriptor_of_its_own() {
    ChildTest::new("child_closes_its_stdin").assert_success();
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_closes_its_stdin() {
    if !is_child("child_closes_its_stdin") {
        return;
    }
    let sb = builder().env("SECRET_TOKEN", "hunter2").build().expect("build");
    nix::unistd::close(0).expect("close stdin");
    for _ in 0..2 {
        let child = sb
            .command("/bin/sh")
            .args(["-c", "readlink /proc/self/fd/0; cat"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(text(&out), "/dev/null\n", "the program's stdin");
    }
}

// Bug 8: a switch whose holder was executed (no fork server) left it a zombie.
#[test]
fn a_dropped_switch_leaves_no_zombie() {
    if !is_root() {
        return;
    }
    ChildTest::new("child_drops_a_switch").env("SANDBOX_NO_FORK_SERVER", "1").assert_success();
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_drops_a_switch() {
    if !is_child("child_drops_a_switch") {
        return;
    }
    let me = std::process::id() as i32;
    drop(sandbox::Net::new().expect("a switch"));
    let zombies: Vec<i32> = system_tests::children_of(me)
        .into_iter()
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .collect();
    assert_eq!(zombies, Vec::<i32>::new(), "the holder was reaped");
}

// Bug 2: `Sandbox::run` and commands with explicit stdio never fell back to a copied rootfs.
#[test]
fn closures_and_explicit_stdio_fall_back_when_overlayfs_is_refused() {
    let link = refused_overlay_rootfs();
    for child in ["child_falls_back_with_explicit_stdio", "child_falls_back_in_a_closure"] {
        let out = ChildTest::new(child).env("SANDBOX_TEST_LONG_ROOTFS", link.path.as_os_str()).assert_success();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("the kernel refused overlayfs"), "{child} took the fallback: {stderr}");
    }
}

/// A rootfs path so long that the overlay's mount options pass a page: the kernel cuts them inside
/// `workdir=` and refuses the mount (EINVAL), as it refuses overlayfs where it is not permitted. A
/// copy of the tree still works (the copy's paths stay below PATH_MAX).
struct LongPath {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn refused_overlay_rootfs() -> LongPath {
    // "lowerdir=/oldroot" + path + ",upperdir=/upper," + "wor" = 4095 bytes, the most a page holds.
    const LEN: usize = 4095 - "lowerdir=/oldroot".len() - ",upperdir=/upper,".len() - "wor".len();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut path = dir.path().to_path_buf();
    loop {
        let left = LEN - path.as_os_str().len() - 1;
        if left <= 255 {
            // A tree of its own, not a link to the cached one: a rootfs folder's links are resolved
            // when the sandbox is built, and the path would be short again. Unpacked, not copied:
            // the tree's setuid busybox is not readable, even by its owner (`cp` failed rootless).
            path.push("l".repeat(left));
            std::fs::create_dir(&path).expect("mkdir");
            let tarball = std::fs::File::open(fixture_tarball()).expect("open the fixture tarball");
            fetch::unpack(tarball, &path, &Default::default(), fetch::Ownership::Caller).expect("unpack the rootfs");
            return LongPath { path, _dir: dir };
        }
        path.push("d".repeat(250.min(left - 60)));
        std::fs::create_dir(&path).expect("mkdir");
    }
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_falls_back_with_explicit_stdio() {
    let Some(root) = std::env::var_os("SANDBOX_TEST_LONG_ROOTFS") else { return };
    // Privileged: as root the hardened overlay's lower layer is an id-mapped bind at a short path,
    // which the kernel accepts whatever the rootfs's path; the long path refuses only the plain one.
    let sb = Sandbox::builder().rootfs_dir(root).privileged().build().expect("build");
    let child = sb.command("/bin/cat").arg("/etc/alpine-release").stdout(Stdio::piped()).spawn().expect("spawn");
    assert_eq!(text(&child.wait_with_output().expect("wait")), "3.19.1-fixture\n");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_falls_back_in_a_closure() {
    let Some(root) = std::env::var_os("SANDBOX_TEST_LONG_ROOTFS") else { return };
    // Privileged: see child_falls_back_with_explicit_stdio.
    let sb = Sandbox::builder().rootfs_dir(root).privileged().build().expect("build");
    let release = sb.run(|| std::fs::read_to_string("/etc/alpine-release").unwrap_or_default()).expect("run");
    assert_eq!(release, "3.19.1-fixture\n");
}

// Bug 1: output forwarded from a closure turned a character split across two reads into two U+FFFD.
#[test]
fn closure_output_reaches_the_test_byte_for_byte() {
    let out = ChildTest::new("child_prints_many_multibyte_characters").assert_success();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = format!("<{}>", "a\u{e9}\u{20ac}\u{1f600}".repeat(5000));
    assert!(
        stdout.contains(&expected),
        "the closure's output arrived changed ({} U+FFFD)",
        stdout.matches('\u{fffd}').count()
    );
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_prints_many_multibyte_characters() {
    if !is_child("child_prints_many_multibyte_characters") {
        return;
    }
    let sb = builder().build().expect("build");
    sb.run(|| {
        use std::io::Write;
        // 50 KB in one write: the reader's 8 KiB reads cut characters of 2, 3 and 4 bytes.
        let text = format!("<{}>", "a\u{e9}\u{20ac}\u{1f600}".repeat(5000));
        std::io::stdout().write_all(text.as_bytes()).expect("write");
    })
    .expect("run");
}

fn check_limits_without_a_usable_cgroup() {
    if limits_usable() {
        return;
    }
    let sb = builder().memory_limit(64 << 20).build().expect("build");
    let err = sb.command("/bin/true").status().expect_err("no delegated cgroup here");
    match &err {
        Error::Setup { step, hint, .. } => {
            assert!(step.contains("cgroup"), "{step}");
            assert!(hint.as_deref().is_some_and(|h| h.contains("Delegate=yes")), "{hint:?}");
        }
        other => panic!("expected a setup error, got {other:?}"),
    }
}

#[test]
fn limits_without_a_usable_cgroup_are_explained() {
    check_limits_without_a_usable_cgroup();
}

fn check_copied_rootfs() {
    let sb = builder().copy_rootfs(true).hostname("copied").build().expect("build");
    let motd = std::fs::read(sb.rootfs_path().join("etc/motd")).expect("host motd");
    assert_eq!(
        text(&sh(&sb, "hostname; echo mine > /etc/motd; cat /etc/motd; ls -l /bin/bbsuid | cut -c1-10")),
        "copied\nmine\n---s--x--x\n"
    );
    assert_eq!(text(&sh(&sb, "cat /etc/motd")), String::from_utf8_lossy(&motd), "each sandbox copies afresh");
    assert_eq!(std::fs::read(sb.rootfs_path().join("etc/motd")).expect("host motd"), motd, "the cache is untouched");
}

#[test]
fn pid_namespace_with_init() {
    check_pid_namespace();
}

#[test]
fn no_host_path_is_reachable() {
    check_no_host_path();
}

#[test]
fn loopback_and_none_networks() {
    check_network_modes();
}

#[test]
fn writes_do_not_leak() {
    check_writes_stay_private();
}

#[test]
fn exit_codes_and_signals_are_exact() {
    check_exit_status();
}

#[test]
fn timeout_kills_grandchildren() {
    check_timeout_kills_the_tree();
}

#[test]
fn kill_and_drop_end_the_sandbox() {
    check_kill_and_drop();
}

#[test]
fn large_outputs_do_not_deadlock() {
    check_large_output();
}

#[test]
fn clean_environment_and_working_directory() {
    check_env_and_dir();
    check_arguments_are_bytes();
    check_processes_are_capped_by_default();
    check_links_on_the_way_to_the_cache_and_the_rootfs();
}

#[test]
fn bad_input_is_a_clear_error() {
    check_bad_input();
}

#[test]
fn session_keeps_one_sandbox() {
    check_session();
}

/// The sandbox's /proc is its programs' to change: a session whose program mounted a /proc of FIFOs
/// still starts its next command (the helper reads the command line through the caller's /proc; a
/// read through the sandbox's blocked on the FIFO, for good).
#[test]
fn a_session_whose_proc_is_fake_still_starts_commands() {
    // Leaked, so that a command that hangs is left to its thread and the test fails instead.
    let sb: &'static sandbox::Sandbox = Box::leak(Box::new(builder().build().expect("build")));
    let session = sb.session().expect("session");
    // FIFOs at the pids the next processes get (one mkdir and one mkfifo: each command forks).
    let fake = "d= f= i=$$; while [ $i -le $(($$ + 1000)) ]; do d=\"$d /proc/$i\"; f=\"$f /proc/$i/cmdline /proc/$i/stat\"; \
                i=$((i+1)); done; mount -t tmpfs fake /proc && mkdir $d && mkfifo $f && echo faked";
    let out = session.command("/bin/sh").args(["-c", fake]).output().expect("fake /proc");
    assert_eq!(text(&out), "faked\n", "{}", String::from_utf8_lossy(&out.stderr));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(session.command("/bin/echo").arg("started").output());
    });
    let out = rx.recv_timeout(Duration::from_secs(20)).expect("the next command starts and ends");
    assert_eq!(text(&out.expect("echo")), "started\n");
}

/// A program is reported started once `ps` on the host shows its command line, in a session too
/// (whose commands are forked by a helper outside the sandbox's pid namespace). The exec's last
/// steps run after the exec pipe ends; under the VM lane's emulation they take long enough to see.
#[test]
fn a_spawned_program_shows_its_command_line_in_a_session_too() {
    let m = marker();
    let sb = builder().build().expect("build");
    let mut child = sb.command("/bin/sleep").arg(&m).spawn().expect("spawn");
    assert_eq!(pids_matching(&format!("sleep {m}")).len(), 1, "a command's program");
    child.kill().expect("kill");
    child.wait().expect("wait");
    let session = sb.session().expect("session");
    let mut child = session.command("/bin/sleep").arg(&m).spawn().expect("spawn");
    assert_eq!(pids_matching(&format!("sleep {m}")).len(), 1, "a session command's program");
    child.kill().expect("kill");
    child.wait().expect("wait");
}

/// A session command's background job outlives the command (a session keeps it) with the command's
/// stdout and stderr: `output()` then reads both to their end, as `std::process::Command::output`
/// does, and returns once the job is done. The job here waits until the command has been reaped
/// (`kill -0` on its parent fails), then writes more than a pipe holds to stderr and, still holding
/// stdout, says it is done.
#[test]
fn session_output_reads_both_streams_of_a_job_that_outlives_the_command() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let sb = builder().build().expect("build");
        let session = sb.session().expect("session");
        let script =
            "(while kill -0 $$ 2>/dev/null; do :; done; head -c 4194304 /dev/zero >&2; echo done) & echo started";
        let out = session.command("/bin/sh").args(["-c", script]).output();
        let _ = tx.send(out.map(|o| (o.status.success(), o.stdout, o.stderr.len())));
    });
    // The job ends in well under a second once its stderr is read; a stall shows as this deadline.
    let out = rx.recv_timeout(Duration::from_secs(60)).expect(
        "output() still waiting after 60 s: it reads stdout to its end before stderr, while the job, \
         blocked on a full stderr pipe, keeps stdout open",
    );
    let (success, stdout, stderr_len) = out.expect("output");
    assert!(success);
    assert_eq!(stdout, b"started\ndone\n");
    assert_eq!(stderr_len, 4 << 20, "all of the job's stderr");
}

#[test]
fn stdio_is_kept_for_the_next_spawn() {
    check_stdio_is_kept_for_the_next_spawn();
}

#[test]
fn closure_runs_inside() {
    check_closure();
}

#[test]
fn closure_panic_is_reported() {
    let sb = builder().build().expect("build");
    let err = sb.run(|| -> u32 { panic!("boom inside") }).expect_err("panicked");
    assert!(matches!(&err, Error::Panicked { message, .. } if message == "boom inside"), "{err:?}");
    // The message and where it happened, as a test failure shows them.
    let line = line!() - 3;
    assert!(err.to_string().contains(&format!("tests/sandbox.rs:{line}")), "{err}");
    assert!(err.to_string().ends_with(": boom inside"), "{err}");
}

#[test]
fn thirty_two_in_parallel() {
    let sb = builder().build().expect("build");
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let sb = sb.clone();
            std::thread::spawn(move || {
                let out =
                    sb.command("/bin/sh").args(["-c", &format!("echo {i} > /tmp/me; sleep 0.2; cat /tmp/me")]).output();
                (i, out)
            })
        })
        .collect();
    for t in threads {
        let (i, out) = t.join().expect("thread");
        let out = out.expect("run");
        assert_eq!(text(&out), format!("{i}\n"), "each sandbox has its own /tmp");
    }
}

#[test]
fn five_hundred_in_a_row_leave_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    ChildTest::new("child_five_hundred").env("TMPDIR", tmp.path()).assert_success();
    assert_eq!(system_tests::list(tmp.path()), Vec::<String>::new(), "no temporary entry left");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_five_hundred() {
    if !is_child("child_five_hundred") {
        return;
    }
    check_leaks_over_many_runs(500);
}

#[test]
fn sandbox_outlives_the_thread_that_spawned_it() {
    let sb = builder().build().expect("build");
    let child = std::thread::scope(|s| {
        s.spawn(|| sb.command("/bin/sh").args(["-c", "sleep 0.3; echo alive"]).stdout(Stdio::piped()).spawn()).join()
    });
    let child = child.expect("thread").expect("spawn");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(text(&out), "alive\n");
}

#[test]
fn sigkill_of_the_test_process_kills_its_sandboxes() {
    let m = marker();
    let (mut cmd, _holder) = ChildTest::new("child_holds_a_sandbox").env("MARKER", &m).command();
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().expect("spawn child test");
    // Wait for the child to say its sandbox runs.
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.contains("READY") {
        line.clear();
        let n = std::io::BufRead::read_line(&mut stdout, &mut line).expect("read");
        assert!(n > 0, "child test ended before its sandbox ran");
    }
    let running = pids_matching(&format!("sleep {m}"));
    if running.len() != 1 {
        // What the child test said after READY (how its sandbox ended, if it did) says why.
        child.kill().expect("SIGKILL the test process");
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
        panic!("{} processes `sleep {m}` once spawn() returned; the child test went on: {rest}", running.len());
    }
    child.kill().expect("SIGKILL the test process");
    child.wait().expect("reap");
    assert_eq!(wait_until_gone(&format!("sleep {m}")), Vec::<i32>::new(), "the sandbox died with its test process");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_holds_a_sandbox() {
    if !is_child("child_holds_a_sandbox") {
        return;
    }
    let m = std::env::var("MARKER").expect("marker");
    let sb = builder().build().expect("build");
    let mut child = sb.command("/bin/sleep").arg(&m).spawn().expect("spawn");
    println!("READY");
    // Only printed if the sandbox ends before its parent test kills this process.
    println!("the sandbox ended: {:?}", child.wait());
}

#[test]
fn panic_in_the_test_tears_the_sandbox_down() {
    let m = marker();
    let out = ChildTest::new("child_panics_with_a_sandbox").env("MARKER", &m).output();
    assert!(!out.status.success(), "the child test must have failed");
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("deliberate"), "{all}");
    assert_eq!(pids_matching(&format!("sleep {m}")), Vec::<i32>::new());
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_panics_with_a_sandbox() {
    if !is_child("child_panics_with_a_sandbox") {
        return;
    }
    let m = std::env::var("MARKER").expect("marker");
    let sb = builder().build().expect("build");
    let _child = sb.command("/bin/sleep").arg(&m).spawn().expect("spawn");
    panic!("deliberate panic while a sandbox runs");
}

// ---- as an unprivileged user ----

#[test]
fn rootless_suite() {
    if !is_root() {
        return; // this run is already unprivileged: the tests above were the rootless suite
    }
    let Some((_, uid, gid)) = test_user() else {
        return skip("no unprivileged test user: create one (`useradd sandbox-test`) or set $SANDBOX_TEST_USER");
    };
    let home = dir_owned_by(uid, gid);
    ChildTest::new("child_rootless_suite")
        .as_user(uid, gid)
        .env("SANDBOX_TEST_CACHE", home.path().join("cache"))
        .env("TMPDIR", home.path())
        .assert_success();
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_rootless_suite() {
    if !is_child("child_rootless_suite") {
        return;
    }
    // (In the child that runs a closure this code runs again, as root inside the user namespace.)
    assert!(rootfs().path().to_string_lossy().contains(".uid"), "a rootless tree");
    // First: the closure's child re-runs this test up to the closure (see Sandbox::run).
    check_closure();
    check_hostname();
    check_pid_namespace();
    check_no_host_path();
    check_network_modes();
    check_writes_stay_private();
    check_exit_status();
    check_timeout_kills_the_tree();
    check_kill_and_drop();
    check_large_output();
    check_env_and_dir();
    check_arguments_are_bytes();
    check_processes_are_capped_by_default();
    check_links_on_the_way_to_the_cache_and_the_rootfs();
    check_bad_input();
    check_session();
    check_pty();
    check_stdio_is_kept_for_the_next_spawn();
    check_copied_rootfs();
    check_volumes();
    check_writable_size();
    check_limits_without_a_usable_cgroup();
    let err = sandbox::Net::new().expect_err("a switch needs root");
    assert!(matches!(&err, Error::InvalidConfig { reason, .. } if reason.contains("needs root")), "{err:?}");
    check_leaks_over_many_runs(50);
}

#[test]
fn unprivileged_without_user_namespace_is_refused() {
    if is_root() {
        return;
    }
    let err = builder().user_namespace(false).build().expect_err("needs a user namespace");
    assert!(matches!(err, Error::InvalidConfig { what: "user_namespace", .. }), "{err:?}");
}

// ---- eleventh outside review ----

/// A program missing from `$PATH` is "not found" whatever `$PATH` holds, as it was before f754eaf:
/// a `$PATH` entry that is a file (ENOTDIR) is skipped like a missing folder. (The eleventh review
/// found that, with the program's process sharing init's memory, a `$PATH` of one entry reported that
/// entry's errno instead: `Not a directory`.)
#[test]
fn a_program_missing_from_path_is_not_found_whatever_path_holds() {
    let sb = builder().build().expect("build");
    for path in ["/etc/hostname:/no/such/dir", "/etc/hostname"] {
        let err = sb.command("sh").env("PATH", path).status().expect_err("sh is on no folder of this $PATH");
        assert_eq!(err.io_kind(), std::io::ErrorKind::NotFound, "PATH={path}: {err}");
    }
}

/// Rootless, newuidmap and newgidmap get 5 s (eb40a29), so that a user database that does not answer
/// (NSS over the network: an LDAP or sssd server down) stalls no sandbox for longer. Here the user
/// database hangs for good (a FIFO nobody writes, bound over /etc/passwd in a mount namespace of a
/// child of this test: the host's stays as it is), and the test user's sandbox must still start, in
/// well under 20 s. (The eleventh review found that the fork server looked the caller up itself
/// first, `User::from_uid`, with no deadline: it and every later sandbox of the caller waited for
/// good. The lookup now runs in a forked process under the same deadline.)
#[test]
fn rootless_a_hanging_user_database_stalls_no_sandbox() {
    if !is_root() {
        return; // the mount namespace needs root; the sandbox then runs as the test user
    }
    let Some((_, uid, gid)) = test_user() else {
        return skip("no unprivileged test user: create one (`useradd sandbox-test`) or set $SANDBOX_TEST_USER");
    };
    let home = dir_owned_by(uid, gid);
    ChildTest::new("child_hangs_the_user_database")
        .env("HANGING_HOME", home.path())
        .env("HANGING_IDS", format!("{uid}:{gid}"))
        .assert_success();
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_hangs_the_user_database() {
    use std::os::unix::process::CommandExt;
    if !is_child("child_hangs_the_user_database") {
        return;
    }
    let home = std::path::PathBuf::from(std::env::var_os("HANGING_HOME").expect("HANGING_HOME"));
    let ids = std::env::var("HANGING_IDS").expect("HANGING_IDS");
    let (uid, gid) = ids.split_once(':').and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?))).expect("uid:gid");
    // A copy of this binary the test user can run (the build tree may be under /root).
    let exe = home.join("tests");
    std::fs::copy(std::env::current_exe().expect("locate the test binary"), &exe).expect("copy the test binary");
    let fifo = home.join("passwd");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    // This thread's own mount namespace (unshare(2) with CLONE_NEWNS takes the calling thread's
    // fs_struct and namespace only), private, so that the bind reaches nothing outside it.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("a mount namespace of our own");
    let none: Option<&str> = None;
    nix::mount::mount(none, "/", none, nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE, none)
        .expect("make / private");
    nix::mount::mount(Some(&fifo), "/etc/passwd", none, nix::mount::MsFlags::MS_BIND, none)
        .expect("bind the FIFO over /etc/passwd");
    // std sets the ids with setgroups, setgid and setuid: no user database lookup (setpriv makes one).
    let t = std::time::Instant::now();
    let out = std::process::Command::new("timeout")
        .args(["-s", "KILL", "20"])
        .arg(&exe)
        .args(["child_one_rootless_sandbox", "--exact", "--nocapture", "--test-threads=1", "--include-ignored"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &home)
        .env("TMPDIR", &home)
        .env("SANDBOX_TEST_CACHE", home.join("cache"))
        .env(system_tests::CHILD_ENV, "child_one_rootless_sandbox")
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run the test user's sandbox");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && said.contains("1 passed"),
        "the test user's sandbox did not start in {:?} with the user database hanging ({}): {said}",
        t.elapsed(),
        out.status
    );
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_one_rootless_sandbox() {
    if !is_child("child_one_rootless_sandbox") {
        return;
    }
    let sb = builder().build().expect("build");
    assert_eq!(text(&sh(&sb, "echo started")), "started\n");
}

/// A resource limit the kernel refuses (here RLIMIT_NOFILE far above the caller's hard limit and
/// fs.nr_open: raising a hard limit needs CAP_SYS_RESOURCE over the host) fails with a hint about
/// that limit, not one that sends the user to cgroups and systemd delegation, which no rlimit needs
/// (as hints.rs did for every `StepKind::Limits` failure until the eleventh review).
#[test]
fn a_refused_rlimit_is_explained_as_one() {
    let sb = builder().rlimit(sandbox::Rlimit::NoFile, 1 << 30).build().expect("build");
    match sb.command("/bin/true").status() {
        Err(Error::Setup { step, hint, .. }) => {
            assert_eq!(step, "set a resource limit (setrlimit)");
            let hint = hint.unwrap_or_default();
            assert!(!hint.contains("cgroup"), "a refused setrlimit explained with cgroups: {hint}");
        }
        other => panic!("expected a setup error, got {other:?}"),
    }
}

/// A rootfs whose `/dev` is a regular file: init fails early in setup (`mount tmpfs /newroot/dev`),
/// while other sandboxes start. The failure is reported, and the sandbox's cgroup must still be
/// removed: the helper must outlive init's failure. (The fourteenth review wrote it against a masker
/// of `/proc` on the helper's side, since taken out, whose word to a dead init killed the helper by
/// SIGPIPE.)
#[test]
fn a_setup_failing_while_the_helper_masks_proc_leaves_no_cgroup() {
    if !limits_usable() {
        return skip(NO_LIMITS);
    }
    let work = tempfile::tempdir().expect("tempdir");
    let tree = work.path().join("rootfs");
    for dir in ["bin", "etc", "proc", "tmp"] {
        std::fs::create_dir_all(tree.join(dir)).expect("create a directory of the tree");
    }
    std::fs::write(tree.join("dev"), "").expect("a file where /dev should be");
    // Other sandboxes starting meanwhile (without limits, so that their starts sweep no cgroup) make
    // the helper's and init's mount calls wait for the mount lock: the timing a race would need.
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let sb = builder().build().expect("build");
                    let _ = sb.command("/bin/true").status();
                }
            });
        }
        let mut stale = Vec::new();
        for _ in 0..100 {
            let sb = Sandbox::builder().rootfs_dir(&tree).pids_limit(64).build().expect("build");
            match sb.command("/bin/true").status() {
                Err(Error::Setup { step, .. }) => assert!(step.contains("/dev"), "{step}"),
                other => panic!("expected a setup error, got {other:?}"),
            }
            stale = stale_sandbox_cgroups();
            if !stale.is_empty() {
                break;
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(stale, Vec::<String>::new(), "a failed setup left its cgroup (its helper died)");
    });
}

/// A deadline that passes during setup (here 1 ns: before init has even mounted `/proc`) is a
/// timeout, as one that passes once the program runs, not a failed setup step. (The fourteenth review
/// found a design where setup then waited for the helper's grace, a second later; checked here by the
/// outcome, not by a duration, so that a slow machine, the emulated VM lane, cannot fail it.)
#[test]
fn a_deadline_passed_during_setup_ends_the_sandbox_without_the_helpers_grace() {
    let sb = builder().timeout(Duration::from_nanos(1)).build().expect("build");
    for _ in 0..3 {
        match sb.command("/bin/sleep").arg("5").status() {
            Err(Error::TimedOut { .. }) => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
}

/// Init killed before it has mounted `/proc` (here by the OOM killer, while it copies the rootfs into
/// a sandbox with a memory limit far below the rootfs's size): the helper sees init's end and says
/// so, as for any init killed from outside. It must not wait forever for anything init would have
/// done later (the fourteenth review found a hang in a design since taken out: the helper waited for
/// descriptors init never handed over).
#[test]
fn init_killed_before_mounting_proc_ends_the_sandbox() {
    if !limits_usable() {
        return skip(NO_LIMITS);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let sb = builder().copy_rootfs(true).memory_limit(1 << 20).build().expect("build");
        let _ = tx.send(format!("{:?}", sb.command("/bin/true").status()));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(outcome) => assert!(!outcome.starts_with("Ok(ExitStatus(unix_wait_status(0)"), "{outcome}"),
        Err(_) => panic!("the sandbox whose init was killed during setup never ended"),
    }
}

/// A volume below a read-only kernel path (here a tmpfs at `/proc/sys/fs/binfmt_misc`) is mounted
/// after the kernel paths are made read-only, so it is writable, every time. (With a masker of
/// `/proc` on the helper's side, since taken out, the recursive read-only copy of `/proc/sys` raced
/// with init's volumes and took the volume along one time in three.)
#[test]
fn a_volume_below_proc_sys_is_writable_every_time() {
    if !std::path::Path::new("/proc/sys/fs/binfmt_misc").is_dir() {
        return skip("no /proc/sys/fs/binfmt_misc on this kernel");
    }
    let sb = builder().mount(sandbox::Mount::tmpfs("/proc/sys/fs/binfmt_misc")).build().expect("build");
    for i in 0..30 {
        let out = sb.command("/bin/touch").arg("/proc/sys/fs/binfmt_misc/f").output().expect("run touch");
        assert!(out.status.success(), "try {i}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A single-threaded caller (as `sandbox-run`, here tests/bin/one-sandbox.rs) forks its sandbox's
/// helper itself, and the helper forks init: output the caller printed but had not flushed yet must
/// come out once, before the sandbox's. Before, a setup failure (here a rootfs whose `/etc` is a
/// file) ended init through `std::process::exit`, which flushed init's copy into the program's
/// stdout, the caller's; and a closure's process flushed its copy with the closure's output.
#[test]
fn a_single_threaded_callers_buffered_output_is_written_once() {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::write(root.path().join("etc"), "").expect("etc as a file");
    let good = rootfs();
    let cases = [
        (good.path(), &["/bin/echo", "inner"][..], "outer:inner\n"),
        (good.path(), &["--closure"][..], "outer:inner\n"),
        (root.path(), &["/bin/echo", "inner"][..], "outer:"),
    ];
    for (rootfs, args, expected) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_one-sandbox"))
            .args(args)
            .env("SANDBOX_ROOTFS", rootfs)
            .env("ONE_SANDBOX_PENDING", "outer:")
            .output()
            .expect("run one-sandbox");
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{args:?}: {out:?}");
    }
}

/// Review 18: a single-threaded caller (tests/bin/one-sandbox.rs: a tool's `main`, an example) with
/// two sandboxes running at once cannot end the first while the second runs: `Child::kill` +
/// `Child::wait` of the first (and dropping a first `Session`) returns only once the second sandbox
/// has ended too, here by its 15 s deadline, so the caller sees the second one dead
/// ("timed out after 15s" / "has it ended?") instead of still running. Under libtest (a
/// multi-threaded caller, the fork server) the same code returns at once.
#[test]
fn a_single_threaded_caller_ends_its_first_sandbox_while_a_second_runs() {
    for how in ["child", "session"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_one-sandbox"))
            .args(["--end-first-of-two", how])
            .env("SANDBOX_ROOTFS", rootfs().path())
            .output()
            .expect("run one-sandbox");
        let expected = if how == "child" { "second: killed\n" } else { "second: alive\n" };
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{how}: {out:?}");
    }
}

/// Review 18: a session's deadline (`Builder::timeout`) is reported as `Error::TimedOut`, as the
/// builder's doc and a plain command's run say. A session command running at the deadline returns
/// `Ok` with a SIGKILL status instead (indistinguishable from a `kill -9`), and a command started
/// after it fails with "sandbox setup failed: open a namespace of the session (has it ended?)".
#[test]
fn a_session_reports_its_deadline_as_a_timeout() {
    let sb = builder().timeout(Duration::from_millis(1000)).build().expect("build");
    let session = sb.session().expect("session");
    let at_deadline = session.command("/bin/sleep").arg("30").status();
    assert!(matches!(at_deadline, Err(Error::TimedOut { .. })), "the command running at the deadline: {at_deadline:?}");
    let after = session.command("/bin/true").status();
    assert!(matches!(after, Err(Error::TimedOut { .. })), "a command after the deadline: {after:?}");
}

/// Review 18: `Child::usage()` after the memory limit killed the program. The README's limits
/// example prints `child.usage()` ("peak memory, CPU time, OOM kills of the whole sandbox") after
/// `wait`; when `wait` returns `Error::MemoryLimitExceeded`, exactly the run whose usage matters,
/// `usage()` is `None` (and `sandbox-run --json-usage` writes nulls and `"oom_kills":0`).
#[test]
fn usage_is_reported_after_the_memory_limit_killed_the_program() {
    if !limits_usable() {
        return skip(NO_LIMITS);
    }
    let sb = builder().memory_limit(32 << 20).build().expect("build");
    let mut child = sb
        .command("/bin/sh")
        .args(["-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let waited = child.wait();
    assert!(matches!(waited, Err(Error::MemoryLimitExceeded { .. })), "{waited:?}");
    let usage = child.usage();
    assert!(
        usage.is_some_and(|u| u.oom_kills >= 1 && u.peak_memory.is_some_and(|p| p >= 30 << 20)),
        "usage after the OOM kill: {usage:?}"
    );
}

/// Review 18: as root, a sandbox whose writable layer is kept on the host
/// (`Builder::writable_layer_in`, `sandbox-run --keep-failed`) has a `/` owned by `nobody`, so its
/// root cannot create anything at the top level (`mkdir /srv2`, `touch /x`: EPERM) though the
/// same program passes in a sandbox without it (a test that passes alone fails under
/// `--keep-failed`). Rootless the layer's `/` is root's inside, as it should be as root too.
#[test]
fn a_kept_writable_layers_root_is_roots_inside() {
    // Rootless it was already: the caller's, root inside. Checked in both modes.
    let keep = tempfile::tempdir().expect("tempdir");
    let sb = builder().writable_layer_in(keep.path()).build().expect("build");
    let out = sb
        .command("/bin/sh")
        .args(["-c", "stat -c %U /; mkdir /top-level && touch /top-level/f && echo made"])
        .output()
        .expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "root\nmade\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Review 18: a memory limit too small to start the sandbox in (`--memory 64`, bytes where the user
/// meant MiB; here 64 KiB) fails with "the sandbox helper process ended unexpectedly (signal: 9
/// (SIGKILL))", `Error::HelperDied`, which reads as a crash of the library and says nothing of the
/// limit. It should say the memory limit was exceeded (or is too small to start a sandbox).
#[test]
fn a_memory_limit_too_small_to_start_says_so() {
    if !limits_usable() {
        return skip(NO_LIMITS);
    }
    // Refused when built, or when started: either way the error names the limit.
    let err = builder()
        .memory_limit(64 << 10)
        .build()
        .and_then(|sb| sb.command("/bin/true").status())
        .expect_err("64 KiB is not enough to start a sandbox");
    assert!(sandbox::error_chain(&err).contains("memory limit"), "{err:?}: {}", sandbox::error_chain(&err));
    assert_eq!(stale_sandbox_cgroups(), Vec::<String>::new());
}

/// Review 18: `Builder::file("/etc/hosts", …)` (mock DNS entries for a test, the README's "files"
/// example's way to put a file in `/etc`) is silently dropped: the sandbox's generated `/etc/hosts`
/// (and `/etc/hostname`) is written over it, and the program sees only `localhost` and its own
/// name. The file should be there (or the build refused, saying why).
#[test]
fn a_file_at_etc_hosts_is_not_silently_dropped() {
    let sb = builder().file("/etc/hosts", "10.0.0.5\tapi.example.com\n").build().expect("build");
    let hosts = text(&sh(&sb, "cat /etc/hosts"));
    assert!(hosts.contains("api.example.com"), "/etc/hosts inside:\n{hosts}");
}

/// Review 18: a host file bound at `/etc/hosts` (`sandbox-run --mount myhosts:/etc/hosts`) is
/// overwritten on the host by setup's generated `/etc/hosts` (read-write: the user's file is lost,
/// though the program never wrote it), or fails the start with "write /etc/hosts `/etc/hosts`:
/// Read-only file system" (read-only). The volume should be what the program sees, and setup
/// should never write into a host file.
#[test]
fn a_host_file_bound_at_etc_hosts_is_left_as_it_is() {
    use sandbox::Mount;
    let dir = tempfile::tempdir().expect("tempdir");
    let mine = dir.path().join("hosts");
    let content = "10.0.0.5\tapi.example.com\n";
    std::fs::write(&mine, content).expect("write");
    let rw = builder().mount(Mount::bind(&mine, "/etc/hosts")).build().expect("build");
    let inside = rw.command("/bin/cat").arg("/etc/hosts").output().expect("run");
    assert_eq!(std::fs::read_to_string(&mine).expect("read"), content, "the host file was overwritten");
    assert_eq!(String::from_utf8_lossy(&inside.stdout), content, "read-write volume inside");
    let ro = builder().mount(Mount::bind(&mine, "/etc/hosts").read_only()).build().expect("build");
    let inside =
        ro.command("/bin/cat").arg("/etc/hosts").output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    assert_eq!(inside.map_err(|e| sandbox::error_chain(&e)), Ok(content.to_owned()), "read-only volume");
}

/// Review 18: a rootfs folder that is not a root file system (`Builder::rootfs_dir`,
/// `sandbox-run --rootfs DIR` pointed at the wrong folder) fails with "sandbox setup failed: write
/// /etc/hostname `/etc/hostname`: No such file or directory", which names neither the folder nor
/// the cause. The error should name the folder given (and say it lacks `/etc`).
#[test]
fn a_rootfs_folder_that_is_no_root_file_system_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), "not a rootfs\n").expect("write");
    let result = Sandbox::builder().rootfs_dir(dir.path()).build().and_then(|sb| sb.command("/bin/true").status());
    let err = result.expect_err("an empty folder is no rootfs");
    let message = sandbox::error_chain(&err);
    assert!(message.contains(&dir.path().display().to_string()), "{message}");
}

/// Review 18: a library user cannot stop a spawned program gracefully: `Child` offers only
/// `kill()` (SIGKILL), and SIGTERM sent to `Child::id()` (the helper, as std users signal a child
/// by its id) kills the helper instead of reaching the program: its TERM handler never runs and
/// `wait()` says "the sandbox helper process ended unexpectedly". The signal should reach the
/// program (forwarded as the sandbox's init forwards signals), or `Child` offer a way to send one.
#[test]
fn sigterm_to_a_childs_id_reaches_the_program() {
    use std::io::{BufRead, Read};
    let sb = builder().timeout(Duration::from_secs(30)).build().expect("build");
    let mut child = sb
        .command("/bin/sh")
        .args(["-c", "trap 'echo got-term; exit 7' TERM; echo ready; sleep 20 & wait"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    assert_eq!(line, "ready\n");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("read");
    let status = child.wait().map(|s| s.code()).map_err(|e| e.to_string());
    assert_eq!((rest.as_str(), status), ("got-term\n", Ok(Some(7))));
}

/// Review 18: a pids limit too small to start the program (`pids_limit(1)`, `--pids 1`,
/// `#[sandbox_test(pids = 1)]`: the sandbox's init counts) fails with "sandbox setup failed: fork
/// the program's process: Resource temporarily unavailable", naming no limit. It should say the
/// pids limit is too small (the init counts).
#[test]
fn a_pids_limit_too_small_to_start_says_so() {
    if !limits_usable() {
        return skip(NO_LIMITS);
    }
    // Refused when built, or when started: either way the error names the limit.
    let err = builder()
        .pids_limit(1)
        .build()
        .and_then(|sb| sb.command("/bin/true").status())
        .expect_err("one pid is not enough for init and the program");
    assert!(sandbox::error_chain(&err).contains("pids"), "{}", sandbox::error_chain(&err));
}

/// Review 19: `Child::id()` names a pid that is freed before the `Child` is waited for: from a
/// caller with more than one thread (a test harness), the sandbox's helper is a child of the fork
/// server, which reaps it as soon as it ends. `kill(child.id(), SIGTERM)`, the graceful stop the
/// docs now give, then reaches whatever process the kernel gave that pid next (as root, any
/// process of the host) when the program ended on its own first. As with `std::process::Child`, the
/// pid should stay this child's (a zombie) until `wait()`.
#[test]
fn a_childs_id_stays_its_own_until_it_is_waited_for() {
    use std::io::Read;
    // A second thread, as a test harness has: the helper then comes from the fork server.
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || stopped.recv());
    let sb = builder().build().expect("build");
    let mut child = sb.command("/bin/echo").arg("done").stdout(Stdio::piped()).spawn().expect("spawn");
    let pid = child.id();
    let mut out = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut out).expect("read");
    assert_eq!(out, "done\n");
    // The program has ended, and its helper right after: it must not be gone before wait() (a zombie
    // of ours is the end of the watch; one of the fork server's may be reaped there at any time).
    let me = std::process::id().to_string();
    let state = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().take(2).collect();
        Some((fields.first()? == &"Z", fields.get(1)? == &me.as_str()))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let seen = loop {
        match state() {
            Some((zombie, ours)) if !(zombie && ours) && std::time::Instant::now() < deadline => {
                std::thread::yield_now();
            }
            other => break other,
        }
    };
    drop(stop);
    let _ = other.join();
    assert!(seen.is_some(), "the helper's pid {pid} was freed before wait(): another process may get it");
    assert!(child.wait().expect("wait").success());
}

/// Review 19: a tmpfs of size 0 (`Mount::tmpfs(…).size(0)`, `sandbox-run --tmpfs /data:0`) is
/// mounted with `size=0`, which tmpfs(5) reads as no limit at all: the program may fill it until
/// the host's memory runs out (every other tmpfs of the sandbox is capped), although `size`
/// promises a cap past which writes fail with ENOSPC. Size 0 should be refused when built, or hold
/// nothing.
#[test]
fn a_tmpfs_of_size_zero_holds_nothing() {
    use sandbox::Mount;
    let built = builder().mount(Mount::tmpfs("/data").size(0)).build();
    let Ok(sb) = built else { return };
    let out = sb
        .command("/bin/sh")
        .args(["-c", "dd if=/dev/zero of=/data/f bs=1M count=8 2>/dev/null && echo wrote; df -k /data | tail -n 1"])
        .output()
        .expect("run");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("wrote"), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Review 19: a session command that died of SIGKILL well before its session's deadline (`kill -9`,
/// the OOM killer) is reported as `Error::TimedOut` when the caller waits for it after the deadline
/// passed: the library decides by when `wait()` is called, not by when the command died. Its exit
/// status (signal 9) should be returned, as it is when waited for earlier.
#[test]
fn a_session_command_killed_before_the_deadline_is_no_timeout() {
    use std::io::Read;
    let timeout = Duration::from_secs(2);
    let sb = builder().timeout(timeout).build().expect("build");
    let session = sb.session().expect("session");
    let started = std::time::Instant::now();
    let mut child =
        session.command("/bin/sh").args(["-c", "kill -9 $$"]).stdout(Stdio::piped()).spawn().expect("spawn");
    // End-of-file: the command's process is dead.
    let mut out = Vec::new();
    child.stdout.take().expect("stdout").read_to_end(&mut out).expect("read");
    assert!(started.elapsed() < timeout / 2, "the command died early");
    // The caller does other work until the session's deadline has passed.
    std::thread::sleep(timeout - started.elapsed() + Duration::from_millis(500));
    let status = child.wait().map(|s| std::os::unix::process::ExitStatusExt::signal(&s));
    assert!(matches!(status, Ok(Some(9))), "{status:?}");
}

/// Review 19: a long deadline kills the sandbox: with `timeout(30 days)` the program runs, then
/// `wait()` fails with "the sandbox helper process ended unexpectedly (exit status: 101)" (the
/// helper's and init's poll timeout, the milliseconds left capped at `i32::MAX` and then plus one,
/// overflows: a panic in a debug build, as tests are built); `timeout(Duration::MAX)`, a natural
/// "no deadline", fails the same way before the program starts ("overflow when adding duration to
/// instant"). A long deadline should just be far away; one past what the clock holds refused when
/// built, naming the timeout.
#[test]
fn a_deadline_weeks_away_lets_the_program_run() {
    let sb = builder().timeout(Duration::from_secs(30 * 24 * 3600)).build().expect("build");
    let out = sb.command("/bin/echo").arg("ok").output().map_err(|e| sandbox::error_chain(&e));
    assert_eq!(out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()), Ok("ok\n".to_owned()), "30 days");
    let result = builder().timeout(Duration::MAX).build().and_then(|sb| sb.command("/bin/true").status());
    match result {
        Ok(status) => assert!(status.success(), "{status:?}"),
        Err(e @ Error::InvalidConfig { .. }) => assert!(e.to_string().contains("timeout"), "{e}"),
        Err(e) => panic!("Duration::MAX: {}", sandbox::error_chain(&e)),
    }
}

/// Review 19: limits past what the kernel takes are accepted when built and fail the start with a
/// hint that blames the machine: `cpu_limit(1e30)` ("set the CPU quota … cpu.cfs_quota_us`;
/// resource limits need a cgroup this process may create: as root on cgroup v1 or v2, or rootless
/// … Numerical result out of range") and `pids_limit(1 << 40)` (the same, "Invalid argument"),
/// as root, who may create cgroups. Such a value should be refused when built, naming the
/// setting and its range (`sandbox-run --cpus 1e30`, `--pids 99999999999999` alike), or taken as the
/// most the kernel allows.
#[test]
fn a_limit_past_the_kernels_range_is_refused_when_built() {
    if !limits_usable() {
        return skip(NO_LIMITS);
    }
    for (what, b) in [("cpu", builder().cpu_limit(1e30)), ("pids", builder().pids_limit(1 << 40))] {
        match b.build().and_then(|sb| sb.command("/bin/true").status()) {
            Ok(status) => assert!(status.success(), "{what}: {status:?}"),
            Err(e @ Error::InvalidConfig { .. }) => assert!(e.to_string().contains(what), "{e}"),
            Err(e) => panic!("{what}: {}", sandbox::error_chain(&e)),
        }
    }
}

/// Review 20: a program on a pseudo-terminal (`Command::pty`) gets `TERM` only if the caller has
/// one (`Builder::env`'s clean environment passes the caller's on). A caller without it (a CI job, a
/// service, cron: here the test's own process with `TERM` removed) starts the program on a terminal
/// that names no terminal type: curses programs (`htop`, `vim`, `less` from apk) refuse or fall back
/// to a dumb terminal. A container runtime sets one for its consoles (runc's spec and `docker run -t`
/// give `TERM=xterm`); a program on a pty should get a `TERM` whatever the caller's environment.
#[test]
fn a_programs_terminal_has_a_type_without_the_callers() {
    let (mut cmd, _holder) = ChildTest::new("child_a_programs_terminal_has_a_type").command();
    let out = cmd.env_remove("TERM").output().expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("1 passed"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_a_programs_terminal_has_a_type() {
    use std::io::Read;
    if !is_child("child_a_programs_terminal_has_a_type") {
        return;
    }
    assert!(std::env::var_os("TERM").is_none(), "the parent test removed TERM");
    let sb = builder().timeout(Duration::from_secs(20)).build().expect("build");
    let mut child = sb.command("/bin/sh").args(["-c", "echo \"TERM=[$TERM]\""]).pty(24, 80).spawn().expect("spawn");
    let mut seen = String::new();
    child.pty.take().expect("the pty").read_to_string(&mut seen).expect("read the terminal");
    assert!(child.wait().expect("wait").success(), "{seen:?}");
    assert!(seen.starts_with("TERM=[") && !seen.starts_with("TERM=[]"), "no terminal type on a terminal: {seen:?}");
}

/// Review 20: `pty(..)` with an explicit `stdin`, `stdout` or `stderr` setting drops the setting
/// without a word: here `stderr(Stdio::piped())`, to keep errors apart from what the terminal shows,
/// spawns fine and `child.stderr` is `None` (the rustdoc says "the stdio settings are not used"; the
/// README does not). The caller asked for two contradicting things: bad input should get a clear
/// error (as `output()` with a pty gets), or the setting should be honoured (stderr piped apart, as
/// `script`-like tools allow).
#[test]
fn a_pty_commands_explicit_stdio_is_refused_or_honoured() {
    use std::io::Read;
    let sb = builder().timeout(Duration::from_secs(20)).build().expect("build");
    let spawned =
        sb.command("/bin/sh").args(["-c", "echo out; echo err >&2"]).pty(24, 80).stderr(Stdio::piped()).spawn();
    match spawned {
        Err(Error::InvalidConfig { .. }) => {}
        Err(e) => panic!("refused, but not as an invalid configuration: {e}"),
        Ok(mut child) => {
            let stderr = child.stderr.take();
            let mut pty = child.pty.take().expect("the pty");
            let mut shown = String::new();
            pty.read_to_string(&mut shown).expect("read the terminal");
            let mut err = String::new();
            if let Some(mut s) = stderr {
                s.read_to_string(&mut err).expect("read stderr");
            }
            let _ = child.wait();
            assert_eq!(err, "err\n", "stderr(piped()) was dropped: the terminal showed {shown:?}");
        }
    }
}

/// `/dev`'s six devices: as root, nodes init makes in the sandbox's `/dev` (no mount each); where the
/// kernel refuses mknod (a container that dropped `CAP_MKNOD`: here a caller run under `setpriv
/// --bounding-set=-mknod`), the host's, bound there as before. Either way they work.
#[test]
fn dev_s_devices_are_nodes_as_root_and_bound_where_mknod_is_refused() {
    if !is_root() {
        return; // rootless, the host's devices are always bound (init has no CAP_MKNOD)
    }
    if !std::path::Path::new("/usr/bin/setpriv").exists() {
        return skip("needs util-linux's setpriv");
    }
    let script = "echo x > /dev/null && head -c 1 /dev/zero | od -An -tx1 | tr -d ' '; \
                  grep -c ' /dev/null ' /proc/self/mountinfo; true";
    let run = |bounded: bool| {
        let mut cmd =
            std::process::Command::new(if bounded { "/usr/bin/setpriv" } else { env!("CARGO_BIN_EXE_one-sandbox") });
        if bounded {
            cmd.args(["--bounding-set=-mknod", "--", env!("CARGO_BIN_EXE_one-sandbox")]);
        }
        let out = cmd.args(["/bin/sh", "-c", script]).env("SANDBOX_ROOTFS", rootfs().path()).output().expect("run");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    assert_eq!(run(false), "00\n0\n", "made, not mounted");
    assert_eq!(run(true), "00\n1\n", "bound, without CAP_MKNOD");
}
