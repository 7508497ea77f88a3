//! Developer and CI tasks: `cargo xtask <task>`. See `cargo xtask --help`.

#![forbid(unsafe_code)]

mod bench;
mod bench_wrapper;
mod doctor;
mod fetch_rootfs;
mod install_cli;
mod run;
mod shards;
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
    Shell(sandbox_cli::SandboxOptions),
    /// Check what this machine allows: user namespaces, overlayfs, cgroups, a rootfs, a real sandbox.
    Doctor,
    /// Simulate CI sharding: archive the #[sandbox_test] suite, run it as N nextest partitions from fresh
    /// folders, and check that every test ran and passed exactly once.
    Shards {
        /// How many partitions (CI machines).
        #[arg(long, default_value_t = 3)]
        partitions: u32,
    },
    /// Run the benchmarks (release build) and print their figures: fetch, sandbox, overhead, wrapper.
    Bench {
        /// One benchmark: fetch, sandbox, overhead or wrapper (default: all).
        name: Option<String>,
    },
    /// Install sandbox-run with the C library linked in (static-pie): it starts 0.5 to 1 ms sooner than
    /// what `cargo install --path cli` gives.
    InstallCli(install_cli::Args),
    /// Run a program in a qemu guest with its own kernel and cgroup v2, on this machine's files.
    Vm(vm::Args),
}

fn main() {
    if let Err(e) = try_main() {
        // One paragraph: the error, then each cause (no message repeats its source's).
        let text: Vec<String> = e.chain().map(ToString::to_string).collect();
        eprintln!("error: {}", text.join(": "));
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
        Task::Shards { partitions } => shards::run(partitions),
        Task::InstallCli(args) => install_cli::run(args),
        Task::Vm(args) => vm::run(args),
    }
}

/// The cargo that runs this task (`$CARGO`), else the one on `PATH`.
fn cargo() -> std::process::Command {
    std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

/// The workspace's target directory (`$CARGO_TARGET_DIR`, else `target/` at the workspace root).
fn target_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// The workspace's folder.
fn workspace_root() -> anyhow::Result<std::path::PathBuf> {
    let xtask = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    Ok(xtask.parent().ok_or_else(|| anyhow::anyhow!("{} has no parent folder", xtask.display()))?.to_path_buf())
}
