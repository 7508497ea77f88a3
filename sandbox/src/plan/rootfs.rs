//! The root: a staging tmpfs to build in, the writable root (overlay or copy) inside it, and the
//! final pivot that leaves no host path reachable.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::config::{Config, HostEntryKind, RootMode};

use super::{Op, StepKind, Steps};

const STAGING: &str = "/tmp";

/// Makes the host's mounts a one-way slave, pivots into a staging tmpfs (the host stays at
/// `/oldroot`) and builds the writable root at `/newroot`.
pub(super) fn stage(s: &mut Steps, config: &Config) {
    let p = PathBuf::from;
    // As root, unless privileged: host trees are shown through the user namespace's id mapping.
    let shifted = config.security.shifted(config.outer_uid);
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
        Op::fs(
            "tmpfs",
            p(STAGING),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(&format!("mode=0755,size={}", config.security.tmpfs_size)),
        ),
    );
    s.add(StepKind::Staging, "create the old-root directory", Op::Mkdir { path: p("/tmp/oldroot"), mode: 0o755 });
    // pivot_root(2), as bubblewrap does: the host's tree stays reachable at /oldroot while we build.
    s.add(
        StepKind::Staging,
        "pivot into the staging tmpfs",
        Op::PivotRoot { new_root: p(STAGING), put_old: p("/tmp/oldroot") },
    );
    s.add(StepKind::Staging, "enter the staging root", Op::Chdir { path: p("/") });
    // The writable layer: in this tmpfs, or in the caller's host folder, to be kept. That folder is
    // held through a descriptor, private, at /kept: whoever else can write where it lies (another
    // sandbox, through a volume) can neither put a link in its place nor, as root, reach inside it,
    // so the paths below lead where they say (an outside review: a sandbox that could write the
    // folder's parent swapped it for a link while setup walked it, and root created, chowned and
    // mounted the layer in a host folder of its choice).
    let base = match &config.layers.upper_in {
        Some(dir) => {
            s.add(StepKind::Staging, "create the kept layer's place", Op::Mkdir { path: p("/kept"), mode: 0o700 });
            s.add(
                StepKind::Staging,
                "hold the writable layer's folder (the one made when the sandbox was built, no link)",
                Op::HoldFolder {
                    source: on_host(dir),
                    target: p("/kept"),
                    id: config.layers.upper_id.unwrap_or_default(),
                    // As root, also privileged: the mark of a folder setup held (kept_layer_owner).
                    owner: (config.outer_uid == 0).then_some(config.security.id_base),
                },
            );
            p("/kept")
        }
        None => p("/"),
    };
    let (upper, work) = (base.join("upper"), base.join("work"));
    for dir in [&upper, &work, &p("/newroot")] {
        s.add(StepKind::Staging, "create a staging directory", Op::Mkdir { path: dir.clone(), mode: 0o755 });
    }
    if let Some((base, _)) = shifted {
        // The upper layer's root is the sandbox's `/`: root's inside, in memory or kept on the host
        // (an empty folder each time; the host's root kept it otherwise, `nobody` inside, and root
        // inside could not create anything at the top level).
        s.add(StepKind::Staging, "give the writable layer to root inside", Op::Chown { path: upper.clone(), id: base });
    }
    // Read-only layers (a kept writable layer, to resume from): each held at /layers/N through a
    // descriptor of the very folder the sandbox was built on, so that one swapped in since by
    // whoever can write where it lies is refused, not mounted (the eighth outside review: a sandbox
    // whose volume held a kept layer's folder swapped it for its own, with a /bin/sh of its
    // choosing, while `sandbox-run --shell-from` started).
    let mut held: Vec<(PathBuf, PathBuf)> = Vec::new();
    if !config.layers.above.is_empty() {
        s.add(StepKind::Staging, "create the layers' place", Op::Mkdir { path: p("/layers"), mode: 0o700 });
    }
    for (i, layer) in config.layers.above.iter().enumerate() {
        let at = Path::new("/layers").join(i.to_string());
        s.add(StepKind::Staging, "create a layer's place", Op::Mkdir { path: at.clone(), mode: 0o700 });
        s.add(
            StepKind::Staging,
            "hold a layer's folder (the one the sandbox was built on, no link)",
            Op::BindHeld {
                source: on_host(layer),
                target: at.clone(),
                id: config.layers.above_ids.get(i).copied().unwrap_or_default(),
            },
        );
        held.push((layer.clone(), at));
    }
    match &config.root {
        RootMode::Overlay { lower } => {
            let mut lowers: Vec<PathBuf> = config.layers.above.iter().map(|l| staged(&held, l)).collect();
            let mut base = on_host(lower);
            if let Some((_, userns)) = shifted.filter(|_| !config.security.lower_shifted) {
                // The shared tree keeps the archive's owners; root's files are root's inside. Layers
                // above it were written from inside (shifted owners already): as they are. A lower
                // layer the helper shifted (crate::spawn::idmap) has the range's owners on disk.
                s.add(
                    StepKind::Overlay,
                    "create the lower layer's mount point",
                    Op::Mkdir { path: p("/lower"), mode: 0o755 },
                );
                s.add(
                    StepKind::Overlay,
                    "bind the rootfs id-mapped (mount_setattr MOUNT_ATTR_IDMAP)",
                    Op::IdmappedBind {
                        source: base,
                        target: p("/lower"),
                        userns,
                        read_only: true,
                        recursive: false,
                        id: None,
                    },
                );
                base = p("/lower");
            }
            lowers.push(base);
            let lowers: Vec<String> = lowers.iter().map(|l| escape_overlay_path(l)).collect();
            let mut data = format!(
                "lowerdir={},upperdir={},workdir={}",
                lowers.join(":"),
                escape_overlay_path(&upper),
                escape_overlay_path(&work)
            );
            if config.user_namespace {
                // Inside a user namespace overlayfs keeps its metadata in user.* xattrs (kernel >= 5.11).
                data.push_str(",userxattr");
            }
            s.add(
                StepKind::Overlay,
                "mount the writable overlay root",
                // nodev: a device node in the rootfs or made inside opens nothing.
                Op::fs("overlay", p("/newroot"), MsFlags::MS_NODEV, Some(&data)),
            );
        }
        RootMode::Host { entries } => host_root(s, config, entries, (&upper, &work), &held),
        RootMode::Copy { lower } => {
            let source = on_host(lower);
            s.add(
                StepKind::CopyRoot,
                "copy the rootfs into the sandbox's memory",
                Op::CopyTree { from: source, to: p("/newroot"), shift: shifted.map_or(0, |(base, _)| base) },
            );
            // pivot_root needs the new root to be a mount point.
            s.add(
                StepKind::CopyRoot,
                "bind the copied root onto itself",
                Op::bind("/newroot", p("/newroot"), MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NODEV),
            );
        }
    }
}

/// The host's own `/` as the new root (see [`RootMode::Host`]): a tmpfs root, an overlay per top-level
/// folder with its upper layer in the staging tmpfs, the host's top-level symlinks, its top-level files
/// bound read-only, and empty mount points for what the sandbox mounts itself.
/// As root, each folder is the lower layer of its overlay through the user namespace's id mapping
/// (root's files are root's inside), unless the kernel cannot id-map it (`as_is`).
fn host_root(
    s: &mut Steps,
    config: &Config,
    entries: &[crate::config::HostEntry],
    (upper, work): (&Path, &Path),
    held: &[(PathBuf, PathBuf)],
) {
    let p = PathBuf::from;
    let shifted = config.security.shifted(config.outer_uid);
    let data = super::mounts::owned(config, format!("mode=0755,size={}", config.security.tmpfs_size));
    s.add(
        StepKind::HostRoot,
        "mount the new root's tmpfs",
        Op::fs("tmpfs", p("/newroot"), MsFlags::MS_NODEV | MsFlags::MS_NOSUID, Some(&data)),
    );
    if shifted.is_some() {
        s.add(
            StepKind::HostRoot,
            "create the id-mapped folders' place",
            Op::Mkdir { path: p("/hostlower"), mode: 0o700 },
        );
    }
    for dir in ["proc", "dev", "tmp", "sys", "run"] {
        s.add(
            StepKind::HostRoot,
            "create a mount point",
            Op::Mkdir { path: Path::new("/newroot").join(dir), mode: 0o755 },
        );
    }
    // /run is the sandbox's own, empty, as in a container: the host's holds its services' sockets
    // (the caller's D-Bus and systemd manager, docker's) and its daemons' state.
    s.add(
        StepKind::HostRoot,
        "mount a tmpfs on /run",
        Op::fs("tmpfs", p("/newroot/run"), MsFlags::MS_NODEV | MsFlags::MS_NOSUID, Some(&data)),
    );
    for e in entries {
        let target = Path::new("/newroot").join(&e.name);
        let host = on_host(Path::new(&e.name));
        match &e.kind {
            HostEntryKind::Dir { layers } => {
                let (up, wk) = (upper.join(&e.name), work.join(&e.name));
                for (what, dir) in [
                    ("create a host folder's place", &target),
                    ("create an upper layer", &up),
                    ("create a work folder", &wk),
                ] {
                    s.add(StepKind::HostRoot, what, Op::Mkdir { path: dir.clone(), mode: 0o755 });
                }
                let mut host = host;
                if let Some((base, userns)) = shifted.filter(|_| !e.as_is) {
                    let mapped = Path::new("/hostlower").join(&e.name);
                    s.add(
                        StepKind::HostRoot,
                        "create an id-mapped folder's place",
                        Op::Mkdir { path: mapped.clone(), mode: 0o755 },
                    );
                    s.add(
                        StepKind::HostRoot,
                        "bind a host folder id-mapped (mount_setattr MOUNT_ATTR_IDMAP)",
                        Op::IdmappedBind {
                            source: host,
                            target: mapped.clone(),
                            userns,
                            read_only: true,
                            recursive: false,
                            id: None,
                        },
                    );
                    // What the program creates at the top of the folder is root's inside.
                    s.add(
                        StepKind::HostRoot,
                        "give an upper layer to root inside",
                        Op::Chown { path: up.clone(), id: base },
                    );
                    host = mapped;
                }
                let lowers = layers.iter().map(|l| staged(held, l)).chain([host]).collect();
                s.add(
                    StepKind::HostRoot,
                    "mount a writable overlay of a host folder",
                    Op::HostOverlay { lowers, upper: up, work: wk, target, userxattr: config.user_namespace },
                );
            }
            HostEntryKind::Symlink { target: to } => {
                s.add(StepKind::HostRoot, "copy a host symlink", Op::Symlink { target: to.clone(), link: target });
            }
            HostEntryKind::File => {
                s.add(StepKind::HostRoot, "create a host file's place", Op::Touch { path: target.clone() });
                s.add(
                    StepKind::HostRoot,
                    "bind a host file",
                    Op::bind(host.display().to_string(), target.clone(), MsFlags::MS_BIND),
                );
                s.add(StepKind::HostRoot, "make a host file read-only", Op::LockBind { target, read_only: true });
            }
        }
    }
}

/// A host path as seen from the staging root (the host's root is at `/oldroot` there).
pub(super) fn on_host(path: &Path) -> PathBuf {
    Path::new("/oldroot").join(path.strip_prefix("/").unwrap_or(path))
}

/// Where setup finds the host path `path` of a read-only layer: below the place the layer is held at
/// (`held`: host folder, place), else through the host's root.
fn staged(held: &[(PathBuf, PathBuf)], path: &Path) -> PathBuf {
    held.iter()
        .find_map(|(layer, at)| {
            path.strip_prefix(layer)
                .ok()
                .map(|rest| if rest.as_os_str().is_empty() { at.clone() } else { at.join(rest) })
        })
        .unwrap_or_else(|| on_host(path))
}

/// The host's own name for a path [`on_host`] gives (any other path as it is).
pub(super) fn host_name(staged: &Path) -> PathBuf {
    staged.strip_prefix("/oldroot").map_or_else(|_| staged.to_owned(), |rest| Path::new("/").join(rest))
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
pub(super) fn escape_overlay_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
