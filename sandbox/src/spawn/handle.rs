//! One handle on a running helper, for every caller (commands, sessions, switches, closures): start
//! it (with the overlay fallback), wait for a stage, collect its ending, and end and reap it on drop.

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{ChildStderr, ChildStdin, ChildStdout, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;

use super::parent::{Helper, launch};
use super::pump::Pump;
use crate::Error;
use crate::config::{Config, Job};
use crate::report::{Reader, Record, StepKind};

/// How far a start goes before [`HelperHandle::start`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// The program has exec'd.
    Started,
    /// A session's (or switch's) sandbox is up and waiting.
    Ready,
    /// As soon as the helper runs: the caller reads the whole story with [`HelperHandle::wait_end`].
    Launched,
}

/// A running helper. Dropping it ends the sandbox (closing the kill pipe) and waits until it is gone.
#[derive(Debug)]
pub(crate) struct HelperHandle {
    helper: Helper,
    reports: Reader,
    kill: Option<OwnedFd>,
    helper_pid: Option<i32>,
    init_pid: Option<i32>,
    /// A session's namespaces as its helper holds them (`Record::Held`).
    held: Vec<(String, i32)>,
    rootless: bool,
    timeout: Option<std::time::Duration>,
    ended: bool,
    /// What the sandbox used, once its helper said (before a timeout's or an OOM kill's error too).
    pub usage: Option<crate::Usage>,
    /// Records that came before the awaited stage and belong to the ending (a fast closure's value).
    early: Vec<Record>,
    /// The program's output, moved while the reports are awaited (see [`pump_output`](Self::pump_output)).
    pump: Pump,
    /// The caller's terminal, set back when the sandbox has ended.
    terminal: Option<crate::stdio::SavedTerminal>,
    /// Whatever must live until the sandbox is gone (a switch address's lease); dropped after it.
    _keep: Option<Box<dyn std::any::Any + Send + Sync>>,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

/// How a sandbox ended, as its helper told.
#[derive(Debug, Default)]
pub(crate) struct Ending {
    /// The program's raw wait status; `None` if the helper ended without saying.
    pub status: Option<i32>,
    /// What the sandbox used (sandboxes with limits).
    pub usage: Option<crate::Usage>,
    /// A closure's value or panic.
    pub value: Option<Record>,
    /// The executed helper's own exit status (served helpers are not ours to reap).
    pub helper: Option<ExitStatus>,
}

impl HelperHandle {
    /// Starts a helper for `config` and waits for `stage`. A failure of the overlay root that means
    /// "no overlayfs here" comes back as [`Retry::Copy`]: see [`with_fallback`].
    pub(crate) fn start<K: std::any::Any + Send + Sync>(
        (config, keep): (Config, Option<K>),
        stdio: [&crate::Stdio; 3],
        stage: Stage,
    ) -> Result<HelperHandle, Retry> {
        if let Job::Join { session, .. } = &config.job
            && let Some((deadline, now)) = session.deadline_monotonic.zip(crate::spawn::monotonic_now())
            && now >= deadline
        {
            // The session's sandbox is gone, killed at its deadline.
            return Err(Error::TimedOut { after: config.timeout.unwrap_or_default(), doing: Vec::new() }.into());
        }
        let config = &config;
        let terminal = crate::stdio::SavedTerminal::of(stdio);
        let launched = launch(config, stdio)?;
        let mut handle = HelperHandle {
            helper: launched.helper,
            reports: launched.reports,
            kill: Some(launched.kill),
            helper_pid: None,
            init_pid: None,
            held: Vec::new(),
            rootless: config.user_namespace && config.outer_uid != 0,
            timeout: config.timeout,
            ended: false,
            usage: None,
            early: Vec::new(),
            pump: Pump::default(),
            terminal,
            _keep: keep.map(|k| Box::new(k) as Box<dyn std::any::Any + Send + Sync>),
            stdin: launched.stdin,
            stdout: launched.stdout,
            stderr: launched.stderr,
        };
        if stage == Stage::Launched {
            return Ok(handle);
        }
        loop {
            match handle.reports.next() {
                Some(Record::Helper { pid }) => handle.helper_pid = Some(pid),
                Some(Record::Init { pid }) => handle.init_pid = Some(pid),
                Some(Record::Held { fds }) => handle.held = fds,
                Some(Record::Started) if stage == Stage::Started => return Ok(handle),
                Some(Record::Ready) if stage == Stage::Ready && handle.init_pid.is_some() => return Ok(handle),
                Some(Record::ExecFailed { errno }) => {
                    handle.end();
                    let program = match &config.job {
                        Job::Exec { program, .. } | Job::Join { program, .. } => crate::error::shown(program),
                        _ => String::new(),
                    };
                    return Err(Error::Spawn { program, source: std::io::Error::from_raw_os_error(errno) }.into());
                }
                Some(Record::SetupFailed { kind, what, path, errno }) => {
                    handle.end();
                    return Err(handle.setup_failed(kind, what, path, errno));
                }
                Some(
                    r @ (Record::Value { .. }
                    | Record::Panicked { .. }
                    | Record::Unencodable { .. }
                    | Record::Usage(_)
                    | Record::Activity { .. }),
                ) => handle.early.push(r),
                // The deadline passed before the program started (a slow setup).
                Some(Record::Exited { timed_out: true, .. }) => {
                    handle.end();
                    let doing = handle.early.iter().find_map(doing_of).unwrap_or_default();
                    return Err(Error::TimedOut { after: handle.timeout.unwrap_or_default(), doing }.into());
                }
                // Init ended before the program started, without a word (killed from outside, or by
                // the OOM killer during setup). The helper waits for the kill pipe to close.
                Some(Record::Exited { .. }) => return Err(Error::HelperDied { status: handle.end() }.into()),
                Some(_) => {}
                None => return Err(Error::HelperDied { status: handle.end() }.into()),
            }
        }
    }

    /// The host pid of the helper, if known (executed helpers; served ones say it in a record).
    pub(crate) fn helper_pid(&self) -> Option<u32> {
        match &self.helper {
            Helper::Executed(c) => Some(c.id()),
            Helper::Forked(pid) => Some(pid.as_raw() as u32),
            Helper::Served => self.helper_pid.map(|p| p as u32),
        }
    }

    /// The host pid of the sandbox's init (sessions and switches, once ready).
    pub(crate) fn init_pid(&self) -> Option<i32> {
        self.init_pid
    }

    /// What a command needs to join this session: its init and the namespaces its helper holds.
    pub(crate) fn joined(&self) -> Option<crate::config::Joined> {
        Some(crate::config::Joined { init_pid: self.init_pid?, held: self.held.clone(), deadline_monotonic: None })
    }

    /// Moves the program's output through `pump` while the reports are awaited, from now on; the
    /// caller takes it back with [`take_pump`](Self::take_pump) once the sandbox has ended.
    pub(crate) fn pump_output(&mut self, pump: Pump) {
        self.pump = pump;
    }

    /// The pump given to [`pump_output`](Self::pump_output), to be finished.
    pub(crate) fn take_pump(&mut self) -> Pump {
        std::mem::take(&mut self.pump)
    }

    /// Asks the helper to kill the sandbox (closing the kill pipe); [`wait_end`](Self::wait_end) then
    /// returns once all of it is gone.
    pub(crate) fn kill(&mut self) {
        drop(self.kill.take());
    }

    /// Whether the sandbox has ended (its `Exited` record, or the end of the reports, has arrived),
    /// without waiting: the records read on the way are kept for [`wait_end`](Self::wait_end).
    pub(crate) fn has_ended(&mut self) -> bool {
        if self.ended {
            return true;
        }
        loop {
            match self.reports.try_next() {
                Ok(Some(r)) => {
                    let exited = matches!(r, Record::Exited { .. });
                    self.early.push(r);
                    if exited {
                        return true;
                    }
                }
                Ok(None) => return false,
                Err(()) => return true,
            }
        }
    }

    /// Reads the reports to the end and reaps an executed helper. A setup failure on the way (a
    /// closure's root, a session command's wait) is an error; a timeout and an OOM kill are errors.
    pub(crate) fn wait_end(&mut self) -> Result<Ending, Retry> {
        let mut ending = Ending::default();
        let mut failure = None;
        let mut timed_out = false;
        let mut oom = None;
        let mut doing = Vec::new();
        let early = std::mem::take(&mut self.early);
        let pump = &mut self.pump;
        for r in early.into_iter().map(Some).chain(std::iter::from_fn(|| self.reports.next_pumping(pump)).map(Some)) {
            let Some(r) = r else { break };
            match r {
                Record::Helper { pid } => self.helper_pid = Some(pid),
                Record::Usage(u) => ending.usage = Some(u),
                Record::OomKilled { limit, peak } => oom = Some(Error::MemoryLimitExceeded { limit, peak }),
                r @ Record::Activity { .. } => doing = doing_of(&r).unwrap_or_default(),
                Record::Value { .. } | Record::Panicked { .. } | Record::Unencodable { .. } => ending.value = Some(r),
                Record::SetupFailed { kind, what, path, errno } => {
                    failure.get_or_insert((kind, what, path, errno));
                }
                Record::Exited { status, timed_out: t } => {
                    ending.status = Some(status);
                    timed_out = t;
                    // The helper ends once the kill pipe is closed (see helper::finish).
                    drop(self.kill.take());
                    // The helper sends `Exited` after reaping init, which reaps every other process of
                    // the sandbox first, and after removing the cgroup: nothing of the sandbox runs or
                    // shows on the host any more. The helper's own exit (which frees the namespaces
                    // and their mounts, about a millisecond) need not delay the caller; a forked one
                    // is reaped later (`reap_later`).
                    if let Helper::Served | Helper::Forked(_) = self.helper {
                        self.mark_ended();
                        reap_later(match self.helper {
                            Helper::Forked(pid) => Some(pid),
                            _ => None,
                        });
                        break;
                    }
                }
                _ => {}
            }
        }
        if !self.ended {
            ending.helper = self.end();
        }
        self.usage = ending.usage;
        if let Some((kind, what, path, errno)) = failure {
            return Err(self.setup_failed(kind, what, path, errno));
        }
        if timed_out {
            return Err(Error::TimedOut { after: self.timeout.unwrap_or_default(), doing }.into());
        }
        if let Some(e) = oom {
            return Err(e.into());
        }
        Ok(ending)
    }

    /// Ends the sandbox and waits until it is gone; the executed helper's exit status.
    pub(crate) fn end(&mut self) -> Option<ExitStatus> {
        self.kill();
        while self.reports.next_pumping(&mut self.pump).is_some() {}
        self.mark_ended();
        match &mut self.helper {
            Helper::Executed(c) => c.wait().ok(),
            Helper::Forked(pid) => match nix::sys::wait::waitpid(*pid, None) {
                Ok(w) => Some(exit_status(crate::spawn::helper::raw_status(w))),
                Err(_) => None,
            },
            Helper::Served => None,
        }
    }

    /// The sandbox is gone: none of its processes runs any more.
    fn mark_ended(&mut self) {
        self.ended = true;
        // Sets the caller's terminal back (stdio::SavedTerminal's drop).
        drop(self.terminal.take());
    }

    fn setup_failed(&self, kind: StepKind, what: String, path: Option<String>, errno: i32) -> Retry {
        let errno = Errno::from_raw(errno);
        let error = Error::Setup {
            step: what,
            path,
            source: std::io::Error::from(errno),
            hint: crate::hints::for_step(kind, errno, self.rootless),
        };
        if overlay_refused(kind, errno) { Retry::Copy(error) } else { Retry::Fail(error) }
    }
}

impl Drop for HelperHandle {
    fn drop(&mut self) {
        if !self.ended {
            self.end();
        }
    }
}

/// Helpers this process forked that had not ended when their sandbox had (see `wait_end`).
static UNREAPED: std::sync::Mutex<Vec<nix::unistd::Pid>> = std::sync::Mutex::new(Vec::new());

/// Reaps `pid` now if it has ended, else at a later call: each call reaps every listed helper that
/// has ended since (they are this process's children; the end of the next sandbox started here,
/// whichever process forked its helper, reaps them).
fn reap_later(pid: Option<nix::unistd::Pid>) {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let mut unreaped = UNREAPED.lock().unwrap_or_else(|p| p.into_inner());
    unreaped.extend(pid);
    unreaped.retain(|&p| matches!(waitpid(p, Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive)));
}

/// The exit status of a program from its raw wait status.
pub(crate) fn exit_status(raw: i32) -> ExitStatus {
    ExitStatus::from_raw(raw)
}

/// A failed start: final, or to be tried once more now that sandboxes copy the rootfs (the kernel
/// refused overlayfs; see [`overlay_refused`]).
#[derive(Debug)]
pub(crate) enum Retry {
    Fail(Error),
    /// The kernel refused overlayfs (the error says how); the next start copies the rootfs.
    Copy(Error),
}

impl From<Error> for Retry {
    fn from(e: Error) -> Retry {
        Retry::Fail(e)
    }
}

impl Retry {
    pub(crate) fn into_error(self) -> Error {
        match self {
            Retry::Fail(e) | Retry::Copy(e) => e,
        }
    }
}

/// Runs `attempt`, and once more if it failed because the kernel refused overlayfs: the configuration
/// it builds then says copy (see `Sandbox::config`). Every start path goes through here.
pub(crate) fn with_fallback<T>(mut attempt: impl FnMut() -> Result<T, Retry>) -> Result<T, Error> {
    match attempt() {
        Err(Retry::Copy(_)) => attempt().map_err(Retry::into_error),
        other => other.map_err(Retry::into_error),
    }
}

/// Set once the kernel has refused overlayfs: from then on every sandbox of this process copies.
static OVERLAY_REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether the kernel has refused overlayfs to this process (every start copies from then on).
pub(crate) fn overlay_refused_here() -> bool {
    OVERLAY_REFUSED.load(Ordering::Relaxed)
}

/// Whether a setup failure means "no overlayfs here"; if so, records it (warning once) so that the
/// caller retries with a copy.
fn overlay_refused(kind: StepKind, errno: Errno) -> bool {
    let refused = kind == StepKind::Overlay
        && matches!(errno, Errno::EPERM | Errno::EINVAL | Errno::ENODEV | Errno::EOPNOTSUPP | Errno::EACCES);
    if refused && !OVERLAY_REFUSED.swap(true, Ordering::Relaxed) {
        tracing::warn!(%errno, "overlayfs refused; copying the rootfs per sandbox from now on");
        eprintln!(
            "sandbox: the kernel refused overlayfs ({errno}); each sandbox now gets a private copy of the rootfs \
             instead (slower start). Use Builder::copy_rootfs(true) to ask for this directly."
        );
    }
    refused
}

/// What an `Activity` record says the sandbox was doing, as `Error::TimedOut` shows it.
fn doing_of(record: &Record) -> Option<Vec<String>> {
    let Record::Activity { processes, cgroup } = record else { return None };
    Some(processes.iter().cloned().chain(cgroup.iter().map(|c| format!("cgroup: {c}"))).collect())
}
