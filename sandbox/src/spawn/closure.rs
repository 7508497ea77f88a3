//! The sandbox's side of `Sandbox::run`: the program's process, forked by init like any program's,
//! runs the closure instead of exec'ing, reports its value or its panic, and ends. The closure is named
//! by its entry's offset in this binary (`sys::code`), checked against the build id.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;

use nix::errno::Errno;

use crate::report::{Record, StepKind, send, send_setup_failed};

/// Runs the closure whose entry is at `entry`, on `input`; reports; ends the process. `thread`: the
/// caller's thread's name (a test's name under libtest), which a panic's report names.
pub(crate) fn run_entry(report: &OwnedFd, entry: usize, build: &str, input: &[u8], thread: Option<&str>) -> ! {
    let Some(entry) = crate::sys::code::entry_at(entry, build) else {
        let what = "find the closure: the sandbox's process runs another build of this binary";
        send_setup_failed(report, StepKind::Helper, what, Errno::ENOEXEC);
        std::process::exit(127);
    };
    // The panic's place, for the caller's error; the default hook still prints message and backtrace.
    static PLACE: Mutex<Option<String>> = Mutex::new(None);
    let default_hook = std::panic::take_hook();
    let this_thread = std::thread::current().id();
    let thread = thread.map(str::to_owned);
    std::panic::set_hook(Box::new(move |info| {
        if let Some(l) = info.location() {
            *PLACE.lock().unwrap_or_else(|p| p.into_inner()) = Some(l.to_string());
        }
        match &thread {
            Some(name) if std::thread::current().id() == this_thread => named_report(&default_hook, info, name),
            _ => default_hook(info),
        }
    }));
    let record = match std::panic::catch_unwind(AssertUnwindSafe(|| entry(input))) {
        Ok(Ok(json)) => Record::Value { json: String::from_utf8_lossy(&json).into_owned() },
        Ok(Err(reason)) => Record::Unencodable { reason },
        Err(payload) => Record::Panicked {
            message: panic_message(payload.as_ref()),
            location: PLACE.lock().unwrap_or_else(|p| p.into_inner()).take(),
        },
    };
    flush_stdout();
    send(report, &record);
    std::process::exit(0);
}

/// Flushes what the closure printed without a newline, before its value goes out. Alone, at once;
/// with other threads, on a thread of its own, waited for at most half a second: one of them may
/// hold stdout's lock for good (a logger), and a flush through the lock then waited for ever (an
/// outside review), while exit's own flush only tries the lock, and lost a last line in 4 of 20
/// runs against a thread that took the lock often (the next review).
fn flush_stdout() {
    if crate::sys::SingleThreaded::if_alone().is_some() {
        let _ = std::io::stdout().flush();
        return;
    }
    let (done, flushed) = std::sync::mpsc::channel();
    let flusher = std::thread::Builder::new().spawn(move || {
        let _ = std::io::stdout().flush();
        let _ = done.send(());
    });
    if flusher.is_ok() {
        let _ = flushed.recv_timeout(std::time::Duration::from_millis(500));
    }
}

/// A panic hook, as `std::panic::take_hook` gives it.
type Hook = dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send;

/// What std's default hook prints for a panic of the closure's thread, which std knows by no name
/// (the fork server forked before `main` named it): `thread '<unnamed>' (2) panicked at …`. The
/// report is written to a memory file instead of stderr, and goes out with the caller's thread's
/// name in its first line, as a test's panic reads under libtest; the rest (message, backtrace,
/// notes) is std's own. Running the closure on a thread of that name did the same at 0.2 ms a
/// closure, panicking or not; this costs nothing until a panic.
///
/// Only while this is the process's one thread: the swap of the descriptor is the whole process's,
/// so a program another thread started meanwhile would keep the memory file as its stderr, and that
/// thread's own output would land in it (an outside review). With other threads std's report goes
/// out as it is, `'<unnamed>'`.
fn named_report(default_hook: &Hook, info: &std::panic::PanicHookInfo<'_>, name: &str) {
    use std::io::{Read, Seek};
    if crate::sys::SingleThreaded::if_alone().is_none() {
        return default_hook(info);
    }
    let Ok((file, stderr)) = (|| -> std::io::Result<_> {
        let file = nix::sys::memfd::memfd_create(c"panic", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
        // Close-on-exec, as std's duplicates are (the review found the copy in what a thread started).
        let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
        nix::unistd::dup2_stderr(&file)?;
        Ok((std::fs::File::from(file), stderr))
    })() else {
        return default_hook(info);
    };
    default_hook(info);
    if nix::unistd::dup2_stderr(&stderr).is_err() {
        return; // stderr cannot be had back: what std wrote stays unseen, as it would with no stderr
    }
    let mut text = Vec::new();
    let _ = (&file).rewind().and_then(|()| (&file).read_to_end(&mut text));
    // std starts the report with an empty line (Rust 1.87 on) or not.
    let (newlines, report) = text.split_at(text.iter().take_while(|&&b| b == b'\n').count());
    let mut err = std::io::stderr().lock();
    let _ = match report.strip_prefix(b"thread '<unnamed>'") {
        Some(rest) => {
            err.write_all(newlines).and_then(|()| write!(err, "thread '{name}'")).and_then(|()| err.write_all(rest))
        }
        None => err.write_all(&text),
    };
}

/// The variables that ask std for backtraces.
pub(crate) const BACKTRACE_VARIABLES: [&str; 2] = ["RUST_BACKTRACE", "RUST_LIB_BACKTRACE"];

/// Whether `name` asks for backtraces (one of [`BACKTRACE_VARIABLES`]).
pub(crate) fn is_backtrace_variable(name: &str) -> bool {
    BACKTRACE_VARIABLES.contains(&name)
}

/// A backtrace names its frames from the symbols of the binary at the path `current_exe` gives: the
/// caller's path, outside this sandbox's root. When the sandbox's environment asks for backtraces
/// (as the caller's did), that path is made to lead to this process's own executable before the
/// closure runs: a symlink to `/proc/self/exe` in the sandbox's writable root, so that any backtrace
/// of the closure (a panic's, its own hook's, a captured one) names its frames. A start without
/// backtraces asked for pays nothing (it was a bind mount on every start).
///
/// Only on the sandbox's own file systems: never in a volume (a host folder bound in) nor in a writable
/// layer kept on the host (`Builder::writable_layer_in`), where the link would stay as a change the
/// test never made; there, frames go unnamed. Something else at that path gives way where it can (the
/// sandbox's root is private); where it cannot, the null device is bound over it, so that a FIFO
/// there cannot block the symboliser forever. Returns `true` if even that failed and what stays is
/// not a file: the closure then runs without the backtrace variables.
pub(crate) fn reach_own_binary(config: &crate::config::Config) -> bool {
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    let asked = config.env.iter().any(|(k, v)| is_backtrace_variable(k) && v != "0");
    let Some(exe) = std::env::current_exe().ok().filter(|_| asked) else { return false };
    let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    let blocking = |p: &Path| std::fs::metadata(p).is_ok_and(|m| !m.file_type().is_file() && !m.file_type().is_dir());
    let present = std::fs::symlink_metadata(&exe).is_ok();
    if present && id(&exe).is_some_and(|there| Some(there) == id(Path::new("/proc/self/exe"))) {
        return false; // reachable already: a root or a volume that holds it
    }
    let volumes: Vec<PathBuf> = config
        .mounts
        .iter()
        .filter(|m| matches!(m.kind, crate::volume::MountKind::Bind { .. }))
        .map(|m| Path::new(&m.target).canonicalize().unwrap_or_else(|_| PathBuf::from(&m.target)))
        .collect();
    // Whether new entries in the folder `dir` would land on the host (resolved: a volume's, a kept
    // layer's).
    let on_host = |dir: &Path| {
        config.layers.upper_in.is_some()
            || dir.canonicalize().map_or(true, |d| volumes.iter().any(|v| d.starts_with(v)))
    };
    if present {
        if exe.parent().is_none_or(on_host) || std::fs::remove_file(&exe).is_err() {
            // What stays there must not block the symboliser (std may have decided on backtraces
            // before this process was forked: dropping the variables is not enough): the null device
            // is bound over it, in this sandbox's mounts only.
            if !blocking(&exe) {
                return false;
            }
            let flags = nix::mount::MsFlags::MS_BIND;
            return nix::mount::mount(Some("/dev/null"), &exe, None::<&str>, flags, None::<&str>).is_err();
        }
    } else {
        // Down from the root: the deepest folder of the path that exists, and the folders to make
        // below it (each made once, without a failed try: every step is a lookup in the overlay).
        let Some(parent) = exe.parent() else { return false };
        let mut existing = PathBuf::from("/");
        let mut components = parent.components().skip(1).peekable();
        while let Some(c) = components.next_if(|c| std::fs::metadata(existing.join(c)).is_ok_and(|m| m.is_dir())) {
            existing.push(c);
        }
        if on_host(&existing) {
            return false;
        }
        for c in components {
            existing.push(c);
            if std::fs::create_dir(&existing).is_err() {
                return false;
            }
        }
    }
    let _ = std::os::unix::fs::symlink("/proc/self/exe", &exe);
    false
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".to_owned())
}
