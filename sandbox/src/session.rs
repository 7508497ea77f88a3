//! One sandbox kept alive for several commands.

use std::process::Stdio;

use crate::command::Command;
use crate::config::Job;
use crate::report::Record;
use crate::spawn::parent::{launch, setup_error};
use crate::{Error, Sandbox};

/// A running sandbox whose commands share its filesystem, processes and network. Dropping it kills
/// everything in it.
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
    helper: std::process::Child,
    init_pid: i32,
}

impl<'a> Session<'a> {
    pub(crate) fn start(sandbox: &'a Sandbox) -> Result<Session<'a>, Error> {
        let config = sandbox.config(Job::Session, None)?;
        let (mut helper, mut reports) = launch(&config, [Stdio::null(), Stdio::null(), Stdio::inherit()], &[])?;
        let mut init_pid = None;
        loop {
            match reports.next() {
                Some(Record::Init { pid }) => init_pid = Some(pid),
                Some(Record::Ready) => break,
                Some(Record::SetupFailed { kind, what, path, errno }) => {
                    let _ = helper.wait();
                    return Err(setup_error(kind, what, path, errno, sandbox));
                }
                Some(_) => {}
                None => {
                    let status = helper.wait().map_err(crate::error::io("wait for", "the sandbox helper"))?;
                    return Err(Error::HelperDied { status });
                }
            }
        }
        match init_pid {
            Some(init_pid) => Ok(Session { sandbox, helper, init_pid }),
            None => {
                let _ = helper.kill();
                let status = helper.wait().map_err(crate::error::io("wait for", "the sandbox helper"))?;
                Err(Error::HelperDied { status })
            }
        }
    }

    /// A command to run inside this session's sandbox.
    pub fn command(&self, program: impl Into<String>) -> Command<'a> {
        Command::new(self.sandbox, program.into(), Some(self.init_pid))
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        // The helper kills init and reaps it once the whole pid namespace is gone.
        let _ = crate::command::terminate(&mut self.helper);
        let _ = self.helper.wait();
    }
}
