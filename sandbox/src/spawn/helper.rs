//! The helper process: the re-executed binary, diverted before `main` while still single-threaded.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::cgroups::{Cgroup, CgroupFs, Unusable};
use crate::config::{Config, Job, NetMode};
use crate::network::switch;
use crate::report::{Decoder, Record, StepKind, send, send_setup_failed};
use crate::spawn::parent::HELPER_ENV;
use crate::sys::SingleThreaded;

/// Exit code of a helper whose setup failed (the report says why).
pub(crate) const SETUP_FAILED: i32 = 125;

/// Called by the `.init_array` constructor in every process of a binary linking this crate: returns
/// at once unless this process is a sandbox helper, which never returns from here.
pub(crate) fn enter_if_helper(t: SingleThreaded) {
    let Some(value) = std::env::var_os(HELPER_ENV) else { return };
    let Some([report, config, kill]) = parse(t, &value.to_string_lossy()) else {
        eprintln!("sandbox helper: malformed {HELPER_ENV}");
        crate::sys::exit_now(SETUP_FAILED);
    };
    run(t, report, config, kill);
}

/// The helper's work, whether it was executed by the parent or forked by the fork server: read the
/// configuration, then create a sandbox or join a session. `kill` is the read end of the parent's kill
/// pipe: when the parent closes its end (or dies), the sandbox is torn down.
pub(crate) fn run(t: SingleThreaded, report: OwnedFd, config: OwnedFd, kill: OwnedFd) {
    block_forwarded_signals();
    for fd in [&report, &kill] {
        let _ = nix::fcntl::fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    let mut text = Vec::new();
    if std::fs::File::from(config).read_to_end(&mut text).is_err() {
        crate::sys::exit_now(SETUP_FAILED);
    }
    let Ok(config) = serde_json::from_slice::<Config>(&text) else {
        eprintln!("sandbox helper: unreadable configuration (is the parent a different build of this binary?)");
        crate::sys::exit_now(SETUP_FAILED);
    };
    // prctl(2): die with the parent, so that a killed test run leaves no sandbox behind.
    let _ = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL));
    if nix::unistd::getppid() == Pid::from_raw(1) {
        crate::sys::exit_now(SETUP_FAILED); // the parent died before prctl took effect
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
fn fail_limits(report: &OwnedFd, u: &Unusable) -> ! {
    send(
        report,
        &Record::SetupFailed {
            kind: StepKind::Limits,
            what: format!("{} a cgroup for the resource limits", u.what),
            path: Some(u.path.display().to_string()),
            errno: u.errno,
        },
    );
    crate::sys::exit_now(SETUP_FAILED);
}

/// A failed step of the helper's: its kind, what was done, the kernel's answer.
type StepError = (StepKind, &'static str, Errno);

fn fail(report: &OwnedFd, (kind, what, errno): StepError) -> ! {
    send_setup_failed(report, kind, what, errno);
    crate::sys::exit_now(SETUP_FAILED);
}

fn pipe(what: &'static str) -> Result<(OwnedFd, OwnedFd), StepError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| (StepKind::Helper, what, e))
}

/// The host's /dev/null, which the helper (and init) hold the program's stdio as while it runs
/// (crate::sys::let_go_of_stdio).
fn host_null() -> Result<OwnedFd, StepError> {
    nix::fcntl::open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
        .map_err(|e| (StepKind::Helper, "open /dev/null", e))
}

/// The signals the helper passes on to what it waits for (init, which passes them on to the
/// program; a session command's process), as a container runtime does: sent to the helper's pid
/// (`Child::id`, a runner's SIGTERM), they reach the program, whose handlers run.
const FORWARDED: [Signal; 6] =
    [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

/// [`FORWARDED`], as a set.
fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for sig in FORWARDED {
        set.add(sig);
    }
    set
}

/// Blocks the signals the helper forwards, so that they wait (pending) until it does.
fn block_forwarded_signals() {
    let _ = nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&forwarded_signals()), None);
}

/// Blocks SIGCHLD (which the helper waits for through a signalfd) before it forks, so that a child
/// that ends at once is not missed; returns the mask to restore in the forked process (without the
/// forwarded signals, which the helper alone blocks).
fn block_wait_signals() -> SigSet {
    use nix::sys::signal::{SigmaskHow, sigprocmask};
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    let mut old = SigSet::empty();
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old));
    for sig in FORWARDED {
        old.remove(sig);
    }
    old
}

fn restore_mask(mask: &SigSet) {
    let _ = nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(mask), None);
}

/// Holds a switch network until the parent closes the kill pipe.
fn switch_holder(report: OwnedFd, kill: OwnedFd) {
    if let Err((what, e)) = switch::create_bridge() {
        fail(&report, (StepKind::Network, what, e));
    }
    send(&report, &Record::Init { pid: std::process::id() as i32 });
    send(&report, &Record::Ready);
    drop(report);
    // Until the parent closes its end (or dies, and with it the pipe).
    let mut byte = [0u8; 1];
    let _ = std::fs::File::from(kill).read(&mut byte);
    crate::sys::exit_now(0);
}

/// Where a fork of the sandbox's init left this process.
enum Forked {
    /// In init: its end of the status pipe, and of the start pipe (limits only).
    Init { status: OwnedFd, start: Option<OwnedFd> },
    /// In the helper: init's pid and the other ends.
    Helper { init: Pid, status: OwnedFd, start: Option<OwnedFd> },
}

/// The steps between the cgroup and init: open the switch, create the namespaces, plug in, make the
/// pipes, fork. Any failure returns, so that the caller removes the cgroup before it reports.
/// Privileged, where the network namespace is made in the background: a holder is started after the
/// other namespaces exist (it makes the network namespace in this process's user namespace, a new one
/// rootless), and left in `network`, its descriptors in `config` for init.
fn fork_init(
    t: SingleThreaded,
    config: &mut Config,
    network: &mut Option<super::netns::Background>,
    with_start_pipe: bool,
) -> Result<Forked, StepError> {
    // Not CLONE_NEWNS nor CLONE_NEWCGROUP: init makes those (see below and the plan), so that the
    // helper keeps the host's view of the filesystem (pivot_root re-roots every process of a mount
    // namespace) and stays outside the sandbox's cgroup, which it must read and remove at the end.
    let mut flags = CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWPID;
    if config.network.own_namespace() {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if config.user_namespace {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    if config.security.userns_fd.is_some() {
        // The helper is in the program's UTS, IPC and network namespaces already (spawn::userns).
        flags = CloneFlags::CLONE_NEWPID;
    }
    let in_background = config.security.privileged && super::netns::in_background(config);
    if in_background {
        flags.remove(CloneFlags::CLONE_NEWNET);
    }
    let switch = match &config.network {
        NetMode::Switch(member) => {
            Some((member, switch::open_switch(member).map_err(|(what, e)| (StepKind::Network, what, e))?))
        }
        _ => None,
    };
    // unshare(2) of a user namespace needs a single-threaded caller: we run before main, so we are.
    if in_background {
        // The holder before the pid namespace: the first process forked after that is its PID 1.
        flags.remove(CloneFlags::CLONE_NEWPID);
        nix::sched::unshare(flags).map_err(|e| (StepKind::Namespaces, "create the namespaces (unshare)", e))?;
        let (holder, made) =
            super::netns::start(CloneFlags::empty()).map_err(|(what, e)| (StepKind::Namespaces, what, e))?;
        holder.leave_running();
        config.network_in_background = Some(made.for_init());
        *network = Some(made);
        flags = CloneFlags::CLONE_NEWPID;
    }
    nix::sched::unshare(flags).map_err(|e| (StepKind::Namespaces, "create the namespaces (unshare)", e))?;
    if let Some((member, access)) = switch {
        switch::plug_in(member, &access).map_err(|(what, e)| (StepKind::Network, what, e))?;
    }
    let (status_r, status_w) = pipe("create the status pipe")?;
    // With limits, init waits until the helper has moved it into the cgroup.
    let start = if with_start_pipe { Some(pipe("create the start pipe")?) } else { None };
    let mask = block_wait_signals();
    // The first child after unshare(CLONE_NEWPID) is PID 1 of the new namespace.
    match crate::sys::fork(t).map_err(|e| (StepKind::Helper, "fork the sandbox's init", e))? {
        ForkResult::Child => {
            restore_mask(&mask);
            Ok(Forked::Init { status: status_w, start: start.map(|(r, _)| r) })
        }
        ForkResult::Parent { child } => {
            Ok(Forked::Helper { init: child, status: status_r, start: start.map(|(_, w)| w) })
        }
    }
}

/// How long after the sandbox's deadline the helper kills init itself, if init has not ended the
/// sandbox (the program stopped it with ptrace, or it hangs). Long enough for init to report what
/// the sandbox was running on a slow machine (200 ms was not, in the VM lane's emulated guest).
const HELPER_DEADLINE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The program's user namespace (issue 9), unless privileged: root of a user namespace of its own (an
/// unprivileged id range as root; rootless, nested in a setup namespace where the caller is root),
/// which owns its UTS, IPC and network namespaces; init builds the mounts first and enters it last
/// (spawn::userns).
fn program_namespaces(t: SingleThreaded, config: &Config) -> Result<Option<ProgramNamespaces>, StepError> {
    use super::userns::ProgramNet;
    if config.security.privileged {
        return Ok(None);
    }
    let net = match config.network.own_namespace() {
        false => ProgramNet::Host,
        true if super::netns::in_background(config) => ProgramNet::Background,
        true => ProgramNet::Now,
    };
    let made = if config.outer_uid == 0 {
        let map = super::userns::id_map(&[(0, config.security.id_base, crate::hardening::ID_COUNT)]);
        let owner = Some(crate::hardening::namespace_owner(std::process::id()));
        super::userns::create_program_namespaces([map.clone(), map], net, owner)
    } else {
        // The program's stdio: the helper's own, which it hands on.
        let (i, o, e) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
        let stdio = [i.as_fd(), o.as_fd(), e.as_fd()];
        let subordinate = super::subids::allowed(config, stdio);
        super::userns::enter_setup_namespace(t, config.outer_uid, config.outer_gid, subordinate)
            .and_then(|maps| super::userns::create_program_namespaces(maps, net, None))
    };
    made.map(Some).map_err(|(what, e)| (StepKind::Namespaces, what, e))
}

/// The program's user namespace, and its network namespace if in the making.
type ProgramNamespaces = (OwnedFd, Option<super::netns::Background>);

/// As root with a read-write volume bound id-mapped: the user namespace that mapping uses, where only
/// root is mapped (root inside writes as the host's root; files of other host users show as nobody's
/// and cannot be given to anyone), and the filter that refuses setuid and setgid bits and extended
/// attributes (crate::seccomp): a file there would be setuid-root on the host. Read-only volumes keep
/// the program's whole range (their owners show as they are).
fn volume_namespace(c: &mut Config) -> Result<Option<OwnedFd>, StepError> {
    use std::os::fd::AsRawFd;
    if !c.security.no_setid(c.outer_uid, &c.mounts) {
        return Ok(None);
    }
    if let Err(e) = crate::seccomp::for_sandbox(true) {
        tracing::error!(%e, "no seccomp filter");
        return Err((StepKind::Security, "compile the seccomp filter", Errno::EINVAL));
    }
    let ns =
        super::userns::create_idmap_namespace(c.security.id_base).map_err(|(what, e)| (StepKind::Volume, what, e))?;
    c.security.volume_userns_fd = Some(ns.as_raw_fd());
    Ok(Some(ns))
}

/// A new sandbox: new namespaces, init as PID 1 in them.
fn create(t: SingleThreaded, config: &Config, report: OwnedFd, kill: OwnedFd) {
    // Compiled here, before the forks, so that the program's process only installs it.
    if !config.security.privileged
        && let Err(e) = crate::seccomp::shared()
    {
        tracing::error!(%e, "no seccomp filter");
        fail(&report, (StepKind::Security, "compile the seccomp filter", Errno::EINVAL));
    }
    // Limits: the cgroup is made first; init is moved into it before it does anything (see below),
    // so that every process of the sandbox, and only those, are accounted and limited. Every failure
    // from here on drops it, which removes it.
    let cgroup = if config.limits.any() {
        match Cgroup::create(&CgroupFs::host(), &crate::cgroups::name_for(std::process::id()), &config.limits) {
            Ok(cg) => Some(cg),
            Err(u) => fail_limits(&report, &u),
        }
    } else {
        None
    };
    let (userns, mut network) = match program_namespaces(t, config) {
        Ok(Some((userns, network))) => (Some(userns), network),
        Ok(None) => (None, None),
        Err(step) => {
            drop(cgroup);
            fail(&report, step);
        }
    };
    let mut config = config.clone();
    config.network_in_background = network.as_ref().map(super::netns::Background::for_init);
    // Held until init is forked (it inherits the descriptor): see `volume_namespace`.
    let mut volume_ns = None;
    if let Some(fd) = &userns {
        use std::os::fd::AsRawFd;
        config.security.userns_fd = Some(fd.as_raw_fd());
        // The volumes' namespace first: adapt makes each id-mapped tree through the namespace it will
        // be shown through.
        let made = match volume_namespace(&mut config) {
            Ok(ns) => super::idmap::adapt(&mut config, fd.as_raw_fd()).map(|()| ns).map_err(|f| {
                crate::report::send_failure(&report, &f);
            }),
            Err(step) => {
                send_setup_failed(&report, step.0, step.1, step.2);
                Err(())
            }
        };
        match made {
            Ok(ns) => volume_ns = ns,
            Err(()) => {
                drop(cgroup);
                crate::sys::exit_now(SETUP_FAILED);
            }
        }
    }
    // The deadline counts from here: what came before is paid once (a shifted copy of the rootfs), and
    // init's setup is the sandbox's own time. None where the clock cannot count that far.
    let deadline = config.timeout.and_then(|t| std::time::Instant::now().checked_add(t));
    // Init becomes unreachable (not dumpable) before it starts the program; first the helper must
    // hold what it needs of init (crate::spawn::init): rootless, it could not open init's /proc
    // files afterwards, and a session's commands join through what it holds.
    let hold_first = !config.security.privileged && (config.outer_uid != 0 || matches!(config.job, Job::Session));
    // The host's /dev/null, which init and the helper hold the program's stdio as once it runs.
    let null = match host_null() {
        Ok(fd) => fd,
        Err(step) => {
            drop(cgroup);
            fail(&report, step);
        }
    };
    let forked = match fork_init(t, &mut config, &mut network, cgroup.is_some() || hold_first) {
        Ok(f) => f,
        Err(step) => {
            drop(cgroup);
            fail(&report, step);
        }
    };
    let config = &config;
    let holder = network.as_ref().map(|n| n.pid);
    if matches!(forked, Forked::Helper { .. }) {
        drop(volume_ns);
        // Init has its own copies of the id-mapped trees; it attaches them.
        crate::sys::hardening::drop_prepared();
    }
    let (init, status, start) = match forked {
        Forked::Init { status, start } => {
            // Die with the helper (and so with the caller above it), also if it died before this was
            // set: then nobody reads the status pipe any more.
            let _ = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL));
            if crate::sys::reader_gone(&status) {
                crate::sys::exit_now(SETUP_FAILED);
            }
            crate::sys::show_as(t, "sandbox-init");
            if let Some(network) = network {
                network.keep_for_init();
            }
            let limited = cgroup.is_some();
            // The cgroup is the helper's to remove: this copy must never do it.
            std::mem::forget(cgroup);
            let mut start = start.map(std::fs::File::from);
            if let Some(go) = &mut start
                && limited
            {
                // Wait until the helper has put us in the sandbox's cgroup (EOF: it died; so do we).
                let mut byte = [0u8; 1];
                if !matches!(go.read(&mut byte), Ok(1)) {
                    crate::sys::exit_now(SETUP_FAILED);
                }
            }
            // cgroup_namespaces(7): the namespace's root is the cgroup we are in now.
            if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP) {
                fail(&report, (StepKind::Namespaces, "create the cgroup namespace (unshare)", e));
            }
            let held = start.filter(|_| hold_first).map(OwnedFd::from);
            super::init::run(t, config, report, status, held, null, deadline);
        }
        Forked::Helper { init, status, start } => {
            // Init has its own copies of the network namespace's descriptors.
            drop(network);
            (init, status, start)
        }
    };
    crate::sys::let_go_of_stdio(&null);
    if let Some(cg) = &cgroup
        && let Err(u) = cg.add(init.as_raw() as u32)
    {
        let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
        let _ = waitpid(init, None);
        drop(cgroup);
        fail_limits(&report, &u);
    }
    if cgroup.as_ref().is_some_and(crate::cgroups::Cgroup::shields_init_from_oom) {
        // proc(5): on v1, init must not be the OOM killer's choice: the program's processes must.
        // Only root may lower the score; rootless, a killed init is still reported (see `ended`).
        let _ = std::fs::write(format!("/proc/{init}/oom_score_adj"), "-1000");
    }
    let mut start = start.map(std::fs::File::from);
    if let Some(go) = &mut start
        && cgroup.is_some()
    {
        let _ = std::io::Write::write_all(go, b"g");
    }
    send(&report, &Record::Init { pid: init.as_raw() });
    // The deadline, enforced from out here too: init enforces it, unless the program stopped it.
    let deadline = deadline.and_then(|d| d.checked_add(HELPER_DEADLINE_GRACE));
    // `mount_ns` lives until the report is sent (see `finish`).
    let hold = Hold {
        // Init says so once more when it enters the program's user namespace (a second mount namespace).
        after: if config.security.userns_fd.is_some() { 2 } else { 1 },
        session: matches!(config.job, Job::Session),
        report: &report,
        ack: start.filter(|_| hold_first),
        early: cgroup.is_none(),
    };
    let Waited { outcome, waited, mount_ns, activity, reported } =
        wait_for(init, Some(status), Some(hold), &kill, deadline, holder);
    let usage = cgroup.as_ref().map(Cgroup::usage);
    if outcome.is_some_and(|(_, timed_out)| timed_out) {
        // What a hang was doing: init's list of processes (none if the program stopped init), and
        // the limits' counters, which the kill leaves as they were (how often the limit was hit).
        let cgroup = cgroup.as_ref().map(Cgroup::state);
        send(&report, &Record::Activity { processes: activity.unwrap_or_default(), cgroup });
    }
    drop(cgroup);
    let Some((status, timed_out)) = ended(outcome, waited) else { crate::sys::exit_now(SETUP_FAILED) };
    if let Some(u) = usage {
        send(&report, &Record::Usage(u));
        // The helper's verdict, one rule for commands and closures: the program died of SIGKILL and
        // the OOM killer acted in this sandbox's cgroup.
        if let Some(limit) = config.limits.memory
            && u.oom_kills > 0
            && std::process::ExitStatus::from_raw(status).signal() == Some(Signal::SIGKILL as i32)
        {
            send(&report, &Record::OomKilled { limit, peak: u.peak_memory });
        }
    }
    finish((!reported).then_some(&report), status, timed_out, &kill, mount_ns);
}

/// The end of a sandbox from init's report and its wait status: the program's raw status and
/// whether the deadline killed it; `None` when init died of a failed setup (which it reported).
fn ended(outcome: Option<(i32, bool)>, init: nix::Result<WaitStatus>) -> Option<(i32, bool)> {
    match (outcome, init) {
        (Some(o), _) => Some(o),
        // Init died without a word because its setup failed (and said so).
        (None, Ok(WaitStatus::Exited(_, c))) if c != 0 => None,
        // Init was killed (the OOM killer, or from outside): so was everything in the sandbox. Report
        // that as the program's end, so that the caller sees a SIGKILL (and the usage's OOM kills).
        (None, Ok(s @ WaitStatus::Signaled(..))) => Some((raw_status(s), false)),
        (None, _) => Some((Signal::SIGKILL as i32, false)),
    }
}

/// A command in a running session: enter the namespaces of its init, fork the program into them.
fn join(t: SingleThreaded, config: &Config, report: OwnedFd, kill: OwnedFd) {
    let Job::Join { session, .. } = &config.job else { return };
    let init_pid = &session.init_pid;
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
    let program_userns = !config.security.privileged;
    if program_userns {
        // The program's user namespace last: its root has no power over the pid namespace (owned by
        // the host's, or rootless by the setup namespace, which is entered first to gain it).
        order = vec!["pid", "cgroup", "ipc", "uts", "net", "mnt", "user"];
        if config.user_namespace {
            order.insert(0, "setup-user");
        }
    } else if config.user_namespace {
        // setns(2): enter the user namespace first, to gain the capabilities the others require.
        order.insert(0, "user");
    }
    // The session's helper (init's parent) holds init's namespaces: init itself is out of reach
    // (not dumpable). The setup namespace is the helper's own.
    let helper = parent_of(*init_pid).unwrap_or(0);
    // All opened first: once in the session's mount namespace, /proc and /dev are the sandbox's (its
    // programs' to change). The caller's /proc too, where the command's process shows under the pid
    // this helper knows it by.
    let null = host_null().unwrap_or_else(|step| fail(&report, step));
    let callers_proc =
        nix::fcntl::open("/proc", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
            .unwrap_or_else(|e| fail(&report, (StepKind::Helper, "open /proc", e)));
    let mut fds = Vec::with_capacity(order.len());
    for ns in order {
        if ns == "net" && !config.network.own_namespace() {
            continue;
        }
        let path = match (ns, session.held.iter().find(|(name, _)| name == ns)) {
            ("setup-user", _) => format!("/proc/{helper}/ns/user"),
            (_, Some((_, fd))) => format!("/proc/{helper}/fd/{fd}"),
            (_, None) => format!("/proc/{init_pid}/ns/{ns}"),
        };
        match nix::fcntl::open(path.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()) {
            Ok(fd) => fds.push((fd, namespace_type(ns))),
            Err(e) => fail(&report, (StepKind::Namespaces, "open a namespace of the session (has it ended?)", e)),
        }
    }
    for (fd, kind) in fds {
        // The type too: a descriptor that is not the namespace expected (a reused pid) is refused.
        if let Err(e) = nix::sched::setns(fd, kind) {
            fail(&report, (StepKind::Namespaces, "enter a namespace of the session (setns)", e));
        }
    }
    if program_userns && let Err(e) = super::userns::become_root() {
        fail(&report, (StepKind::Namespaces, "become root of the session's user namespace (setresuid)", e));
    }
    // setns(CLONE_NEWNS) leaves the working directory outside the new root.
    let _ = nix::unistd::chdir("/");
    let (exec_r, exec_w) = pipe("create the exec pipe").unwrap_or_else(|step| fail(&report, step));
    // Out of reach of the session's other processes (ptrace, /proc/PID/mem) until it is filtered:
    // the command's process inherits this, and its exec undoes it (spawn::child).
    let _ = nix::sys::prctl::set_dumpable(false);
    let mask = block_wait_signals();
    match crate::sys::fork(t) {
        Err(e) => fail(&report, (StepKind::Helper, "fork into the session", e)),
        Ok(ForkResult::Child) => {
            restore_mask(&mask);
            drop((exec_r, callers_proc));
            let _ = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL));
            for mut procs in cgroup_procs {
                // cgroups(7): writing 0 to cgroup.procs moves the writing process.
                if let Err(e) = std::io::Write::write_all(&mut procs, b"0") {
                    let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
                    fail(&report, (StepKind::Limits, "join the session's cgroup", errno));
                }
            }
            super::child::run(t, config, &report, exec_w);
            crate::sys::exit_now(127);
        }
        Ok(ForkResult::Parent { child }) => {
            drop(exec_w);
            crate::sys::let_go_of_stdio(&null);
            let program = super::child::Program::InCallersProc { pid: child, proc: callers_proc.as_fd() };
            super::child::await_exec(exec_r, &report, &config.current_dir, program);
            let Waited { outcome, waited, .. } = wait_for(child, None, None, &kill, None, None);
            match command_status(outcome, waited) {
                Ok(raw) => {
                    // Killed at or after the session's deadline (as the caller reckoned it, no later
                    // than the session's own): the session's end, a timeout. Before it: a kill.
                    let killed = std::process::ExitStatus::from_raw(raw).signal() == Some(Signal::SIGKILL as i32);
                    let past = session
                        .deadline_monotonic
                        .zip(super::monotonic_now())
                        .is_some_and(|(deadline, now)| now >= deadline);
                    finish(Some(&report), raw, killed && past, &kill, Vec::new())
                }
                Err(e) => fail(&report, (StepKind::Helper, "wait for the command's process (waitpid)", e)),
            }
        }
    }
}

/// The setns(2) type of a namespace named as in `/proc/PID/ns` (`setup-user`: a user namespace).
fn namespace_type(name: &str) -> CloneFlags {
    match name {
        "user" | "setup-user" => CloneFlags::CLONE_NEWUSER,
        "pid" => CloneFlags::CLONE_NEWPID,
        "cgroup" => CloneFlags::CLONE_NEWCGROUP,
        "ipc" => CloneFlags::CLONE_NEWIPC,
        "uts" => CloneFlags::CLONE_NEWUTS,
        "net" => CloneFlags::CLONE_NEWNET,
        "mnt" => CloneFlags::CLONE_NEWNS,
        _ => CloneFlags::empty(),
    }
}

/// The parent pid of `pid` (proc(5), the fourth field of `stat`).
fn parent_of(pid: i32) -> Option<i32> {
    crate::sys::stat_fields(&pid.to_string())?.get(4 - 3)?.parse().ok()
}

/// A session command's raw wait status, from its wait (or the kill that ended it).
fn command_status(outcome: Option<(i32, bool)>, waited: nix::Result<WaitStatus>) -> Result<i32, Errno> {
    match (outcome, waited) {
        (Some((raw, _)), _) => Ok(raw),
        (None, Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..)))) => Ok(raw_status(s)),
        (None, Ok(_)) => Err(Errno::EINVAL),
        (None, Err(e)) => Err(e),
    }
}

/// What the helper holds of init once init has built its mounts (`after` of its
/// `MountNamespaceReady` records): its mount namespace always; a session's namespaces too, reported
/// as `Record::Held`. Then, if init waits for it, the word on `ack`.
struct Hold<'a> {
    after: usize,
    session: bool,
    report: &'a OwnedFd,
    ack: Option<std::fs::File>,
    /// Whether init's `Exited` (not a timeout's) may be passed on at once: nothing of the sandbox is
    /// left for the helper to read or remove once init is gone (no cgroup), and init has reaped every
    /// other process; init's own exit, and so the helper's, need not delay the caller.
    early: bool,
}

/// The namespaces of a session that its commands enter (crate::spawn::helper::join).
const SESSION_NAMESPACES: [&str; 6] = ["user", "pid", "cgroup", "ipc", "uts", "net"];

/// Waits for `child` (init, or a session command's process), and reads init's records on `status` if
/// given (`MountNamespaceReady`, then `Exited`). When the parent closes its end of the kill pipe
/// (`Child::kill`, a drop, or its death), `child` is killed first: init is only reaped once its whole
/// pid namespace is gone, so the parent's `wait` returns after the last process of the sandbox has
/// died. `reap_too`: the network namespace's holder (crate::spawn::netns), reaped when it ends, or
/// killed and reaped once `child` is.
fn wait_for(
    child: Pid,
    status: Option<OwnedFd>,
    mut hold: Option<Hold<'_>>,
    kill: &OwnedFd,
    deadline: Option<std::time::Instant>,
    reap_too: Option<Pid>,
) -> Waited {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    use nix::sys::wait::WaitPidFlag;

    let mut set = forwarded_signals();
    set.add(Signal::SIGCHLD);
    // SIGCHLD was blocked before the fork (block_wait_signals), the forwarded ones at the start.
    let signals = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ok();
    let mut decoder = Decoder::default();
    let mut outcome = None;
    let mut activity = None;
    let mut status_file = status.map(std::fs::File::from);
    // Init's mount namespaces (two when it enters the program's user namespace), held so that their
    // teardown happens at our exit, after the report.
    let mut mount_ns: Vec<OwnedFd> = Vec::new();
    let mut seen = 0;
    let mut reported = false;
    let open = |ns: &str| {
        let path = format!("/proc/{child}/ns/{ns}");
        nix::fcntl::open(path.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()).ok()
    };
    let mut on_records = |records: Vec<Record>, mount_ns: &mut Vec<OwnedFd>| {
        for r in records {
            match r {
                Record::MountNamespaceReady => {
                    mount_ns.extend(open("mnt"));
                    seen += 1;
                    let Some(h) = hold.as_mut().filter(|h| h.after == seen) else { continue };
                    if h.session {
                        use std::os::fd::AsRawFd;
                        let mut fds = Vec::new();
                        if let Some(mnt) = mount_ns.last() {
                            fds.push(("mnt".to_owned(), mnt.as_raw_fd()));
                        }
                        for ns in SESSION_NAMESPACES {
                            if let Some(fd) = open(ns) {
                                fds.push((ns.to_owned(), fd.as_raw_fd()));
                                mount_ns.push(fd);
                            }
                        }
                        send(h.report, &Record::Held { fds });
                    }
                    if let Some(mut ack) = h.ack.take() {
                        let _ = std::io::Write::write_all(&mut ack, b"h");
                    }
                }
                Record::Exited { status, timed_out } => {
                    outcome = Some((status, timed_out));
                    if let Some(h) = hold.as_ref().filter(|h| h.early && !timed_out) {
                        send(h.report, &Record::Exited { status, timed_out });
                        reported = true;
                    }
                }
                Record::Activity { processes, .. } => activity = Some(processes),
                _ => {}
            }
        }
    };
    let mut killed = false;
    let mut timed_out = false;
    let mut reap_too = reap_too;
    let waited = loop {
        if let Some(pid) = reap_too
            && !matches!(waitpid(pid, Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive) | Err(Errno::EINTR))
        {
            reap_too = None;
        }
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
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
        let timeout = match deadline {
            Some(d) if !killed => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    killed = true;
                    timed_out = true;
                    let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                    continue;
                }
                PollTimeout::try_from(left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1).unwrap_or(PollTimeout::MAX)
            }
            _ => PollTimeout::NONE,
        };
        if poll(&mut fds, timeout).is_err() {
            continue;
        }
        let ready = |i: usize| fds.get(i).is_some_and(|f| f.revents().is_some_and(|r| !r.is_empty()));
        let (kill_ready, status_ready) = (!killed && ready(1), status_file.is_some() && ready(status_at));
        while let Ok(Some(info)) = signals.read_signal() {
            let forwarded = Signal::try_from(info.ssi_signo as i32).ok().filter(|s| FORWARDED.contains(s));
            if let Some(sig) = forwarded.filter(|_| !killed) {
                let _ = nix::sys::signal::kill(child, sig);
            }
        }
        if kill_ready {
            killed = true;
            let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        }
        if status_ready && let Some(f) = &mut status_file {
            let mut buf = [0u8; 256];
            match f.read(&mut buf) {
                Ok(0) | Err(_) => status_file = None,
                Ok(n) => on_records(decoder.feed(&buf[..n]), &mut mount_ns),
            }
        }
    };
    // A holder init never released (it failed before joining the network namespace).
    if let Some(pid) = reap_too {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
    }
    // Init writes its records before it exits: whatever is left is in the pipe now.
    if let Some(mut f) = status_file {
        let mut rest = Vec::new();
        let _ = f.read_to_end(&mut rest);
        on_records(decoder.feed(&rest), &mut mount_ns);
    }
    if outcome.is_none() && killed {
        outcome = Some((Signal::SIGKILL as i32, timed_out));
    }
    Waited { outcome, waited, mount_ns, activity, reported }
}

/// How [`wait_for`] saw the child end.
struct Waited {
    /// The status and whether the deadline killed it, from the child's report or our own kill.
    outcome: Option<(i32, bool)>,
    waited: nix::Result<WaitStatus>,
    /// Init's mount namespaces (and a session's other namespaces), to be freed after the report.
    mount_ns: Vec<OwnedFd>,
    /// Init's list of the sandbox's processes at the deadline.
    activity: Option<Vec<String>>,
    /// Whether the end was passed on to the parent already ([`Hold::early`]).
    reported: bool,
}

/// Reports the end to the parent (unless it was, `None`), lets go of `release` (the sandbox's mount
/// namespaces: their teardown need not delay the report), and ends the helper with the program's
/// status once the parent has closed its end of the kill pipe, which it does when it has read the
/// report: until then this pid stays the helper's, so that a signal the parent sends to
/// `Child::id()` before its `wait()` returns cannot reach a process that took the pid over (a
/// fork server reaps its helpers at once).
fn finish(report: Option<&OwnedFd>, status: i32, timed_out: bool, kill: &OwnedFd, release: Vec<OwnedFd>) -> ! {
    if let Some(report) = report {
        send(report, &Record::Exited { status, timed_out });
    }
    drop(release);
    let mut byte = [0u8; 1];
    while let Err(Errno::EINTR) = nix::unistd::read(kill, &mut byte) {}
    let status = std::process::ExitStatus::from_raw(status);
    match (status.code(), status.signal()) {
        (Some(code), _) => crate::sys::exit_now(code),
        (None, Some(sig)) => crate::sys::die_by_signal(sig),
        _ => crate::sys::exit_now(SETUP_FAILED),
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

#[cfg(test)]
mod tests {
    use super::*;

    // Bug 4: a failed waitpid of a session command was reported as exit status 0.
    #[test]
    fn a_failed_wait_is_an_error_not_a_success() {
        assert_eq!(command_status(None, Err(Errno::ECHILD)), Err(Errno::ECHILD));
        let pid = Pid::from_raw(5);
        assert_eq!(command_status(None, Ok(WaitStatus::Exited(pid, 3))), Ok(3 << 8));
        assert_eq!(command_status(Some((9, false)), Err(Errno::ECHILD)), Ok(9), "killed through the kill pipe");
    }

    #[test]
    fn init_killed_without_a_word_is_a_sigkill_of_the_program() {
        let pid = Pid::from_raw(5);
        assert_eq!(ended(None, Ok(WaitStatus::Signaled(pid, Signal::SIGKILL, false))), Some((9, false)));
        assert_eq!(ended(None, Ok(WaitStatus::Exited(pid, 1))), None, "a setup failure, already reported");
        assert_eq!(ended(Some((256, true)), Ok(WaitStatus::Exited(pid, 0))), Some((256, true)));
    }
}
