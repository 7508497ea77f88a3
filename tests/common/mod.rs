//! Helpers shared by the integration tests: skips that CI turns into failures, and re-running one test
//! of the current binary in a child process (optionally as an unprivileged user), as rusty-fork does.

#![forbid(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Set in a child process started by [`ChildTest`]; the child's test body checks it with [`is_child`].
pub const CHILD_ENV: &str = "SANDBOX_TEST_CHILD";

/// The unprivileged account for rootless tests (created by `.ci/run`); `$SANDBOX_TEST_USER` overrides.
pub const DEFAULT_TEST_USER: &str = "sandbox-test";

/// Whether a missing host feature must fail the test instead of skipping it: in CI (`CI=true`) or with
/// `SANDBOX_TEST_STRICT=1`, so that CI never silently tests nothing.
pub fn strict() -> bool {
    let on = |v: &str| std::env::var(v).is_ok_and(|x| matches!(x.as_str(), "1" | "true" | "yes"));
    on("SANDBOX_TEST_STRICT") || on("CI")
}

/// Reports a skipped test, or fails it in strict mode. Call it and `return`.
///
/// # Panics
/// In strict mode, always.
pub fn skip(reason: &str) {
    assert!(!strict(), "required test prerequisite missing (strict mode: CI or SANDBOX_TEST_STRICT=1): {reason}");
    eprintln!("SKIP: {reason}");
}

/// Whether this process is a child started by [`ChildTest`] for the test `name`.
pub fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == name)
}

/// The unprivileged user for rootless tests, as (name, uid, gid), if it exists.
pub fn test_user() -> Option<(String, u32, u32)> {
    let name = std::env::var("SANDBOX_TEST_USER").unwrap_or_else(|_| DEFAULT_TEST_USER.to_owned());
    let user = nix::unistd::User::from_name(&name).ok()??;
    Some((name, user.uid.as_raw(), user.gid.as_raw()))
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A directory that `uid` owns, removed (by this, root, process) when dropped.
pub fn dir_owned_by(uid: u32, gid: u32) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("sandbox-test-").tempdir().expect("create a temporary directory");
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the temporary directory");
    dir
}

/// Re-runs one test of the current test binary in a fresh process.
#[derive(Debug)]
pub struct ChildTest {
    name: String,
    exact: bool,
    env: Vec<(String, String)>,
    user: Option<(u32, u32)>,
}

impl ChildTest {
    /// The child runs `name` (the test function's path inside the binary, e.g. `rootless_unpack`).
    pub fn new(name: &str) -> ChildTest {
        ChildTest { name: name.to_owned(), exact: true, env: Vec::new(), user: None }
    }

    /// The child runs every test whose name contains `filter`, on several threads (libtest's own
    /// filtering, not `--exact`).
    pub fn filter(filter: &str) -> ChildTest {
        ChildTest { name: filter.to_owned(), exact: false, env: Vec::new(), user: None }
    }

    /// Sets an environment variable in the child.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.env.push((key.to_owned(), value.as_ref().to_string_lossy().into_owned()));
        self
    }

    /// Runs the child as `uid:gid` with no supplementary groups (needs root, and `setpriv`).
    pub fn as_user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// The command, ready to spawn. Keep the returned directory alive until the child has exited: it
    /// holds the copy of the test binary an unprivileged user runs.
    pub fn command(&self) -> (Command, Option<tempfile::TempDir>) {
        let exe = std::env::current_exe().expect("locate the test binary");
        let (exe, holder) = match self.user {
            // The build tree may sit under a directory the user cannot enter (e.g. /root): run a copy.
            Some(_) => {
                let dir = tempfile::Builder::new()
                    .prefix("sandbox-test-bin-")
                    .tempdir()
                    .expect("create a temporary directory");
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
                let copy = dir.path().join(exe.file_name().unwrap_or_else(|| "test".as_ref()));
                std::fs::copy(&exe, &copy).expect("copy the test binary");
                (copy, Some(dir))
            }
            None => (exe, None),
        };
        let mut cmd = match self.user {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.args([
                    format!("--reuid={uid}"),
                    format!("--regid={gid}"),
                    "--clear-groups".to_owned(),
                    "--".to_owned(),
                ]);
                c.arg(&exe);
                c.env("HOME", holder.as_ref().map(|d| d.path().to_owned()).unwrap_or_else(|| PathBuf::from("/")));
                c
            }
            None => Command::new(&exe),
        };
        if self.exact {
            cmd.args([self.name.as_str(), "--exact", "--nocapture", "--test-threads=1", "--include-ignored"]);
        } else {
            cmd.args([self.name.as_str(), "--test-threads=8"]);
        }
        cmd.env(CHILD_ENV, &self.name);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        (cmd, holder)
    }

    /// Runs the child to completion and returns its output.
    pub fn output(&self) -> Output {
        let (mut cmd, _holder) = self.command();
        cmd.output().expect("spawn the child test process")
    }

    /// Runs the child and panics with its output unless it passed (and really ran the test).
    pub fn assert_success(&self) -> Output {
        let out = self.output();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ran = if self.exact { stdout.contains("1 passed") } else { stdout.contains(" passed; 0 failed") };
        assert!(
            out.status.success() && ran,
            "child test `{}` failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            self.name,
            out.status
        );
        out
    }
}

/// The names of the entries of `dir`, sorted (empty if it does not exist).
pub fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The fixture Alpine rootfs (3.19.1, built from the static busybox), unpacked into a cache under
/// `$SANDBOX_TEST_CACHE`, else under `default_dir` (pass `env!("CARGO_TARGET_TMPDIR")`).
///
/// # Panics
/// If the fixture cannot be built (no static busybox) or unpacked.
pub fn fixture_rootfs(default_dir: &str) -> fetch::Rootfs {
    let tarball = fixture_tarball(default_dir);
    fetch::Rootfs::from_tarball_in(&tarball, tarball.parent()).expect("unpack the fixture rootfs")
}

/// The fixture rootfs's tarball in the test cache (`$SANDBOX_TEST_CACHE`, else
/// `default_dir/sandbox-test-cache`), built there on first use.
pub fn fixture_tarball(default_dir: &str) -> PathBuf {
    let dir = std::env::var_os("SANDBOX_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(default_dir).join("sandbox-test-cache"));
    std::fs::create_dir_all(&dir).expect("create the test cache");
    let tarball = dir.join("fixture-3.19.1.tar.gz");
    if !tarball.exists() {
        // Unique name, then rename: concurrent tests never see half a file.
        let tmp = dir.join(format!("fixture.{}.{:?}.tmp", std::process::id(), std::thread::current().id()));
        sandbox_fixtures::MiniRootfs::new("3.19.1")
            .write_to(&tmp)
            .expect("build the fixture rootfs (is busybox-static installed?)");
        std::fs::rename(&tmp, &tarball).expect("rename the fixture rootfs");
    }
    tarball
}

/// Host pids of the processes whose command line contains `needle` (arguments joined by spaces).
pub fn pids_matching(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
                .filter(|&pid| pid != me)
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (up to 10 s) until no process matches `needle`, for teardown that the kernel finishes
/// asynchronously (after SIGKILL of a whole process tree). Returns what is still there.
pub fn wait_until_gone(needle: &str) -> Vec<i32> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = pids_matching(needle);
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The sandbox crate's fork server among this process's children (it lives as long as the process).
pub fn is_fork_server(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v.starts_with(b"__SANDBOX_FORK_SERVER=")))
}

/// The filtered fork server, a child of the fork server (as root: it forks the helpers of sandboxes
/// that are not privileged), by its command name.
pub fn is_filtered_server(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == "sandbox-filter")
}

/// This process's fork servers (its children that are one).
pub fn fork_servers() -> Vec<i32> {
    children_of(std::process::id() as i32).into_iter().filter(|&p| is_fork_server(p)).collect()
}

/// The filtered fork servers below this process's fork servers that are alive (not zombies waiting
/// to be reaped).
pub fn filtered_servers() -> Vec<i32> {
    fork_servers()
        .into_iter()
        .flat_map(children_of)
        .filter(|&p| is_filtered_server(p))
        .filter(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| !s.contains(") Z")))
        .collect()
}

/// This process's child processes, and theirs if the child is the fork server (whose children are
/// the sandboxes' helpers, and, as root, the filtered fork server, whose children are helpers too);
/// the fork servers themselves do not count.
pub fn child_processes() -> Vec<i32> {
    let mine = children_of(std::process::id() as i32);
    let (mut servers, mut others): (Vec<i32>, Vec<i32>) = mine.into_iter().partition(|&p| is_fork_server(p));
    while let Some(server) = servers.pop() {
        let (filtered, helpers): (Vec<i32>, Vec<i32>) =
            children_of(server).into_iter().partition(|&p| is_filtered_server(p));
        servers.extend(filtered);
        others.extend(helpers);
    }
    others
}

/// Kills the holder of a switch network this process made (the one process of ours whose network
/// namespace has the bridge) and waits until it is gone or a zombie: the switch is then dead.
pub fn kill_switch_holder() {
    let holder: Vec<i32> = child_processes()
        .into_iter()
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/net/dev")).is_ok_and(|d| d.contains("br0:")))
        .collect();
    assert_eq!(holder.len(), 1, "one switch holder among {:?}", child_processes());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(holder[0]), nix::sys::signal::Signal::SIGKILL).expect("kill");
    while std::path::Path::new(&format!("/proc/{}/net/dev", holder[0])).exists()
        && std::fs::read_to_string(format!("/proc/{}/stat", holder[0])).is_ok_and(|s| !s.contains(") Z"))
    {
        std::thread::yield_now();
    }
}

/// The pids of the child processes of `parent`.
pub fn children_of(parent: i32) -> Vec<i32> {
    let me = parent.to_string();
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .ok()
                        .and_then(|st| {
                            st.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().nth(1) == Some(me.as_str()))
                        })
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The number of mounts in this process's mount namespace (the host's).
pub fn host_mount_count() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo").map(|m| m.lines().count()).unwrap_or(0)
}

/// A marker unlikely to appear in any other process's command line.
pub fn marker() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}{:09}", 7_000 + std::process::id() % 1000, nanos % 1_000_000_000)
}

/// The README's Rust examples, compiled as doctests so that they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
