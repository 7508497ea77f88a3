//! The one wire format between the sandbox's processes: typed records, one JSON object per line. The
//! helper reports to the parent on the report pipe; init and the program's process report to the
//! helper on theirs (status and exec pipes) with the same records.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

/// Which part of setup a step belongs to; the parent turns it into a hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum StepKind {
    Namespaces,
    UserMap,
    Propagation,
    Staging,
    Overlay,
    CopyRoot,
    HostRoot,
    Proc,
    Dev,
    Tmp,
    Sys,
    Etc,
    Hostname,
    Loopback,
    Pivot,
    CurrentDir,
    Volume,
    File,
    Limits,
    /// A setrlimit(2) value for the program.
    Rlimit,
    Network,
    Helper,
    /// The program's own hardening: no_new_privs and the seccomp filter.
    Security,
}

/// A failed step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub kind: StepKind,
    pub what: &'static str,
    pub path: Option<String>,
    pub errno: Errno,
}

/// Reports a failed setup step.
pub(crate) fn send_failure(fd: impl AsFd, f: &Failure) {
    send(
        fd,
        &Record::SetupFailed { kind: f.kind, what: f.what.to_owned(), path: f.path.clone(), errno: f.errno as i32 },
    );
}

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
    /// Init's mount namespace exists (init to helper): the helper holds it from now on, so that
    /// tearing the sandbox's mounts down happens after the helper's report, not on the caller's way.
    MountNamespaceReady,
    /// A session's namespaces, as descriptors its helper holds from before init became unreachable
    /// (not dumpable): (name as in `/proc/PID/ns`, descriptor number in the helper). Its commands
    /// enter them through `/proc/<helper>/fd`.
    Held { fds: Vec<(String, i32)> },
    /// A setup step failed.
    SetupFailed { kind: StepKind, what: String, path: Option<String>, errno: i32 },
    /// exec of the program failed.
    ExecFailed { errno: i32 },
    /// A closure's return value, as JSON.
    Value { json: String },
    /// A closure panicked: the message, and where.
    Panicked { message: String, location: Option<String> },
    /// The closure's input could not be decoded, or its value encoded (JSON: a map with keys that
    /// are no strings, a NaN): no panic of the closure's.
    Unencodable { reason: String },
    /// What the sandbox used (sandboxes with limits), sent just before `Exited`.
    Usage(crate::cgroups::Usage),
    /// The kernel's OOM killer acted in a sandbox with a memory limit and the program was killed:
    /// the helper's verdict, sent before `Exited`.
    OomKilled { limit: u64, peak: Option<u64> },
    /// The sandbox ended: the program's raw wait status, and whether the deadline killed it.
    Exited { status: i32, timed_out: bool },
    /// At the deadline, right before the kill: what the sandbox was running (init's view, one line
    /// per process) and, with limits, its cgroup's state (the helper's view).
    Activity { processes: Vec<String>, cgroup: Option<String> },
}

/// Reports a failed step that is not part of the plan (a pipe, a fork, a namespace of the helper's).
pub(crate) fn send_setup_failed(fd: impl AsFd, kind: StepKind, what: &str, errno: Errno) {
    send(fd, &Record::SetupFailed { kind, what: what.to_owned(), path: None, errno: errno as i32 });
}

/// Writes `record` as one line. Errors are ignored: the reader is the parent, and if it is gone there
/// is nobody left to tell.
pub(crate) fn send(fd: impl AsFd, record: &Record) {
    let Ok(mut line) = serde_json::to_vec(record) else { return };
    line.push(b'\n');
    let Ok(owned) = fd.as_fd().try_clone_to_owned() else { return };
    let _ = std::fs::File::from(owned).write_all(&line);
}

fn parse(line: &[u8]) -> Option<Record> {
    let line = line.trim_ascii_end();
    let r = serde_json::from_slice(line).ok();
    if r.is_none() && !line.is_empty() {
        tracing::warn!(line = %String::from_utf8_lossy(line), "ignoring an unreadable record from a sandbox");
    }
    r
}

/// Records from bytes that arrive in pieces (a pipe read as it becomes readable).
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    pending: Vec<u8>,
}

impl Decoder {
    /// Adds bytes; returns the records they complete.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<Record> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            out.extend(parse(&line));
        }
        out
    }
}

/// The longest record the caller reads: a closure's value, as JSON, is the longest there is. Past
/// it the reports end, and the sandbox with them: a closure writing endless bytes without a newline
/// on its report pipe grew the caller's memory without bound, 2.1 GB in 4.6 s under a 64 MiB limit
/// (the twenty-fourth outside review).
pub(crate) const MAX_RECORD: usize = 256 << 20;

/// Reads records until end of file.
#[derive(Debug)]
pub(crate) struct Reader {
    inner: BufReader<std::fs::File>,
    /// Set at end of file, or once a record was too long: nothing more is read.
    done: bool,
    /// The longest record read ([`MAX_RECORD`]).
    max: usize,
}

impl Reader {
    pub(crate) fn new(fd: OwnedFd) -> Reader {
        Reader { inner: BufReader::new(std::fs::File::from(fd)), done: false, max: MAX_RECORD }
    }

    /// The next line, newline included: `None` at end of file, the record saying so when it is
    /// longer than [`MAX_RECORD`] (and nothing is read after it).
    fn line(&mut self) -> Option<Result<Vec<u8>, Record>> {
        if self.done {
            return None;
        }
        let mut line = Vec::new();
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => &[],
            };
            if buf.is_empty() {
                self.done = true;
                return (!line.is_empty()).then_some(Ok(line));
            }
            let (take, complete) = match buf.iter().position(|b| *b == b'\n') {
                Some(end) => (end + 1, true),
                None => (buf.len(), false),
            };
            line.extend_from_slice(&buf[..take]);
            self.inner.consume(take);
            if complete {
                return Some(Ok(line));
            }
            if line.len() > self.max {
                self.done = true;
                let reason = format!(
                    "the sandbox sent a report longer than {} MiB (a closure's value travels as JSON: pass \
                     large data through a volume, Mount::bind)",
                    self.max >> 20
                );
                return Some(Err(Record::Unencodable { reason }));
            }
        }
    }

    /// The next record, or `None` at end of file (every writer has closed or exited).
    pub(crate) fn next(&mut self) -> Option<Record> {
        self.next_pumping(&mut crate::spawn::pump::Pump::default())
    }

    /// The next record if one has arrived, without waiting for one to come: `Ok(None)` when nothing
    /// is there yet, `Err(())` at end of file. (A record begun is read to its end: the helper writes
    /// each whole, at once.)
    pub(crate) fn try_next(&mut self) -> Result<Option<Record>, ()> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let arrived = |fd: BorrowedFd<'_>| loop {
            match poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], PollTimeout::ZERO) {
                Err(Errno::EINTR) => continue,
                Ok(0) => break false,
                Ok(_) | Err(_) => break true,
            }
        };
        self.next_when(arrived).ok_or(())
    }

    /// As [`next`](Self::next), moving the program's output through `pump` while no whole record
    /// is buffered.
    pub(crate) fn next_pumping(&mut self, pump: &mut crate::spawn::pump::Pump) -> Option<Record> {
        self.next_when(|fd| {
            pump.until_readable(fd);
            true
        })
        .flatten()
    }

    /// The next record, asking `ready` first whenever no whole record is buffered (it waits, or says
    /// `false` when nothing has arrived: then `Some(None)`); `None` at end of file.
    fn next_when(&mut self, mut ready: impl FnMut(BorrowedFd<'_>) -> bool) -> Option<Option<Record>> {
        loop {
            if !self.inner.buffer().contains(&b'\n') && !ready(self.inner.get_ref().as_fd()) {
                return Some(None);
            }
            match self.line()? {
                Err(too_long) => return Some(Some(too_long)),
                Ok(line) => {
                    if let Some(r) = parse(&line) {
                        return Some(Some(r));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The twenty-fourth outside review: endless bytes without a newline grew the reader's memory
    /// without bound. Past the longest record, the reports end with a record that says so.
    #[test]
    fn a_record_longer_than_the_most_ends_the_reports() {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let writer = std::thread::spawn(move || {
            let mut w = std::fs::File::from(w);
            let _ = w.write_all(b"{\"Init\":{\"pid\":7}}\n");
            // Until the reader stops reading (EPIPE): 4 MiB past its most, at most.
            for _ in 0..8 {
                if w.write_all(&[b'x'; 1 << 20]).is_err() {
                    break;
                }
            }
        });
        let mut reader = Reader { max: 2 << 20, ..Reader::new(r) };
        assert_eq!(reader.next(), Some(Record::Init { pid: 7 }));
        match reader.next() {
            Some(Record::Unencodable { reason }) => assert!(reason.contains("longer than 2 MiB"), "{reason}"),
            other => panic!("expected the too-long record, got {other:?}"),
        }
        assert_eq!(reader.next(), None, "nothing is read after it");
        drop(reader);
        writer.join().expect("writer");
    }

    #[test]
    fn decoder_joins_records_split_across_reads() {
        let mut line = serde_json::to_vec(&Record::Exited { status: 9, timed_out: false }).expect("encode");
        line.push(b'\n');
        line.extend_from_slice(b"{\"Init\":{\"pid\":7}}\n");
        let mut d = Decoder::default();
        let (a, b) = line.split_at(5);
        assert_eq!(d.feed(a), vec![]);
        assert_eq!(d.feed(b), vec![Record::Exited { status: 9, timed_out: false }, Record::Init { pid: 7 }]);
    }
}
