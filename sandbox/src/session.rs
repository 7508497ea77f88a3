//! One sandbox kept alive for several commands.

use crate::command::Command;
use crate::config::{Job, Joined};
use crate::spawn::handle::{HelperHandle, Stage, with_fallback};
use crate::{Error, Sandbox, Stdio};

impl Sandbox {
    /// Starts one sandbox that stays up until the returned [`Session`] is dropped; its commands see
    /// each other's files and processes.
    ///
    /// # Errors
    /// As for starting a command.
    pub fn session(&self) -> Result<Session<'_>, Error> {
        Session::start(self)
    }
}

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
    /// Dropping it tears the sandbox down and waits until it is gone.
    _handle: HelperHandle,
    joined: Joined,
}

impl<'a> Session<'a> {
    pub(crate) fn start(sandbox: &'a Sandbox) -> Result<Session<'a>, Error> {
        let (null, inherit) = (Stdio::null(), Stdio::inherit());
        // Reckoned before the session's helper starts its own: never later than that one.
        let started = crate::spawn::monotonic_now();
        let handle = with_fallback(|| {
            HelperHandle::start(sandbox.config(Job::Session, None)?, [&null, &null, &inherit], Stage::Ready)
        })?;
        let mut joined = handle.joined().ok_or(Error::HelperDied { status: None })?;
        // A deadline past what the clock holds is none.
        joined.deadline_monotonic = started.zip(sandbox.base.timeout).and_then(|(s, t)| s.checked_add(t));
        Ok(Session { sandbox, _handle: handle, joined })
    }

    /// A command to run inside this session's sandbox. It borrows the session: a command cannot
    /// outlive it (it would have no sandbox to join).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command<'_> {
        Command::new(self.sandbox, program.as_ref().to_owned(), Some(self.joined.clone()))
    }
}
