//! A single-threaded caller of one sandbox, as `sandbox-run` or a tool's `main` is (such a caller forks
//! its sandbox's helper itself, without the fork server): runs `PROGRAM [ARGS...]` (or, for `--closure`, a
//! closure) in a sandbox of the rootfs `$SANDBOX_ROOTFS` and exits with its code. For tests that need that path
//! (tests/escape.rs: a caller killed while its helper forks init). `ONE_SANDBOX_PENDING=TEXT`: TEXT is
//! printed unflushed before the sandbox starts, and written at the caller's exit, after its helper's
//! (tests/sandbox.rs). `--closure-static`: a closure reading a static this caller changed first;
//! prints what it saw (tests/closures.rs). `--closure-backtrace`: a closure that prints a captured backtrace and panics,
//! after this process captured one of its own (as an `anyhow::Error` does); `ONE_SANDBOX_LAYER=DIR` adds DIR as a layer (`Builder::layer`) and a 15 s deadline
//! (tests/closures.rs). `--end-first-of-two child|session`: a first sandbox (a spawned `sleep`, or a
//! session) ended while a second one with a 15 s deadline runs; prints how the second then ends
//! (tests/sandbox.rs). `ONE_SANDBOX_REPEAT=N`: `PROGRAM` runs N times, each in a fresh sandbox (the
//! later ones forked by this caller's own filtered server as root: tests/escape.rs). `--pipe-eof`: a
//! pipe made without close-on-exec, three sandboxes run, its write end closed: prints `eof` if its
//! reader then sees the end within 10 s (no process the sandboxes left holds a copy), `no eof` if not;
//! with `ONE_SANDBOX_THREADED=1`, from a caller that started a thread first (its sandboxes then go
//! through the fork servers, executed after the pipe was made). `ONE_SANDBOX_BINDS=SRC:DST,...`: read-only
//! binds (tests/escape.rs: a host perl inside). `--overlap-terminal`: two sandboxes hold this process's
//! terminal at once, the first making it raw and ending first (tests/escape.rs).

/// `--overlap-terminal`: two sandboxes holding this process's terminal at once: the first makes it
/// raw, the second starts after that, the first ends before the second. Prints nothing of its own.
fn overlap_terminal(sandbox: &sandbox::Sandbox) -> Result<i32, sandbox::Error> {
    use std::io::BufRead;
    let mut first = sandbox
        .command("/bin/sh")
        .args(["-c", "stty raw -echo && echo changed && exec sleep 60"])
        .stdout(sandbox::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    let out = first.stdout.take().map(std::io::BufReader::new);
    if out.map(|mut o| o.read_line(&mut line)).is_none() || line != "changed\n" {
        eprintln!("the first sandbox did not change the terminal: {line:?}");
        return Ok(1);
    }
    let mut second = sandbox.command("/bin/sleep").arg("60").spawn()?;
    let _ = first.kill();
    let _ = first.wait();
    let _ = second.kill();
    let _ = second.wait();
    Ok(0)
}

/// A static `--closure-static` changes before its closure reads it.
static STATE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: one-sandbox PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    if let Some(text) = std::env::var_os("ONE_SANDBOX_PENDING") {
        print!("{}", text.to_string_lossy());
    }
    let mut builder = sandbox::Sandbox::builder();
    if let Some(layer) = std::env::var_os("ONE_SANDBOX_LAYER") {
        builder = builder.layer(layer).timeout(std::time::Duration::from_secs(15));
    }
    if let Ok(binds) = std::env::var("ONE_SANDBOX_BINDS") {
        for (source, target) in binds.split(',').filter_map(|b| b.split_once(':')) {
            builder = builder.mount(sandbox::Mount::bind(source, target).read_only());
        }
    }
    let sandbox = match builder.build() {
        Ok(sb) => sb,
        Err(e) => {
            eprintln!("one-sandbox: {}", sandbox::error_chain(&e));
            std::process::exit(125);
        }
    };
    // `--closure`: a closure that prints "inner", instead of a program.
    let code = if program == "--closure" {
        sandbox.run(|| println!("inner")).map(|()| 0)
    } else if program == "--closure-backtrace" {
        // A backtrace of its own, captured and never printed, as an error handled earlier has one.
        drop(std::backtrace::Backtrace::capture());
        let closure = || -> () {
            eprintln!("captured:\n{}", std::backtrace::Backtrace::capture());
            panic!("deliberate, in the closure")
        };
        sandbox.run(closure).map(|()| 0)
    } else if program == "--closure-static" {
        // A static this caller changed, read by a closure: prints what the closure saw.
        STATE.store(7, std::sync::atomic::Ordering::SeqCst);
        sandbox.run(|| STATE.load(std::sync::atomic::Ordering::SeqCst)).map(|seen| {
            println!("closure saw {seen}");
            0
        })
    } else if program == "--overlap-terminal" {
        overlap_terminal(&sandbox)
    } else if program == "--pipe-eof" {
        pipe_eof(&sandbox)
    } else if program == "--end-first-of-two" {
        end_first_of_two(&sandbox, rest.first().map_or("child", String::as_str))
    } else {
        let times = std::env::var("ONE_SANDBOX_REPEAT").ok().and_then(|n| n.parse().ok()).unwrap_or(1);
        let mut code = Ok(0);
        for _ in 0..times {
            code = sandbox.command(program.as_str()).args(rest).status().map(|s| s.code().unwrap_or(128));
            if !matches!(code, Ok(0)) {
                break;
            }
        }
        code
    };
    match code {
        Ok(code) => {
            // (A closure's helper comes from the fork server, a child of this process that never
            // ends on its own: nothing to wait for.)
            if std::env::var_os("ONE_SANDBOX_PENDING").is_some() && program != "--closure" {
                // The helper (this process's fork) ends on its own after the report; wait for it, so
                // that whatever it writes at its end is written before this process's own output.
                while nix::sys::wait::wait().is_ok() {}
            }
            std::process::exit(code)
        }
        Err(e) => {
            eprintln!("one-sandbox: {}", sandbox::error_chain(&e));
            std::process::exit(125);
        }
    }
}

/// `--pipe-eof` (see the module's comment).
fn pipe_eof(sandbox: &sandbox::Sandbox) -> Result<i32, sandbox::Error> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    if std::env::var_os("ONE_SANDBOX_THREADED").is_some() {
        // Parked for good: this process has two threads from now on.
        std::thread::spawn(|| {
            loop {
                std::thread::park();
            }
        });
    }
    let (reader, writer) = nix::unistd::pipe().expect("pipe");
    for _ in 0..3 {
        sandbox.command("/bin/true").status()?;
    }
    drop(writer);
    let ready = poll(&mut [PollFd::new(reader.as_fd(), PollFlags::POLLIN)], PollTimeout::from(10_000u16));
    let mut byte = [0u8; 1];
    let ended = ready == Ok(1) && nix::unistd::read(&reader, &mut byte) == Ok(0);
    println!("{}", if ended { "eof" } else { "no eof" });
    Ok(0)
}

/// Starts a first sandbox (a `sleep` child of `sandbox`, or a session of it), then a second one with a
/// 15 s deadline, ends the first, and prints how the second ends when ended right after: killed
/// (`second: killed`), or already dead by its deadline, which the first's end waited for.
fn end_first_of_two(sandbox: &sandbox::Sandbox, how: &str) -> Result<i32, sandbox::Error> {
    use std::os::unix::process::ExitStatusExt;
    let second = sandbox::Sandbox::builder().timeout(std::time::Duration::from_secs(15)).build()?;
    let outcome = if how == "session" {
        let first = sandbox.session()?;
        let other = second.session()?;
        drop(first);
        other.command("/bin/true").status().map(|_| "alive".to_owned())
    } else {
        let mut first = sandbox.command("/bin/sleep").arg("1000").spawn()?;
        let mut other = second.command("/bin/sleep").arg("1000").spawn()?;
        let _ = first.kill(); // Child::kill never fails today
        first.wait()?;
        let _ = other.kill();
        other.wait().map(|s| if s.signal() == Some(9) { "killed".to_owned() } else { format!("{s}") })
    };
    println!("second: {}", outcome.unwrap_or_else(|e| sandbox::error_chain(&e)));
    Ok(0)
}
