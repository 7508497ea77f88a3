//! The sandbox's network namespace, made in the background while init builds the mounts.
//!
//! Creating a network namespace is the slowest single step of a start (most of a millisecond: each
//! protocol registers its sysctls and per-namespace state). A holder process
//! ([`crate::sys::NamespaceHolder::spawn_making_network`]) makes it while the helper forks init and
//! init builds the root filesystem; init joins it (`setns` through a pidfd of the holder) right
//! before the steps that need it (the loopback interface, `/sys`), then closes its end of the
//! release pipe, which ends the holder. On a machine with a free CPU, its cost leaves the start.
//!
//! Not for a switch network (the helper plugs its veth in before init exists) nor for a session
//! (its helper opens init's namespaces, for its commands to join, before init builds the mounts
//! when privileged), nor before Linux 5.8 (setns(2) with a pidfd), nor where pidfd_open(2) is
//! refused (a container's seccomp profile older than Linux 5.3): there it is made up front.
//!
//! The helper reaps the holder when it ends (at the join), or kills and reaps it once init is gone.

use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;

use crate::config::{Config, Job, NetMode, NetworkInBackground};
use crate::sys::{HolderPipes, NamespaceHolder};

use super::userns::Failed;

/// Whether `config`'s network namespace is made in the background.
pub(crate) fn in_background(config: &Config) -> bool {
    matches!(config.network, NetMode::Loopback | NetMode::None)
        && !matches!(config.job, Job::Session | Job::Join { .. } | Job::Switch)
        && joins_through_pidfd()
}

/// Whether [`joins_through_pidfd`] was answered in this process, and how: 0 not yet, 1 yes, 2 no.
/// An atomic, not a lock: helpers forked from a process with threads read it.
static JOINS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// setns(2) takes a pidfd since Linux 5.8, and pidfd_open(2) is allowed here (tried on this process).
/// Asked once per process: the fork servers ask at their start, so that the helpers they fork know
/// (a uname(2) and a pidfd_open(2) less per sandbox).
pub(crate) fn joins_through_pidfd() -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    match JOINS.load(Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    let answer = ask_joins_through_pidfd();
    JOINS.store(if answer { 1 } else { 2 }, Relaxed);
    answer
}

fn ask_joins_through_pidfd() -> bool {
    crate::sys::kernel_at_least(5, 8)
        && rustix::process::pidfd_open(rustix::process::getpid(), rustix::process::PidfdFlags::empty()).is_ok()
}

/// What init needs of a network namespace in the making, as descriptors it inherits: the holder's
/// pidfd, the end of the pipe where it says the namespace exists, and the write end of its release
/// pipe. The helper drops its copies once init is forked.
#[derive(Debug)]
pub(crate) struct Background {
    /// The holder's pid, for the helper to reap it.
    pub(crate) pid: nix::unistd::Pid,
    holder: OwnedFd,
    ready: OwnedFd,
    release: OwnedFd,
}

impl Background {
    /// The descriptors' numbers, for init's plan.
    pub(crate) fn for_init(&self) -> NetworkInBackground {
        use std::os::fd::AsRawFd;
        NetworkInBackground {
            holder: self.holder.as_raw_fd(),
            ready: self.ready.as_raw_fd(),
            release: self.release.as_raw_fd(),
        }
    }

    /// The holder's pidfd, through which the helper joins the namespaces the holder was born in.
    pub(crate) fn holder(&self) -> std::os::fd::BorrowedFd<'_> {
        self.holder.as_fd()
    }

    /// In init: keeps the descriptors open, for the plan's step that joins the namespace (which
    /// closes them).
    pub(crate) fn keep_for_init(self) {
        use std::os::fd::IntoRawFd;
        let _ = (self.holder.into_raw_fd(), self.ready.into_raw_fd(), self.release.into_raw_fd());
    }
}

/// Starts a holder born in `flags` (the program's user, UTS and IPC namespaces, or none: then the
/// network namespace belongs to this process's user namespace) that makes the network namespace.
/// Returns the holder, which the caller lets run once it has no more use for it
/// ([`NamespaceHolder::leave_running`]), and what init needs.
pub(crate) fn start(flags: CloneFlags) -> Result<(NamespaceHolder, Background), Failed> {
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ("create the network namespace's pipes", e));
    let (ready_r, ready_w) = pipe()?;
    let (release_r, release_w) = pipe()?;
    let pipes = HolderPipes { ready: ready_w.as_fd(), release: release_r.as_fd(), release_copy: release_w.as_fd() };
    let holder = NamespaceHolder::spawn_making_network(flags, &pipes)
        .map_err(|e| ("start the network namespace's holder (clone)", e))?;
    let pid = holder.pid();
    let raw = rustix::process::Pid::from_raw(pid.as_raw())
        .ok_or(("open the network namespace's holder (pidfd_open)", nix::errno::Errno::ESRCH))?;
    let pidfd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()).map_err(|e| {
        ("open the network namespace's holder (pidfd_open)", nix::errno::Errno::from_raw(e.raw_os_error()))
    })?;
    // The holder has its own copies of `ready_w` and `release_r`.
    drop((ready_w, release_r));
    Ok((holder, Background { pid, holder: pidfd, ready: ready_r, release: release_w }))
}
