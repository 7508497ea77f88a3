//! Running one program in a fresh sandbox, its stdio passed through unchanged.

use std::path::Path;

use crate::Error;
use crate::keep::{KeptRecord, finish};
use crate::options::SandboxOptions;
use crate::setup::prepare_in;

/// Runs `program args…` in a fresh sandbox built from `opts` and returns the exit code to leave with:
/// the program's own (128 + signal when killed).
///
/// # Errors
/// When the sandbox cannot be built or started, or ends by its deadline or memory limit
/// ([`crate::exit::of_error`] gives the exit code for each).
pub fn run(opts: &SandboxOptions, program: &str, args: &[std::ffi::OsString]) -> Result<i32, Error> {
    // Under nextest's wrapper, the kept layer is named after the test.
    let name = std::env::var("NEXTEST_TEST_NAME").unwrap_or_else(|_| "run".to_owned());
    let prepared = prepare_in(opts, program, Some(&name))?;
    let result = run_prepared(opts, &prepared, args);
    if let Some(dir) = &prepared.kept {
        let outcome = match &result {
            Ok(code) => format!("exit code {code}"),
            Err(e) => sandbox::error_chain(e),
        };
        // An argument that is not UTF-8 is written quoted with Rust's escapes (`"caf\xe9"`).
        let args = args.iter().map(|a| a.to_str().map_or_else(|| format!("{a:?}"), str::to_owned));
        let command = std::iter::once(prepared.program.clone()).chain(args).collect();
        keep_if_failed(dir, matches!(result, Ok(0)), &prepared, command, outcome)?;
    }
    result
}

fn run_prepared(
    opts: &SandboxOptions,
    prepared: &crate::setup::Prepared,
    args: &[std::ffi::OsString],
) -> Result<i32, Error> {
    // Blocked before the start, so that none sent once the program runs is missed (the helper
    // starts with an empty mask).
    let signals = block_forwarded_signals();
    let terminal = opts.tty.then(crate::shell::Terminal::prepare);
    let mut cmd = prepared.command();
    cmd.args(args);
    if let Some(t) = &terminal {
        cmd.pty(t.rows, t.cols);
    }
    // The usage file's folder is opened before the program runs, and the file in it never through a
    // link: where the program can write that folder, it cannot redirect the usage to another host
    // file (an outside review). The file itself is opened once the program has ended (a FIFO there
    // waits for its reader, which may be the program's caller).
    let usage_dir = match &opts.json_usage {
        Some(path) => {
            let (dir, kernel_links) = usage_folder(path)?;
            usage_writable(&dir, kernel_links, path)?;
            Some(((dir, kernel_links), path))
        }
        None => None,
    };
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = signals.map(|set| set.thread_unblock());
            return Err(e.into());
        }
    };
    if let Some(set) = signals {
        forward_signals(set, child.id());
    }
    if let Some(t) = terminal {
        t.relay(&mut child)?;
    }
    let waited = child.wait();
    // From here a signal ends sandbox-run itself (see forward_signals).
    PROGRAM_ENDED.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(((dir, kernel_links), path)) = usage_dir {
        write_usage(&dir, kernel_links, path, child.usage())?;
    }
    Ok(crate::exit::of_status(waited?))
}

/// Removes the writable layer in `dir` if the program passed; otherwise keeps it and says where.
pub(crate) fn keep_if_failed(
    dir: &crate::keep::Layer,
    passed: bool,
    prepared: &crate::setup::Prepared,
    command: Vec<String>,
    outcome: String,
) -> Result<(), Error> {
    let rootfs = prepared.lower.display().to_string();
    let rootfs = if rootfs == "/" { "host".to_owned() } else { rootfs };
    if let Some(kept) = finish(dir, passed, &prepared.lower, &KeptRecord { rootfs, command, outcome })? {
        eprintln!(
            "sandbox-run: kept what the failed sandbox changed in {} (changes.txt); a shell on that state: \
             sandbox-run --shell-from {}",
            kept.display(),
            kept.display()
        );
    }
    Ok(())
}

/// The folder `path` is in, opened (`O_PATH`): what the path names is fixed from then on. A link on
/// the way, but the kernel's own, is refused: a sandbox could have planted it (outside reviews of
/// `--keep-failed`, which resolves its folder the same way).
/// Also whether the folder's entries are the kernel's own (`/proc/self/fd`, `/dev/fd` of bash's
/// `>(…)`, `/dev` of `/dev/stdout`), where a link is a descriptor of sandbox-run's own, to follow.
fn usage_folder(path: &Path) -> Result<(std::os::fd::OwnedFd, bool), Error> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let real = crate::host_path::resolve("--json-usage", path, parent)?;
    let dir = crate::host_path::open_folder(&real, false)?;
    let procfs =
        nix::sys::statfs::fstatfs(&dir).is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC);
    Ok((dir, procfs || real == Path::new("/dev")))
}

/// Refuses, before the program runs, a usage file that could not be written after it: a folder or
/// (outside the kernel's folders) a link in its place, or a folder or file this process may not
/// write. Without it, such a path failed only once the program had ended, and its exit code was lost
/// to sandbox-run's own (an outside review). A program that plants one there while it runs still
/// makes the write fail, then.
fn usage_writable(dir: &std::os::fd::OwnedFd, kernel_links: bool, path: &Path) -> Result<(), Error> {
    use nix::fcntl::AtFlags;
    use nix::sys::stat::SFlag;
    use nix::unistd::AccessFlags;
    let (name, fail) = usage_file_name(path)?;
    let what = match nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => {
            let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
            if kind == SFlag::S_IFDIR {
                return Err(fail(nix::errno::Errno::EISDIR.into()));
            }
            if kind == SFlag::S_IFSOCK {
                return Err(fail(std::io::Error::other("a socket is there, which cannot be opened as a file")));
            }
            if kind == SFlag::S_IFLNK && !kernel_links {
                return Err(fail(std::io::Error::other("a symbolic link is there, and it is never followed")));
            }
            name
        }
        Err(nix::errno::Errno::ENOENT) => std::ffi::OsStr::new("."),
        Err(e) => return Err(fail(e.into())),
    };
    // The kernel's own folders hold links to sandbox-run's descriptors, which access() follows.
    let flags = if kernel_links { AtFlags::AT_EACCESS } else { AtFlags::AT_EACCESS | AtFlags::AT_SYMLINK_NOFOLLOW };
    nix::unistd::faccessat(dir, what, AccessFlags::W_OK, flags).map_err(|e| fail(e.into()))
}

/// The usage file's name in its folder, and how a failure to write it is told.
fn usage_file_name(path: &Path) -> Result<(&std::ffi::OsStr, impl Fn(std::io::Error) -> Error + '_), Error> {
    let fail = move |e: std::io::Error| crate::error::io("write the usage to", path)(e);
    let name =
        path.file_name().ok_or_else(|| fail(std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name")))?;
    Ok((name, fail))
}

/// Writes what the sandbox used as one JSON object (`null` fields where this machine cannot tell)
/// into `path`'s file name in `dir`, never through a link unless the folder is the kernel's
/// (`kernel_links`, see [`usage_folder`]).
///
/// A FIFO there must have its reader already: it is opened without waiting (ENXIO otherwise), since
/// one the program, or another sandbox, left there would hang sandbox-run for good (two outside
/// reviews).
fn write_usage(
    dir: &std::os::fd::OwnedFd,
    kernel_links: bool,
    path: &Path,
    usage: Option<sandbox::Usage>,
) -> Result<(), Error> {
    use nix::fcntl::OFlag;
    let usage = usage.unwrap_or_default();
    let json = serde_json::json!({
        "peak_memory_bytes": usage.peak_memory,
        "cpu_time_seconds": usage.cpu_time.map(|d| d.as_secs_f64()),
        "oom_kills": usage.oom_kills,
    });
    let (name, fail) = usage_file_name(path)?;
    let mut flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    flags |= if kernel_links {
        // One of sandbox-run's own descriptors (`/dev/stdout`): appended to, never truncated, so that
        // the program's output redirected to a file stays (an outside review: `> out.txt` held only
        // the usage afterwards).
        OFlag::O_APPEND
    } else {
        OFlag::O_TRUNC | OFlag::O_NOFOLLOW
    };
    let file = nix::fcntl::openat(dir, name, flags, nix::sys::stat::Mode::from_bits_truncate(0o644)).map_err(|e| {
        fail(match e {
            nix::errno::Errno::ENXIO => std::io::Error::other(format!(
                "{e}: it is a FIFO no process reads; start its reader before sandbox-run ends (one left there \
                 without a reader, by the program or another sandbox, is refused, not waited for)"
            )),
            e => e.into(),
        })
    })?;
    // `/dev/stdout` (or stderr) that is a file: written through sandbox-run's own descriptor, at its
    // offset, which the caller shares; through the file opened afresh the usage went in at the end
    // and the caller's next line, written at the offset it had, overwrote it (a new user's review:
    // `( sandbox-run --json-usage /dev/stdout -- echo hi; echo after ) > out.txt`).
    let file = if kernel_links { own_stream(&file).unwrap_or(file) } else { file };
    // Written without waiting for good either: a FIFO whose reader reads nothing (a sandbox that
    // made it and holds it open, with its buffer full: the eighth outside review) fails after
    // USAGE_WRITE_WAIT, as a full disk would.
    write_within(&file, format!("{json}\n").as_bytes(), USAGE_WRITE_WAIT).map_err(fail)
}

/// sandbox-run's stdout or stderr (a copy of the descriptor) if `file` is the regular file one of them
/// writes to. Only a regular file (which never makes a write wait): a pipe is written through `file`,
/// non-blocking, where a slow reader cannot hold sandbox-run.
fn own_stream(file: &std::os::fd::OwnedFd) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    let id = |st: nix::sys::stat::FileStat| {
        (st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFREG).then_some((st.st_dev, st.st_ino))
    };
    let target = id(nix::sys::stat::fstat(file).ok()?)?;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    [stdout.as_fd(), stderr.as_fd()]
        .into_iter()
        .find(|fd| nix::sys::stat::fstat(fd).ok().and_then(id) == Some(target))
        .and_then(|fd| fd.try_clone_to_owned().ok())
}

/// How long writing the usage may wait for a slow reader.
const USAGE_WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Writes all of `bytes` into the non-blocking `file`, waiting for it to take more at most `wait` in
/// all.
fn write_within(file: &std::os::fd::OwnedFd, mut bytes: &[u8], wait: std::time::Duration) -> std::io::Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + wait;
    while !bytes.is_empty() {
        match nix::unistd::write(file, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EAGAIN) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(std::io::Error::other(format!(
                        "its reader took nothing for {} s (a FIFO no process reads from)",
                        wait.as_secs()
                    )));
                }
                let ms = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
                poll(&mut [PollFd::new(file.as_fd(), PollFlags::POLLOUT)], ms)?;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Whether the program has ended (its `wait` returned): a signal then ends sandbox-run.
static PROGRAM_ENDED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// SIGTERM, SIGINT, SIGHUP and SIGQUIT, blocked in this (the only) thread, for [`forward_signals`].
fn block_forwarded_signals() -> Option<nix::sys::signal::SigSet> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT] {
        set.add(sig);
    }
    set.thread_block().ok().map(|()| set)
}

/// Passes the signals in `set` (blocked) sent to sandbox-run on to the sandbox's helper, which
/// passes them on to the program (a runner's timeout, a CI's cancel, a terminal's ^C: the program's
/// handlers run, and sandbox-run ends with its exit code), from a thread that waits for them.
fn forward_signals(set: nix::sys::signal::SigSet, helper: u32) {
    // 0 (no helper pid known) would signal this process's own group.
    let Some(helper) = i32::try_from(helper).ok().filter(|pid| *pid > 0) else {
        let _ = set.thread_unblock();
        return;
    };
    let forwarder = move || {
        while let Ok(sig) = set.wait() {
            if PROGRAM_ENDED.load(std::sync::atomic::Ordering::SeqCst) {
                // Nothing left to pass it on to (writing the usage, keeping a layer): it ends us.
                std::process::exit(128 + sig as i32);
            }
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(helper), sig);
        }
    };
    if std::thread::Builder::new().name("signals".into()).spawn(forwarder).is_err() {
        let _ = set.thread_unblock();
    }
}
