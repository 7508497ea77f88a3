//! The calling process's side: start a helper (forked by the fork server, or executed), with its
//! pipes; `handle` holds it from then on.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command};
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};

use nix::fcntl::OFlag;

use crate::Error;
use crate::config::Config;
use crate::error::io;
use crate::report::Reader;

/// The variable that turns a re-executed binary into a helper: `<report fd>:<config fd>:<kill fd>`.
pub(crate) const HELPER_ENV: &str = "__SANDBOX_HELPER";

/// The helper process, as far as the caller can hold it.
#[derive(Debug)]
pub(crate) enum Helper {
    /// Executed by us: our child.
    Executed(std::process::Child),
    /// Forked by the fork server: not our child; its end shows as the end of the reports.
    Served,
    /// Forked by this (single-threaded) process itself: our child, reaped with waitpid.
    Forked(nix::unistd::Pid),
}

/// A started helper.
#[derive(Debug)]
pub(crate) struct Launched {
    pub helper: Helper,
    pub reports: Reader,
    /// The write end of the kill pipe: closing it tears the sandbox down.
    pub kill: OwnedFd,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

/// Starts a helper for `config`, with the program's stdio as `stdio` says (stdin, stdout, stderr):
/// forked by the fork server, or, when there is none, executed. Either way the streams are opened here, so that both paths connect them
/// alike.
pub(crate) fn launch(config: &Config, stdio: [&crate::Stdio; 3]) -> Result<Launched, Error> {
    // The constructor must be linked into this binary, since the binary is what runs the helpers.
    std::hint::black_box(&super::BEFORE_MAIN);

    crate::sys::fill_closed_stdio();
    let json = serde_json::to_vec(config)
        .map_err(|e| io("encode the sandbox configuration for", "memfd")(std::io::Error::other(e)))?;
    let memfd = nix::sys::memfd::memfd_create(c"sandbox-config", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| io("create", "memfd sandbox-config")(e.into()))?;
    let mut config_file = std::fs::File::from(memfd);
    config_file.write_all(&json).map_err(io("write", "memfd sandbox-config"))?;
    // The helper shares this file description, offset included: it must read from the start.
    std::io::Seek::rewind(&mut config_file).map_err(io("rewind", "memfd sandbox-config"))?;
    let (report_r, report_w) = pipe("a report pipe")?;
    let (kill_r, kill_w) = pipe("a kill pipe")?;
    let open = |n: usize| stdio[n].open(n).map_err(io("open the program's stdio", ["stdin", "stdout", "stderr"][n]));
    let (sin, sout, serr) = (open(0)?, open(1)?, open(2)?);
    let (their_in, their_out, their_err) = (sin.theirs, sout.theirs, serr.theirs);
    let stdin = sin.ours.map(ChildStdin::from);
    let stdout = sout.ours.map(ChildStdout::from);
    let stderr = serr.ours.map(ChildStderr::from);

    // What this process printed but has not written yet is its own output: it goes out now, before
    // the sandbox's, whichever way the helper starts (a closure from a single-threaded caller, sent to
    // the fork server, printed before the caller's earlier print), and no fork keeps a copy to write
    // again. If it cannot go out now (a full non-blocking stdout), no helper is forked from this
    // process: the fork server's, which are no copies of it, serve instead.
    let flushed = std::io::Write::flush(&mut std::io::stdout()).is_ok();
    // What a fork server gets with a start request (crate::spawn::server::submit).
    let request = || {
        [their_in.as_fd(), their_out.as_fd(), their_err.as_fd(), report_w.as_fd(), config_file.as_fd(), kill_r.as_fd()]
    };
    if !fork_server_disabled() {
        // A caller with one thread (sandbox-run, a tool's `main`) may fork the helper itself: no exec
        // of this binary at all, which is most of a one-shot caller's start-up. Not for a closure:
        // its process would be a copy of this one, and see the statics this process set, where one
        // from the fork server or an exec sees them as the binary started (a new user's review: the
        // same closure saw a caller's atomic as 7 from a single-threaded `main`, and as 1 once the
        // caller had started a thread). Closures see the binary's start, whoever calls them.
        let closure = matches!(config.job, crate::config::Job::Closure { .. });
        if !closure
            && flushed
            && let Some(t) = crate::sys::SingleThreaded::if_alone()
        {
            // Rootless: made here once, so that every helper forked from this process enters it.
            super::subids::prepare(t, config, [their_in.as_fd(), their_out.as_fd(), their_err.as_fd()]);
            // Compiled here once, as the fork server does, rather than in every helper.
            if !config.security.privileged {
                let _ = crate::seccomp::shared();
                let _ = crate::seccomp::for_sandbox(config.security.no_setid(config.outer_uid, &config.mounts));
            }
            // As root, from the second sandbox that is not privileged on: this process's own filtered
            // server forks the helper (crate::spawn::server::submit_forked). The first forks it here,
            // as a one-shot caller (sandbox-run) does best.
            if filtered(config) && FILTERED_STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0 {
                match super::server::submit_forked(t, request()) {
                    Ok(()) => return Ok(served(report_r, kill_w, (stdin, stdout, stderr))),
                    Err(e) => tracing::debug!(%e, "no filtered server of this process; forking the helper"),
                }
            }
            match crate::sys::fork(t) {
                Ok(nix::unistd::ForkResult::Child) => {
                    // A process group of its own, as an executed helper gets (see below).
                    let _ = nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0));
                    drop((report_r, kill_w, stdin, stdout, stderr));
                    super::server::become_helper(
                        t,
                        [their_in, their_out, their_err, report_w, config_file.into(), kill_r],
                    );
                }
                Ok(nix::unistd::ForkResult::Parent { child }) => {
                    drop((report_w, config_file, kill_r, their_in, their_out, their_err));
                    return Ok(Launched {
                        helper: Helper::Forked(child),
                        reports: Reader::new(report_r),
                        kill: kill_w,
                        stdin,
                        stdout,
                        stderr,
                    });
                }
                Err(e) => tracing::debug!(%e, "fork failed; trying the fork server"),
            }
        }
        match super::server::submit(request(), filtered(config)) {
            Ok(()) => return Ok(served(report_r, kill_w, (stdin, stdout, stderr))),
            Err(e) => tracing::debug!(%e, "no fork server; executing the sandbox helper"),
        }
    }

    let mut cmd = Command::new("/proc/self/exe");
    // A program gets exactly the sandbox's environment.
    cmd.env_clear();
    // A process group of its own: the sandbox is no part of the caller's job control, and signals
    // meant for the caller's group (a terminal's ^C, a test runner's group kill) do not reach it
    // directly; it ends through its helper instead. Without this, helpers were occasionally killed by
    // a SIGKILL from an unidentified sender while other sandboxes ended (about 1 run in 25).
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.env(HELPER_ENV, format!("{}:{}:{}", report_w.as_raw_fd(), config_file.as_raw_fd(), kill_r.as_raw_fd()));
    cmd.stdin(their_in).stdout(their_out).stderr(their_err);
    crate::sys::keep_fds_on_exec(&mut cmd, vec![report_w.as_raw_fd(), config_file.as_raw_fd(), kill_r.as_raw_fd()]);
    let child = spawn_on_spawner_thread(cmd).map_err(io("execute the sandbox helper", "/proc/self/exe"))?;
    // Our copies must be closed so that the report pipe ends when the sandbox's processes are gone.
    drop((report_w, config_file, kill_r));
    Ok(Launched {
        stdin,
        stdout,
        stderr,
        helper: Helper::Executed(child),
        reports: Reader::new(report_r),
        kill: kill_w,
    })
}

/// A start a fork server took: the caller's ends of its pipes (ours are dropped as the caller returns).
fn served(report_r: OwnedFd, kill_w: OwnedFd, (stdin, stdout, stderr): Piped) -> Launched {
    Launched { helper: Helper::Served, reports: Reader::new(report_r), kill: kill_w, stdin, stdout, stderr }
}

/// The caller's ends of the program's stdio, where piped.
type Piped = (Option<ChildStdin>, Option<ChildStdout>, Option<ChildStderr>);

/// As root, a sandbox that is not privileged goes to a filtered server (crate::spawn::server), where
/// there is a filter to install (none where seccompiler does not know the architecture).
fn filtered(config: &crate::config::Config) -> bool {
    config.outer_uid == 0 && !config.security.privileged && matches!(crate::seccomp::shared(), Ok(Some(_)))
}

/// How many sandboxes that go to a filtered server this process has started from a single thread.
static FILTERED_STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `SANDBOX_NO_FORK_SERVER=1`: every helper is executed (slower; for debugging the exec path).
fn fork_server_disabled() -> bool {
    std::env::var_os("SANDBOX_NO_FORK_SERVER").is_some_and(|v| v == "1")
}

fn pipe(what: &'static str) -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| io("create", what)(e.into()))
}

type Job = (Command, Sender<std::io::Result<std::process::Child>>);

/// Spawns `cmd` from one long-lived thread. Helpers ask for SIGKILL when their parent dies
/// (PR_SET_PDEATHSIG), and "parent" there means the thread that forked them (prctl(2)): spawning from
/// a thread that lives as long as the process keeps a sandbox alive after the test thread that started
/// it has moved on, and still kills it when the process dies.
pub(crate) fn spawn_on_spawner_thread(cmd: Command) -> std::io::Result<std::process::Child> {
    static SPAWNER: Mutex<Option<Sender<Job>>> = Mutex::new(None);
    let mut slot = SPAWNER.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new().name("sandbox-spawner".into()).spawn(move || {
            for (mut cmd, reply) in rx {
                let _ = reply.send(cmd.spawn());
            }
        })?;
        *slot = Some(tx);
    }
    let (reply_tx, reply_rx) = channel();
    let sent = slot.as_ref().is_some_and(|tx| tx.send((cmd, reply_tx)).is_ok());
    drop(slot);
    if !sent {
        return Err(std::io::Error::other("the sandbox spawner thread is gone"));
    }
    reply_rx.recv().map_err(|_| std::io::Error::other("the sandbox spawner thread is gone"))?
}
