//! The calling process's side: launch the helper, read its reports.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};

use nix::fcntl::OFlag;

use crate::Error;
use crate::config::Config;
use crate::error::io;
use crate::report::Reader;

/// The variable that turns a re-executed binary into a helper: `<report fd>:<config fd>`.
pub(crate) const HELPER_ENV: &str = "__SANDBOX_HELPER";

/// Starts the helper for `config` with the given stdio; `args` are passed to the re-executed binary
/// (the libtest arguments for a closure). Returns the helper process and the reports it and the
/// sandbox's processes send.
pub(crate) fn launch(config: &Config, stdio: [Stdio; 3], args: &[String]) -> Result<(std::process::Child, Reader), Error> {
    // The helper hook must be linked into this binary, since the binary is what we re-execute.
    std::hint::black_box(&crate::sys::HELPER_HOOK);

    let json = serde_json::to_vec(config).map_err(|e| io("encode the sandbox configuration for", "memfd")(std::io::Error::other(e)))?;
    let memfd = nix::sys::memfd::memfd_create(c"sandbox-config", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| io("create", "memfd sandbox-config")(e.into()))?;
    let mut config_file = std::fs::File::from(memfd);
    config_file.write_all(&json).map_err(io("write", "memfd sandbox-config"))?;
    // The helper shares this file description, offset included: it must read from the start.
    std::io::Seek::rewind(&mut config_file).map_err(io("rewind", "memfd sandbox-config"))?;
    let (report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| io("create", "a report pipe")(e.into()))?;

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
        .env(HELPER_ENV, format!("{}:{}", report_w.as_raw_fd(), config_file.as_raw_fd()));
    let [stdin, stdout, stderr] = stdio;
    cmd.stdin(stdin).stdout(stdout).stderr(stderr);
    crate::sys::keep_fds_on_exec(&mut cmd, vec![report_w.as_raw_fd(), config_file.as_raw_fd()]);
    let child = spawn_on_spawner_thread(cmd).map_err(io("execute the sandbox helper", "/proc/self/exe"))?;
    // Our copies must be closed so that the report pipe ends when the sandbox's processes are gone.
    drop(report_w);
    drop(config_file);
    Ok((child, Reader::new(report_r)))
}

type Job = (Command, Sender<std::io::Result<std::process::Child>>);

/// Spawns `cmd` from one long-lived thread. The helper asks for SIGKILL when its parent dies
/// (PR_SET_PDEATHSIG), and "parent" there means the thread that forked it (prctl(2)): spawning from a
/// thread that lives as long as the process keeps a sandbox alive after the test thread that started
/// it has moved on, and still kills it when the process dies.
fn spawn_on_spawner_thread(cmd: Command) -> std::io::Result<std::process::Child> {
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
    kind: crate::plan::StepKind,
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
