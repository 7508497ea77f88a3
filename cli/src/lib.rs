//! `sandbox-run`, the command-line face of the `sandbox` workspace: run any program in a fresh
//! sandbox, or each test of an existing test binary in a sandbox of its own, without changing the tests.
//!
//! ```no_run
//! use sandbox_cli::{SandboxOptions, run};
//! let opts = SandboxOptions { hostname: "box".into(), ..SandboxOptions::default() };
//! let code = run(&opts, "/bin/sh", &["-c".into(), "hostname".into()])?;
//! assert_eq!(code, 0);
//! # Ok::<(), sandbox_cli::Error>(())
//! ```
//!
//! The library is what `cargo xtask run` and `cargo xtask shell` call too: one implementation.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod capped;
mod elf;
mod error;
pub mod exit;
mod host_path;
mod keep;
mod libraries;
mod options;
mod per_test;
mod rootfs;
mod run;
mod setup;
mod shell;

pub use elf::interpreter;
pub use error::Error;
pub use keep::{Kept, KeptRecord, open_kept};
pub use options::{MountArg, NetworkArg, SandboxOptions, TmpfsArg, parse_duration, parse_size};
pub use per_test::{TESTS_FAILED, per_test};
pub use rootfs::{Resolved, RootfsSpec};
pub use run::run;
pub use setup::{Prepared, prepare, prepare_in, workspace_dirs};
pub use shell::shell;
