//! The helper process: the re-executed binary, diverted before `main` while still single-threaded.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;

use nix::fcntl::{FcntlArg, FdFlag, OFlag};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::config::{Config, Job, Network};
use crate::plan::StepKind;
use crate::report::{Record, send};
use crate::spawn::parent::HELPER_ENV;

/// Exit code of a helper whose setup failed (the report says why).
pub(crate) const SETUP_FAILED: i32 = 125;

/// Called by the `.init_array` constructor in every process of a binary linking this crate: returns
/// at once unless this process is a sandbox helper. A helper never returns from here, except as the
/// sandbox's child process that is to run a closure: that one returns, and `main` runs the test.
pub(crate) fn enter_if_helper() {
    let Some(value) = std::env::var_os(HELPER_ENV) else { return };
    let Some((report, config)) = parse(&value.to_string_lossy()) else {
        eprintln!("sandbox helper: malformed {HELPER_ENV}");
        std::process::exit(SETUP_FAILED);
    };
    let _ = nix::fcntl::fcntl(report.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    let mut text = Vec::new();
    if std::fs::File::from(config).read_to_end(&mut text).is_err() {
        std::process::exit(SETUP_FAILED);
    }
    let Ok(config) = serde_json::from_slice::<Config>(&text) else {
        eprintln!("sandbox helper: unreadable configuration (is the parent a different build of this binary?)");
        std::process::exit(SETUP_FAILED);
    };
    // prctl(2): die with the parent, so that a killed test run leaves no sandbox behind.
    let _ = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL));
    if nix::unistd::getppid() == Pid::from_raw(1) {
        std::process::exit(SETUP_FAILED); // the parent died before prctl took effect
    }
    match &config.job {
        Job::Join { .. } => join(&config, report),
        _ => create(&config, report),
    }
}

fn parse(value: &str) -> Option<(OwnedFd, OwnedFd)> {
    let (a, b) = value.split_once(':')?;
    let report = crate::sys::adopt_fd(a.parse().ok()?)?;
    let config = crate::sys::adopt_fd(b.parse().ok()?)?;
    Some((report, config))
}

fn fail(report: &OwnedFd, kind: StepKind, what: &str, errno: nix::errno::Errno) -> ! {
    send(report, &Record::SetupFailed { kind, what: what.to_owned(), path: None, errno: errno as i32 });
    std::process::exit(SETUP_FAILED);
}

/// A new sandbox: new namespaces, init as PID 1 in them.
fn create(config: &Config, report: OwnedFd) {
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWCGROUP;
    if config.network != Network::Host {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if config.user_namespace {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    // unshare(2) of a user namespace needs a single-threaded caller: we run before main, so we are.
    if let Err(e) = nix::sched::unshare(flags) {
        fail(&report, StepKind::Namespaces, "create the namespaces (unshare)", e);
    }
    let (status_r, status_w) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => fail(&report, StepKind::Helper, "create the status pipe", e),
    };
    // The first child after unshare(CLONE_NEWPID) is PID 1 of the new namespace.
    match crate::sys::fork() {
        Err(e) => fail(&report, StepKind::Helper, "fork the sandbox's init", e),
        Ok(ForkResult::Child) => {
            drop(status_r);
            if super::init::run(config, report, status_w) {
                return; // the closure's child process, on its way to main
            }
            std::process::exit(0);
        }
        Ok(ForkResult::Parent { child }) => {
            drop(status_w);
            send(&report, &Record::Init { pid: child.as_raw() });
            let outcome = read_status(status_r);
            let init = waitpid(child, None);
            finish(&report, outcome, init);
        }
    }
}

/// A command in a running session: enter the namespaces of its init, fork the program into them.
fn join(config: &Config, report: OwnedFd) {
    let Job::Join { init_pid, .. } = &config.job else { return };
    let mut order = vec!["cgroup", "ipc", "uts", "net", "pid", "mnt"];
    if config.user_namespace {
        // setns(2): enter the user namespace first, to gain the capabilities the others require.
        order.insert(0, "user");
    }
    for ns in order {
        if ns == "net" && config.network == Network::Host {
            continue;
        }
        let path = format!("/proc/{init_pid}/ns/{ns}");
        let fd = match nix::fcntl::open(path.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()) {
            Ok(fd) => fd,
            Err(e) => fail(&report, StepKind::Namespaces, "open a namespace of the session (has it ended?)", e),
        };
        if let Err(e) = nix::sched::setns(fd, CloneFlags::empty()) {
            fail(&report, StepKind::Namespaces, "enter a namespace of the session (setns)", e);
        }
    }
    // setns(CLONE_NEWNS) leaves the working directory outside the new root.
    let _ = nix::unistd::chdir("/");
    let (exec_r, exec_w) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => fail(&report, StepKind::Helper, "create the exec pipe", e),
    };
    match crate::sys::fork() {
        Err(e) => fail(&report, StepKind::Helper, "fork into the session", e),
        Ok(ForkResult::Child) => {
            drop(exec_r);
            let _ = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL));
            super::child::run(config, &report, exec_w);
            std::process::exit(127);
        }
        Ok(ForkResult::Parent { child }) => {
            drop(exec_w);
            super::child::await_exec(exec_r, &report, &config.job);
            let raw = waitpid(child, None).map(raw_status).unwrap_or(0);
            finish(&report, Some((raw, false)), Ok(WaitStatus::Exited(child, 0)));
        }
    }
}

/// The program's raw wait status and whether the deadline killed it, as init sent it.
fn read_status(fd: OwnedFd) -> Option<(i32, bool)> {
    let mut buf = [0u8; 5];
    std::fs::File::from(fd).read_exact(&mut buf).ok()?;
    Some((i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]), buf[4] != 0))
}

/// Reports the outcome to the parent and ends the helper with the program's status.
fn finish(report: &OwnedFd, outcome: Option<(i32, bool)>, init: nix::Result<WaitStatus>) -> ! {
    let Some((status, timed_out)) = outcome else {
        // Init died without a word: its setup failed (and said so), or it was killed from outside.
        let code = match init {
            Ok(WaitStatus::Exited(_, c)) if c != 0 => SETUP_FAILED,
            _ => 137,
        };
        std::process::exit(code);
    };
    send(report, &Record::Exited { status, timed_out });
    let status = std::process::ExitStatus::from_raw(status);
    match (status.code(), status.signal()) {
        (Some(code), _) => std::process::exit(code),
        (None, Some(sig)) => crate::sys::die_by_signal(sig),
        _ => std::process::exit(SETUP_FAILED),
    }
}

/// The raw wait(2) status of a process, as `ExitStatus::from_raw` reads it.
pub(crate) fn raw_status(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => (code & 0xff) << 8,
        WaitStatus::Signaled(_, sig, core) => (sig as i32) | if core { 0x80 } else { 0 },
        _ => 0,
    }
}
