//! The program's piped output, moved on the caller's own thread while it waits for the sandbox's
//! reports: no thread is spawned per sandbox (spawning one costs about as much as a tenth of a
//! start on a small VM). [`Reader::next_pumping`](crate::report::Reader::next_pumping) waits on the
//! reports and these streams at once, so neither a full output pipe nor a large report can stall.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Where a stream's bytes go.
#[derive(Debug)]
pub(crate) enum Sink {
    /// Kept, for [`Output`](std::process::Output).
    Keep(Vec<u8>),
    /// Printed through `print!` (stdout) or `eprint!` (stderr), which a test harness captures like
    /// the test's own output. A UTF-8 sequence split across reads is held until complete; bytes
    /// that are not UTF-8 show as U+FFFD (`print!` carries text only). To a non-blocking stream, the
    /// bytes are written as they are, outside the harness's capture (see `emit`).
    Print { stderr: bool, pending: Vec<u8> },
    /// Read and dropped: printing failed (this process's stdout is a pipe nobody reads any more).
    Gone,
}

impl Sink {
    /// Prints the caller's way: to this process's stdout.
    pub(crate) fn stdout() -> Sink {
        Sink::Print { stderr: false, pending: Vec::new() }
    }

    /// Prints the caller's way: to this process's stderr.
    pub(crate) fn stderr() -> Sink {
        Sink::Print { stderr: true, pending: Vec::new() }
    }

    fn take(&mut self, bytes: &[u8]) {
        match self {
            Sink::Keep(kept) => kept.extend_from_slice(bytes),
            Sink::Print { stderr, pending } => {
                pending.extend_from_slice(bytes);
                let ready = complete_prefix(pending);
                let printed = emit(&pending[..ready], *stderr);
                pending.drain(..ready);
                if !printed {
                    *self = Sink::Gone;
                }
            }
            Sink::Gone => {}
        }
    }

    /// The stream ended: what is still held goes out, whole or not.
    fn finish(&mut self) {
        if let Sink::Print { stderr, pending } = self {
            emit(pending, *stderr);
            pending.clear();
        }
    }

    /// What was kept (empty for a printing sink).
    pub(crate) fn into_kept(self) -> Vec<u8> {
        match self {
            Sink::Keep(kept) => kept,
            Sink::Print { .. } | Sink::Gone => Vec::new(),
        }
    }
}

/// Output streams (read ends of the program's pipes), each with its sink.
#[derive(Debug, Default)]
pub(crate) struct Pump {
    streams: Vec<(Option<std::fs::File>, Sink)>,
}

impl Pump {
    /// Adds `stream`, if there is one; its sink's place is the order of the calls.
    pub(crate) fn with(mut self, stream: Option<impl Into<std::os::fd::OwnedFd>>, sink: Sink) -> Pump {
        self.streams.push((stream.map(|s| std::fs::File::from(s.into())), sink));
        self
    }

    fn open(&self) -> bool {
        self.streams.iter().any(|(s, _)| s.is_some())
    }

    /// Waits until `reports` is readable, moving output meanwhile. Returns at once with no stream
    /// open. A failed poll (not EINTR) returns too: the caller's read then blocks as it would have.
    pub(crate) fn until_readable(&mut self, reports: BorrowedFd<'_>) {
        while self.open() {
            match self.move_some(Some(reports)) {
                Ok(true) | Err(()) => return,
                Ok(false) => {}
            }
        }
    }

    /// Waits until `reports` (if given) or an open stream is readable, and reads each stream that
    /// is, once. Whether `reports` is readable; `Err` if poll failed (not EINTR).
    fn move_some(&mut self, reports: Option<BorrowedFd<'_>>) -> Result<bool, ()> {
        let open: Vec<usize> = (0..self.streams.len()).filter(|&i| self.streams[i].0.is_some()).collect();
        let mut fds: Vec<PollFd<'_>> = reports.iter().map(|r| PollFd::new(*r, PollFlags::POLLIN)).collect();
        for &i in &open {
            if let Some(s) = &self.streams[i].0 {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(false),
            Err(_) => return Err(()),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(true)).collect();
        drop(fds);
        let (reports_ready, streams_ready) = ready.split_at(usize::from(reports.is_some()));
        for (&i, _) in open.iter().zip(streams_ready).filter(|(_, r)| **r) {
            self.read_once(i);
        }
        Ok(reports_ready.first().copied().unwrap_or(false))
    }

    /// Reads what stream `i` has (one read), or closes it at its end.
    fn read_once(&mut self, i: usize) {
        let (stream, sink) = &mut self.streams[i];
        let Some(file) = stream else { return };
        let mut buf = [0u8; 8192];
        match file.read(&mut buf) {
            Ok(0) => {
                sink.finish();
                *stream = None;
            }
            Ok(n) => sink.take(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => {
                sink.finish();
                *stream = None;
            }
        }
    }

    /// Reads every stream to its end, all at once (a session's background job may still write to
    /// one while holding the other open), and returns the sinks in the order they were added.
    pub(crate) fn finish(mut self) -> Vec<Sink> {
        while self.open() {
            if self.move_some(None).is_err() {
                // No poll: each stream in turn, as a blocking read would.
                for i in 0..self.streams.len() {
                    while self.streams[i].0.is_some() {
                        self.read_once(i);
                    }
                }
            }
        }
        self.streams.into_iter().map(|(_, sink)| sink).collect()
    }
}

/// Prints `bytes` (see [`Sink::Print`]); `false` if printing failed. `print!` panics when this
/// process's stream fails: a pipe whose reader is gone is seen first (poll(2) reports an error on
/// it), so that no panic is reported for it; any other failure's panic is caught here, on the
/// caller's thread, where it would otherwise unwind through the sandbox's end and abort the process.
fn emit(bytes: &[u8], stderr: bool) -> bool {
    if bytes.is_empty() {
        return true;
    }
    let (out, err) = (std::io::stdout(), std::io::stderr());
    let fd = if stderr { err.as_fd() } else { out.as_fd() };
    let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
    if poll(&mut fds, PollTimeout::ZERO).is_ok()
        && fds[0].revents().is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
    {
        return false;
    }
    // A non-blocking stream (a slow reader's pipe) refuses what it cannot take at once, which
    // print! takes for a failure: the bytes are written here instead, waiting while it is full.
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    if fcntl(fd, FcntlArg::F_GETFL).is_ok_and(|f| OFlag::from_bits_truncate(f).contains(OFlag::O_NONBLOCK)) {
        if !stderr {
            let _ = std::io::Write::flush(&mut out.lock());
        }
        return write_waiting(fd, bytes);
    }
    let text = String::from_utf8_lossy(bytes);
    std::panic::catch_unwind(|| {
        if stderr {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    })
    .is_ok()
}

/// Writes all of `bytes` to the non-blocking `fd`, waiting (poll) whenever it is full; `false` if it
/// fails otherwise.
fn write_waiting(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                if matches!(poll(&mut fds, PollTimeout::NONE), Err(e) if e != Errno::EINTR) {
                    return false;
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
    true
}

/// The length of `bytes` without an incomplete UTF-8 sequence at its end (the start of a character
/// whose other bytes have not arrived yet).
fn complete_prefix(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let at = bytes.len() - back;
        let b = bytes[at];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: look further back for the lead byte
        }
        let needed = match b {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        return if needed > back { at } else { bytes.len() };
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsFd;

    use super::{Pump, Sink, complete_prefix};

    // Bug 1: a character split across two 8 KiB reads printed as two U+FFFD.
    #[test]
    fn an_incomplete_character_at_the_end_waits_for_the_rest() {
        let text = "aé€😀".as_bytes();
        assert_eq!(complete_prefix(text), text.len());
        for cut in 1..text.len() {
            let head = &text[..cut];
            let ready = complete_prefix(head);
            assert!(std::str::from_utf8(&head[..ready]).is_ok(), "cut at {cut}");
            assert!(std::str::from_utf8(&text[ready..]).is_ok(), "the rest is whole, cut at {cut}");
        }
        assert_eq!(complete_prefix(b"ab\xff"), 3, "an invalid byte is not held back");
    }

    // Output larger than a pipe's buffer moves while the reports are silent, and all of it is kept,
    // each stream apart.
    #[test]
    fn output_moves_while_the_reports_wait_and_all_of_it_is_kept() {
        let (reports_r, reports_w) = std::io::pipe().expect("pipe");
        let (out_r, mut out_w) = std::io::pipe().expect("pipe");
        let (err_r, mut err_w) = std::io::pipe().expect("pipe");
        let big = vec![b'x'; 300 << 10];
        let writer = std::thread::spawn(move || {
            out_w.write_all(&big).expect("stdout");
            err_w.write_all(b"warning\n").expect("stderr");
            drop((out_w, err_w));
            let mut reports_w = reports_w;
            reports_w.write_all(b"{}\n").expect("report");
        });
        let mut pump =
            Pump::default().with(Some(out_r), Sink::Keep(Vec::new())).with(Some(err_r), Sink::Keep(Vec::new()));
        pump.until_readable(reports_r.as_fd());
        // It returned because the report came, which the writer sends only after all its output
        // has been taken (more than a pipe holds): a pump that moved nothing would still wait.
        let mut now = [nix::poll::PollFd::new(reports_r.as_fd(), nix::poll::PollFlags::POLLIN)];
        assert_eq!(nix::poll::poll(&mut now, nix::poll::PollTimeout::ZERO), Ok(1), "returned before the report");
        writer.join().expect("writer");
        let kept: Vec<Vec<u8>> = pump.finish().into_iter().map(Sink::into_kept).collect();
        assert_eq!(kept[0].len(), 300 << 10);
        assert_eq!(kept[1], b"warning\n");
    }
}
