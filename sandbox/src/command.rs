//! `Command` and `Child`, shaped like `std::process`'s.

use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::process::{ChildStderr, ChildStdin, ChildStdout, ExitStatus, Output};

use crate::config::Job;
use crate::error::{check_env, invalid, invalid_os};
use crate::spawn::handle::{HelperHandle, Stage, exit_status, with_fallback};
use crate::spawn::pump::{Pump, Sink};
use crate::{Error, Sandbox, Stdio};

impl Sandbox {
    /// A command to run in a fresh sandbox, like [`std::process::Command`]: `program` is a path
    /// inside the sandbox, or a name looked up in its `PATH`.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command<'_> {
        Command::new(self, program.as_ref().to_owned(), None)
    }
}

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
    session: Option<crate::config::Joined>,
    program: OsString,
    arg0: Option<OsString>,
    args: Vec<OsString>,
    env: Vec<(String, Option<String>)>,
    current_dir: Option<std::path::PathBuf>,
    stdin: Option<Stdio>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
    controlling_terminal: bool,
    pty: Option<(u16, u16)>,
}

impl<'a> Command<'a> {
    pub(crate) fn new(sandbox: &'a Sandbox, program: OsString, session: Option<crate::config::Joined>) -> Command<'a> {
        Command {
            sandbox,
            session,
            program,
            arg0: None,
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
            stdin: None,
            stdout: None,
            stderr: None,
            controlling_terminal: false,
            pty: None,
        }
    }

    /// Runs the program on a new pseudo-terminal of the sandbox's own devpts, `rows` x `cols`: its
    /// stdin, stdout and stderr are the terminal, which is also its controlling terminal (job
    /// control, ^C), and `tty` inside names it (`/dev/pts/0`); `TERM` is `xterm` unless the
    /// environment sets one. The caller's side is [`Child::pty`]. For
    /// [`spawn`](Command::spawn) only, without stdio settings (refused as
    /// [`Error::InvalidConfig`]): keep reading the terminal while the program runs, as a terminal
    /// window does. A sandbox holds at most 256 pseudo-terminals at once. Default: off.
    ///
    /// # Examples
    /// ```no_run
    /// use std::io::{Read, Write};
    /// let sb = sandbox::Sandbox::builder().build()?;
    /// let mut child = sb.command("/bin/sh").pty(24, 80).spawn()?;
    /// let mut pty = child.pty.take().expect("a pty");
    /// pty.write_all(b"stty size; exit\n")?;
    /// let mut seen = String::new();
    /// pty.read_to_string(&mut seen)?;
    /// assert!(child.wait()?.success() && seen.contains("24 80"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pty(&mut self, rows: u16, cols: u16) -> &mut Self {
        self.pty = Some((rows, cols));
        self
    }

    /// Makes the program's stdin, which must be a terminal (e.g. the slave side of a pty), its
    /// controlling terminal: what an interactive shell needs for job control and ^C. Default: off.
    pub fn controlling_terminal(&mut self, enable: bool) -> &mut Self {
        self.controlling_terminal = enable;
        self
    }

    /// Sets the program's `argv[0]`, as [`std::os::unix::process::CommandExt::arg0`] does: what a
    /// multi-call program (busybox, a rustup proxy) reads its name from. Default: the program as
    /// given to [`Sandbox::command`](crate::Sandbox::command). Any bytes but NUL.
    ///
    /// ```no_run
    /// # let sb = sandbox::Sandbox::builder().build()?;
    /// let out = sb.command("/bin/busybox").arg0("echo").arg("hi").output()?;
    /// assert_eq!(out.stdout, b"hi\n");
    /// # Ok::<(), sandbox::Error>(())
    /// ```
    pub fn arg0(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.arg0 = Some(arg.as_ref().to_owned());
        self
    }

    /// Adds an argument: any bytes but NUL, as [`std::process::Command::arg`] takes (a path, a
    /// non-UTF-8 name).
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
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

    /// Clears the environment for this command: the sandbox's (its `PATH`, `HOME`, `HOSTNAME`,
    /// [`Builder::env`](crate::Builder::env)) and what was set before; set afterwards is kept. A
    /// program named without a `/` is still looked up in the default `PATH`.
    pub fn env_clear(&mut self) -> &mut Self {
        self.env.clear();
        for (key, _) in &self.sandbox.base.env {
            self.env.push((key.clone(), None));
        }
        self
    }

    /// Removes an environment variable for this command.
    pub fn env_remove(&mut self, key: impl Into<String>) -> &mut Self {
        self.env.push((key.into(), None));
        self
    }

    /// The working directory inside the sandbox, for this command: an absolute path, in UTF-8.
    pub fn current_dir(&mut self, dir: impl AsRef<std::path::Path>) -> &mut Self {
        self.current_dir = Some(dir.as_ref().to_owned());
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

    /// Starts the sandbox and the program in it; returns once the program runs: its exec succeeded,
    /// and `ps` or `pgrep -f` (inside, or on the host) show its command line.
    /// Stdio not set is inherited. A command can be spawned again: the new program gets the same
    /// settings, stdio included.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] before anything starts; [`Error::Spawn`] if the program cannot be
    /// executed (`io_kind()` is `NotFound` when it is missing from the rootfs); [`Error::Setup`] when a
    /// setup step fails.
    pub fn spawn(&mut self) -> Result<Child, Error> {
        self.spawn_with([Stdio::inherit(), Stdio::inherit(), Stdio::inherit()])
    }

    /// Runs the program to completion and collects its output (stdout and stderr are read
    /// concurrently, so large outputs cannot deadlock). Stdio not set: stdin null, stdout and stderr
    /// piped.
    ///
    /// Unlike `std::process::Command::output`, which waits until every process holding the pipes has
    /// closed them, a sandbox ends with its program: what the program left running in the background
    /// (`sleep 5 &`) is killed then, and `output` returns. In a [`crate::Session`] the sandbox stays:
    /// there, as with std, `output` waits for the background processes holding the pipes.
    ///
    /// # Errors
    /// As [`spawn`](Command::spawn), and [`Error::TimedOut`], [`Error::MemoryLimitExceeded`].
    pub fn output(&mut self) -> Result<Output, Error> {
        self.refuse_pty("output")?;
        self.spawn_with([Stdio::null(), Stdio::piped(), Stdio::piped()])?.wait_with_output()
    }

    /// Runs the program to completion and returns its exit status. What the program left running in
    /// the background ends with the sandbox, then (in a [`crate::Session`], it keeps running).
    ///
    /// # Errors
    /// As [`spawn`](Command::spawn), and [`Error::TimedOut`], [`Error::MemoryLimitExceeded`].
    pub fn status(&mut self) -> Result<ExitStatus, Error> {
        self.refuse_pty("status")?;
        self.spawn()?.wait()
    }

    /// As [`output`](Command::output), with what the sandbox used (sandboxes with limits; see
    /// [`Child::usage`]).
    ///
    /// # Examples
    /// ```no_run
    /// let sb = sandbox::Sandbox::builder().memory_limit(64 << 20).build()?;
    /// let (out, usage) = sb.command("/bin/true").output_with_usage()?;
    /// assert!(out.status.success() && usage.is_some_and(|u| u.oom_kills == 0));
    /// # Ok::<(), sandbox::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`output`](Command::output).
    pub fn output_with_usage(&mut self) -> Result<(Output, Option<crate::Usage>), Error> {
        self.refuse_pty("output_with_usage")?;
        let mut child = self.spawn_with([Stdio::null(), Stdio::piped(), Stdio::piped()])?;
        let output = child.collect_output()?;
        Ok((output, child.usage))
    }

    /// As [`status`](Command::status), with what the sandbox used (sandboxes with limits).
    ///
    /// # Errors
    /// As [`status`](Command::status).
    pub fn status_with_usage(&mut self) -> Result<(ExitStatus, Option<crate::Usage>), Error> {
        self.refuse_pty("status_with_usage")?;
        let mut child = self.spawn()?;
        let status = child.wait()?;
        Ok((status, child.usage))
    }

    /// A program on a pseudo-terminal needs its terminal read while it runs, which only the caller of
    /// [`spawn`](Command::spawn) can do: without it, the program would block once the terminal's
    /// buffer is full, or be hung up.
    fn refuse_pty(&self, method: &str) -> Result<(), Error> {
        match self.pty {
            Some((rows, cols)) => Err(invalid(
                "pty",
                &format!("{rows}x{cols}"),
                &format!("{method}() cannot relay a pseudo-terminal: use spawn() and read Child::pty"),
            )),
            None => Ok(()),
        }
    }

    /// Starts the sandbox with `defaults` for the stdio not set, once more with a copied rootfs if the
    /// kernel refused overlayfs.
    fn spawn_with(&self, defaults: [Stdio; 3]) -> Result<Child, Error> {
        let has_nul = |s: &OsStr| s.as_bytes().contains(&0);
        if self.program.is_empty() || has_nul(&self.program) {
            return Err(invalid_os("program", &self.program, "must be non-empty and without NUL"));
        }
        if let Some(a) = self.arg0.iter().chain(&self.args).find(|a| has_nul(a)) {
            return Err(invalid_os("argument", a, "must not contain NUL"));
        }
        for (k, v) in &self.env {
            check_env(k, v.as_deref().unwrap_or(""))?;
        }
        let current_dir = self.current_dir.as_deref().map(crate::error::utf8_dir).transpose()?;
        if self.pty.is_some() && [&self.stdin, &self.stdout, &self.stderr].iter().any(|s| s.is_some()) {
            let reason =
                "a program on a pseudo-terminal has the terminal as stdin, stdout and stderr: set none of them";
            return Err(invalid("pty", "with stdin, stdout or stderr", reason));
        }
        let [i, o, e] = &defaults;
        let mut stdio =
            [self.stdin.as_ref().unwrap_or(i), self.stdout.as_ref().unwrap_or(o), self.stderr.as_ref().unwrap_or(e)];
        // A pseudo-terminal: the program's process sends its master back over this socket, passed as
        // its stdin (sys::pty).
        let console = self.pty.map(|_| console_socket()).transpose()?;
        let null = Stdio::null();
        if let Some((_, theirs)) = &console {
            stdio = [theirs, &null, &null];
        }
        let handle = with_fallback(|| {
            let arg0 = self.arg0.clone().unwrap_or_else(|| self.program.clone());
            let job = match &self.session {
                Some(session) => {
                    Job::Join { session: session.clone(), program: self.program.clone(), arg0, args: self.args.clone() }
                }
                None => Job::Exec { program: self.program.clone(), arg0, args: self.args.clone() },
            };
            let (mut config, lease) = self.sandbox.config(job, Some((&self.env, current_dir)))?;
            config.controlling_terminal = self.controlling_terminal || self.pty.is_some();
            config.pty = self.pty;
            // A terminal has a type, as a container runtime's console does (`docker run -t`).
            if self.pty.is_some() && !config.env.iter().any(|(k, _)| k == "TERM") {
                config.env.push(("TERM".to_owned(), "xterm".to_owned()));
            }
            HelperHandle::start((config, lease), stdio, Stage::Started)
        })?;
        let mut child = Child::new(handle);
        if let Some((ours, _)) = console {
            let master = crate::sys::pty::receive_master(ours.as_fd())
                .and_then(|m| m.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof)))
                .map_err(|source| Error::Io {
                    op: "receive the sandbox's pseudo-terminal over",
                    path: "its console socket".into(),
                    source,
                })?;
            child.pty = Some(crate::Pty::new(master));
        }
        Ok(child)
    }
}

/// A unix socket pair, close-on-exec: ours, and the program's as a [`Stdio`].
fn console_socket() -> Result<(std::os::fd::OwnedFd, Stdio), Error> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| Error::Io { op: "create", path: "a console socket".into(), source: e.into() })?;
    Ok((ours, Stdio::from(theirs)))
}

/// A program running in a sandbox, like [`std::process::Child`], except that dropping it before it
/// was waited for kills the sandbox: a sandbox never outlives its handle.
#[derive(Debug)]
pub struct Child {
    handle: HelperHandle,
    usage: Option<crate::Usage>,
    status: Option<ExitStatus>,
    /// How the first wait failed, returned again by every later one.
    failed: Option<Error>,
    /// The program's stdin, if piped.
    pub stdin: Option<ChildStdin>,
    /// The program's stdout, if piped.
    pub stdout: Option<ChildStdout>,
    /// The program's stderr, if piped.
    pub stderr: Option<ChildStderr>,
    /// The caller's side of the program's pseudo-terminal, with [`Command::pty`].
    pub pty: Option<crate::Pty>,
}

impl Child {
    fn new(mut handle: HelperHandle) -> Child {
        Child {
            stdin: handle.stdin.take(),
            stdout: handle.stdout.take(),
            stderr: handle.stderr.take(),
            pty: None,
            handle,
            usage: None,
            status: None,
            failed: None,
        }
    }

    /// The host pid of the sandbox's helper process (not of the program inside). SIGTERM, SIGINT,
    /// SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to it are passed on to the program, as a container
    /// runtime passes them on: `kill(child.id(), SIGTERM)` stops it gracefully. The pid stays the
    /// helper's until [`wait`](Child::wait) has returned (or the `Child` is dropped), as a
    /// `std::process::Child`'s stays its own until it is waited for.
    pub fn id(&self) -> u32 {
        self.handle.helper_pid().unwrap_or(0)
    }

    /// What the whole sandbox used (peak memory, CPU time, OOM kills), once [`wait`](Child::wait) has
    /// returned, also with an error ([`Error::MemoryLimitExceeded`], [`Error::TimedOut`]); only for
    /// sandboxes with limits (which have a cgroup to read it from).
    pub fn usage(&self) -> Option<crate::Usage> {
        self.usage
    }

    /// Kills every process in the sandbox: the helper kills the sandbox's init, whose pid namespace
    /// dies with it. [`wait`](Child::wait) then returns once all of them are gone, with the program's
    /// status showing SIGKILL. For a command of a [`crate::Session`], kills that command's process
    /// only, as `std::process::Child::kill` does: what it started in the background keeps running in
    /// the session until the session ends (or another command stops it, e.g. `kill`).
    ///
    /// # Errors
    /// None today; the signature matches [`std::process::Child::kill`].
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.handle.kill();
        Ok(())
    }

    /// Waits for the program (and so the sandbox) to end and returns its exit status: the exit code,
    /// or the signal that killed it, exactly as the program's own.
    ///
    /// # Errors
    /// [`Error::TimedOut`] if the sandbox's deadline killed it; [`Error::MemoryLimitExceeded`] if the
    /// OOM killer did; [`Error::HelperDied`] if the helper was killed from outside; [`Error::Setup`]
    /// if the helper could not follow the program (a failed wait). A later call returns the same
    /// status, or the same error, again.
    pub fn wait(&mut self) -> Result<ExitStatus, Error> {
        drop(self.stdin.take());
        if let Some(s) = self.status {
            return Ok(s);
        }
        if let Some(e) = self.failed.as_ref().and_then(Error::again) {
            return Err(e);
        }
        let ended = self.handle.wait_end().map_err(|r| {
            // A timeout's or an OOM kill's usage is the one that matters most.
            self.usage = self.handle.usage;
            r.into_error()
        });
        let status = ended.and_then(|ending| {
            self.usage = ending.usage;
            Ok(exit_status(ending.status.ok_or(Error::HelperDied { status: ending.helper })?))
        });
        match status {
            Ok(status) => self.status = Some(status),
            Err(ref e) => self.failed = e.again(),
        }
        status
    }

    /// As [`std::process::Child::try_wait`]: the program's status if it (and so the sandbox) has
    /// ended, `None` while it runs, without waiting; once it has returned a status or an error, it
    /// returns it again, as [`wait`](Child::wait) does.
    ///
    /// # Examples
    /// ```no_run
    /// let sb = sandbox::Sandbox::builder().build()?;
    /// let mut daemon = sb.command("/bin/sleep").arg("30").spawn()?;
    /// assert!(daemon.try_wait()?.is_none(), "still running");
    /// daemon.kill()?;
    /// assert!(daemon.wait()?.code().is_none(), "killed by a signal");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`wait`](Child::wait), once the sandbox has ended.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, Error> {
        if self.status.is_none() && self.failed.is_none() && !self.handle.has_ended() {
            return Ok(None);
        }
        self.wait().map(Some)
    }

    /// Waits and collects whatever stdout and stderr were piped.
    ///
    /// # Errors
    /// As [`wait`](Child::wait).
    pub fn wait_with_output(mut self) -> Result<Output, Error> {
        self.collect_output()
    }

    fn collect_output(&mut self) -> Result<Output, Error> {
        drop(self.stdin.take());
        // Read on this thread while waiting for the end: no thread per sandbox, and neither a full
        // pipe nor a silent one can stall the other.
        let pump = Pump::default()
            .with(self.stdout.take(), Sink::Keep(Vec::new()))
            .with(self.stderr.take(), Sink::Keep(Vec::new()));
        self.handle.pump_output(pump);
        let status = self.wait();
        let mut kept = self.handle.take_pump().finish().into_iter().map(Sink::into_kept);
        let (stdout, stderr) = (kept.next().unwrap_or_default(), kept.next().unwrap_or_default());
        Ok(Output { status: status?, stdout, stderr })
    }
}
