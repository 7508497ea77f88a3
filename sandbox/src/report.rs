//! Records the sandbox's processes send the parent, one JSON object per line on an inherited pipe.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::plan::StepKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Record {
    /// The host pid of the helper (sent by helpers that the fork server started).
    Helper { pid: i32 },
    /// The host pid of the sandbox's init (for sessions, which later commands join).
    Init { pid: i32 },
    /// A session's sandbox is set up and waiting for commands.
    Ready,
    /// The program was executed.
    Started,
    /// A setup step failed.
    SetupFailed { kind: StepKind, what: String, path: Option<String>, errno: i32 },
    /// exec of the program failed.
    ExecFailed { errno: i32 },
    /// A closure's return value, as JSON.
    Value { json: String },
    /// A closure panicked.
    Panicked { message: String },
    /// What the sandbox used (sandboxes with limits), sent just before `Exited`.
    Usage(crate::cgroups::Usage),
    /// The sandbox ended: the program's raw wait status, and whether the deadline killed it.
    Exited { status: i32, timed_out: bool },
}

/// Writes `record` as one line. Errors are ignored: the reader is the parent, and if it is gone there
/// is nobody left to tell.
pub(crate) fn send(fd: impl AsFd, record: &Record) {
    let Ok(mut line) = serde_json::to_vec(record) else { return };
    line.push(b'\n');
    let Ok(owned) = fd.as_fd().try_clone_to_owned() else { return };
    let _ = std::fs::File::from(owned).write_all(&line);
}

/// Reads records until end of file.
#[derive(Debug)]
pub(crate) struct Reader {
    inner: BufReader<std::fs::File>,
}

impl Reader {
    pub(crate) fn new(fd: OwnedFd) -> Reader {
        Reader { inner: BufReader::new(std::fs::File::from(fd)) }
    }

    /// The next record, or `None` at end of file (every writer has closed or exited).
    pub(crate) fn next(&mut self) -> Option<Record> {
        loop {
            let mut line = String::new();
            match self.inner.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {
                    if let Ok(r) = serde_json::from_str(line.trim_end()) {
                        return Some(r);
                    }
                    tracing::warn!(line = line.trim_end(), "ignoring an unreadable record from a sandbox");
                }
            }
        }
    }
}
