//! The helper process: the re-executed binary, diverted before `main` while still single-threaded.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;

use nix::fcntl::{FcntlArg, FdFlag, OFlag};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::config::{Config, Job, NetMode};
use crate::report::StepKind;
use crate::report::{Record, send};
use crate::spawn::parent::HELPER_ENV;
use crate::sys::SingleThreaded;

/// Exit code of a helper whose setup failed (the report says why).
pub(crate) const SETUP_FAILED: i32 = 125;

/// Called by the `.init_array` constructor in every process of a binary linking this crate: returns
/// at once unless this process is a sandbox helper. A helper never returns from here, except as the
/// sandbox's child process that is to run a closure: that one returns, and `main` runs the test.
pub(crate) fn enter_if_helper(t: SingleThreaded) {
    let Some(value) = std::env::var_os(HELPER_ENV) else { return };
    let Some([report, config, kill]) = parse(t, &value.to_string_lossy()) else {
        eprintln!("sandbox helper: malformed {HELPER_ENV}");
        std::process::exit(SETUP_FAILED);
    };
    run(t, report, config, kill);
}

/// The helper's work, whether it was executed by the parent or forked by the fork server: read the
/// configuration, then create a sandbox or join a session. `kill` is the read end of the parent's kill
/// pipe: when the parent closes its end (or dies), the sandbox is torn down.
pub(crate) fn run(t: SingleThreaded, report: OwnedFd, config: OwnedFd, kill: OwnedFd) {
    for fd in [&report, &kill] {
        let _ = nix::fcntl::fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
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
        Job::Join { .. } => join(t, &config, report, kill),
        Job::Switch => switch_holder(report, kill),
        _ => create(t, &config, report, kill),
    }
}

fn parse(t: SingleThreaded, value: &str) -> Option<[OwnedFd; 3]> {
    let mut fds = value.split(':').map(|n| n.parse().ok().and_then(|n| crate::sys::adopt_fd(t, n)));
    let r = [fds.next()??, fds.next()??, fds.next()??];
    fds.next().is_none().then_some(r)
}

/// Reports that no cgroup could be had for the limits, and ends the helper.
fn fail_limits(report: &OwnedFd, u: &crate::cgroups::Unusable) -> ! {
    send(
        report,
        &Record::SetupFailed {
            kind: StepKind::Limits,
            what: format!("{} a cgroup for the resource limits", u.what),
            path: Some(u.path.display().to_string()),
            errno: u.errno,
        },
    );
    std::process::exit(SETUP_FAILED);
}

/// A close-on-exec pipe, or the helper's end with a report naming `what`.
fn pipe_or_fail(report: &OwnedFd, what: &str) -> (OwnedFd, OwnedFd) {
    match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => fail(report, StepKind::Helper, what, e),
    }
}

fn fail(report: &OwnedFd, kind: StepKind, what: &str, errno: nix::errno::Errno) -> ! {
    send(report, &Record::SetupFailed { kind, what: what.to_owned(), path: None, errno: errno as i32 });
    std::process::exit(SETUP_FAILED);
}

/// Blocks SIGCHLD (which the helper waits for through a signalfd) before it forks, so that a child
/// that ends at once is not missed; returns the mask to restore in the forked process.
fn block_wait_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    let mut old = SigSet::empty();
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old));
    old
}

fn restore_mask(mask: &nix::sys::signal::SigSet) {
    let _ = nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(mask), None);
}

/// Holds a switch: a network namespace of its own with `lo` and a bridge `br0`, up; ends when the
/// parent closes the kill pipe.
fn switch_holder(report: OwnedFd, kill: OwnedFd) {
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWNET) {
        fail(&report, StepKind::Network, "create the switch's network namespace (unshare)", e);
    }
    use crate::sys::Sys as _;
    let bridge =
        crate::netlink::socket_here().and_then(|s| crate::netlink::request(&s, &crate::netlink::bridge_msg("br0")));
    if let Err(e) = bridge.and_then(|()| crate::sys::Kernel.loopback_up()) {
        fail(&report, StepKind::Network, "create the switch's bridge (rtnetlink)", e);
    }
    send(&report, &Record::Init { pid: std::process::id() as i32 });
    send(&report, &Record::Ready);
    drop(report);
    // Until the parent closes its end (or dies, and with it the pipe).
    let mut byte = [0u8; 1];
    let _ = std::fs::File::from(kill).read(&mut byte);
    std::process::exit(0);
}

/// Sockets in the switch's network namespace, opened while still in the host's: a netlink socket and
/// the bridge's index, and the namespace itself (where the veth's peer is created).
struct SwitchAccess {
    netns: OwnedFd,
    netlink: OwnedFd,
    bridge: u32,
}

fn open_switch(member: &crate::config::SwitchMember) -> Result<SwitchAccess, (&'static str, nix::errno::Errno)> {
    let open = |p: &str| nix::fcntl::open(p, OFlag::O_RDONLY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty());
    let netns = open(&format!("/proc/{}/ns/net", member.holder))
        .map_err(|e| ("open the switch's network namespace (is the Net dropped?)", e))?;
    let home = open("/proc/self/ns/net").map_err(|e| ("open the host's network namespace", e))?;
    // setns(2) here, single-threaded and before unshare: a netlink socket acts in the namespace it
    // was made in, whatever namespace its owner moves to.
    nix::sched::setns(&netns, CloneFlags::CLONE_NEWNET).map_err(|e| ("enter the switch's network namespace", e))?;
    let made = crate::netlink::socket_here().and_then(|s| crate::sys::if_index("br0").map(|i| (s, i)));
    nix::sched::setns(&home, CloneFlags::CLONE_NEWNET).map_err(|e| ("return to the host's network namespace", e))?;
    let (netlink, bridge) = made.map_err(|e| ("find the switch's bridge", e))?;
    Ok(SwitchAccess { netns, netlink, bridge })
}

/// Plugs this (new) network namespace into the switch: `eth0` here, its peer in the bridge.
fn plug_in(
    member: &crate::config::SwitchMember,
    switch: &SwitchAccess,
) -> Result<(), (&'static str, nix::errno::Errno)> {
    use std::os::fd::AsRawFd;
    let here = crate::netlink::socket_here().map_err(|e| ("open a netlink socket in the sandbox", e))?;
    crate::netlink::request(&here, &crate::netlink::veth_msg("eth0", &member.peer, switch.netns.as_raw_fd()))
        .map_err(|e| ("create the sandbox's veth pair (rtnetlink)", e))?;
    crate::netlink::request(&switch.netlink, &crate::netlink::enslave_msg(&member.peer, switch.bridge))
        .map_err(|e| ("plug the veth into the switch's bridge (rtnetlink)", e))?;
    crate::sys::if_address_up("eth0", member.address, 24).map_err(|e| ("address eth0", e))
}

/// A new sandbox: new namespaces, init as PID 1 in them.
fn create(t: SingleThreaded, config: &Config, report: OwnedFd, kill: OwnedFd) {
    // Not CLONE_NEWNS nor CLONE_NEWCGROUP: init makes those (see init_entry), so that the helper keeps
    // the host's view of the filesystem (pivot_root re-roots every process of a mount namespace) and
    // stays outside the sandbox's cgroup, which it must read and remove when the sandbox ends.
    let mut flags = CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWPID;
    if config.network.own_namespace() {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if config.user_namespace {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    // Limits: the cgroup is made now; init is moved into it before it does anything (see below), so
    // that every process of the sandbox, and only those, are accounted and limited.
    let cgroup = if config.limits.any() {
        let fs = crate::cgroups::CgroupFs::host();
        let made = crate::cgroups::Cgroup::create(&fs, &crate::cgroups::name_for(std::process::id()), &config.limits);
        match made {
            Ok(cg) => Some(cg),
            Err(u) => {
                fail_limits(&report, &u);
            }
        }
    } else {
        None
    };
    let switch = match &config.network {
        NetMode::Switch(member) => match open_switch(member) {
            Ok(access) => Some((member, access)),
            Err((what, e)) => fail(&report, StepKind::Network, what, e),
        },
        _ => None,
    };
    // unshare(2) of a user namespace needs a single-threaded caller: we run before main, so we are.
    if let Err(e) = nix::sched::unshare(flags) {
        fail(&report, StepKind::Namespaces, "create the namespaces (unshare)", e);
    }
    if let Some((member, access)) = switch
        && let Err((what, e)) = plug_in(member, &access)
    {
        fail(&report, StepKind::Network, what, e);
    }
    let (status_r, status_w) = pipe_or_fail(&report, "create the status pipe");
    // With limits, init waits until the helper has moved it into the cgroup.
    let start = cgroup.as_ref().map(|_| pipe_or_fail(&report, "create the start pipe"));
    let mask = block_wait_signals();
    // The first child after unshare(CLONE_NEWPID) is PID 1 of the new namespace.
    match crate::sys::fork(t) {
        Err(e) => fail(&report, StepKind::Helper, "fork the sandbox's init", e),
        Ok(ForkResult::Child) => {
            restore_mask(&mask);
            drop(status_r);
            if let Some((go_r, go_w)) = start {
                drop(go_w);
                // Wait until the helper has put us in the sandbox's cgroup (EOF: it died; so do we).
                let mut go = [0u8; 1];
                if !matches!(std::fs::File::from(go_r).read(&mut go), Ok(1)) {
                    std::process::exit(SETUP_FAILED);
                }
            }
            // cgroup_namespaces(7): the namespace's root is the cgroup we are in now.
            if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP) {
                fail(&report, StepKind::Namespaces, "create the cgroup namespace (unshare)", e);
            }
            if super::init::run(t, config, report, status_w) {
                return; // the closure's child process, on its way to main
            }
            std::process::exit(0);
        }
        Ok(ForkResult::Parent { child }) => {
            drop(status_w);
            let go = start.map(|(go_r, go_w)| {
                drop(go_r);
                go_w
            });
            if let Some(cg) = &cgroup
                && let Err(u) = cg.add(child.as_raw() as u32)
            {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                if let Some(cg) = cgroup {
                    cg.remove();
                }
                fail_limits(&report, &u);
            }
            if cgroup.is_some() {
                // proc(5): init must not be the OOM killer's choice: the program's processes must. Only
                // root may lower the score; rootless, a killed init is still reported (see finish).
                let _ = std::fs::write(format!("/proc/{child}/oom_score_adj"), "-1000");
            }
            if let Some(go_w) = go {
                let _ = std::io::Write::write_all(&mut std::fs::File::from(go_w), b"g");
            }
            send(&report, &Record::Init { pid: child.as_raw() });
            // `_mount_ns` lives until finish() ends the process: after the report.
            let (outcome, init, _mount_ns) = wait_for(child, Some(status_r), &kill);
            if let Some(cg) = cgroup {
                send(&report, &Record::Usage(cg.usage()));
                cg.remove();
            }
            finish(&report, outcome, init);
        }
    }
}

/// A command in a running session: enter the namespaces of its init, fork the program into them.
fn join(t: SingleThreaded, config: &Config, report: OwnedFd, kill: OwnedFd) {
    let Job::Join { init_pid, .. } = &config.job else { return };
    // The session's cgroup, opened while the host's /sys is still in view: the command's process joins
    // it below, so that the session's limits cover its commands too.
    let cgroup_procs = if config.limits.any() {
        match crate::cgroups::procs_files_of(*init_pid) {
            Ok(files) => files,
            Err(u) => fail_limits(&report, &u),
        }
    } else {
        Vec::new()
    };
    let mut order = vec!["cgroup", "ipc", "uts", "net", "pid", "mnt"];
    if config.user_namespace {
        // setns(2): enter the user namespace first, to gain the capabilities the others require.
        order.insert(0, "user");
    }
    for ns in order {
        if ns == "net" && !config.network.own_namespace() {
            continue;
        }
        let path = format!("/proc/{init_pid}/ns/{ns}");
        let fd =
            match nix::fcntl::open(path.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()) {
                Ok(fd) => fd,
                Err(e) => fail(&report, StepKind::Namespaces, "open a namespace of the session (has it ended?)", e),
            };
        if let Err(e) = nix::sched::setns(fd, CloneFlags::empty()) {
            fail(&report, StepKind::Namespaces, "enter a namespace of the session (setns)", e);
        }
    }
    // setns(CLONE_NEWNS) leaves the working directory outside the new root.
    let _ = nix::unistd::chdir("/");
    let (exec_r, exec_w) = pipe_or_fail(&report, "create the exec pipe");
    let mask = block_wait_signals();
    match crate::sys::fork(t) {
        Err(e) => fail(&report, StepKind::Helper, "fork into the session", e),
        Ok(ForkResult::Child) => {
            restore_mask(&mask);
            drop(exec_r);
            let _ = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL));
            for mut procs in cgroup_procs {
                // cgroups(7): writing 0 to cgroup.procs moves the writing process.
                if let Err(e) = std::io::Write::write_all(&mut procs, b"0") {
                    let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
                    fail(&report, StepKind::Limits, "join the session's cgroup", errno);
                }
            }
            super::child::run(t, config, &report, exec_w);
            std::process::exit(127);
        }
        Ok(ForkResult::Parent { child }) => {
            drop(exec_w);
            super::child::await_exec(exec_r, &report, &config.job);
            let (outcome, status, _) = wait_for(child, None, &kill);
            let raw = outcome.map_or_else(|| status.map(raw_status).unwrap_or(0), |(raw, _)| raw);
            finish(&report, Some((raw, false)), Ok(WaitStatus::Exited(child, 0)));
        }
    }
}

/// Waits for `child` (init, or a session command's process), and for init's status message if
/// `status` is given. When the parent closes its end of the kill pipe (`Child::kill`, a drop, or its
/// death), `child` is killed first: init is only reaped once its whole pid namespace is gone, so the
/// parent's `wait` returns after the last process of the sandbox has died.
fn wait_for(
    child: Pid,
    status: Option<OwnedFd>,
    kill: &OwnedFd,
) -> (Option<(i32, bool)>, nix::Result<WaitStatus>, Option<OwnedFd>) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::signal::SigSet;
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    use nix::sys::wait::WaitPidFlag;

    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    // SIGCHLD was blocked before the fork (block_wait_signals).
    let signals = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ok();
    let mut message = Vec::new();
    let mut status_file = status.map(std::fs::File::from);
    // Init's mount namespace, held so that its teardown happens at our exit, after the report.
    let mut mount_ns: Option<OwnedFd> = None;
    let mut killed = false;
    let waited = loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => {}
            other => break other,
        }
        let Some(signals) = &signals else {
            // No signalfd: plain blocking wait, without the kill-pipe teardown.
            break waitpid(child, None);
        };
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if !killed {
            fds.push(PollFd::new(kill.as_fd(), PollFlags::POLLIN));
        }
        let status_at = fds.len();
        if let Some(f) = &status_file {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        let ready = |i: usize| fds.get(i).is_some_and(|f| f.revents().is_some_and(|r| !r.is_empty()));
        let (kill_ready, status_ready) = (!killed && ready(1), status_file.is_some() && ready(status_at));
        while let Ok(Some(_)) = signals.read_signal() {}
        if kill_ready {
            killed = true;
            let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        }
        if status_ready && let Some(f) = &mut status_file {
            let mut buf = [0u8; 16];
            match f.read(&mut buf) {
                Ok(0) | Err(_) => status_file = None,
                Ok(n) => message.extend_from_slice(&buf[..n]),
            }
            if mount_ns.is_none() && message.starts_with(super::init::MOUNT_NAMESPACE_READY) {
                message.drain(..super::init::MOUNT_NAMESPACE_READY.len());
                mount_ns = nix::fcntl::open(
                    format!("/proc/{child}/ns/mnt").as_str(),
                    OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .ok();
            }
        }
    };
    // Init writes its message before it exits: whatever is left is in the pipe now.
    if let Some(mut f) = status_file {
        let _ = f.read_to_end(&mut message);
    }
    if message.starts_with(super::init::MOUNT_NAMESPACE_READY) {
        message.drain(..super::init::MOUNT_NAMESPACE_READY.len());
    }
    let outcome = match message.as_slice() {
        [a, b, c, d, t, ..] => Some((i32::from_ne_bytes([*a, *b, *c, *d]), *t != 0)),
        _ if killed => Some((Signal::SIGKILL as i32, false)),
        _ => None,
    };
    (outcome, waited, mount_ns)
}

/// Reports the outcome to the parent and ends the helper with the program's status.
fn finish(report: &OwnedFd, outcome: Option<(i32, bool)>, init: nix::Result<WaitStatus>) -> ! {
    let (status, timed_out) = match (outcome, init) {
        (Some(o), _) => o,
        // Init died without a word because its setup failed (and said so).
        (None, Ok(WaitStatus::Exited(_, c))) if c != 0 => std::process::exit(SETUP_FAILED),
        // Init was killed (the OOM killer, or from outside): so was everything in the sandbox. Report
        // that as the program's end, so that the caller sees a SIGKILL (and the usage's OOM kills).
        (None, Ok(s @ WaitStatus::Signaled(..))) => (raw_status(s), false),
        (None, _) => std::process::exit(137),
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
