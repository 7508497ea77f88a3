//! Holding a running helper: start it (with the overlay fallback), wait for a stage, end it.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::Error;
use crate::report::StepKind;

/// A failed start: final, or to be tried once more now that sandboxes copy the rootfs (the kernel
/// refused overlayfs; see [`overlay_refused`]).
pub(crate) enum Retry {
    Fail(Error),
    Copy,
}

impl From<Error> for Retry {
    fn from(e: Error) -> Retry {
        Retry::Fail(e)
    }
}

impl Retry {
    pub(crate) fn into_error(self) -> Error {
        match self {
            Retry::Fail(e) => e,
            Retry::Copy => Error::Result { reason: "overlayfs was refused twice".to_owned() },
        }
    }
}

/// Set once the kernel has refused overlayfs: from then on every sandbox of this process copies.
static OVERLAY_REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether the kernel has refused overlayfs to this process (every start copies from then on).
pub(crate) fn overlay_refused_here() -> bool {
    OVERLAY_REFUSED.load(Ordering::Relaxed)
}

/// Whether a setup failure means "no overlayfs here"; if so, records it (warning once) so that the
/// caller retries with a copy.
pub(crate) fn overlay_refused(kind: StepKind, errno: i32) -> bool {
    use nix::errno::Errno;
    let refused = kind == StepKind::Overlay
        && matches!(
            Errno::from_raw(errno),
            Errno::EPERM | Errno::EINVAL | Errno::ENODEV | Errno::EOPNOTSUPP | Errno::EACCES
        );
    if refused && !OVERLAY_REFUSED.swap(true, Ordering::Relaxed) {
        let errno = Errno::from_raw(errno);
        tracing::warn!(%errno, "overlayfs refused; copying the rootfs per sandbox from now on");
        eprintln!(
            "sandbox: the kernel refused overlayfs ({errno}); each sandbox now gets a private copy of the rootfs \
             instead (slower start). Use Builder::copy_rootfs(true) to ask for this directly."
        );
    }
    refused
}
