//! `cargo xtask run` and `cargo xtask shell`: the seed's `./container`, done properly.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::Context;
use sandbox::{Network, Sandbox};

#[derive(clap::Args)]
pub struct SandboxArgs {
    /// A rootfs tarball or unpacked directory [default: $SANDBOX_ROOTFS, else the pinned Alpine release]
    #[arg(long)]
    rootfs: Option<PathBuf>,
    /// Alpine version to fetch when no --rootfs is given
    #[arg(long)]
    version: Option<String>,
    /// Hostname inside
    #[arg(long, default_value = "sandbox")]
    hostname: String,
    /// loopback (lo only), none, or host
    #[arg(long, default_value = "loopback")]
    network: String,
    /// Kill everything after this many seconds
    #[arg(long)]
    timeout: Option<u64>,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    sandbox: SandboxArgs,
    /// The command and its arguments (after `--`)
    #[arg(last = true)]
    command: Vec<String>,
}

fn build(args: &SandboxArgs) -> anyhow::Result<Sandbox> {
    let rootfs = match (&args.rootfs, &args.version) {
        (Some(path), _) if path.is_dir() => fetch::Rootfs::from_dir(path),
        (Some(path), _) => fetch::Rootfs::from_tarball(path),
        (None, Some(v)) => fetch::Alpine::new(v).fetch(),
        (None, None) => fetch::default_rootfs(),
    }
    .map_err(crate::fetch_rootfs::with_hint)?;
    let network = match args.network.as_str() {
        "loopback" => Network::Loopback,
        "none" => Network::None,
        "host" => Network::Host,
        other => anyhow::bail!("unknown network `{other}`: expected loopback, none or host"),
    };
    let mut builder = Sandbox::builder().rootfs(&rootfs).hostname(&args.hostname).network(network);
    if let Some(secs) = args.timeout {
        builder = builder.timeout(std::time::Duration::from_secs(secs));
    }
    Ok(builder.build()?)
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let sb = build(&args.sandbox).context("could not set up the sandbox")?;
    let command = if args.command.is_empty() {
        vec!["/bin/sh".to_owned(), "-c".to_owned(), "hostname; ps; cat /etc/alpine-release".to_owned()]
    } else {
        args.command
    };
    let status = sb.command(&command[0]).args(&command[1..]).status().context("the sandbox failed")?;
    exit_like(status)
}

fn exit_like(status: std::process::ExitStatus) -> anyhow::Result<()> {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => std::process::exit(code),
        (None, Some(sig)) => std::process::exit(128 + sig),
        _ => std::process::exit(1),
    }
}

/// Restores the terminal's settings when dropped, also on error.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> anyhow::Result<RawMode> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).context("read the terminal's settings")?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).context("put the terminal in raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(std::io::stdin().as_fd(), nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

pub fn shell(args: SandboxArgs) -> anyhow::Result<()> {
    let sb = build(&args).context("could not set up the sandbox")?;
    if !std::io::stdin().is_terminal() {
        // Not interactive: a plain shell reading commands from stdin.
        let status = sb.command("/bin/sh").status().context("the sandbox failed")?;
        return exit_like(status);
    }
    // A pseudo-terminal of the sandbox's own, the same size as ours, relayed byte for byte: the shell
    // gets a controlling terminal (job control, ^C, ^Z) and our terminal is never handed over.
    let size = nix::pty::Winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
    let size = terminal_size().unwrap_or(size);
    let pty = nix::pty::openpty(Some(&size), None).context("open a pseudo-terminal")?;
    let slave = std::fs::File::from(pty.slave);
    let mut child = sb
        .command("/bin/sh")
        .arg("-l")
        .stdin(slave.try_clone()?)
        .stdout(slave.try_clone()?)
        .stderr(slave)
        .controlling_terminal(true)
        .spawn()
        .context("could not start the shell")?;
    let raw = RawMode::enter()?;
    let master = std::fs::File::from(pty.master);
    let mut to_pty = master.try_clone()?;
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
    let status = child.wait().context("the sandbox failed")?;
    drop(raw);
    exit_like(status)
}

/// Our terminal's size, as `stty size` reports it (rows, then columns).
fn terminal_size() -> Option<nix::pty::Winsize> {
    let out = std::process::Command::new("stty").arg("size").stdin(std::process::Stdio::inherit()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|n| n.parse::<u16>().ok());
    let (ws_row, ws_col) = (it.next()??, it.next()??);
    Some(nix::pty::Winsize { ws_row, ws_col, ws_xpixel: 0, ws_ypixel: 0 })
}
