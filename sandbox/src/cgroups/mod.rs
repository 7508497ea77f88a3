//! Resource limits through cgroups, v2 (unified) or v1 (one hierarchy per controller) behind one
//! interface. Everything is plain file I/O below a root directory (normally `/sys/fs/cgroup`), so the
//! logic is unit-tested against a fake tree.
//!
//! The helper creates the sandbox's cgroup and writes the limits, forks the sandbox's init, and moves
//! it in before init does anything: every process of the sandbox, and none else (the helper stays out
//! of reach of the OOM killer), is accounted. After init is reaped the helper reads the usage (peak
//! memory, CPU time, OOM kills) and removes the cgroup. A cgroup
//! left by a killed run (its helper is dead) is removed by the next run that uses limits.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod v1;
mod v2;

/// The limits a sandbox asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Limits {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
}

impl Limits {
    pub(crate) fn any(&self) -> bool {
        self.memory.is_some() || self.pids.is_some() || self.cpus.is_some()
    }
}

/// What the sandbox used, read from its cgroup when it ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// The highest memory use of all its processes together, in bytes.
    pub peak_memory: Option<u64>,
    /// The CPU time of all its processes together.
    pub cpu_time: Option<Duration>,
    /// How many of its processes the kernel's OOM killer killed.
    pub oom_kills: u64,
}

/// Why limits cannot be applied here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unusable {
    pub what: String,
    pub path: PathBuf,
    pub errno: i32,
}

pub(super) const V1_CONTROLLERS: [&str; 4] = ["memory", "pids", "cpu", "cpuacct"];

/// The cgroup filesystem as this process sees it.
#[derive(Debug, Clone)]
pub(crate) struct CgroupFs {
    pub(super) root: PathBuf,
    /// Contents of /proc/self/cgroup.
    self_cgroup: String,
}

impl CgroupFs {
    pub(crate) fn host() -> CgroupFs {
        CgroupFs {
            root: PathBuf::from("/sys/fs/cgroup"),
            self_cgroup: fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
        }
    }

    #[cfg(test)]
    fn fake(root: &Path, self_cgroup: &str) -> CgroupFs {
        CgroupFs { root: root.to_owned(), self_cgroup: self_cgroup.to_owned() }
    }

    pub(super) fn is_v2(&self) -> bool {
        self.root.join("cgroup.controllers").is_file()
    }

    /// This process's cgroup path in the v2 hierarchy, or in the v1 hierarchy of `controller`.
    pub(super) fn own_path(&self, controller: Option<&str>) -> Option<String> {
        self.self_cgroup.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
            let matches = match controller {
                None => list.is_empty(),
                Some(c) => list.split(',').any(|x| x == c),
            };
            matches.then(|| path.to_owned())
        })
    }
}

/// A sandbox's cgroup: one directory (v2) or one per controller (v1).
#[derive(Debug)]
pub(crate) struct Cgroup {
    pub(super) v2: bool,
    pub(super) dirs: Vec<(String, PathBuf)>,
}

pub(super) fn write(path: &Path, value: &str, what: &str) -> Result<(), Unusable> {
    fs::write(path, value).map_err(|e| Unusable {
        what: what.to_owned(),
        path: path.to_owned(),
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    })
}

pub(super) fn mkdir(path: &Path, what: &str) -> Result<(), Unusable> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => {
            Err(Unusable { what: what.to_owned(), path: path.to_owned(), errno: e.raw_os_error().unwrap_or(libc::EIO) })
        }
    }
}

impl Cgroup {
    /// Creates the cgroup `name` with `limits`. Sweeps leftovers of dead helpers first.
    pub(crate) fn create(fs: &CgroupFs, name: &str, limits: &Limits) -> Result<Cgroup, Unusable> {
        if fs.is_v2() { v2::create(fs, name, limits) } else { v1::create(fs, name, limits) }
    }

    pub(super) fn dir(&self, controller: &str) -> Option<PathBuf> {
        self.dirs.iter().find(|(c, _)| c == controller || self.v2).map(|(_, d)| d.clone())
    }

    /// Moves the process `pid` into the cgroup (its children follow).
    pub(crate) fn add(&self, pid: u32) -> Result<(), Unusable> {
        for (_, dir) in &self.dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string(), "join")?;
        }
        Ok(())
    }

    /// Whether init is to be kept out of the OOM killer's choice: on cgroup v1 only. On v2,
    /// `memory.oom.group` ends the sandbox as one unit; a shielded init (-1000) would also hand its
    /// score to every process it forks, and, where they cannot raise it again (their `/proc` files
    /// belong to the host's root while init is not dumpable), leave the kernel no victim at the
    /// limit: the livelock of issue 14.
    pub(crate) fn shields_init_from_oom(&self) -> bool {
        !self.v2
    }

    /// The limits' state in a line, for a timeout's error: use, limit and how often it was hit, of
    /// memory and pids (e.g. `memory 32.0 MiB of 32.0 MiB, limit hit 316316 times, 2864 OOM runs, 0
    /// kills; pids 3 of 16`).
    pub(crate) fn state(&self) -> String {
        let read = |c: &str, f: &str| self.dir(c).and_then(|d| fs::read_to_string(d.join(f)).ok());
        if self.v2 { v2::state(&read) } else { v1::state(&read) }
    }

    /// What the sandbox used.
    pub(crate) fn usage(&self) -> Usage {
        let read = |c: &str, f: &str| self.dir(c).and_then(|d| fs::read_to_string(d.join(f)).ok());
        if self.v2 { v2::usage(&read) } else { v1::usage(&read) }
    }
}

/// Dropping the cgroup removes it, on every path: the end of the sandbox, and any failure after its
/// creation. It must hold no process any more (the helper is never in it; init and its descendants
/// are gone, or were never moved in).
impl Drop for Cgroup {
    fn drop(&mut self) {
        for (_, dir) in &self.dirs {
            if fs::remove_dir(dir).is_err() {
                // Something is still in it (a setup failure after init was moved in): end it.
                kill_and_remove(dir);
            }
        }
    }
}

/// Kills every process of the cgroup `dir` at once (cgroup v2's `cgroup.kill`, Linux 5.14) and
/// removes it once the kernel has emptied it; does nothing where the kernel has no `cgroup.kill`.
fn kill_and_remove(dir: &Path) {
    if fs::write(dir.join("cgroup.kill"), "1").is_err() {
        return;
    }
    // cgroup.kill is asynchronous: the cgroup can be removed once its last process has been reaped
    // by its parent. Bounded, so that a cgroup whose processes belong to a stopped parent is left
    // for the next sweep rather than hanging this one.
    for _ in 0..200 {
        match fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(std::time::Duration::from_millis(5)),
            _ => return,
        }
    }
}

/// The number after `key` on one of the lines of `text` (`memory.events`, `cpu.stat`, …).
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse::<u64>().ok()))
}

/// Why this process cannot have a cgroup with limits, if it cannot: tries to make one (and removes it).
pub(crate) fn unusable_reason() -> Option<String> {
    let limits = Limits { memory: Some(64 << 20), pids: Some(64), cpus: None };
    match Cgroup::create(&CgroupFs::host(), &name_for(std::process::id()), &limits) {
        Ok(_probe) => None,
        // With how to fix it, as a failed start says (a new user's review: the skip line had no fix).
        Err(u) => Some(format!(
            "this process cannot {} `{}` ({}); {}",
            u.what,
            u.path.display(),
            std::io::Error::from_raw_os_error(u.errno),
            crate::hints::for_step(
                crate::report::StepKind::Limits,
                nix::errno::Errno::from_raw(u.errno),
                !nix::unistd::geteuid().is_root()
            )
            .unwrap_or_else(|| "resource limits need a cgroup".to_owned())
        )),
    }
}

/// The `cgroup.procs` files of the cgroups of process `pid` (v2: one; v1: one per hierarchy of ours),
/// opened for writing.
pub(crate) fn procs_files_of(pid: i32) -> Result<Vec<fs::File>, Unusable> {
    let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
    let text = fs::read_to_string(&path).map_err(|e| Unusable {
        what: "read the session's cgroups from".to_owned(),
        path: path.clone(),
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    })?;
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").is_file();
    let mut files = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(list), Some(cg)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let dir = match (v2, list) {
            (true, "") => Path::new("/sys/fs/cgroup").join(cg.trim_start_matches('/')),
            (false, l) if l.split(',').any(|c| V1_CONTROLLERS.contains(&c)) => {
                Path::new("/sys/fs/cgroup").join(l).join(cg.trim_start_matches('/'))
            }
            _ => continue,
        };
        let procs = dir.join("cgroup.procs");
        let file = fs::OpenOptions::new().write(true).open(&procs).map_err(|e| Unusable {
            what: "open".to_owned(),
            path: procs.clone(),
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        })?;
        files.push(file);
    }
    Ok(files)
}

/// Removes the cgroups `sandbox-<pid>-…` below `parent` whose helper process is gone.
pub(super) fn sweep(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    let ns = pid_namespace();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(helper) = helper_of(&name, ns) else { continue };
        let empty = fs::read_to_string(e.path().join("cgroup.procs")).map_or(true, |p| p.trim().is_empty());
        let Some(pid) = helper else {
            // Another pid namespace's: its helper cannot be looked for here. Empty for minutes, it
            // holds no sandbox (a live one's is empty only while it starts): a namespace that died
            // left it (an outside review: such leftovers were never swept).
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > FOREIGN_LEFTOVER_AGE);
            if empty && old {
                tracing::info!(cgroup = %e.path().display(), "removing an old, empty cgroup of another pid namespace's sandbox");
                let _ = fs::remove_dir(e.path());
            }
            continue;
        };
        let alive = helper_alive(pid);
        if !alive && empty {
            tracing::info!(cgroup = %e.path().display(), "removing the cgroup of a sandbox whose helper was killed");
            let _ = fs::remove_dir(e.path());
        } else if !alive {
            // Its helper is gone but processes remain (they outlived a SIGKILL of the caller's
            // process group, or were stopped): on v2, end them all at once and remove the cgroup.
            tracing::info!(cgroup = %e.path().display(), "killing what is left of a sandbox whose helper was killed");
            kill_and_remove(&e.path());
        }
    }
}

/// Whether the helper `pid` still runs: a zombie does not (an outside review: under a PID 1 that
/// reaps nothing, a container's `tail -f`, a killed run's helper stayed a zombie for good, and its
/// cgroup with it).
fn helper_alive(pid: i32) -> bool {
    match crate::sys::process::stat_fields(&pid.to_string()) {
        Some(fields) => !matches!(fields.first().map(String::as_str), Some("Z" | "X" | "x")),
        None => Path::new(&format!("/proc/{pid}")).exists(),
    }
}

/// A cgroup name unique to this helper: `sandbox-<pid>-<nanoseconds>-<pid namespace>`, the last in
/// hexadecimal, so that a sweep tells whether it can see the helper (see [`helper_of`]).
pub(crate) fn name_for(pid: u32) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("sandbox-{pid}-{nanos:x}-{:x}", pid_namespace())
}

/// This process's pid namespace: the inode number of `/proc/self/ns/pid` (0 if it cannot be read).
fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// How old an empty cgroup of another pid namespace's sandbox must be to be swept.
const FOREIGN_LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// For a cgroup name of [`name_for`]'s: `Some(Some(pid))`, its helper's pid, where this process can
/// look for it in its `/proc` (made in the pid namespace `ns`; a name without one is an older
/// version's, taken as this namespace's); `Some(None)` for another pid namespace's (another container
/// sharing the parent cgroup: its cgroup, empty for a moment after its creation or holding a live
/// sandbox, must not be taken as dead; an outside review, inferred from the code); `None` for a name
/// of another kind.
fn helper_of(name: &str, ns: u64) -> Option<Option<i32>> {
    let mut parts = name.strip_prefix("sandbox-")?.split('-');
    let pid = parts.next()?.parse::<i32>().ok()?;
    let _nanos = parts.next();
    match parts.next().map(|n| u64::from_str_radix(n, 16)) {
        None => Some(Some(pid)),
        Some(Ok(theirs)) if theirs == ns => Some(Some(pid)),
        Some(Ok(_)) => Some(None),
        Some(Err(_)) => None,
    }
}

/// `; pids N of MAX, limit hit K times`, or nothing for a sandbox without a pids cgroup (without a
/// pids limit: the line said "pids ? of ?", a new user's review).
pub(super) fn pids_state(read: &dyn Fn(&str, &str) -> Option<String>) -> String {
    let Some(current) = read("pids", "pids.current") else { return String::new() };
    let max = read("pids", "pids.max").unwrap_or_else(|| "?".into());
    let hit = read("pids", "pids.events").and_then(|t| field(&t, "max ")).unwrap_or(0);
    format!("; pids {} of {}, limit hit {hit} times", current.trim(), max.trim())
}

/// `bytes` in MiB, or the limit's `max`.
pub(super) fn mib(bytes: Option<&str>) -> String {
    match bytes.map(str::trim) {
        Some("max") => "no limit".to_owned(),
        Some(b) => b.parse::<u64>().map_or_else(|_| b.to_owned(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
        None => "?".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// A v2 tree as systemd lays it out, with `cgroup.controllers` as the kernel would show them.
    fn fake_v2(controllers: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        let user = root.path().join("user.slice/user-1000.slice/user@1000.service");
        let app = user.join("app.slice/run-1.scope");
        fs::create_dir_all(&app).expect("mkdir");
        fs::write(root.path().join("cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc")
            .expect("write");
        fs::write(root.path().join("cgroup.subtree_control"), "").expect("write");
        fs::write(user.join("cgroup.controllers"), controllers).expect("write");
        fs::write(user.join("cgroup.subtree_control"), "").expect("write");
        root
    }

    const ROOTLESS: &str = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/run-1.scope\n";

    #[test]
    fn v2_rootless_uses_the_delegated_subtree() {
        let root = fake_v2("cpu memory pids");
        let fs_ = CgroupFs::fake(root.path(), ROOTLESS);
        let limits = Limits { memory: Some(64 << 20), pids: Some(64), cpus: Some(0.5) };
        let cg = Cgroup::create(&fs_, "sandbox-42-x", &limits).expect("create");
        let user = root.path().join("user.slice/user-1000.slice/user@1000.service");
        let dir = user.join("sandbox.slice/sandbox-42-x");
        assert_eq!(read(&user.join("cgroup.subtree_control")), "+memory +pids +cpu");
        assert_eq!(read(&user.join("sandbox.slice/cgroup.subtree_control")), "+memory +pids +cpu");
        assert_eq!(read(&dir.join("memory.max")), (64u64 << 20).to_string());
        assert_eq!(read(&dir.join("memory.swap.max")), "0");
        assert_eq!(read(&dir.join("pids.max")), "64");
        assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
        cg.add(7).expect("join");
        assert_eq!(read(&dir.join("cgroup.procs")), "7");
    }

    #[test]
    fn v2_as_root_uses_the_root_and_reads_usage() {
        let root = fake_v2("");
        let fs_ = CgroupFs::fake(root.path(), "0::/system.slice/ci.service\n");
        let cg = Cgroup::create(&fs_, "sandbox-1-a", &Limits { memory: Some(1 << 20), ..Default::default() })
            .expect("create");
        let dir = root.path().join("sandbox.slice/sandbox-1-a");
        assert_eq!(read(&root.path().join("cgroup.subtree_control")), "+memory");
        fs::write(dir.join("memory.peak"), "1048576\n").expect("write");
        fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n").expect("write");
        fs::write(dir.join("cpu.stat"), "usage_usec 250000\nuser_usec 200000\n").expect("write");
        let usage = cg.usage();
        assert_eq!(
            usage,
            Usage { peak_memory: Some(1 << 20), cpu_time: Some(Duration::from_millis(250)), oom_kills: 1 }
        );
    }

    #[test]
    fn v2_missing_delegation_is_an_explained_error() {
        let root = fake_v2("memory");
        let fs_ = CgroupFs::fake(root.path(), ROOTLESS);
        let err =
            Cgroup::create(&fs_, "s", &Limits { pids: Some(8), ..Default::default() }).expect_err("pids not delegated");
        assert!(err.what.contains("`pids`"), "{err:?}");
        assert!(err.path.ends_with("user@1000.service/cgroup.controllers"));
    }

    // Bug 3: a v1 cgroup whose second controller directory could not be made left the first behind.
    #[test]
    fn a_failed_creation_leaves_no_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        // `memory/ci` exists, `pids/ci` does not: creating the pids directory fails after the memory one.
        fs::create_dir_all(root.path().join("memory/ci")).expect("mkdir");
        let fs_ = CgroupFs::fake(root.path(), "5:pids:/ci\n4:memory:/ci\n0::/\n");
        let limits = Limits { memory: Some(1 << 30), pids: Some(16), cpus: None };
        let err = Cgroup::create(&fs_, "sandbox-6-c", &limits).expect_err("no pids hierarchy");
        assert!(err.path.starts_with(root.path().join("pids")), "{err:?}");
        assert!(!root.path().join("memory/ci/sandbox-6-c").exists(), "the memory directory is removed again");
    }

    #[test]
    fn dropping_the_cgroup_removes_it() {
        let root = tempfile::tempdir().expect("tempdir");
        for c in ["memory", "cpuacct"] {
            fs::create_dir_all(root.path().join(c).join("ci")).expect("mkdir");
        }
        let fs_ = CgroupFs::fake(root.path(), "4:memory:/ci\n2:cpuacct:/ci\n0::/\n");
        let cg = Cgroup::create(&fs_, "sandbox-7-d", &Limits { pids: None, memory: None, cpus: None }).expect("create");
        assert!(root.path().join("cpuacct/ci/sandbox-7-d").is_dir());
        drop(cg);
        assert!(!root.path().join("cpuacct/ci/sandbox-7-d").exists());
        assert!(!root.path().join("memory/ci/sandbox-7-d").exists());
    }

    #[test]
    fn a_sweep_looks_only_for_helpers_of_its_own_pid_namespace() {
        let ns = pid_namespace();
        assert_ne!(ns, 0);
        let name = name_for(42);
        assert_eq!(helper_of(&name, ns), Some(Some(42)), "{name}");
        assert_eq!(helper_of(&name, ns + 1), Some(None), "another namespace's");
        assert_eq!(helper_of("sandbox-7-1f", ns), Some(Some(7)), "an older version's name");
        assert_eq!(helper_of("sandbox-7-1f-zz", ns), None, "not a namespace");
        assert_eq!(helper_of("other-7", ns), None);
    }

    #[test]
    fn the_state_names_pids_only_for_a_sandbox_with_a_pids_cgroup() {
        let none = |_: &str, _: &str| None;
        assert_eq!(pids_state(&none), "");
        let some = |_: &str, file: &str| match file {
            "pids.current" => Some("3\n".to_owned()),
            "pids.max" => Some("4\n".to_owned()),
            _ => Some("max 2\n".to_owned()),
        };
        assert_eq!(pids_state(&some), "; pids 3 of 4, limit hit 2 times");
    }

    /// The twenty-second outside review: after a killed run with `--pids`, its `pids` cgroup stayed
    /// until a run with a pids limit came; runs with a memory limit alone passed it by.
    #[test]
    fn v1_sweeps_every_hierarchy_also_those_the_sandbox_does_not_use() {
        let root = tempfile::tempdir().expect("tempdir");
        for c in V1_CONTROLLERS {
            fs::create_dir_all(root.path().join(c).join("ci")).expect("mkdir");
        }
        let dead = ["pids", "cpu"].map(|c| root.path().join(c).join("ci/sandbox-999999999-dead"));
        for d in &dead {
            fs::create_dir_all(d).expect("mkdir");
        }
        let fs_ = CgroupFs::fake(root.path(), "5:pids:/ci\n4:memory:/ci\n2:cpuacct:/ci\n1:cpu:/ci\n0::/\n");
        let limits = Limits { memory: Some(1 << 30), pids: None, cpus: None };
        let _cg = Cgroup::create(&fs_, "sandbox-5-c", &limits).expect("create");
        assert!(!root.path().join("pids/ci/sandbox-5-c").exists(), "no pids cgroup without a pids limit");
        for d in &dead {
            assert!(!d.exists(), "{} is swept", d.display());
        }
    }

    #[test]
    fn v1_writes_each_controller_and_sweeps_dead_helpers() {
        let root = tempfile::tempdir().expect("tempdir");
        for c in V1_CONTROLLERS {
            fs::create_dir_all(root.path().join(c).join("ci")).expect("mkdir");
        }
        // A leftover of a helper that no longer exists (pid far above pid_max) and one of a live one.
        let dead = root.path().join("pids/ci/sandbox-999999999-dead");
        fs::create_dir_all(&dead).expect("mkdir");
        let live = root.path().join(format!("pids/ci/sandbox-{}-live", std::process::id()));
        fs::create_dir_all(&live).expect("mkdir");
        // A helper that ended and was never reaped (its parent is a PID 1 that reaps nothing).
        let mut zombie = std::process::Command::new("/bin/true").spawn().expect("spawn /bin/true");
        let zombie_pid = nix::unistd::Pid::from_raw(i32::try_from(zombie.id()).expect("pid"));
        let flags = nix::sys::wait::WaitPidFlag::WEXITED | nix::sys::wait::WaitPidFlag::WNOWAIT;
        nix::sys::wait::waitid(nix::sys::wait::Id::Pid(zombie_pid), flags).expect("waitid");
        let unreaped = root.path().join(format!("pids/ci/sandbox-{zombie_pid}-zombie"));
        fs::create_dir_all(&unreaped).expect("mkdir");
        // Another pid namespace's, whose helper cannot be looked for here: an old empty one is a
        // leftover of a namespace that died; a recent one may be a sandbox that is starting.
        let other_ns = pid_namespace() + 1;
        let (stale, recent) = (
            root.path().join(format!("pids/ci/sandbox-{}-1-{other_ns:x}", std::process::id())),
            root.path().join(format!("pids/ci/sandbox-{}-2-{other_ns:x}", std::process::id())),
        );
        for d in [&stale, &recent] {
            fs::create_dir_all(d).expect("mkdir");
        }
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        fs::File::open(&stale).and_then(|f| f.set_modified(hour_ago)).expect("age it");
        let self_cgroup = "5:pids:/ci\n4:memory:/ci\n2:cpuacct:/ci\n1:cpu:/ci\n0::/\n";
        let fs_ = CgroupFs::fake(root.path(), self_cgroup);
        let limits = Limits { memory: Some(1 << 30), pids: Some(16), cpus: Some(1.5) };
        let cg = Cgroup::create(&fs_, "sandbox-5-b", &limits).expect("create");
        assert_eq!(read(&root.path().join("memory/ci/sandbox-5-b/memory.limit_in_bytes")), (1u64 << 30).to_string());
        assert_eq!(read(&root.path().join("pids/ci/sandbox-5-b/pids.max")), "16");
        assert_eq!(read(&root.path().join("cpu/ci/sandbox-5-b/cpu.cfs_quota_us")), "150000");
        assert!(root.path().join("cpuacct/ci/sandbox-5-b").is_dir());
        assert!(!dead.exists(), "the dead helper's cgroup is swept");
        assert!(live.exists(), "a live helper's cgroup is kept");
        assert!(!unreaped.exists(), "an unreaped helper's cgroup is swept");
        zombie.wait().expect("reap");
        assert!(!stale.exists() && recent.exists(), "another namespace's: only an old empty one is swept");
        fs::write(root.path().join("cpuacct/ci/sandbox-5-b/cpuacct.usage"), "1500000000\n").expect("write");
        fs::write(
            root.path().join("memory/ci/sandbox-5-b/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .expect("write");
        let usage = cg.usage();
        assert_eq!((usage.cpu_time, usage.oom_kills), (Some(Duration::from_millis(1500)), 2));
    }
}
