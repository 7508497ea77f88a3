//! One sandbox kept alive for several commands.

use std::os::fd::OwnedFd;

use crate::command::Command;
use crate::config::Job;
use crate::report::{Reader, Record};
use crate::spawn::handle::Retry;
use crate::spawn::parent::{Helper, Known, Stdio3, launch, setup_error};
use crate::{Error, Sandbox};

/// A running sandbox whose commands share its filesystem, processes and network. Dropping it kills
/// everything in it, and returns once all of it is gone.
///
/// # Examples
/// ```no_run
/// let sb = sandbox::Sandbox::builder().build()?;
/// let session = sb.session()?;
/// session.command("/bin/sh").args(["-c", "echo hi > /tmp/f"]).status()?;
/// let out = session.command("/bin/cat").arg("/tmp/f").output()?;
/// assert_eq!(out.stdout, b"hi\n");
/// # Ok::<(), sandbox::Error>(())
/// ```
#[derive(Debug)]
pub struct Session<'a> {
    sandbox: &'a Sandbox,
    helper: Helper,
    reports: Reader,
    kill: Option<OwnedFd>,
    init_pid: i32,
}

impl<'a> Session<'a> {
    pub(crate) fn start(sandbox: &'a Sandbox) -> Result<Session<'a>, Error> {
        match Self::try_start(sandbox) {
            // The kernel refused overlayfs: the sandbox's configuration now says copy; once more.
            Err(Retry::Copy) => Self::try_start(sandbox).map_err(Retry::into_error),
            other => other.map_err(Retry::into_error),
        }
    }

    fn try_start(sandbox: &'a Sandbox) -> Result<Session<'a>, Retry> {
        let config = sandbox.config(Job::Session, None)?;
        let launched = launch(&config, Stdio3::Known([Known::Null, Known::Null, Known::Inherit]), &[])?;
        let mut session = Session {
            sandbox,
            helper: launched.helper,
            reports: launched.reports,
            kill: Some(launched.kill),
            init_pid: 0,
        };
        loop {
            match session.reports.next() {
                Some(Record::Init { pid }) => session.init_pid = pid,
                Some(Record::Ready) if session.init_pid > 0 => return Ok(session),
                Some(Record::SetupFailed { kind, what, path, errno }) => {
                    session.end();
                    if crate::spawn::handle::overlay_refused(kind, errno) {
                        return Err(Retry::Copy);
                    }
                    return Err(setup_error(kind, what, path, errno, sandbox).into());
                }
                Some(_) => {}
                None => {
                    let status = session.end();
                    return Err(Error::HelperDied { status }.into());
                }
            }
        }
    }

    /// A command to run inside this session's sandbox.
    pub fn command(&self, program: impl Into<String>) -> Command<'a> {
        Command::new(self.sandbox, program.into(), Some(self.init_pid))
    }

    /// Tears the sandbox down and waits until it is gone.
    fn end(&mut self) -> Option<std::process::ExitStatus> {
        drop(self.kill.take());
        while self.reports.next().is_some() {}
        match &mut self.helper {
            Helper::Executed(c) => c.wait().ok(),
            Helper::Served => None,
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.end();
    }
}
