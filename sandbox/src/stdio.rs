//! The program's standard streams, as this crate's own [`Stdio`]: unlike `std::process::Stdio`, it is
//! not used up by a spawn, and it always has a descriptor this crate can hand to the fork server.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use nix::fcntl::OFlag;

/// What a program's stdin, stdout or stderr is connected to. Shaped like `std::process::Stdio` (the
/// same constructors), but a [`crate::Command`] keeps it: spawning the same command twice connects
/// both programs the same way. `std::process::Stdio` cannot be converted (it hides its descriptor);
/// pass a `File` or an `OwnedFd` instead.
///
/// # Examples
/// ```no_run
/// use sandbox::Stdio;
/// let sb = sandbox::Sandbox::builder().build()?;
/// let log = std::fs::File::create("/tmp/log")?;
/// let mut cmd = sb.command("/bin/echo");
/// cmd.arg("hi").stdout(log).stderr(Stdio::null());
/// cmd.status()?;
/// cmd.status()?; // the same file again
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Stdio(Kind);

#[derive(Debug, Clone)]
enum Kind {
    Inherit,
    Null,
    Piped,
    /// A descriptor of the caller's, duplicated for each spawn.
    Fd(Arc<OwnedFd>),
}

impl Stdio {
    /// The caller's own stream.
    pub fn inherit() -> Stdio {
        Stdio(Kind::Inherit)
    }

    /// `/dev/null`.
    pub fn null() -> Stdio {
        Stdio(Kind::Null)
    }

    /// A new pipe, whose other end shows as [`crate::Child`]'s `stdin`, `stdout` or `stderr`.
    pub fn piped() -> Stdio {
        Stdio(Kind::Piped)
    }
}

impl From<OwnedFd> for Stdio {
    fn from(fd: OwnedFd) -> Stdio {
        Stdio(Kind::Fd(Arc::new(fd)))
    }
}

/// Files, and the ends of `std::process` pipes, by their descriptor.
macro_rules! from_descriptor {
    ($($t:ty),*) => {$(
        impl From<$t> for Stdio {
            fn from(x: $t) -> Stdio {
                Stdio::from(OwnedFd::from(x))
            }
        }
    )*};
}
from_descriptor!(std::fs::File, std::process::ChildStdin, std::process::ChildStdout, std::process::ChildStderr);

/// One stream opened for one start: the program's end, and ours if it is a pipe.
#[derive(Debug)]
pub(crate) struct Opened {
    pub theirs: OwnedFd,
    pub ours: Option<OwnedFd>,
}

impl Stdio {
    /// Opens the stream for stdio number `n` (0: stdin) for one start.
    pub(crate) fn open(&self, n: usize) -> std::io::Result<Opened> {
        let input = n == 0;
        let theirs = match &self.0 {
            Kind::Inherit => match n {
                0 => std::io::stdin().as_fd().try_clone_to_owned()?,
                1 => std::io::stdout().as_fd().try_clone_to_owned()?,
                _ => std::io::stderr().as_fd().try_clone_to_owned()?,
            },
            Kind::Null => {
                let mode = if input { OFlag::O_RDONLY } else { OFlag::O_WRONLY };
                nix::fcntl::open("/dev/null", mode | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())?
            }
            Kind::Piped => {
                let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
                let (theirs, ours) = if input { (r, w) } else { (w, r) };
                return Ok(Opened { theirs, ours: Some(ours) });
            }
            Kind::Fd(fd) => fd.try_clone()?,
        };
        // A directory as a standard stream is a host path the program could walk from
        // (`/proc/self/fd/0/etc/…`: the twenty-ninth outside review, with `0</`).
        if nix::sys::stat::fstat(&theirs).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "it is a directory, through which the program would reach the host's files; \
                 give it a file, a pipe or /dev/null (Stdio::null())",
            ));
        }
        Ok(Opened { theirs, ours: None })
    }
}

/// The caller's terminal as it was when a program was given it (a stream of [`Stdio::inherit`]), to
/// be set back once the sandbox has ended: a program can change its settings (`stty -echo -isig`),
/// its line discipline (N_NULL drops all output), make it exclusive (no one else may open it) or stop
/// its output (`tcflow`: the caller's next write then blocks for good), all of which outlasted the
/// sandbox in the caller's shell (the twenty-ninth and thirtieth outside reviews). Its size is left as
/// it is: the terminal's window may have been resized meanwhile.
#[derive(Debug)]
pub(crate) struct SavedTerminal {
    fd: OwnedFd,
    /// The terminal's device number: the key of [`SAVED`].
    device: libc::dev_t,
}

/// What the terminal was before the first sandbox of this process that holds it started.
#[derive(Debug, Clone, Copy)]
struct Saved {
    /// As libc has them (nix's type is not `Sync`).
    settings: libc::termios,
    state: crate::sys::pty::TerminalState,
}

/// The terminals sandboxes of this process hold: (device, how many sandboxes, what it was before the
/// first). Sandboxes that overlap on one terminal (test threads) set back what it was before the
/// first of them, once the last has ended: each setting back what it saw at its own start put back
/// what an earlier one's program had set (the thirty-first outside review).
static SAVED: std::sync::Mutex<Vec<(libc::dev_t, usize, Saved)>> = std::sync::Mutex::new(Vec::new());

impl SavedTerminal {
    /// The first of the caller's own streams that `stdio` hands on and is a terminal, as it is now
    /// (or as it was before an earlier sandbox of this process that still runs got it).
    pub(crate) fn of(stdio: [&Stdio; 3]) -> Option<SavedTerminal> {
        let (i, o, e) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
        // The settings of the first that is a terminal (tcgetattr(3) fails on anything else).
        let (fd, settings) = stdio
            .iter()
            .zip([i.as_fd(), o.as_fd(), e.as_fd()])
            .filter(|(s, _)| matches!(s.0, Kind::Inherit))
            .find_map(|(_, fd)| nix::sys::termios::tcgetattr(fd).ok().map(|t| (fd, libc::termios::from(t))))?;
        let device = nix::sys::stat::fstat(fd).ok()?.st_rdev;
        let fd = fd.try_clone_to_owned().ok()?;
        let mut saved = SAVED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match saved.iter_mut().find(|(d, ..)| *d == device) {
            Some((_, count, _)) => *count += 1,
            None => saved.push((device, 1, Saved { settings, state: crate::sys::pty::terminal_state(fd.as_fd()) })),
        }
        Some(SavedTerminal { fd, device })
    }
}

/// Dropped once its sandbox has ended (or failed to start): see [`SavedTerminal::of`].
impl Drop for SavedTerminal {
    /// Once the last sandbox of this process holding the terminal has ended, sets back what changed,
    /// and only from the terminal's foreground process group: from another, the kernel would stop
    /// this process (SIGTTOU), and the foreground job may have set the terminal as it needs meanwhile
    /// (an editor's raw mode). The line discipline first: under another one (N_NULL) the settings
    /// cannot even be read. Output is restarted whether or not the program stopped it (a ^S typed
    /// meanwhile is undone too).
    fn drop(&mut self) {
        use nix::sys::termios::{SetArg, Termios, tcgetattr, tcsetattr};
        let was = {
            let mut saved = SAVED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(at) = saved.iter().position(|(d, ..)| *d == self.device) else { return };
            saved[at].1 -= 1;
            if saved[at].1 > 0 {
                return;
            }
            saved.swap_remove(at).2
        };
        if nix::unistd::tcgetpgrp(&self.fd) != Ok(nix::unistd::getpgrp()) {
            return;
        }
        let state = crate::sys::pty::terminal_state(self.fd.as_fd());
        if let Some(ldisc) = was.state.line_discipline.filter(|d| state.line_discipline != Some(*d)) {
            let _ = crate::sys::pty::set_line_discipline(self.fd.as_fd(), ldisc);
        }
        if was.state.exclusive == Some(false) && state.exclusive == Some(true) {
            let _ = rustix::termios::ioctl_tiocnxcl(&self.fd);
        }
        let fields = |t: &libc::termios| (t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag, t.c_line, t.c_cc);
        if tcgetattr(&self.fd).map(libc::termios::from).is_ok_and(|now| fields(&now) != fields(&was.settings)) {
            let _ = tcsetattr(&self.fd, SetArg::TCSANOW, &Termios::from(was.settings));
        }
        let _ = rustix::termios::tcflow(&self.fd, rustix::termios::Action::OOn);
    }
}
