//! `cargo xtask run` and `cargo xtask shell`: thin callers of `sandbox-run`'s library, so that there is
//! one implementation of "build a sandbox from options and run a program in it".

use sandbox_cli::SandboxOptions;

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    sandbox: SandboxOptions,
    /// The command and its arguments (after `--`) [default: hostname; ps; cat /etc/alpine-release]
    #[arg(last = true)]
    command: Vec<String>,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let command = if args.command.is_empty() {
        vec!["/bin/sh".to_owned(), "-c".to_owned(), "hostname; ps; cat /etc/alpine-release".to_owned()]
    } else {
        args.command
    };
    let rest: Vec<std::ffi::OsString> = command[1..].iter().map(Into::into).collect();
    let code = sandbox_cli::run(&args.sandbox, &command[0], &rest).map_err(explain)?;
    exit_with(code)
}

pub fn shell(opts: SandboxOptions) -> anyhow::Result<()> {
    let code = sandbox_cli::shell(&opts).map_err(explain)?;
    exit_with(code)
}

/// A rootfs that cannot be fetched gets the same what-to-do paragraph as `cargo xtask fetch-rootfs`.
fn explain(e: sandbox_cli::Error) -> anyhow::Error {
    match e {
        sandbox_cli::Error::Rootfs(f) => crate::fetch_rootfs::with_hint(f),
        other => anyhow::Error::new(other),
    }
}

fn exit_with(code: i32) -> anyhow::Result<()> {
    if code == 0 { Ok(()) } else { std::process::exit(code) }
}
