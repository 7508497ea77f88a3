//! `sandbox-run [OPTIONS] -- PROGRAM [ARGS…]`: see `sandbox-run --help` and the README.

#![forbid(unsafe_code)]

use clap::Parser;
use sandbox_cli::{Error, SandboxOptions, exit};

const AFTER_HELP: &str = "\
Exit codes: PROGRAM's own (128+N when killed by signal N); 124 the --timeout passed; 125 sandbox-run
itself failed (an option, the rootfs, a setup step: the message says which and what to do); 126 PROGRAM
cannot be executed; 127 PROGRAM not found in the sandbox; 137 the --memory limit was exceeded.
With --per-test: 0 when every test passed, 101 when one failed (as libtest).

Under nextest, each test in its own sandbox (.config/nextest.toml):
  experimental = [\"wrapper-scripts\"]
  [scripts.wrapper.sandbox]
  command = 'sandbox-run --'
  [[profile.default.scripts]]
  filter = 'all()'
  run-wrapper = 'sandbox'";

/// Run a program, or each test of a test binary, in a fresh sandbox: its own hostname, pids, mounts,
/// network and a private writable copy of its root filesystem, torn down without a trace.
#[derive(Parser)]
#[command(name = "sandbox-run", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    opts: SandboxOptions,
    /// Treat PROGRAM as a libtest test binary and run each of its tests in a sandbox of its own
    /// (ARGS select tests as libtest's do: filters, --skip, --exact, --ignored, --include-ignored)
    #[arg(long, conflicts_with_all = ["json_usage", "tty"])]
    per_test: bool,
    /// With --per-test: how many tests at once [default: the number of CPUs]
    #[arg(long, short = 'j', value_name = "N", requires = "per_test")]
    jobs: Option<usize>,
    /// Open an interactive shell (/bin/sh -l) instead of running PROGRAM
    #[arg(long, conflicts_with_all = ["command", "per_test", "json_usage", "keep_failed"])]
    shell: bool,
    /// Open a shell on the state a `--keep-failed` run kept in DIR (its rootfs, with the files the
    /// failed program changed on top). Those files run as the shell starts: it gets no workspace
    /// folder and none of your environment unless given (--mount, --env, --keep-env), and starts in /
    /// on the host's root. The rootfs is the one the run kept (no --rootfs)
    #[arg(long, value_name = "DIR", conflicts_with_all = ["command", "per_test", "shell", "json_usage", "keep_failed", "rootfs"])]
    shell_from: Option<std::path::PathBuf>,
    /// PROGRAM and its arguments
    #[arg(last = true, value_name = "PROGRAM [ARGS]")]
    command: Vec<std::ffi::OsString>,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { exit::SANDBOX_FAILED } else { 0 });
        }
    };
    match try_main(&cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("sandbox-run: {}", sandbox::error_chain(&e));
            std::process::exit(exit::of_error(&e));
        }
    }
}

fn try_main(cli: &Cli) -> Result<i32, Error> {
    let opts: &SandboxOptions = &cli.opts;
    if let Some(dir) = &cli.shell_from {
        let kept = sandbox_cli::open_kept(dir)?;
        let mut resumed = opts.clone();
        let rootfs = kept.record.rootfs.parse()?;
        // The record names the tree by path: one another user could have put in its place since (its
        // cache folder removed by a cleaner, then made again by them) is refused (the twenty-third
        // outside review: their /bin/sh ran as root in the shell's sandbox).
        if let sandbox_cli::RootfsSpec::Path(tree) = &rootfs {
            sandbox::fetch::way::check(tree).map_err(Error::Rootfs)?;
        }
        resumed.rootfs = Some(rootfs);
        resumed.layers = vec![kept.upper()];
        resumed.keep_failed = None;
        resumed.resumed = true;
        return sandbox_cli::shell(&resumed);
    }
    if cli.shell {
        return sandbox_cli::shell(opts);
    }
    let Some((program, args)) = cli.command.split_first() else {
        return Err(Error::Option {
            option: "command",
            value: String::new(),
            expected: "-- PROGRAM [ARGS…] (or --shell)",
        });
    };
    // The arguments go in as given, in any encoding; the program's path is looked up on the host
    // first, and a test binary's arguments are libtest's: those take UTF-8.
    let utf8 = |s: &std::ffi::OsStr, option, expected| {
        // Shown with Rust's escapes (`\xff`), without the quotes of `{:?}`.
        let shown = || format!("{s:?}").trim_matches('"').to_owned();
        s.to_str().map(str::to_owned).ok_or_else(|| Error::Option { option, value: shown(), expected })
    };
    let program = utf8(program, "program", "a path in UTF-8")?;
    if cli.per_test {
        let jobs = cli.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        let args = args
            .iter()
            .map(|a| utf8(a, "libtest argument", "UTF-8, as libtest takes its arguments"))
            .collect::<Result<Vec<_>, _>>()?;
        return sandbox_cli::per_test(opts, jobs, &program, &args);
    }
    sandbox_cli::run(opts, &program, args)
}
