//! Developer and CI tasks: `cargo xtask <task>`. See `cargo xtask --help`.

#![forbid(unsafe_code)]

mod bench;
mod doctor;
mod fetch_rootfs;
mod run;
mod vm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Developer and CI tasks for the sandbox workspace")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Download, verify, cache and unpack an Alpine minirootfs; print where it is.
    FetchRootfs(fetch_rootfs::Args),
    /// Run a command in a fresh sandbox (default: hostname, ps, /etc/alpine-release).
    Run(run::RunArgs),
    /// An interactive Alpine shell in a fresh sandbox, on a pseudo-terminal of its own.
    Shell(run::SandboxArgs),
    /// Check what this machine allows: user namespaces, overlayfs, cgroups, a rootfs, a real sandbox.
    Doctor,
    /// Run the benchmarks (release build) and print their figures: fetch, sandbox, overhead.
    Bench {
        /// One benchmark: fetch, sandbox or overhead (default: all).
        name: Option<String>,
    },
    /// Run a program in a qemu guest with its own kernel and cgroup v2, on this machine's files.
    Vm(vm::Args),
}

fn main() {
    if let Err(e) = try_main() {
        // One paragraph: the error and each cause that adds something to it.
        let mut text = String::new();
        for cause in e.chain().map(ToString::to_string) {
            if !text.contains(&cause) {
                text = if text.is_empty() { cause } else { format!("{text}: {cause}") };
            }
        }
        eprintln!("error: {text}");
        std::process::exit(1);
    }
}

fn try_main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::FetchRootfs(args) => fetch_rootfs::run(args),
        Task::Run(args) => run::run(args),
        Task::Doctor => doctor::run(),
        Task::Shell(args) => run::shell(args),
        Task::Bench { name } => bench::run(name),
        Task::Vm(args) => vm::run(args),
    }
}
