//! The system calls of the hardening that neither nix nor seccompiler wrap: `close_range(2)` and
//! `keyctl(2)`. A syscall module: `unsafe` is allowed here, each block argued.

#![allow(unsafe_code)]

use std::os::fd::RawFd;

use nix::errno::Errno;

/// Marks every descriptor above stderr close-on-exec, except `keep` (which a closure's child still
/// needs), so that the program gets only stdin, stdout and stderr. close_range(2) with
/// `CLOSE_RANGE_CLOEXEC` (Linux >= 5.11), else one fcntl per possible descriptor. Async-signal-safe.
pub(crate) fn cloexec_above_stdio(keep: &[RawFd]) {
    let mut first: RawFd = 3;
    let mut bounds: [RawFd; 8] = [RawFd::MAX; 8];
    let n = keep.len().min(bounds.len());
    bounds[..n].copy_from_slice(&keep[..n]);
    bounds[..n].sort_unstable();
    for &fd in bounds[..n].iter().chain(std::iter::once(&RawFd::MAX)) {
        if fd > first {
            mark_cloexec(first, fd - 1);
        }
        first = first.max(fd.saturating_add(1));
    }
}

fn mark_cloexec(first: RawFd, last: RawFd) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC closes nothing: it only sets a flag on this
    // process's descriptors, so no descriptor owned elsewhere in the process is invalidated.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, libc::CLOSE_RANGE_CLOEXEC) };
    if rc == 0 {
        return;
    }
    let max = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft.min(1 << 16) as RawFd);
    for fd in first..=last.min(max) {
        // SAFETY: F_SETFD on a number that may or may not be open: EBADF for a closed one, and for an
        // open one only its close-on-exec flag changes.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Joins a new anonymous session keyring (keyctl(2) `KEYCTL_JOIN_SESSION_KEYRING` with no name), so
/// that the caller's session keyring is out of reach. Async-signal-safe.
pub(crate) fn join_new_session_keyring() -> Result<(), Errno> {
    // SAFETY: a NULL name asks for a new anonymous keyring; the kernel reads no memory of ours.
    let rc = unsafe {
        libc::syscall(libc::SYS_keyctl, libc::KEYCTL_JOIN_SESSION_KEYRING as libc::c_ulong, std::ptr::null::<u8>())
    };
    Errno::result(rc).map(drop)
}
