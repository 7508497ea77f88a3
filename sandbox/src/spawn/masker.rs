//! The masks of the sandbox's `/proc` (crate::hardening), made by the helper's side while init builds
//! the rest of the mounts (issue 9: the hardening's cost).
//!
//! Before it forks init, the helper starts the masker: a process sharing its memory (no page table
//! copied), born before the sandbox's pid namespace exists (so it is never a process of the sandbox),
//! that waits ([`crate::sys::Standby`]). Init mounts `/proc`, hands over its descriptors on it, on an
//! empty directory and on the null device (`Op::HandOverMasks`), and goes on with `/dev`, `/tmp`,
//! `/etc` and the network; the helper, idle meanwhile, prepares the paths and lets the masker run:
//! it reopens those descriptors through `/proc/<init>/fd`, enters init's mount namespace and makes
//! the masks there (crate::sys::hardening::mask_proc_of). Init waits for the word before it pivots
//! (`Op::AwaitMasks`), so that the program never runs without them, and entering the program's user
//! namespace locks them as every other mount. A failure is init's to report, as a step of its own.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::config::MasksByHelper;

/// The masker, waiting, and the helper's ends of the two pipes.
pub(crate) struct Masker {
    standby: Option<crate::sys::Standby>,
    /// What the masker does, set once init has handed over its descriptors.
    work: std::sync::Arc<std::sync::OnceLock<crate::sys::hardening::ProcMasks>>,
    ready: OwnedFd,
    done: OwnedFd,
}

/// Starts the masker; returns it with init's ends of the pipes (whose numbers go into the
/// configuration, [`MasksByHelper`]).
pub(crate) fn start() -> Result<(Masker, [OwnedFd; 2], MasksByHelper), Errno> {
    use std::os::fd::AsRawFd;
    let flags = nix::fcntl::OFlag::O_CLOEXEC;
    let (ready_r, ready_w) = nix::unistd::pipe2(flags)?;
    let (done_r, done_w) = nix::unistd::pipe2(flags)?;
    let work = std::sync::Arc::new(std::sync::OnceLock::new());
    let told = std::sync::Arc::clone(&work);
    let body = Box::new(move || match told.get() {
        Some(masks) => crate::sys::hardening::mask_proc_of(masks),
        None => Errno::EINVAL as i32,
    });
    let standby = crate::sys::Standby::start(body)?;
    let by = MasksByHelper { ready: ready_w.as_raw_fd(), done: done_r.as_raw_fd() };
    Ok((Masker { standby: Some(standby), work, ready: ready_r, done: done_w }, [ready_w, done_r], by))
}

impl Masker {
    /// In init (a fork of the helper): lets go of the helper's ends, and of the masker without
    /// touching it (it is the helper's child, and its pid means nothing in init's pid namespace).
    pub(crate) fn leave_to_helper(self) {
        let Masker { standby, ready, done, .. } = self;
        drop((ready, done));
        std::mem::forget(standby);
    }

    /// Waits for init's descriptors (or the caller's kill, or the deadline, or init's end: then
    /// nothing is done, and the wait that follows sees why), has the masks made, and tells init how
    /// it went. The caller keeps the masker until init is gone: a deadline that passed first must
    /// stay a timeout, not become a failed step.
    pub(crate) fn help(&mut self, init: Pid, kill: &OwnedFd, deadline: Option<std::time::Instant>) {
        let Some(fds) = handed_over(&self.ready, kill, deadline) else { return };
        let Some(standby) = self.standby.take() else { return };
        let code = match prepare(init, fds).map(|masks| self.work.set(masks)) {
            Some(Ok(())) => standby.run().unwrap_or_else(|e| e as i32),
            _ => Errno::EINVAL as i32,
        };
        let _ = crate::inroot::write_all(&self.done, &[u8::try_from(code).unwrap_or(Errno::EIO as u8)]);
    }
}

/// The three descriptor numbers init wrote, once it wrote them.
fn handed_over(ready: &OwnedFd, kill: &OwnedFd, deadline: Option<std::time::Instant>) -> Option<[i32; 3]> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        let timeout = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = [PollFd::new(ready.as_fd(), PollFlags::POLLIN), PollFd::new(kill.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Err(Errno::EINTR) => continue,
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return None;
        }
        let mut bytes = [0u8; 12];
        let mut got = 0;
        while got < bytes.len() {
            match nix::unistd::read(ready, &mut bytes[got..]) {
                Ok(0) => return None,
                Ok(n) => got += n,
                Err(Errno::EINTR) => {}
                Err(_) => return None,
            }
        }
        let fd = |i: usize| i32::from_ne_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
        return Some([fd(0), fd(1), fd(2)]);
    }
}

/// What the masker needs, made here: it allocates nothing.
fn prepare(init: Pid, fds: [i32; 3]) -> Option<crate::sys::hardening::ProcMasks> {
    use std::ffi::CString;
    let names = |list: &[&str]| -> Option<Vec<CString>> {
        list.iter().filter_map(|p| p.strip_prefix("/proc/")).map(|n| CString::new(n).ok()).collect()
    };
    Some(crate::sys::hardening::ProcMasks {
        fds: fds
            .map(|n| CString::new(format!("/proc/{init}/fd/{n}")))
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .ok()?
            .try_into()
            .ok()?,
        namespace: CString::new(format!("/proc/{init}/ns/mnt")).ok()?,
        masked: names(crate::hardening::MASKED_PATHS)?,
        read_only: names(crate::hardening::READ_ONLY_PATHS)?,
    })
}
