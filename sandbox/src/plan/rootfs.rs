//! The root: a staging tmpfs to build in, the writable root (overlay or copy) inside it, and the
//! final pivot that leaves no host path reachable.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::config::{Config, RootMode};

use super::{Op, StepKind, Steps};

const STAGING: &str = "/tmp";

/// Makes the host's mounts a one-way slave, pivots into a staging tmpfs (the host stays at
/// `/oldroot`) and builds the writable root at `/newroot`.
pub(super) fn stage(s: &mut Steps, config: &Config) {
    let p = PathBuf::from;
    // mount_namespaces(7): a recursive slave receives the host's mount events but sends none back, so
    // nothing mounted from here on is ever seen by the host.
    s.add(
        StepKind::Propagation,
        "make the host's mounts a one-way slave",
        Op::Mount {
            source: None,
            target: p("/"),
            fstype: None,
            flags: MsFlags::MS_REC | MsFlags::MS_SLAVE,
            data: None,
        },
    );
    // A tmpfs to build in, private to this mount namespace: the overlay's upper layer lives here, so
    // the sandbox's writes vanish with it and nothing is left on the host's disks.
    s.add(
        StepKind::Staging,
        "mount the staging tmpfs",
        Op::Mount {
            source: Some("tmpfs".into()),
            target: p(STAGING),
            fstype: Some("tmpfs".into()),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            data: Some("mode=0755".into()),
        },
    );
    s.add(StepKind::Staging, "create the old-root directory", Op::Mkdir { path: p("/tmp/oldroot"), mode: 0o755 });
    // pivot_root(2), as bubblewrap does: the host's tree stays reachable at /oldroot while we build.
    s.add(
        StepKind::Staging,
        "pivot into the staging tmpfs",
        Op::PivotRoot { new_root: p(STAGING), put_old: p("/tmp/oldroot") },
    );
    s.add(StepKind::Staging, "enter the staging root", Op::Chdir { path: p("/") });
    for dir in ["/upper", "/work", "/newroot"] {
        s.add(StepKind::Staging, "create a staging directory", Op::Mkdir { path: p(dir), mode: 0o755 });
    }
    match &config.root {
        RootMode::Overlay { lower } => {
            let mut data = format!(
                "lowerdir={},upperdir=/upper,workdir=/work",
                escape_overlay_path(&Path::new("/oldroot").join(lower.strip_prefix("/").unwrap_or(lower)))
            );
            if config.user_namespace {
                // Inside a user namespace overlayfs keeps its metadata in user.* xattrs (kernel >= 5.11).
                data.push_str(",userxattr");
            }
            s.add(
                StepKind::Overlay,
                "mount the writable overlay root",
                Op::Mount {
                    source: Some("overlay".into()),
                    target: p("/newroot"),
                    fstype: Some("overlay".into()),
                    flags: MsFlags::empty(),
                    data: Some(data),
                },
            );
        }
        RootMode::Copy { lower } => {
            let source = Path::new("/oldroot").join(lower.strip_prefix("/").unwrap_or(lower));
            s.add(
                StepKind::CopyRoot,
                "copy the rootfs into the sandbox's memory",
                Op::CopyTree { from: source, to: p("/newroot") },
            );
            // pivot_root needs the new root to be a mount point.
            s.add(
                StepKind::CopyRoot,
                "bind the copied root onto itself",
                Op::Mount {
                    source: Some("/newroot".into()),
                    target: p("/newroot"),
                    fstype: None,
                    flags: MsFlags::MS_BIND | MsFlags::MS_REC,
                    data: None,
                },
            );
        }
    }
}

/// Switches into `/newroot` and detaches the host's root.
pub(super) fn pivot(s: &mut Steps) {
    let p = PathBuf::from;
    // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves no host path
    // reachable (pivot_root(2), NOTES).
    s.add(StepKind::Pivot, "enter the new root", Op::Chdir { path: p("/newroot") });
    s.add(StepKind::Pivot, "pivot into the new root", Op::PivotRoot { new_root: p("."), put_old: p(".") });
    s.add(StepKind::Pivot, "detach the host's root", Op::UmountDetach { target: p(".") });
    s.add(StepKind::Pivot, "enter /", Op::Chdir { path: p("/") });
}

/// overlayfs(5) separates layers with `:` and options with `,`; both are escaped with `\`.
fn escape_overlay_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
