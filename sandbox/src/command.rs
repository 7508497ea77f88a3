//! `Command` and `Child`, shaped like `std::process`'s.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{ChildStderr, ChildStdin, ChildStdout, ExitStatus, Output, Stdio};
use std::time::Duration;

use crate::config::Job;
use crate::error::{check_env, checked, invalid};
use crate::report::{Reader, Record};
use crate::spawn::handle::Retry;
use crate::spawn::parent::{Helper, Known, Stdio3, launch, setup_error};
use crate::{Error, Sandbox};

/// A program to run in a sandbox, configured like [`std::process::Command`].
///
/// # Examples
/// ```no_run
/// let sb = sandbox::Sandbox::builder().build()?;
/// let status = sb.command("/bin/false").status()?;
/// assert_eq!(status.code(), Some(1));
/// # Ok::<(), sandbox::Error>(())
/// ```
#[derive(Debug)]
pub struct Command<'a> {
    sandbox: &'a Sandbox,
    session_init: Option<i32>,
    program: String,
    args: Vec<String>,
    env: Vec<(String, Option<String>)>,
    current_dir: Option<String>,
    stdin: Option<Stdio>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
    controlling_terminal: bool,
}

impl<'a> Command<'a> {
    pub(crate) fn new(sandbox: &'a Sandbox, program: String, session_init: Option<i32>) -> Command<'a> {
        Command {
            sandbox,
            session_init,
            program,
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
            stdin: None,
            stdout: None,
            stderr: None,
            controlling_terminal: false,
        }
    }

    /// Makes the program's stdin, which must be a terminal (e.g. the slave side of a pty), its
    /// controlling terminal: what an interactive shell needs for job control and ^C. Default: off.
    pub fn controlling_terminal(&mut self, enable: bool) -> &mut Self {
        self.controlling_terminal = enable;
        self
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl Into<String>) -> &mut Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for this command (over the sandbox's).
    pub fn env(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Sets several environment variables.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    /// Removes an environment variable for this command.
    pub fn env_remove(&mut self, key: impl Into<String>) -> &mut Self {
        self.env.push((key.into(), None));
        self
    }

    /// The working directory inside the sandbox, for this command.
    pub fn current_dir(&mut self, dir: impl Into<String>) -> &mut Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// The program's stdin. Default: inherited (null for [`output`](Command::output)).
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.stdin = Some(cfg.into());
        self
    }

    /// The program's stdout. Default: inherited (piped for [`output`](Command::output)).
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.stdout = Some(cfg.into());
        self
    }

    /// The program's stderr. Default: inherited (piped for [`output`](Command::output)).
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.stderr = Some(cfg.into());
        self
    }

    /// Starts the sandbox and the program in it; returns once the program runs (exec succeeded).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] before anything starts; [`Error::Spawn`] if the program cannot be
    /// executed (`io_kind()` is `NotFound` when it is missing from the rootfs); [`Error::Setup`] when a
    /// setup step fails.
    pub fn spawn(&mut self) -> Result<Child, Error> {
        self.spawn_with([Known::Inherit; 3])
    }

    /// Starts the sandbox; once more, with a copied rootfs, if the kernel refused overlayfs.
    fn spawn_with(&mut self, defaults: [Known; 3]) -> Result<Child, Error> {
        match self.start(defaults) {
            // Only starts with crate-chosen stdio are retried, so there is nothing to restore.
            Err(Retry::Copy) => self.start(defaults).map_err(Retry::into_error),
            other => other.map_err(Retry::into_error),
        }
    }

    /// Runs the program to completion and collects its output (stdout and stderr are read
    /// concurrently, so large outputs cannot deadlock).
    ///
    /// # Errors
    /// As [`spawn`](Command::spawn), and [`Error::TimedOut`].
    pub fn output(&mut self) -> Result<Output, Error> {
        self.spawn_with([Known::Null, Known::Piped, Known::Piped])?.wait_with_output()
    }

    /// Runs the program to completion and returns its exit status.
    ///
    /// # Errors
    /// As [`spawn`](Command::spawn), and [`Error::TimedOut`].
    pub fn status(&mut self) -> Result<ExitStatus, Error> {
        self.spawn()?.wait()
    }

    fn start(&mut self, defaults: [Known; 3]) -> Result<Child, Retry> {
        if self.program.is_empty() || self.program.contains('\0') {
            return Err(invalid("program", &self.program, "must be non-empty and without NUL").into());
        }
        if let Some(a) = self.args.iter().find(|a| a.contains('\0')) {
            return Err(invalid("argument", a, "must not contain NUL").into());
        }
        for (k, v) in &self.env {
            check_env(k, v.as_deref().unwrap_or(""))?;
        }
        if let Some(dir) = &self.current_dir {
            checked("current_dir", dir, sandbox_validate::path_inside(dir))?;
        }
        let job = match self.session_init {
            Some(init_pid) => Job::Join { init_pid, program: self.program.clone(), args: self.args.clone() },
            None => Job::Exec { program: self.program.clone(), args: self.args.clone() },
        };
        let mut config = self.sandbox.config(job, Some((&self.env, self.current_dir.as_deref())))?;
        config.controlling_terminal = self.controlling_terminal;
        let explicit = self.stdin.is_some() || self.stdout.is_some() || self.stderr.is_some();
        let stdio = if !explicit {
            Stdio3::Known(defaults)
        } else {
            let [i, o, e] = defaults;
            Stdio3::Std([
                self.stdin.take().unwrap_or_else(|| i.to_std()),
                self.stdout.take().unwrap_or_else(|| o.to_std()),
                self.stderr.take().unwrap_or_else(|| e.to_std()),
            ])
        };
        let launched = launch(&config, stdio, &[])?;
        let mut child = Child {
            helper: launched.helper,
            reports: launched.reports,
            kill: Some(launched.kill),
            helper_pid: None,
            timeout: config.timeout,
            memory_limit: config.limits.memory,
            usage: None,
            status: None,
            stdin: launched.stdin,
            stdout: launched.stdout,
            stderr: launched.stderr,
        };
        loop {
            match child.reports.next() {
                Some(Record::Started) => return Ok(child),
                Some(Record::Helper { pid }) => child.helper_pid = Some(pid),
                Some(Record::ExecFailed { errno }) => {
                    child.finish();
                    return Err(Error::Spawn {
                        program: self.program.clone(),
                        source: std::io::Error::from_raw_os_error(errno),
                    }
                    .into());
                }
                Some(Record::SetupFailed { kind, what, path, errno }) => {
                    child.finish();
                    // Explicit std::process::Stdio were consumed by this attempt: no retry with them.
                    if !explicit && crate::spawn::handle::overlay_refused(kind, errno) {
                        return Err(Retry::Copy);
                    }
                    let path = path
                        .or_else(|| (kind == crate::report::StepKind::CurrentDir).then(|| config.current_dir.clone()));
                    return Err(setup_error(kind, what, path, errno, self.sandbox).into());
                }
                Some(_) => {}
                None => return Err(Error::HelperDied { status: child.finish() }.into()),
            }
        }
    }
}

/// A program running in a sandbox, like [`std::process::Child`], except that dropping it before it
/// was waited for kills the sandbox: a sandbox never outlives its handle.
#[derive(Debug)]
pub struct Child {
    helper: Helper,
    reports: Reader,
    kill: Option<OwnedFd>,
    helper_pid: Option<i32>,
    timeout: Option<Duration>,
    memory_limit: Option<u64>,
    usage: Option<crate::Usage>,
    status: Option<ExitStatus>,
    /// The program's stdin, if piped.
    pub stdin: Option<ChildStdin>,
    /// The program's stdout, if piped.
    pub stdout: Option<ChildStdout>,
    /// The program's stderr, if piped.
    pub stderr: Option<ChildStderr>,
}

impl Child {
    /// The host pid of the sandbox's helper process (not of the program inside).
    pub fn id(&self) -> u32 {
        match &self.helper {
            Helper::Executed(c) => c.id(),
            Helper::Served => self.helper_pid.map_or(0, |p| p as u32),
        }
    }

    /// What the whole sandbox used (peak memory, CPU time, OOM kills), once [`wait`](Child::wait) has
    /// returned; only for sandboxes with limits (which have a cgroup to read it from).
    pub fn usage(&self) -> Option<crate::Usage> {
        self.usage
    }

    /// Kills every process in the sandbox: the helper kills the sandbox's init, whose pid namespace
    /// dies with it. [`wait`](Child::wait) then returns once all of them are gone, with the program's
    /// status showing SIGKILL.
    ///
    /// # Errors
    /// None today; the signature matches [`std::process::Child::kill`].
    pub fn kill(&mut self) -> std::io::Result<()> {
        // Closing our end of the kill pipe is the request.
        drop(self.kill.take());
        Ok(())
    }

    /// Waits for the program (and so the sandbox) to end and returns its exit status: the exit code,
    /// or the signal that killed it, exactly as the program's own.
    ///
    /// # Errors
    /// [`Error::TimedOut`] if the sandbox's deadline killed it; [`Error::HelperDied`] if the helper was
    /// killed from outside.
    pub fn wait(&mut self) -> Result<ExitStatus, Error> {
        drop(self.stdin.take());
        if let Some(s) = self.status {
            return Ok(s);
        }
        let mut exited = None;
        while let Some(r) = self.reports.next() {
            match r {
                Record::Usage(u) => self.usage = Some(u),
                Record::Exited { status, timed_out } => {
                    exited = Some((status, timed_out));
                    break;
                }
                _ => {}
            }
        }
        // The helper sends `Exited` after reaping init, which reaps every other process of the sandbox
        // first: nothing of the sandbox runs any more. An executed helper is ours to reap; a served one
        // is the fork server's, and its exit (which frees the namespaces) need not delay the caller.
        let helper = match (&self.helper, exited) {
            (Helper::Served, Some(_)) => {
                drop(self.kill.take());
                None
            }
            _ => self.finish(),
        };
        match exited {
            Some((_, true)) => Err(Error::TimedOut { after: self.timeout.unwrap_or_default() }),
            Some((raw, false)) => {
                let status = ExitStatus::from_raw(raw);
                self.status = Some(status);
                // Killed, and the OOM killer acted in this sandbox: the memory limit ended it.
                if let (Some(limit), Some(u), Some(9)) = (self.memory_limit, self.usage, status.signal())
                    && u.oom_kills > 0
                {
                    return Err(Error::MemoryLimitExceeded { limit, peak: u.peak_memory });
                }
                Ok(status)
            }
            None => Err(Error::HelperDied { status: helper }),
        }
    }

    /// Reaps an executed helper (after its reports ended, it has exited or is about to).
    fn finish(&mut self) -> Option<ExitStatus> {
        drop(self.kill.take());
        while self.reports.next().is_some() {}
        match &mut self.helper {
            Helper::Executed(c) => c.wait().ok(),
            Helper::Served => None,
        }
    }

    /// Waits and collects whatever stdout and stderr were piped.
    ///
    /// # Errors
    /// As [`wait`](Child::wait).
    pub fn wait_with_output(mut self) -> Result<Output, Error> {
        drop(self.stdin.take());
        let err = self.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = e.read_to_end(&mut buf);
                buf
            })
        });
        let mut stdout = Vec::new();
        if let Some(mut o) = self.stdout.take() {
            let _ = o.read_to_end(&mut stdout);
        }
        let stderr = err.and_then(|t| t.join().ok()).unwrap_or_default();
        let status = self.wait()?;
        Ok(Output { status, stdout, stderr })
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.finish();
        }
    }
}
