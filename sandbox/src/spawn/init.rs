//! PID 1 of the sandbox: builds the root, starts the program, reaps, forwards signals, keeps time.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::config::{Config, Job};
use crate::plan;
use crate::report::{Record, StepKind, send, send_failure, send_setup_failed};
use crate::sys::{Kernel, SingleThreaded};

/// Runs init: the plan, then the program (or nothing, for a session), then the reaping loop; `status`
/// is the pipe to the helper, which gets `MountNamespaceReady` and, at the end, `Exited`; `held` the
/// pipe on which the helper says it holds what it needs of init, when it must first; `null` the
/// host's `/dev/null`, which init holds as its stdio once the program has its own. `deadline`
/// counts from the helper's start, as the helper's own (which comes a little later). Never returns.
pub(crate) fn run(
    t: SingleThreaded,
    config: &Config,
    report: OwnedFd,
    status: OwnedFd,
    held: Option<OwnedFd>,
    null: OwnedFd,
    deadline: Option<Instant>,
) -> ! {
    if let Some((base, _)) = config.security.shifted(config.outer_uid) {
        crate::inroot::give_created_to(base);
    }
    if let Err(f) = plan::run(&plan::namespace_phase(config), &Kernel) {
        send_failure(&report, &f);
        crate::sys::exit_now(1);
    }
    // Tell the helper our mount namespace exists: it keeps it alive until it has reported the end,
    // so that freeing the sandbox's mounts is not on the way of the caller's wait. Entering the
    // program's user namespace makes a second one (its copy); the helper keeps that too.
    send(&status, &Record::MountNamespaceReady);
    let built = plan::run(&plan::filesystem_phase(config), &Kernel);
    crate::sys::close_kernel_dirs();
    crate::sys::hardening::drop_prepared();
    // Entering the program's user namespace changed init's credentials, which cleared its
    // parent-death signal (set again since): the helper must not have died in between.
    if crate::sys::reader_gone(&status) {
        crate::sys::exit_now(1);
    }
    if let Err(f) = built {
        send_failure(&report, &f);
        crate::sys::exit_now(1);
    }
    if config.security.userns_fd.is_some() {
        send(&status, &Record::MountNamespaceReady);
    }
    // Not dumpable before the program starts: it can then neither ptrace init (to stop the deadline)
    // nor read or write its memory, descriptors or executable through /proc/1. First the helper must
    // hold what it needs of us (`held`: it says so; rootless it could not open our /proc files later,
    // and a session's commands join through what it holds).
    if let Some(held) = held {
        let mut byte = [0u8; 1];
        if !matches!(std::io::Read::read(&mut std::fs::File::from(held), &mut byte), Ok(1)) {
            crate::sys::exit_now(1);
        }
    }
    if !config.security.privileged {
        let _ = nix::sys::prctl::set_dumpable(false);
    }
    // Every signal goes through a signalfd, so that none is lost between fork and the wait loop, and
    // so that PID 1 (which the kernel spares from default actions) still sees them.
    let all = SigSet::all();
    let mut old = SigSet::empty();
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), Some(&mut old)) {
        fatal(&report, "block signals in init", e);
    }
    let signals = match SignalFd::with_flags(&all, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(fd) => fd,
        Err(e) => fatal(&report, "create init's signalfd", e),
    };

    let main = match config.job {
        Job::Session => {
            crate::sys::let_go_of_stdio(&null);
            send(&report, &Record::Ready);
            drop(report);
            None
        }
        _ => {
            let (exec_r, exec_w) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
                Ok(p) => p,
                Err(e) => fatal(&report, "create the exec pipe", e),
            };
            // A program's process shares init's memory until its exec (nothing to copy); a closure's
            // runs Rust code of its own, and is forked.
            let forked = match config.job {
                Job::Exec { .. } => {
                    super::child::spawn_program(config, &exec_w, &old).map(|child| ForkResult::Parent { child })
                }
                _ => crate::sys::fork(t),
            };
            match forked {
                Err(e) => fatal(&report, "fork the program's process", e),
                Ok(ForkResult::Child) => {
                    drop(exec_r);
                    drop(signals);
                    drop(status);
                    drop(null);
                    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
                    super::child::run(t, config, &report, exec_w);
                    crate::sys::exit_now(127);
                }
                Ok(ForkResult::Parent { child }) => {
                    drop(exec_w);
                    crate::sys::let_go_of_stdio(&null);
                    // Init's /proc is the sandbox's: the pid is as it shows it.
                    let program = match config.job {
                        Job::Closure { .. } => super::child::Program::Closure,
                        _ => super::child::Program::Pid(child),
                    };
                    super::child::await_exec(exec_r, &report, &config.current_dir, program);
                    drop(report);
                    Some(child)
                }
            }
        }
    };
    let (status_word, timed_out) = reap_until_done(main, &signals, deadline, &status);
    send(&status, &Record::Exited { status: status_word, timed_out });
    crate::sys::exit_now(0);
}

fn fatal(report: &OwnedFd, what: &str, errno: Errno) -> ! {
    send_setup_failed(report, StepKind::Helper, what, errno);
    crate::sys::exit_now(1);
}

/// The init loop. Reaps every child; forwards signals to the program; on the deadline kills every
/// process in the namespace. Returns when the program has exited (or, for a session, when time is up),
/// after killing and reaping whatever else is left.
fn reap_until_done(main: Option<Pid>, signals: &SignalFd, deadline: Option<Instant>, status: &OwnedFd) -> (i32, bool) {
    let mut main_status: Option<i32> = None;
    let mut timed_out = false;
    loop {
        // Reap everything that has exited; orphans are re-parented to us.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(s) => {
                    if s.pid() == main && main.is_some() {
                        main_status = Some(super::helper::raw_status(s));
                    }
                }
            }
        }
        if let Some(status) = main_status {
            // The program is done: nothing else in the sandbox outlives it.
            kill_all_but_me();
            while waitpid(Pid::from_raw(-1), None).is_ok() {}
            return (status, timed_out);
        }
        if timed_out && main.is_none() {
            return (Signal::SIGKILL as i32, true);
        }
        let timeout = match deadline {
            Some(d) if !timed_out => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    timed_out = true;
                    // What a hang was doing, for the timeout's error (the helper adds the cgroup's state).
                    send(status, &Record::Activity { processes: processes(), cgroup: None });
                    kill_all_but_me();
                    continue;
                }
                PollTimeout::try_from(left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1).unwrap_or(PollTimeout::MAX)
            }
            _ => PollTimeout::NONE,
        };
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => continue,
        }
        while let Ok(Some(info)) = signals.read_signal() {
            let sig = info.ssi_signo as i32;
            if sig == Signal::SIGCHLD as i32 {
                continue;
            }
            if let (Some(pid), Ok(sig)) = (main, Signal::try_from(sig)) {
                let _ = kill(pid, sig);
            }
        }
    }
}

/// The sandbox's processes but init, from its `/proc`, one line each: `pid state command line`, at
/// most 20 (and how many more).
fn processes() -> Vec<String> {
    const SHOWN: usize = 20;
    // The program may have mounted over this /proc (init shares its mount namespace): a bounded
    // listing, and bounded reads that neither follow nor wait (crate::sys::read_proc_file).
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut pids: Vec<u32> =
        dir.take(1 << 16).flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).filter(|&p| p != 1).collect();
    pids.sort_unstable();
    let mut lines: Vec<String> = pids.iter().take(SHOWN).filter_map(|pid| describe(*pid)).collect();
    if pids.len() > SHOWN {
        lines.push(format!("… and {} more", pids.len() - SHOWN));
    }
    lines
}

/// `pid state command line` of one process (its name when the command line is empty: a kernel
/// thread, or a zombie).
fn describe(pid: u32) -> Option<String> {
    let stat = crate::sys::read_proc_file(None, &format!("/proc/{pid}/stat"), 4096)?;
    let stat = String::from_utf8_lossy(&stat);
    // proc(5): `pid (comm) state …`; comm may hold spaces and parentheses: split at the last `)`.
    let (head, tail) = stat.rsplit_once(')')?;
    let name = head.split_once('(').map_or("?", |(_, n)| n);
    let state = tail.split_whitespace().next().unwrap_or("?");
    let cmdline = crate::sys::read_proc_file(None, &format!("/proc/{pid}/cmdline"), 4096).unwrap_or_default();
    let mut command: String =
        cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(String::from_utf8_lossy).collect::<Vec<_>>().join(" ");
    if command.is_empty() {
        command = format!("[{name}]");
    }
    if command.chars().count() > 120 {
        command = command.chars().take(119).chain(['…']).collect();
    }
    Some(format!("{pid} {state} {command}"))
}

/// SIGKILL to every other process of the sandbox. kill(2) with -1 means "every process this one may
/// signal in its pid namespace": only PID 1 of the sandbox's own namespace may ever call it, or it would
/// reach the host's processes.
fn kill_all_but_me() {
    if std::process::id() == 1 {
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    }
}
