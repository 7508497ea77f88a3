//! A pseudo-terminal of the sandbox's own devpts for a program (pty(7)), its master side handed to
//! the caller over a console socket, as runc's `--console-socket` does: the terminal is created
//! inside, where `tty` and `ttyname(3)` find it by its name (`/dev/pts/0`), and the caller relays it.
//!
//! The caller passes one end of a unix socket pair as the program's stdin; the program's process,
//! before its exec, makes the terminal, sends the master over that socket and puts the slave in
//! place of stdin, stdout and stderr ([`take_own_pty`]). The caller then takes the master from its end
//! ([`receive_master`]).

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

/// The sandbox's own pseudo-terminal multiplexer (never the host's: `/dev/pts` is the sandbox's
/// devpts instance).
pub(crate) const PTMX: &std::ffi::CStr = c"/dev/pts/ptmx";

/// A terminal's size of `rows` x `cols` (tty_ioctl(4): TIOCSWINSZ).
pub(crate) fn winsize(rows: u16, cols: u16) -> rustix::termios::Winsize {
    rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 }
}

/// statfs(2): a devpts file system's type.
const DEVPTS_SUPER_MAGIC: rustix::fs::FsWord = 0x1cd1;

fn errno(e: rustix::io::Errno) -> Errno {
    Errno::from_raw(e.raw_os_error())
}

/// In the program's process, a session leader inside the sandbox: opens a new pseudo-terminal on the
/// sandbox's devpts (`/dev/pts/ptmx`, never the host's), `rows` x `cols`, sends its master side over
/// the console socket on stdin and makes its slave side stdin, stdout and stderr. Allocates nothing.
pub(crate) fn take_own_pty(rows: u16, cols: u16) -> Result<(), Errno> {
    use rustix::fs::{Mode, OFlags};
    // Without waiting on anything a program inside may hold there (a lease, a FIFO: an earlier
    // command of a session can mount what it likes over /dev/pts), and only a devpts's ptmx.
    let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let master = rustix::fs::open(PTMX, flags, Mode::empty()).map_err(errno)?;
    if rustix::fs::fstatfs(&master).map_err(errno)?.f_type != DEVPTS_SUPER_MAGIC {
        return Err(Errno::ENOTTY);
    }
    // The caller reads and writes it as an ordinary, blocking file.
    rustix::fs::fcntl_setfl(&master, OFlags::empty()).map_err(errno)?;
    rustix::pty::unlockpt(&master).map_err(errno)?;
    rustix::termios::tcsetwinsize(&master, winsize(rows, cols)).map_err(errno)?;
    // TIOCGPTPEER (Linux 4.13): the slave of this very master, without looking its name up.
    let flags = rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY;
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags).map_err(errno)?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [master.as_fd()];
    control.push(SendAncillaryMessage::ScmRights(&fds));
    let sent = rustix::net::sendmsg(rustix::stdio::stdin(), &[IoSlice::new(b"m")], &mut control, SendFlags::NOSIGNAL)
        .map_err(errno)?;
    if sent != 1 {
        return Err(Errno::EPIPE);
    }
    rustix::stdio::dup2_stdin(&slave).map_err(errno)?;
    rustix::stdio::dup2_stdout(&slave).map_err(errno)?;
    rustix::stdio::dup2_stderr(&slave).map_err(errno)?;
    Ok(())
}

/// In the caller, once the program runs: the master side its process sent over `socket` (the
/// caller's end of the console socket), without waiting. The last one if several came (a start
/// tried again).
pub(crate) fn receive_master(socket: BorrowedFd<'_>) -> std::io::Result<Option<OwnedFd>> {
    let mut master = None;
    loop {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut byte = [0u8; 1];
        let flags = RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC;
        match rustix::net::recvmsg(socket, &mut [std::io::IoSliceMut::new(&mut byte)], &mut control, flags) {
            Ok(msg) if msg.bytes == 0 => return Ok(master),
            Ok(_) => {
                for message in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(fds) = message
                        && let Some(fd) = fds.last()
                    {
                        master = Some(fd);
                    }
                }
            }
            Err(rustix::io::Errno::AGAIN) => return Ok(master),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// What a program given the caller's terminal can change of it beyond its termios, and no later
/// process of the caller's would undo: its line discipline (TIOCSETD: N_NULL drops all output) and
/// exclusive mode (TIOCEXCL: no one else may open it), as tty_ioctl(4) reads them. `None` where the
/// kernel does not say (TIOCGEXCL: Linux 3.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TerminalState {
    pub line_discipline: Option<libc::c_int>,
    pub exclusive: Option<bool>,
}

/// The terminal `fd`'s [`TerminalState`].
pub(crate) fn terminal_state(fd: BorrowedFd<'_>) -> TerminalState {
    use std::os::fd::AsRawFd;
    let (mut ldisc, mut excl): (libc::c_int, libc::c_int) = (0, 0);
    // SAFETY: TIOCGETD and TIOCGEXCL write one int each to the pointer given, which points to a live
    // local; `fd` is open for the duration of the calls.
    let line_discipline = (unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGETD, &mut ldisc) } == 0).then_some(ldisc);
    // SAFETY: as above.
    let exclusive = (unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGEXCL, &mut excl) } == 0).then_some(excl != 0);
    TerminalState { line_discipline, exclusive }
}

/// Sets the terminal `fd`'s line discipline back to `ldisc` (TIOCSETD).
pub(crate) fn set_line_discipline(fd: BorrowedFd<'_>, ldisc: libc::c_int) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: TIOCSETD reads one int from the pointer given, which points to a live local; `fd` is
    // open for the duration of the call.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSETD, &ldisc) }).map(drop)
}
