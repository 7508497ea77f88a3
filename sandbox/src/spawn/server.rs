//! The fork server: one helper process per calling process, executed once and then kept waiting,
//! single-threaded, before `main`. Each sandbox's helper is a fork of it instead of a new exec of the
//! (often large) calling binary, which saves most of a sandbox's start-up time.
//!
//! Requests are one datagram each on a `SOCK_SEQPACKET` socket pair, carrying six file descriptors
//! (`SCM_RIGHTS`): the program's stdin, stdout and stderr, the report pipe, the configuration memfd and
//! the read end of the kill pipe. The server forks, and the fork runs `helper::run` with them. Replies
//! go straight to the report pipe. The stdio is always opened by this crate (`crate::Stdio`), so every
//! command and every closure can be sent this way.
//!
//! As root, sandboxes that are not `privileged()` go to a second server, the filtered one: a fork of
//! the first (asked for with a request carrying one descriptor, its end of a new socket pair) that
//! joins a new session keyring and installs the default seccomp filter on itself once, before it
//! serves. Everything it forks inherits the filter, so a sandbox's program no longer installs it
//! itself: the filter's compilation into the kernel (its JIT, and the cache of always-allowed calls)
//! is paid once per calling process instead of once per sandbox. The helpers and inits it forks run
//! under the filter too, which refuses nothing they do. A single-threaded caller, which forks its
//! helpers itself, forks a filtered server of its own from its second such sandbox on
//! ([`submit_forked`]). Rootless, installing a filter needs
//! no_new_privs, which would keep the server's later helpers from running `newuidmap` (setuid): each
//! program installs its own filter there, as everywhere when the filtered server cannot be had.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, sendmsg, socketpair,
};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::report::{Record, send};
use crate::sys::SingleThreaded;

/// Turns a re-executed binary into the fork server: the number of its end of the socket pair.
pub(crate) const SERVER_ENV: &str = "__SANDBOX_FORK_SERVER";

pub(crate) const FDS: usize = 6;

/// The parent's end of the socket pair to a running server.
static SERVER: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// The parent's end of the socket pair to the filtered server (see the module's comment), once made.
static FILTERED: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Set once a filtered server cannot be had (the kernel refused its filter, or it did not answer in
/// time): this process then sends every sandbox to the first server. Not for a server that ended
/// without a word (its first server died, or it was killed): the next start tries again.
static NO_FILTERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What the filtered server says once its filter is installed, before it serves.
const READY: &[u8] = b"ready";

/// What it says when the kernel refused its filter, before it ends.
const REFUSED: &[u8] = b"refused";

/// How long the filtered server may take to say so (its fork and filter take a millisecond here; an
/// emulated machine is far slower).
const READY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// A request to start a sandbox: six descriptors follow.
const START: &[u8] = b"start";

/// A request to the first server to fork the filtered one: one descriptor follows, its socket.
const FILTERED_SERVER: &[u8] = b"filtered";

/// The filtered server's command name (`ps`, `/proc/PID/comm`); its helpers take the caller's back.
const FILTERED_NAME: &std::ffi::CStr = c"sandbox-filter";

/// This process's command name before it became the filtered server, for its helpers.
static CALLER_NAME: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

/// Hands a sandbox start to a fork server, starting it on first use: the filtered one when `filtered`
/// (crate::spawn::server's comment says when a sandbox may be), if it can be had, else the first.
/// `fds`: stdin, stdout, stderr, report pipe, configuration memfd, kill pipe (read end).
///
/// # Errors
/// When no server can be started or reached; the caller then executes a helper itself.
pub(crate) fn submit(fds: [BorrowedFd<'_>; FDS], filtered: bool) -> std::io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let start_request = |sock: &OwnedFd| request(sock, START, &raw);
    if filtered && !NO_FILTERED.load(std::sync::atomic::Ordering::Relaxed) {
        match through(&FILTERED, start_filtered_unless_given_up, start_request) {
            Ok(()) => return Ok(()),
            Err(e) => tracing::debug!(%e, "no filtered fork server for this start"),
        }
    }
    through(&SERVER, start, start_request)
}

/// Runs `call` on the socket of the server held in `slot`, starting one with `start` first if there
/// is none, and once more with a new one if the request fails (the server died, killed from outside).
fn through<T>(
    slot: &Mutex<Option<OwnedFd>>,
    start: impl Fn() -> std::io::Result<OwnedFd>,
    call: impl Fn(&OwnedFd) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let mut server = slot.lock().unwrap_or_else(|p| p.into_inner());
    for attempt in 0..2 {
        if server.is_none() {
            *server = Some(start()?);
        }
        if let Some(sock) = server.as_ref() {
            match call(sock) {
                Ok(done) => return Ok(done),
                Err(e) if attempt == 0 => {
                    tracing::debug!(%e, "a sandbox fork server is gone; starting another");
                    *server = None;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Err(std::io::Error::other("the sandbox fork server cannot be reached"))
}

/// [`start_filtered`], unless this process has given the filtered server up (`NO_FILTERED`, looked at
/// again under the lock: threads that waited for it while a start failed go to the first server at
/// once; an outside review found each tried again, and waited its own 30 s), which it does when the
/// server says its filter was refused or says nothing in time.
fn start_filtered_unless_given_up() -> std::io::Result<OwnedFd> {
    if NO_FILTERED.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(std::io::Error::other("the filtered fork server was given up in this process"));
    }
    start_filtered().inspect_err(|e| {
        if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::PermissionDenied) {
            NO_FILTERED.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    })
}

/// Sends one request: `what`, with the descriptors `fds`.
fn request(sock: &OwnedFd, what: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
    let cmsg = [ControlMessage::ScmRights(fds)];
    sendmsg::<()>(sock.as_raw_fd(), &[IoSlice::new(what)], &cmsg, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// Asks the first server to fork the filtered one, and returns our end of its socket once it has said
/// it is ready (its filter installed); an outside review found requests sent before then lost with a
/// server that could not install it, and every start failed. Errors: `PermissionDenied` when it says
/// the kernel refused its filter, `TimedOut` when it says nothing in time (both for good: see
/// `NO_FILTERED`), another when it ended without a word (the fork failed, or it died).
fn start_filtered() -> std::io::Result<OwnedFd> {
    let (ours, theirs) =
        socketpair(nix::sys::socket::AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
    through(&SERVER, start, |sock| request(sock, FILTERED_SERVER, &[theirs.as_raw_fd()]))?;
    drop(theirs);
    ready(ours)
}

/// `ours`, once the filtered server at its other end has said it is ready; the errors of
/// [`start_filtered`].
fn ready(ours: OwnedFd) -> std::io::Result<OwnedFd> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = std::time::Instant::now() + READY_DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut [PollFd::new(ours.as_fd(), PollFlags::POLLIN)], ms) {
            Ok(0) => {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the filtered fork server is silent"));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => break,
        }
    }
    let mut word = [0u8; 8];
    match nix::sys::socket::recv(ours.as_raw_fd(), &mut word, MsgFlags::empty())? {
        n if &word[..n] == READY => Ok(ours),
        n if &word[..n] == REFUSED => Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the kernel refused the filtered fork server's seccomp filter",
        )),
        _ => Err(std::io::Error::other("the filtered fork server ended without a word")),
    }
}

fn start() -> std::io::Result<OwnedFd> {
    let (ours, theirs) =
        socketpair(nix::sys::socket::AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.env_clear()
        .env(SERVER_ENV, theirs.as_raw_fd().to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    crate::sys::keep_fds_on_exec(&mut cmd, vec![theirs.as_raw_fd()]);
    // Reaped by nobody: it lives as long as this process, and dies with it (PR_SET_PDEATHSIG).
    let child = super::parent::spawn_on_spawner_thread(cmd)?;
    drop(theirs);
    std::mem::forget(child);
    Ok(ours)
}

/// A single-threaded caller's own filtered server (see [`submit_forked`]), once forked.
static FORKED: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Set once this process's own filtered server cannot be had: its later starts fork their helpers
/// themselves, as its first did.
static NO_FORKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Hands a sandbox start to this single-threaded caller's own filtered server (as root, a sandbox that
/// is not privileged; `parent::launch` says when), forking it first if there is none: a fork of this
/// process, not an exec of its binary (the fork server's start, most of a millisecond and a thread),
/// that installs the default filter once, as the filtered server does. Without it, each such caller
/// (`sandbox-run --per-test`, a tool's `main`) paid the filter's compilation into the kernel (its JIT,
/// and the cache of always-allowed calls: 0.12 ms here) in every sandbox's program. It keeps none of
/// this process's descriptors but its socket and stderr (stdin and stdout are `/dev/null`), and ends
/// with this process (its socket closes, and `PR_SET_PDEATHSIG`).
///
/// It shares this process's memory as it was at the fork (copy-on-write): each page this process
/// writes afterwards is copied once, so a caller holding more than [`FORK_LIMIT`] resident gets none
/// (its programs install the filter each, as before).
///
/// # Errors
/// When it cannot be had (too large a caller, a failed fork, a refused filter: the caller then forks
/// its helpers itself from then on). One that is gone (killed from outside) is forked again, as
/// [`through`] does for the fork servers.
pub(crate) fn submit_forked(t: SingleThreaded, fds: [BorrowedFd<'_>; FDS]) -> std::io::Result<()> {
    use std::sync::atomic::Ordering;
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let start = || {
        if NO_FORKED.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("this process's filtered server was given up"));
        }
        fork_filtered(t).inspect_err(|_| NO_FORKED.store(true, Ordering::Relaxed))
    };
    through(&FORKED, start, |sock| request(sock, START, &raw))
}

/// The most a single-threaded caller may hold resident and still fork a filtered server of its own
/// ([`submit_forked`]): what that server may come to hold as the caller writes its memory.
const FORK_LIMIT: u64 = 128 << 20;

/// Forks this single-threaded process into a filtered server (see [`submit_forked`]) and returns
/// our end of its socket once it is ready.
fn fork_filtered(t: SingleThreaded) -> std::io::Result<OwnedFd> {
    // proc_pid_statm(5): size, then resident, in pages.
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(u64::MAX);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as u64;
    if pages.saturating_mul(page) > FORK_LIMIT {
        return Err(std::io::Error::other("the caller holds too much memory to fork a server of it"));
    }
    let (ours, theirs) =
        socketpair(nix::sys::socket::AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
    let caller = nix::unistd::getpid();
    let null = nix::fcntl::open(
        c"/dev/null",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    match crate::sys::fork(t)? {
        ForkResult::Child => {
            let quiet = nix::unistd::dup2_stdin(&null).is_ok() && nix::unistd::dup2_stdout(&null).is_ok();
            if !quiet {
                crate::sys::exit_now(0);
            }
            // The caller's tracing subscriber (a log file's descriptor among those closed) says nothing here.
            let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
            // A copy of every descriptor of the caller: none stays but the socket (a pipe's write end
            // kept here would never let its reader see the end, as long as the caller runs).
            crate::sys::hardening::close_above_stdio(&[theirs.as_raw_fd()]);
            std::mem::forget((ours, null));
            become_filtered(t, theirs, caller)
        }
        ForkResult::Parent { .. } => {
            drop(theirs);
            ready(ours)
        }
    }
}

/// Called by the constructor: returns at once unless this process is the fork server, which never
/// returns (it exits when the parent closes its end of the socket, or dies).
pub(crate) fn enter_if_server(t: SingleThreaded) {
    let Some(value) = std::env::var_os(SERVER_ENV) else { return };
    let Some(sock) = value.to_str().and_then(|v| v.parse().ok()).and_then(|n| crate::sys::adopt_fd(t, n)) else {
        crate::sys::exit_now(super::helper::SETUP_FAILED);
    };
    let _ = nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGKILL));
    // What the caller held without close-on-exec came along through the exec (a pipe's write end
    // its own parent passed it, a file): none stays, or a reader would see no end while the caller
    // runs (the twenty-seventh outside review). Helpers get their descriptors with each request.
    crate::sys::hardening::close_above_stdio(&[sock.as_raw_fd()]);
    // Once, here: every helper forked from now on knows it (closures check it).
    let _ = crate::sys::code::build_id();
    // Compiled once here, inherited by every helper this server forks.
    let _ = crate::seccomp::shared();
    let _ = crate::seccomp::for_sandbox(true);
    let _ = super::netns::joins_through_pidfd();
    serve(t, sock);
    crate::sys::exit_now(0);
}

/// The filtered server, forked by the first one or by a single-threaded caller (`server`; see the
/// module's comment and [`submit_forked`]): a new session keyring (keyrings(7): the filter refuses
/// keyctl from here on, so the programs' own join would fail), the default filter, a word on `sock`
/// that it is ready, then it serves on `sock`; never returns. It ends when `server` does (the first
/// server ends with the calling process) or when the calling process closes its end.
fn become_filtered(t: SingleThreaded, sock: OwnedFd, server: Pid) -> ! {
    let _ = nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGKILL));
    if nix::unistd::getppid() != server {
        crate::sys::exit_now(0); // the first server died before prctl took effect
    }
    if let Ok(name) = nix::sys::prctl::get_name() {
        let _ = CALLER_NAME.set(name);
    }
    let _ = nix::sys::prctl::set_name(FILTERED_NAME);
    let _ = crate::sys::hardening::join_new_session_keyring();
    match crate::seccomp::shared() {
        Ok(Some(filter)) if filter.install().is_ok() => crate::seccomp::mark_installed(),
        // The caller sends its sandboxes to the first server instead, from now on.
        _ => {
            let _ = nix::sys::socket::send(sock.as_raw_fd(), REFUSED, MsgFlags::MSG_NOSIGNAL);
            crate::sys::exit_now(0);
        }
    }
    let _ = super::netns::joins_through_pidfd();
    if nix::sys::socket::send(sock.as_raw_fd(), READY, MsgFlags::MSG_NOSIGNAL).is_err() {
        crate::sys::exit_now(0);
    }
    serve(t, sock);
    crate::sys::exit_now(0);
}

/// In a freshly forked process: takes `fds` (stdin, stdout, stderr, report pipe, configuration memfd,
/// kill pipe) and runs the helper with them; never returns. Shared by the fork server and callers that
/// fork a helper themselves (see `parent::launch`).
pub(crate) fn become_helper(t: SingleThreaded, fds: [OwnedFd; FDS]) -> ! {
    let [stdin, stdout, stderr, report, config, kill] = fds;
    if let Some(name) = CALLER_NAME.get() {
        let _ = nix::sys::prctl::set_name(name);
    }
    // Nothing of the forking process's state goes on: its signal mask.
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
    let ok = nix::unistd::dup2_stdin(&stdin).is_ok()
        && nix::unistd::dup2_stdout(&stdout).is_ok()
        && nix::unistd::dup2_stderr(&stderr).is_ok();
    drop((stdin, stdout, stderr));
    if !ok {
        crate::sys::exit_now(super::helper::SETUP_FAILED);
    }
    // A fork of a caller (or of the server) holds copies of all its descriptors: another sandbox's
    // kill pipe among them, which then would not end when that sandbox's caller closes its end (the
    // caller's wait hung until this sandbox ended). Only what this helper uses stays: its pipes and
    // the setup namespace it inherited (rootless).
    // The caller's tracing subscriber (a log file's descriptor among those closed) says nothing here.
    let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
    let mut keep = vec![report.as_raw_fd(), config.as_raw_fd(), kill.as_raw_fd()];
    keep.extend(super::subids::inherited().map(|m| m.userns.as_raw_fd()));
    crate::sys::hardening::close_above_stdio(&keep);
    send(&report, &Record::Helper { pid: std::process::id() as i32 });
    super::helper::run(t, report, config, kill);
    crate::sys::exit_now(0);
}

/// Rootless, until it is made: the subordinate ids' setup namespace, if this request's sandbox uses
/// it (crate::spawn::subids), made before its helper is forked so that every later helper inherits
/// it. Reads the configuration without moving the offset the helper shares.
fn prepare_subordinate_ids(t: SingleThreaded, fds: &[OwnedFd; FDS]) {
    use std::os::unix::fs::FileExt;
    if super::subids::tried() || nix::unistd::geteuid().is_root() {
        return;
    }
    let [stdin, stdout, stderr, _, config, _] = fds;
    let Ok(file) = config.try_clone().map(std::fs::File::from) else { return };
    let Ok(len) = file.metadata().map(|m| m.len() as usize) else { return };
    let mut text = vec![0u8; len];
    if file.read_exact_at(&mut text, 0).is_err() {
        return;
    }
    if let Ok(config) = serde_json::from_slice::<crate::config::Config>(&text) {
        super::subids::prepare(t, &config, [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()]);
    }
}

/// Serves until the parent closes its end. Takes the socket: each forked helper closes its copy.
fn serve(t: SingleThreaded, sock: OwnedFd) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
    use nix::sys::signalfd::{SfdFlags, SignalFd};

    // Helpers that end are reaped at once (SIGCHLD through a signalfd), not left as zombies.
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), None);
    let Ok(signals) = SignalFd::with_flags(&chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) else { return };
    loop {
        while let Ok(s) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            if s == nix::sys::wait::WaitStatus::StillAlive {
                break;
            }
        }
        let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN), PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        while let Ok(Some(_)) = signals.read_signal() {}
        if fds[0].revents().is_none_or(|r| r.is_empty()) {
            continue;
        }
        let mut buf = [0u8; 16];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; FDS]);
        let msg = match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        };
        if msg.bytes == 0 {
            return; // the parent closed its end
        }
        let what = msg.bytes;
        let mut fds: Vec<OwnedFd> = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    fds.extend(raw.into_iter().filter_map(|n| crate::sys::adopt_fd(t, n)));
                }
            }
        }
        if &buf[..what] == FILTERED_SERVER {
            let Ok([theirs]) = <[OwnedFd; 1]>::try_from(fds) else { continue };
            // A failed fork drops `theirs`: the parent's first request on its end fails, and it
            // goes on without the filtered server.
            let server = nix::unistd::getpid();
            if let Ok(ForkResult::Child) = crate::sys::fork(t) {
                drop(signals);
                drop(sock);
                become_filtered(t, theirs, server);
            }
            continue;
        }
        let Ok(fds) = <[OwnedFd; FDS]>::try_from(fds) else { continue };
        prepare_subordinate_ids(t, &fds);
        match crate::sys::fork(t) {
            Ok(ForkResult::Child) => {
                drop(signals);
                // The helper owns no part of the server: its copy of the socket goes, by its owner.
                drop(sock);
                become_helper(t, fds);
            }
            Ok(ForkResult::Parent { .. }) => drop(fds),
            Err(e) => {
                let [_, _, _, report, _, _] = &fds;
                send(
                    report.as_fd(),
                    &Record::SetupFailed {
                        kind: crate::report::StepKind::Helper,
                        what: "fork a helper in the fork server".to_owned(),
                        path: None,
                        errno: e as i32,
                    },
                );
            }
        }
    }
}
