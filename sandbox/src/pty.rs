//! [`Pty`]: the caller's side of a program's pseudo-terminal ([`crate::Command::pty`]).

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The master side of a pseudo-terminal of the sandbox's own devpts, on which a program runs
/// ([`crate::Command::pty`]): what the program writes is read here, what is written here is its
/// keyboard input. Reading returns end of file once every process holding the terminal has ended
/// (the kernel's EIO, read as 0 bytes). Dropping it hangs the terminal up: the program gets SIGHUP,
/// as when a terminal window closes.
///
/// # Examples
/// ```no_run
/// use std::io::Read;
/// let sb = sandbox::Sandbox::builder().build()?;
/// let mut child = sb.command("/usr/bin/tty").pty(24, 80).spawn()?;
/// let mut seen = String::new();
/// child.pty.as_mut().expect("a pty").read_to_string(&mut seen)?;
/// assert!(child.wait()?.success());
/// assert_eq!(seen.trim_end(), "/dev/pts/0");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Pty(std::fs::File);

impl Pty {
    pub(crate) fn new(master: OwnedFd) -> Pty {
        Pty(std::fs::File::from(master))
    }

    /// Sets the terminal's size, as a terminal window does when resized: the program gets SIGWINCH.
    ///
    /// # Errors
    /// The ioctl's (TIOCSWINSZ) error.
    pub fn resize(&self, rows: u16, cols: u16) -> std::io::Result<()> {
        rustix::termios::tcsetwinsize(&self.0, crate::sys::pty::winsize(rows, cols)).map_err(std::io::Error::from)
    }

    /// Another handle on the same terminal (to read on one thread and write on another).
    ///
    /// # Errors
    /// When the descriptor cannot be duplicated.
    pub fn try_clone(&self) -> std::io::Result<Pty> {
        self.0.try_clone().map(Pty)
    }
}

impl Read for Pty {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf) {
            // pty(7): the master reads EIO once no process holds the slave side open.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(0),
            other => other,
        }
    }
}

impl Write for Pty {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl AsFd for Pty {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl From<Pty> for OwnedFd {
    fn from(pty: Pty) -> OwnedFd {
        pty.0.into()
    }
}
