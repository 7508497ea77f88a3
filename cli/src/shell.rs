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
    // A pseudo-terminal of the sandbox's own, the same size as ours, relayed byte for byte: the shell
    // gets a controlling terminal (job control, ^C, ^Z) and our terminal is never handed over.
    let size = terminal_size().unwrap_or(nix::pty::Winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 });
    let pty = nix::pty::openpty(Some(&size), None).map_err(|e| io("open", "a pseudo-terminal")(e.into()))?;
    let slave = std::fs::File::from(pty.slave);
    let clone = |f: &std::fs::File| f.try_clone().map_err(io("duplicate", "the pseudo-terminal"));
    let mut child = sb
        .command("/bin/sh")
        .arg("-l")
        .stdin(clone(&slave)?)
        .stdout(clone(&slave)?)
        .stderr(slave)
        .controlling_terminal(true)
        .spawn()?;
    let raw = RawMode::enter()?;
    let master = std::fs::File::from(pty.master);
    let mut to_pty = clone(&master)?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || to_pty.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut from_pty = master;
    let mut buf = [0u8; 4096];
    let mut stdout = std::io::stdout();
    // Ends with EIO once the last process holding the pty's slave side has exited.
    while let Ok(n) = from_pty.read(&mut buf) {
        if n == 0 || stdout.write_all(&buf[..n]).and_then(|()| stdout.flush()).is_err() {
            break;
        }
    }
    let status = child.wait()?;
    drop(raw);
    Ok(crate::exit::of_status(status))
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

/// Our terminal's size (TIOCGWINSZ on stdin).
fn terminal_size() -> Option<nix::pty::Winsize> {
    let out = std::process::Command::new("stty").arg("size").stdin(std::process::Stdio::inherit()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|n| n.parse::<u16>().ok());
    let (ws_row, ws_col) = (it.next()??, it.next()??);
    Some(nix::pty::Winsize { ws_row, ws_col, ws_xpixel: 0, ws_ypixel: 0 })
}
