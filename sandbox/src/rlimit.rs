//! Per-process resource limits (setrlimit(2)) for a sandbox's program.

use serde::{Deserialize, Serialize};

/// A resource of setrlimit(2); see [`crate::Builder::rlimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Rlimit {
    /// Open file descriptors (`RLIMIT_NOFILE`).
    NoFile,
    /// Processes of the user (`RLIMIT_NPROC`).
    NProc,
    /// Core file size in bytes (`RLIMIT_CORE`).
    Core,
    /// Stack size in bytes (`RLIMIT_STACK`).
    Stack,
    /// Address space in bytes (`RLIMIT_AS`).
    AddressSpace,
    /// CPU time in seconds (`RLIMIT_CPU`).
    CpuSeconds,
    /// Largest file in bytes (`RLIMIT_FSIZE`).
    FileSize,
    /// Locked memory in bytes (`RLIMIT_MEMLOCK`).
    MemLock,
}

impl Rlimit {
    pub(crate) fn resource(self) -> nix::sys::resource::Resource {
        use nix::sys::resource::Resource;
        match self {
            Rlimit::NoFile => Resource::RLIMIT_NOFILE,
            Rlimit::NProc => Resource::RLIMIT_NPROC,
            Rlimit::Core => Resource::RLIMIT_CORE,
            Rlimit::Stack => Resource::RLIMIT_STACK,
            Rlimit::AddressSpace => Resource::RLIMIT_AS,
            Rlimit::CpuSeconds => Resource::RLIMIT_CPU,
            Rlimit::FileSize => Resource::RLIMIT_FSIZE,
            Rlimit::MemLock => Resource::RLIMIT_MEMLOCK,
        }
    }
}
