//! The program's process inside the sandbox.
//!
//! What it does before exec is prepared first ([`Prepared`]: the strings its system calls take, the
//! filter), so that the steps themselves allocate nothing: init starts a program's process sharing
//! its memory until the exec ([`spawn_program`], as posix_spawn(3) does: no page table is copied),
//! where only system calls are sound. A closure's process, and a session command's, are forked.

use std::ffi::{CString, OsString};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;

use crate::config::{Config, Job};
use crate::report::{Record, StepKind, send};
use crate::sys::{ExecList, SingleThreaded};

/// What the program's process needs for its steps, made before it exists.
pub(crate) struct Prepared<'a> {
    config: &'a Config,
    filter: Option<&'static crate::seccomp::Filter>,
    current_dir: CString,
    args: ExecList,
    env: ExecList,
    /// The paths to try, in order: the program's, or each `$PATH` folder's (execvp(3)).
    candidates: Vec<CString>,
    /// Whether the candidates come from `$PATH` (the program's name has no `/`).
    searching: bool,
}

impl std::fmt::Debug for Prepared<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").field("candidates", &self.candidates).finish_non_exhaustive()
    }
}

impl<'a> Prepared<'a> {
    pub(crate) fn new(config: &'a Config) -> Prepared<'a> {
        let cstr = |s: &[u8]| CString::new(s).unwrap_or_default();
        let (program, arg0, args): (&[u8], &[u8], &[OsString]) = match &config.job {
            Job::Exec { program, arg0, args } | Job::Join { program, arg0, args, .. } => {
                (program.as_bytes(), arg0.as_bytes(), args)
            }
            _ => (b"", b"", &[]),
        };
        let searching = !program.contains(&b'/') && !program.is_empty();
        let candidates = if !searching {
            vec![cstr(program)]
        } else {
            let path = config.env.iter().find(|(k, _)| k == "PATH").map_or(crate::config::DEFAULT_PATH, |(_, v)| v);
            let in_dir = |d: &str| cstr(&[d.as_bytes(), b"/", program].concat());
            path.split(':').filter(|d| !d.is_empty()).map(in_dir).collect()
        };
        Prepared {
            config,
            filter: crate::seccomp::to_install(config.security.no_setid(config.outer_uid, &config.mounts))
                .ok()
                .flatten(),
            current_dir: cstr(config.current_dir.as_bytes()),
            args: ExecList::new(std::iter::once(arg0).chain(args.iter().map(|a| a.as_bytes())).map(cstr).collect()),
            env: ExecList::new(config.env.iter().map(|(k, v)| cstr(format!("{k}={v}").as_bytes())).collect()),
            candidates,
            searching,
        }
    }
}

/// A step of the program's process that failed, as the exec pipe carries it: one byte, then the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failed {
    Rlimit = 1,
    CurrentDir = 2,
    Filter = 3,
    Exec = 4,
    Pty = 5,
}

/// The process's steps before exec, in order; allocates nothing. `close_others`: a closure's
/// process closes every descriptor above stderr but these (it never execs, so close-on-exec would
/// close nothing). `shares_memory`: the process shares init's memory until its exec, and with it
/// the dumpable flag (prctl(2): a property of the memory), which it then leaves as init had it.
fn steps(p: &Prepared<'_>, close_others: Option<&[RawFd]>, shares_memory: bool) -> Result<(), (Failed, Errno)> {
    let config = p.config;
    let was_dumpable = nix::sys::prctl::get_dumpable().unwrap_or(false);
    // A session of its own: job control inside cannot touch the caller's terminal.
    let _ = nix::unistd::setsid();
    if let Some((rows, cols)) = config.pty {
        // pty(7): a terminal of the sandbox's devpts, found by its name inside (see sys::pty).
        crate::sys::pty::take_own_pty(rows, cols).map_err(|e| (Failed::Pty, e))?;
    }
    // proc(5): with limits, init is kept out of the OOM killer's choice (oom_score_adj -1000) and
    // every process it forks would inherit that. The program gets the ordinary score back (raising
    // it needs no privilege); otherwise a cgroup at its memory limit holds no process the kernel may
    // kill, and livelocks there (issue 14, seen on cgroup v2).
    // As root, init is not dumpable, and so, until it execs, is this process: its /proc files then
    // belong to the host's root, out of its reach; dumpable for as long as it takes to write there.
    // Then not dumpable until the exec (which makes it dumpable again) or, for a closure, until the
    // filter is installed: in a session, another command could otherwise seize it with ptrace before
    // it is filtered. A joined command comes from the joining helper, never from init: nothing to
    // reset, and it stays out of reach throughout (its change of credentials made it not dumpable).
    // A program's process, sharing init's memory, leaves the flag as init had it: not dumpable in a
    // default sandbox; dumpable in a privileged one, where init is too (the same memory).
    if !matches!(config.job, Job::Join { .. }) {
        let _ = nix::sys::prctl::set_dumpable(true);
        let mode = nix::sys::stat::Mode::empty();
        if let Ok(fd) = nix::fcntl::open(c"/proc/self/oom_score_adj", nix::fcntl::OFlag::O_WRONLY, mode) {
            let _ = nix::unistd::write(&fd, b"0");
        }
    }
    let _ = nix::sys::prctl::set_dumpable(shares_memory && was_dumpable);
    for (resource, value) in &config.rlimits {
        nix::sys::resource::setrlimit(resource.resource(), *value, *value).map_err(|e| (Failed::Rlimit, e))?;
    }
    if config.controlling_terminal {
        // tty_ioctl(4): a session leader takes its stdin terminal as controlling terminal, so that
        // an interactive shell gets job control and ^C reaches the program inside.
        let _ = crate::sys::take_stdin_as_controlling_terminal();
    }
    nix::unistd::chdir(p.current_dir.as_c_str()).map_err(|e| (Failed::CurrentDir, e))?;
    if let Some(keep) = close_others {
        crate::sys::hardening::close_above_stdio(keep);
    }
    // Last before exec: the keyring, stdio only, no_new_privs and the seccomp filter.
    if !matches!(config.job, Job::Session | Job::Switch) {
        crate::hardening::harden_program(&config.security, p.filter, &[]).map_err(|e| (Failed::Filter, e))?;
    }
    Ok(())
}

/// execve(2) of each candidate in turn, like execvp(3): returns the errno that stopped it.
fn exec(p: &Prepared<'_>) -> Errno {
    crate::sys::default_sigpipe();
    let mut result = Errno::ENOENT;
    for candidate in &p.candidates {
        match crate::sys::execve(candidate, &p.args, &p.env) {
            // Keep looking, but remember a permission problem over "not found", as execvp does.
            Errno::ENOENT | Errno::ENOTDIR if p.searching => {}
            Errno::EACCES if p.searching => result = Errno::EACCES,
            other => return other,
        }
    }
    result
}

/// Writes a failed step on the exec pipe; allocates nothing.
fn report_failed(pipe: BorrowedFd<'_>, (step, errno): (Failed, Errno)) {
    let e = (errno as i32).to_le_bytes();
    let _ = nix::unistd::write(pipe, &[step as u8, e[0], e[1], e[2], e[3]]);
}

/// Starts the program of `config` (a `Job::Exec`) in a process that shares init's memory until its
/// exec (see the module's comment), with the signal mask `mask`. A failed step is written on
/// `exec_pipe` (see [`await_exec`]) and the process ends with 127.
pub(crate) fn spawn_program(
    config: &Config,
    exec_pipe: &OwnedFd,
    mask: &nix::sys::signal::SigSet,
) -> Result<nix::unistd::Pid, Errno> {
    let prepared = Prepared::new(config);
    let pipe = exec_pipe.as_fd();
    crate::sys::spawn_sharing_memory(&|| {
        let _ = nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(mask), None);
        let failed = match steps(&prepared, None, true) {
            Ok(()) => (Failed::Exec, exec(&prepared)),
            Err(f) => f,
        };
        report_failed(pipe, failed);
        127
    })
}

/// The program's process, forked (a closure's, a session command's): its steps, then exec, or the
/// closure. On failure, writes what failed to `exec_pipe` and exits 127. A closure runs here, and the
/// process ends after reporting its value.
pub(crate) fn run(t: SingleThreaded, config: &Config, report: &OwnedFd, exec_pipe: OwnedFd) {
    let prepared = Prepared::new(config);
    let keep = [report.as_raw_fd(), exec_pipe.as_raw_fd()];
    // A closure never execs: what init held, and a forked helper's copies of the caller's, close now.
    let close_others = matches!(config.job, Job::Closure { .. }).then_some(&keep[..]);
    if let Err(f) = steps(&prepared, close_others, false) {
        report_failed(exec_pipe.as_fd(), f);
        crate::sys::exit_now(127);
    }
    match &config.job {
        Job::Closure { entry, build, input, thread } => {
            // The sandbox's environment, exactly, as a program gets it; without the backtrace
            // variables where no backtrace could be printed (see reach_own_binary).
            let blocked = super::closure::reach_own_binary(config);
            let env: Vec<(String, String)> = config
                .env
                .iter()
                .filter(|(k, _)| !(blocked && super::closure::is_backtrace_variable(k)))
                .cloned()
                .collect();
            crate::sys::set_env(t, &env);
            // It stays not dumpable: what it starts must not reach its memory, descriptors or
            // executable (the caller's binary) through /proc/<pid>, as they could a program's.
            // Closing the exec pipe tells init the closure is under way.
            drop(exec_pipe);
            super::closure::run_entry(report, *entry, build, input.as_bytes(), thread.as_deref())
        }
        Job::Exec { .. } | Job::Join { .. } => {
            report_failed(exec_pipe.as_fd(), (Failed::Exec, exec(&prepared)));
            crate::sys::exit_now(127)
        }
        Job::Session | Job::Switch => crate::sys::exit_now(0),
    }
}

/// The process that runs the program, whose command line must be in place before it is reported
/// started (see [`await_command_line`]), and the `/proc` that shows it under that pid.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Program<'a> {
    /// Init's child, in init's `/proc` (the sandbox's, before any program of the sandbox runs).
    Pid(nix::unistd::Pid),
    /// A session command's process, in the caller's `/proc` (`proc`), opened by the helper before it
    /// entered the session's mount namespace: the sandbox's `/proc` is the session's programs' to
    /// change (a FIFO mounted at `/proc/<pid>/cmdline` would block the read), and shows the process
    /// under another pid than the helper's waitid(2) takes.
    InCallersProc { pid: nix::unistd::Pid, proc: BorrowedFd<'a> },
    /// A closure's process, which never execs (it keeps init's command line, and `PF_FORKNOEXEC`):
    /// under way once it has closed the pipe.
    Closure,
}

/// Waits until the program's process has exec'd (the close-on-exec pipe reads end-of-file) or failed
/// (it wrote a failed step), and reports which; a program is reported started once its command line
/// is in place (`program`, see [`await_command_line`]).
pub(crate) fn await_exec(pipe: OwnedFd, report: &OwnedFd, current_dir: &str, program: Program<'_>) {
    let mut bytes = Vec::new();
    let _ = std::fs::File::from(pipe).read_to_end(&mut bytes);
    let Some(&[step, a, b, c, d]) = bytes.first_chunk::<5>() else {
        await_command_line(program);
        send(report, &Record::Started);
        return;
    };
    send(report, &failure_record(step, i32::from_le_bytes([a, b, c, d]), current_dir));
}

/// Until the exec has put the program's arguments in place, so that a program reported started
/// shows its command line (to `ps`, `pgrep -f`). The pipe's end-of-file says less than that:
/// - the exec closes the pipe (close-on-exec) before the new image's stack holds the arguments, and
///   `/proc/<pid>/cmdline` reads empty until it does (proc(5));
/// - on some kernels the pipe closes even before the process leaves init's memory: seen on Debian's
///   6.1.0-57 in the VM lane, where the process still showed init's command line ("sandbox-init"),
///   name and size once init read end-of-file. `ps` and `pgrep -f` then missed the program for a
///   moment after `spawn` returned.
///
/// So it waits while the process has not exec'd yet (`PF_FORKNOEXEC`, 0x40 in `/proc/<pid>/stat`'s
/// flags, set at fork and cleared by the exec that replaces its memory; include/linux/sched.h) or
/// its command line reads empty. No deadline decides this: under emulation (the VM lane's TCG
/// guest) an exec takes well over the 100 ms a deadline once allowed. It stops waiting when the
/// process has ended (a zombie reads empty too) or its main thread has (state `Z` while other
/// threads run: that also reads empty, for good). It yields first (an exec takes well under a
/// millisecond on a real CPU), then sleeps a millisecond at a time; a 10 s bound keeps a kernel that
/// behaves otherwise from holding init.
fn await_command_line(program: Program<'_>) {
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
    /// include/linux/sched.h: "Forked but didn't exec".
    const PF_FORKNOEXEC: u64 = 0x40;
    let (pid, proc) = match program {
        Program::Pid(pid) => (pid, None),
        Program::InCallersProc { pid, proc } => (pid, Some(proc)),
        Program::Closure => return,
    };
    // Init's /proc is the program's too (it may mount over its own files): bounded reads, one byte
    // of the command line (whether it is there), a stat line's worth of stat.
    let path = |name: &str| match proc {
        Some(_) => format!("{pid}/{name}"),
        None => format!("/proc/{pid}/{name}"),
    };
    // Whether the process is still on its way to the program: its main thread lives (stat's state,
    // field 3) and it has not exec'd (flags, field 9) or its command line is not in place yet. A
    // stat that cannot be read or parsed ends the wait.
    let on_its_way = || {
        let Some(fields) = crate::sys::stat_fields_at(proc, &path("stat")) else { return false };
        let alive = fields.first().is_some_and(|state| state != "Z" && state != "X");
        let Some(flags) = fields.get(9 - 3).and_then(|f| f.parse::<u64>().ok()) else { return false };
        alive
            && (flags & PF_FORKNOEXEC != 0
                || crate::sys::read_proc_file(proc, &path("cmdline"), 1).is_some_and(|line| line.is_empty()))
    };
    let ended = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for round in 0u32.. {
        if !(on_its_way()
            && matches!(waitid(Id::Pid(pid), ended), Ok(WaitStatus::StillAlive))
            && std::time::Instant::now() < deadline)
        {
            return;
        }
        if round < 100 {
            let _ = nix::sched::sched_yield();
        } else {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// The record of a failed step, as [`report_failed`] wrote it (`current_dir`: the one it tried).
fn failure_record(step: u8, errno: i32, current_dir: &str) -> Record {
    let setup = |kind, what: &str, path: Option<String>| Record::SetupFailed { kind, what: what.into(), path, errno };
    match step {
        s if s == Failed::Rlimit as u8 => setup(StepKind::Rlimit, "set a resource limit (setrlimit)", None),
        s if s == Failed::CurrentDir as u8 => {
            setup(StepKind::CurrentDir, "enter the working directory", Some(current_dir.to_owned()))
        }
        s if s == Failed::Filter as u8 => {
            setup(StepKind::Security, "install the seccomp filter (no_new_privs, seccomp)", None)
        }
        s if s == Failed::Pty as u8 => {
            let ptmx = crate::sys::pty::PTMX.to_string_lossy().into_owned();
            setup(StepKind::Dev, "open a pseudo-terminal of the sandbox's own", Some(ptmx))
        }
        _ => Record::ExecFailed { errno },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_reads_back_as_its_record() {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        report_failed(w.as_fd(), (Failed::CurrentDir, Errno::ENOENT));
        drop(w);
        let (rr, rw) = nix::unistd::pipe().expect("pipe");
        await_exec(r, &rw, "/srv/app", Program::Pid(nix::unistd::Pid::from_raw(i32::MAX)));
        drop(rw);
        let mut text = String::new();
        std::fs::File::from(rr).read_to_string(&mut text).expect("read");
        assert!(text.contains("enter the working directory") && text.contains("/srv/app"), "{text}");
        assert_eq!(failure_record(Failed::Exec as u8, 2, "/"), Record::ExecFailed { errno: 2 });
    }

    /// Starts `/bin/sleep 30.5` with an exec held for 400 ms (see `with_a_slow_exec`), waits for its
    /// command line, and returns what `/proc` then shows, after checking what it showed before.
    fn command_line_once_started(empty_command_line: bool) -> String {
        let (pid_r, pid_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        let mut cmd = std::process::Command::new("/bin/sleep");
        cmd.arg("30.5");
        crate::sys::process::with_a_slow_exec(
            &mut cmd,
            pid_w,
            std::time::Duration::from_millis(400),
            empty_command_line,
        )
        .expect("stat");
        std::thread::scope(|s| {
            let spawned = s.spawn(move || cmd.spawn());
            let mut pid = [0u8; 4];
            std::fs::File::from(pid_r).read_exact(&mut pid).expect("the child's pid");
            let pid = nix::unistd::Pid::from_raw(i32::from_ne_bytes(pid));
            let line = || {
                String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline")).into_owned()
            };
            let before = line();
            assert_eq!(before.is_empty(), empty_command_line, "while its exec is held: {before:?}");
            await_command_line(Program::Pid(pid));
            let shown = line();
            let mut child = spawned.join().expect("thread").expect("spawn");
            let _ = child.kill();
            let _ = child.wait();
            shown
        })
    }

    /// Under the VM lane's emulation an exec took longer than the 100 ms this wait once allowed, and
    /// a program was reported started before `ps` could see its command line. The wait lasts as long
    /// as the exec does. The held child has not exec'd, so `PF_FORKNOEXEC` alone keeps the wait
    /// going here: the branch for an exec's last steps (flag cleared, command line still empty)
    /// has no process a test can hold in that state.
    #[test]
    fn a_started_program_shows_its_command_line_however_long_its_exec_takes() {
        assert_eq!(command_line_once_started(true), "/bin/sleep\x0030.5\x00");
    }

    /// On the VM lane's kernel the exec pipe closed while the process still had init's memory and
    /// command line, and `pgrep -f` missed a program `spawn` had returned. A process that has not
    /// exec'd yet (its parent's command line, here the test binary's) is waited for too.
    #[test]
    fn a_process_that_has_not_exec_d_yet_is_waited_for() {
        assert_eq!(command_line_once_started(false), "/bin/sleep\x0030.5\x00");
    }
}
