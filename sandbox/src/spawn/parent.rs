//! The calling process's side: start a helper (forked by the fork server when this crate chose the
//! program's stdio, executed otherwise), then read its reports.

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

/// A stdio setting this crate implements itself, so that it can hand the descriptor to the fork server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    Inherit,
    Null,
    Piped,
}

impl Known {
    pub(crate) fn to_std(self) -> std::process::Stdio {
        match self {
            Known::Inherit => std::process::Stdio::inherit(),
            Known::Null => std::process::Stdio::null(),
            Known::Piped => std::process::Stdio::piped(),
        }
    }
}

/// The program's stdin, stdout and stderr.
#[derive(Debug)]
pub(crate) enum Stdio3 {
    /// Chosen by this crate: eligible for the fork server.
    Known([Known; 3]),
    /// Given by the caller as `std::process::Stdio`: only `std::process::Command` can apply them.
    Std([std::process::Stdio; 3]),
}

/// The helper process, as far as the caller can hold it.
#[derive(Debug)]
pub(crate) enum Helper {
    /// Executed by us: our child.
    Executed(std::process::Child),
    /// Forked by the fork server: not our child; its end shows as the end of the reports.
    Served,
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

/// Starts a helper for `config`; `args` are passed to a re-executed binary (the libtest arguments for a
/// closure, which always executes).
pub(crate) fn launch(config: &Config, stdio: Stdio3, args: &[String]) -> Result<Launched, Error> {
    // The helper hook must be linked into this binary, since the binary is what runs the helpers.
    std::hint::black_box(&super::BEFORE_MAIN);

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

    let stdio = match stdio {
        Stdio3::Known(known) if args.is_empty() => match serve(known, &report_w, &config_file, &kill_r) {
            Ok((stdin, stdout, stderr)) => {
                return Ok(Launched {
                    helper: Helper::Served,
                    reports: Reader::new(report_r),
                    kill: kill_w,
                    stdin,
                    stdout,
                    stderr,
                });
            }
            Err(e) => {
                tracing::debug!(%e, "no fork server; executing the sandbox helper");
                known.map(Known::to_std)
            }
        },
        Stdio3::Known(known) => known.map(Known::to_std),
        Stdio3::Std(std) => std,
    };

    let mut cmd = Command::new("/proc/self/exe");
    if !matches!(config.job, crate::config::Job::Closure { .. }) {
        // A program gets exactly the sandbox's environment; a closure's test keeps the parent's too.
        cmd.env_clear();
    }
    // A process group of its own: the sandbox is no part of the caller's job control, and signals
    // meant for the caller's group (a terminal's ^C, a test runner's group kill) do not reach it
    // directly; it ends through its helper instead. Without this, helpers were occasionally killed by
    // a SIGKILL from an unidentified sender while other sandboxes ended (about 1 run in 25).
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.args(args)
        .env(HELPER_ENV, format!("{}:{}:{}", report_w.as_raw_fd(), config_file.as_raw_fd(), kill_r.as_raw_fd()));
    let [stdin, stdout, stderr] = stdio;
    cmd.stdin(stdin).stdout(stdout).stderr(stderr);
    crate::sys::keep_fds_on_exec(&mut cmd, vec![report_w.as_raw_fd(), config_file.as_raw_fd(), kill_r.as_raw_fd()]);
    let mut child = spawn_on_spawner_thread(cmd).map_err(io("execute the sandbox helper", "/proc/self/exe"))?;
    // Our copies must be closed so that the report pipe ends when the sandbox's processes are gone.
    drop((report_w, config_file, kill_r));
    Ok(Launched {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        helper: Helper::Executed(child),
        reports: Reader::new(report_r),
        kill: kill_w,
    })
}

fn pipe(what: &'static str) -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| io("create", what)(e.into()))
}

type Stdio = (Option<ChildStdin>, Option<ChildStdout>, Option<ChildStderr>);

/// Opens the program's stdio as `known` says and hands everything to the fork server.
fn serve(known: [Known; 3], report: &OwnedFd, config: &std::fs::File, kill: &OwnedFd) -> std::io::Result<Stdio> {
    let mut theirs: Vec<OwnedFd> = Vec::with_capacity(3);
    let mut ours: Vec<Option<OwnedFd>> = Vec::with_capacity(3);
    for (i, k) in known.iter().enumerate() {
        match k {
            Known::Inherit => {
                let fd = match i {
                    0 => std::io::stdin().as_fd().try_clone_to_owned()?,
                    1 => std::io::stdout().as_fd().try_clone_to_owned()?,
                    _ => std::io::stderr().as_fd().try_clone_to_owned()?,
                };
                theirs.push(fd);
                ours.push(None);
            }
            Known::Null => {
                let mode = if i == 0 { OFlag::O_RDONLY } else { OFlag::O_WRONLY };
                theirs.push(nix::fcntl::open("/dev/null", mode | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())?);
                ours.push(None);
            }
            Known::Piped => {
                let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
                let (child_end, our_end) = if i == 0 { (r, w) } else { (w, r) };
                theirs.push(child_end);
                ours.push(Some(our_end));
            }
        }
    }
    super::server::submit([
        theirs[0].as_fd(),
        theirs[1].as_fd(),
        theirs[2].as_fd(),
        report.as_fd(),
        config.as_fd(),
        kill.as_fd(),
    ])?;
    let mut ours = ours.into_iter();
    let stdin = ours.next().flatten().map(ChildStdin::from);
    let stdout = ours.next().flatten().map(ChildStdout::from);
    let stderr = ours.next().flatten().map(ChildStderr::from);
    Ok((stdin, stdout, stderr))
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

/// The error for a failed setup step, with a hint from the host's configuration.
pub(crate) fn setup_error(
    kind: crate::report::StepKind,
    what: String,
    path: Option<String>,
    errno: i32,
    sandbox: &crate::Sandbox,
) -> Error {
    let errno = nix::errno::Errno::from_raw(errno);
    Error::Setup {
        step: what,
        path,
        source: std::io::Error::from(errno),
        hint: crate::hints::for_step(kind, errno, sandbox.rootless()),
    }
}
