//! A single-threaded caller of one sandbox, as `sandbox-run` or a tool's `main` is (such a caller forks
//! its sandbox's helper itself, without the fork server): runs `PROGRAM [ARGS...]` (or, for `--closure`, a
//! closure) in a sandbox of the rootfs `$SANDBOX_ROOTFS` and exits with its code. For tests that need that path
//! (tests/escape.rs: a caller killed while its helper forks init). `ONE_SANDBOX_PENDING=TEXT`: TEXT is
//! printed unflushed before the sandbox starts, and written at the caller's exit, after its helper's
//! (tests/sandbox.rs). `--closure-backtrace`: a closure that prints a captured backtrace and panics,
//! after this process captured one of its own (as an `anyhow::Error` does); `ONE_SANDBOX_LAYER=DIR` adds DIR as a layer (`Builder::layer`) and a 15 s deadline
//! (tests/closures.rs).

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
    } else {
        sandbox.command(program.as_str()).args(rest).status().map(|s| s.code().unwrap_or(128))
    };
    match code {
        Ok(code) => {
            if std::env::var_os("ONE_SANDBOX_PENDING").is_some() {
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
