//! Volumes: host directories or files bound into a sandbox, and tmpfs mounts.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A mount to add to every sandbox of a [`crate::Builder`].
///
/// # Examples
/// ```no_run
/// use sandbox::{Mount, Sandbox};
/// let sb = Sandbox::builder()
///     .mount(Mount::bind("/host/data", "/data").read_only())
///     .mount(Mount::tmpfs("/scratch").size(16 << 20))
///     .file("/etc/app.toml", "port = 80\n")
///     .build()?;
/// # Ok::<(), sandbox::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub(crate) kind: MountKind,
    pub(crate) target: String,
    pub(crate) read_only: bool,
    pub(crate) size: Option<u64>,
    /// Bound as it is, without an id mapping: set by the helper, as root, where the kernel cannot
    /// id-map the source's file system (read-only volumes only; crate::spawn::idmap).
    #[serde(default)]
    pub(crate) as_is: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum MountKind {
    /// `is_dir`: what `source` is, found out by `Builder::build` (the plan does no host I/O); `id`: for
    /// a source the caller named by a descriptor (`/proc/self/fd/N`), its device and inode, and each
    /// start binds `source` only if it is still that file.
    Bind {
        source: PathBuf,
        is_dir: bool,
        #[serde(default)]
        id: Option<(u64, u64)>,
    },
    Tmpfs,
}

impl Mount {
    /// Binds the host path `source` (a directory or a file) at `target` inside the sandbox, nosuid and
    /// nodev; writes go to the host. The source must exist when the sandbox is built, and is bound
    /// without following links at each start: a path binds what is there then (a folder made anew
    /// between runs too); a source named by a descriptor, `/proc/self/fd/N`, binds that very file or
    /// folder, and a start fails once something else is at its path. A source reached through another
    /// mount namespace (`/proc/PID/root/…`) is refused: its path names another file here.
    ///
    /// What the program writes there belongs on the host to whoever runs the sandbox: as root, a
    /// read-write bind maps root alone (through the volume's id mapping); rootless, a sandbox with any
    /// bind maps none of the caller's subordinate ids, so a file there cannot be given to another id.
    pub fn bind(source: impl Into<PathBuf>, target: impl Into<String>) -> Mount {
        let kind = MountKind::Bind { source: source.into(), is_dir: true, id: None };
        Mount { kind, target: target.into(), read_only: false, size: None, as_is: false }
    }

    /// A fresh tmpfs at `target`, private to the sandbox (mode 1777).
    pub fn tmpfs(target: impl Into<String>) -> Mount {
        Mount { kind: MountKind::Tmpfs, target: target.into(), read_only: false, size: None, as_is: false }
    }

    /// Makes the mount read-only, recursively (every mount below a bound directory too).
    pub fn read_only(mut self) -> Mount {
        self.read_only = true;
        self
    }

    /// Caps a tmpfs at `bytes`, above zero and at most 1 PiB (writes past it fail with ENOSPC).
    /// Default: the sandbox's [`crate::Builder::writable_size`].
    pub fn size(mut self, bytes: u64) -> Mount {
        self.size = Some(bytes);
        self
    }
}
