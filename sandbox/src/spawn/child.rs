//! The program's process inside the sandbox.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;

use crate::config::{Config, Job};
use crate::report::{Decoder, Record, StepKind, send};
use crate::sys::SingleThreaded;

/// Prepares the process and execs the program; on failure, writes what failed to `exec_pipe` (a
/// record: `SetupFailed` or `ExecFailed`) and exits 127. A closure runs here, and the process ends
/// after reporting its value.
pub(crate) fn run(t: SingleThreaded, config: &Config, report: &OwnedFd, exec_pipe: OwnedFd) {
    // A session of its own: job control inside cannot touch the caller's terminal.
    let _ = nix::unistd::setsid();
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
    if !matches!(config.job, Job::Join { .. }) {
        let _ = nix::sys::prctl::set_dumpable(true);
        let _ = std::fs::write("/proc/self/oom_score_adj", "0");
    }
    let _ = nix::sys::prctl::set_dumpable(false);
    for (resource, value) in &config.rlimits {
        if let Err(e) = nix::sys::resource::setrlimit(resource.resource(), *value, *value) {
            let what = "set a resource limit (setrlimit)";
            fail(
                exec_pipe,
                &Record::SetupFailed { kind: StepKind::Limits, what: what.into(), path: None, errno: e as i32 },
            );
        }
    }
    if config.controlling_terminal {
        // tty_ioctl(4): a session leader takes its stdin terminal as controlling terminal, so that
        // an interactive shell gets job control and ^C reaches the program inside.
        let _ = crate::sys::set_controlling_terminal(std::io::stdin());
    }
    let filter = crate::seccomp::for_sandbox(config.security.no_setid(config.outer_uid, &config.mounts)).ok().flatten();
    let refused = |e: Errno| Record::SetupFailed {
        kind: StepKind::Security,
        what: "install the seccomp filter (no_new_privs, seccomp)".into(),
        path: None,
        errno: e as i32,
    };
    if let Err(e) = nix::unistd::chdir(config.current_dir.as_str()) {
        let (what, path) = ("enter the working directory".into(), Some(config.current_dir.clone()));
        fail(exec_pipe, &Record::SetupFailed { kind: StepKind::CurrentDir, what, path, errno: e as i32 });
    }
    if let Job::Closure { .. } = config.job {
        // A closure never execs, so close-on-exec closes nothing: every descriptor above stderr but
        // the two it reports through is closed now (what init held, and a forked helper's copies of
        // the caller's).
        use std::os::fd::AsRawFd;
        crate::sys::hardening::close_above_stdio(&[report.as_raw_fd(), exec_pipe.as_raw_fd()]);
    }
    // Last before exec: the keyring, stdio only, no_new_privs and the seccomp filter.
    if !matches!(config.job, Job::Session | Job::Switch)
        && let Err(e) = crate::hardening::harden_program(&config.security, filter, &[])
    {
        fail(exec_pipe, &refused(e));
    }
    match &config.job {
        Job::Closure { entry, build, input } => {
            // The sandbox's environment, exactly, as a program gets it.
            crate::sys::set_env(t, &config.env);
            // It stays not dumpable: what it starts must not reach its memory, descriptors or
            // executable (the caller's binary) through /proc/<pid>, as they could a program's.
            // Closing the exec pipe tells init the closure is under way.
            drop(exec_pipe);
            super::closure::run_entry(report, *entry, build, input.as_bytes())
        }
        Job::Exec { program, args } | Job::Join { program, args, .. } => {
            let errno = exec(program, args, &config.env);
            fail(exec_pipe, &Record::ExecFailed { errno: errno as i32 })
        }
        Job::Session | Job::Switch => std::process::exit(0),
    }
}

fn fail(pipe: OwnedFd, record: &Record) -> ! {
    send(&pipe, record);
    std::process::exit(127);
}

/// execve(2) with a PATH search done here, inside the sandbox, like execvp(3).
fn exec(program: &str, args: &[String], env: &[(String, String)]) -> Errno {
    let cstr = |s: &str| CString::new(s).unwrap_or_default();
    let argv: Vec<CString> = std::iter::once(program).chain(args.iter().map(String::as_str)).map(cstr).collect();
    let envp: Vec<CString> = env.iter().map(|(k, v)| cstr(&format!("{k}={v}"))).collect();
    if program.contains('/') {
        return crate::sys::execve(&cstr(program), &argv, &envp);
    }
    let path = env.iter().find(|(k, _)| k == "PATH").map_or(crate::config::DEFAULT_PATH, |(_, v)| v.as_str());
    let mut result = Errno::ENOENT;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        match crate::sys::execve(&cstr(&candidate.to_string_lossy()), &argv, &envp) {
            // Keep looking, but remember a permission problem over "not found", as execvp does.
            Errno::ENOENT | Errno::ENOTDIR => {}
            Errno::EACCES => result = Errno::EACCES,
            other => return other,
        }
    }
    result
}

/// Waits until the program's process has exec'd (the close-on-exec pipe reads end-of-file) or failed
/// (it wrote a record), and reports which.
pub(crate) fn await_exec(pipe: OwnedFd, report: &OwnedFd) {
    let mut bytes = Vec::new();
    let _ = std::fs::File::from(pipe).read_to_end(&mut bytes);
    let records = Decoder::default().feed(&bytes);
    if records.is_empty() {
        send(report, &Record::Started);
    }
    for r in &records {
        send(report, r);
    }
}
