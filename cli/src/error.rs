//! What can go wrong in `sandbox-run` itself (as opposed to the program it runs).

use std::path::PathBuf;

/// A failure of `sandbox-run` itself: exit code [`crate::exit::SANDBOX_FAILED`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An option's value cannot be read.
    #[error("invalid {option} `{value}`: expected {expected}")]
    Option {
        /// Which kind of value.
        option: &'static str,
        /// What was given.
        value: String,
        /// What would be accepted.
        expected: &'static str,
    },
    /// An option's value that the sandbox would refuse (clap names the option and the value).
    #[error("{reason}")]
    Refused {
        /// What was given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A host script's interpreter (its `#!` line) is not in the rootfs it runs on.
    #[error(
        "the interpreter `{interpreter}` that `{script}` names on its #! line is not in the rootfs; use a rootfs that has it, or --rootfs host"
    )]
    Interpreter {
        /// The script.
        script: PathBuf,
        /// The interpreter it names.
        interpreter: PathBuf,
    },
    /// The rootfs could not be fetched or opened.
    #[error("could not get the rootfs")]
    Rootfs(#[source] sandbox::fetch::Error),
    /// The sandbox could not be built or started.
    #[error("the sandbox failed")]
    Sandbox(#[source] sandbox::Error),
    /// The program exists on the host but is nothing that can be executed (a folder, a device, a
    /// file neither ELF nor script): exit code [`crate::exit::CANNOT_EXECUTE`], as a shell's.
    #[error("`{program}` cannot be executed: {reason}")]
    CannotExecute {
        /// The program.
        program: PathBuf,
        /// What it is instead.
        reason: &'static str,
    },
    /// A host-side operation failed.
    #[error("failed to {op} `{path}`")]
    Io {
        /// The operation.
        op: &'static str,
        /// The object.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A test binary did not list its tests the way libtest does.
    #[error("cannot list the tests of `{binary}` (`--list`): {reason}")]
    List {
        /// The test binary.
        binary: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A host program's loader and shared libraries cannot be given to its sandbox (for a rootfs other
    /// than the host's).
    #[error("cannot give `{program}` its loader and shared libraries: {reason}")]
    Libraries {
        /// The program.
        program: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl From<sandbox::Error> for Error {
    fn from(e: sandbox::Error) -> Error {
        Error::Sandbox(e)
    }
}

pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}
