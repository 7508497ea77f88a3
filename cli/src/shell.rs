//! An interactive shell in a fresh sandbox, on a pseudo-terminal of the sandbox's own.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;

use crate::Error;
use crate::error::io;
use crate::options::SandboxOptions;
use crate::setup::prepare;

/// Opens `/bin/sh -l` in a fresh sandbox and relays this terminal to it; returns the shell's exit code.
/// Without a terminal on stdin, runs a plain `/bin/sh` reading commands from stdin.
///
/// # Errors
/// When the sandbox or the pseudo-terminal cannot be set up.
pub fn shell(opts: &SandboxOptions) -> Result<i32, Error> {
    let prepared = prepare(opts, "/bin/sh")?;
    let sb = &prepared.sandbox;
    if !std::io::stdin().is_terminal() {
        return Ok(crate::exit::of_status(sb.command("/bin/sh").status()?));
    }
    let terminal = Terminal::prepare();
    let mut child = sb.command("/bin/sh").arg("-l").pty(terminal.rows, terminal.cols).spawn()?;
    terminal.relay(&mut child)?;
    Ok(crate::exit::of_status(child.wait()?))
}

/// This process's terminal, to relay to a program on a pseudo-terminal of the sandbox's own devpts
/// (`tty` names it inside), of the same size: the program gets a controlling terminal (job control,
/// ^C, ^Z) and our terminal is never handed over; a resized window resizes it.
pub(crate) struct Terminal {
    /// Rows and columns, for [`sandbox::Command::pty`].
    pub(crate) rows: u16,
    pub(crate) cols: u16,
    winch: Option<nix::sys::signal::SigSet>,
}

impl Terminal {
    /// Before the program starts, and before any thread: blocks SIGWINCH, so that only the resizing
    /// thread takes it, then reads our size (24x80 without a terminal), so that no resize in between
    /// is missed.
    pub(crate) fn prepare() -> Terminal {
        let winch = block_window_changes();
        let (rows, cols) = terminal_size().unwrap_or((24, 80));
        Terminal { rows, cols, winch }
    }

    /// Relays stdin and stdout to `child`'s terminal byte for byte until the last process holding it
    /// has ended. Our terminal is in raw mode meanwhile, if stdin is one; otherwise the end of stdin
    /// is typed as ^D.
    ///
    /// # Errors
    /// When our terminal's mode cannot be set or the pseudo-terminal duplicated.
    pub(crate) fn relay(self, child: &mut sandbox::Child) -> Result<(), Error> {
        let Some(mut from_pty) = child.pty.take() else {
            return Err(io("open", "a pseudo-terminal")(std::io::ErrorKind::NotFound.into()));
        };
        let interactive = std::io::stdin().is_terminal();
        let raw = if interactive { Some(RawMode::enter()?) } else { None };
        let clone = |p: &sandbox::Pty| p.try_clone().map_err(io("duplicate", "the pseudo-terminal"));
        let mut to_pty = clone(&from_pty)?;
        if let Some(set) = self.winch {
            let resized = clone(&from_pty)?;
            std::thread::spawn(move || {
                while set.wait().is_ok() {
                    if let Some((rows, cols)) = terminal_size() {
                        let _ = resized.resize(rows, cols);
                    }
                }
            });
        }
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdin = std::io::stdin();
            loop {
                match stdin.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        if to_pty.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    _ => {
                        // termios(3): VEOF (^D) at the start of a line ends a canonical reader's input.
                        if !interactive {
                            let _ = to_pty.write_all(b"\x04");
                        }
                        break;
                    }
                }
            }
        });
        let mut buf = [0u8; 4096];
        let mut stdout = std::io::stdout();
        while let Ok(n) = from_pty.read(&mut buf) {
            if n == 0 || stdout.write_all(&buf[..n]).and_then(|()| stdout.flush()).is_err() {
                break;
            }
        }
        drop(raw);
        Ok(())
    }
}

/// SIGWINCH, blocked in this thread (and the threads it starts), for the thread that resizes.
fn block_window_changes() -> Option<nix::sys::signal::SigSet> {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGWINCH);
    set.thread_block().ok().map(|()| set)
}

/// Restores the terminal's settings when dropped, also on error.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> Result<RawMode, Error> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).map_err(|e| io("read the settings of", "the terminal")(e.into()))?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).map_err(|e| io("set raw mode on", "the terminal")(e.into()))?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(std::io::stdin().as_fd(), nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

/// Our terminal's size, rows and columns (TIOCGWINSZ on stdin).
fn terminal_size() -> Option<(u16, u16)> {
    let size = rustix::termios::tcgetwinsize(std::io::stdin()).ok()?;
    (size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
}
