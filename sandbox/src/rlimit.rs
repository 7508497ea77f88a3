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

/// The processes (threads count too) each user inside a sandbox may have by default: podman's
/// default `pids_limit`. It is `RLIMIT_NPROC`, which the kernel (5.14 and later) counts per user
/// *of the sandbox's own user namespace*: every sandbox has its own 2048, whatever its id range, and
/// a careless fork bomb in one test gets `EAGAIN` at its 2048th process instead of taking the host's
/// process ids from every other test (an outside review: 1000 `sleep &` in one sandbox were 1000
/// more host processes; `pid_max` is 32768 on many machines). Unlike a [`Builder::pids_limit`], it
/// needs no cgroup, so it holds rootless and on cgroup v1 too. It bounds each user, not the sandbox:
/// as root, a program that switches among the users inside gets 2048 for each; only a pids limit
/// bounds the sandbox as a whole. Not in a [`privileged`](crate::Builder::privileged) sandbox (the
/// host's root is exempt from it), nor in one with a pids limit, nor where the caller's own limit
/// is no higher (then it is inherited as it is), nor before Linux 5.14 (which counted it per host
/// user, across sandboxes and the caller's own processes); [`Builder::rlimit`] with
/// [`Rlimit::NProc`] sets another. A test binary whose tests start thousands of threads (libtest's
/// one test per CPU, times a runtime's thread per CPU, on a large machine) needs one of those.
///
/// [`Builder::pids_limit`]: crate::Builder::pids_limit
/// [`Builder::rlimit`]: crate::Builder::rlimit
pub const DEFAULT_PROCESSES: u64 = 2048;

/// [`DEFAULT_PROCESSES`], where it applies (see there): a caller whose own soft limit is no higher
/// passes its limits on as they are (soft and hard), and a kernel before 5.14 gets none.
pub(crate) fn default_processes() -> Option<u64> {
    let own =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NPROC).map_or(u64::MAX, |(soft, _)| soft);
    (own > DEFAULT_PROCESSES && crate::sys::kernel_at_least(5, 14)).then_some(DEFAULT_PROCESSES)
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
