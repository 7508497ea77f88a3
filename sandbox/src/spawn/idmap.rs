//! As root, how host trees are shown to the program, decided by the helper before it forks init.
//!
//! Root inside is an unprivileged host id (`id_base`); the rootfs and the volumes are bound through
//! the user namespace's id mapping (mount_setattr(2) `MOUNT_ATTR_IDMAP`), so that root's files are
//! root's inside and what the program writes into a volume is stored as the caller's. Some file
//! systems cannot be id-mapped (9p, NFS, FUSE, overlayfs and tmpfs on older kernels): there
//! - the rootfs comes from a copy of the tree whose owners are shifted into the range, made once
//!   next to the tree (`<tree>.ids-<base>/rootfs`, in a folder only root may open) and shared by
//!   every later sandbox;
//! - a read-only volume is bound as it is: its files keep their host owners, which inside show as
//!   `nobody` (readable where their mode lets everyone read);
//! - a read-write volume is refused, with how to fix it: bound as it is, root inside could not
//!   write there, and what it wrote would belong on the host to an id of the range.
//!
//! The probe is the first half of the real mount (open_tree + mount_setattr), kept for init to attach
//! (crate::sys::hardening::prepare_idmap): tens of microseconds, and only as root.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::config::{Config, RootMode};
use crate::hardening::shift_id;
use crate::report::{Failure, StepKind};
use crate::volume::MountKind;

/// Adapts `config` (as root, not privileged, with the program's user namespace `userns`, and the
/// volumes' if a volume is written) to what the kernel can id-map. Allocates and does file I/O: the
/// helper runs it before it forks init.
pub(crate) fn adapt(config: &mut Config, userns: RawFd) -> Result<(), Failure> {
    let Some((base, _)) = config.security.shifted(config.outer_uid) else { return Ok(()) };
    if let RootMode::Overlay { lower } = &config.root
        && refused(crate::sys::hardening::prepare_idmap(lower, userns, (true, false), None), lower)?
    {
        let shifted = shifted_tree(lower, base).map_err(|(what, path, errno)| Failure {
            kind: StepKind::Overlay,
            what,
            path: Some(path.display().to_string()),
            errno,
        })?;
        tracing::debug!(tree = %lower.display(), copy = %shifted.display(), "the rootfs cannot be id-mapped");
        config.root = RootMode::Overlay { lower: shifted };
        config.security.lower_shifted = true;
    }
    if let RootMode::Host { entries } = &mut config.root {
        for e in entries.iter_mut().filter(|e| matches!(e.kind, crate::config::HostEntryKind::Dir { .. })) {
            // Shown as it is, the folder's files are `nobody`'s inside: readable where everyone may read.
            let folder = Path::new("/").join(&e.name);
            e.as_is = refused(crate::sys::hardening::prepare_idmap(&folder, userns, (true, false), None), &folder)?;
        }
    }
    for m in &mut config.mounts {
        let MountKind::Bind { source, id, .. } = &m.kind else { continue };
        // A written volume only maps root (crate::spawn::helper::volume_namespace).
        let through = config.security.volume_userns_fd.filter(|_| !m.read_only).unwrap_or(userns);
        if !refused(crate::sys::hardening::prepare_idmap(source, through, (m.read_only, true), *id), source)? {
            continue;
        }
        if !m.read_only {
            // hints.rs says what to do about it.
            return Err(Failure {
                kind: StepKind::Volume,
                what: "bind a read-write volume id-mapped: its file system cannot be id-mapped",
                path: Some(format!("{} (host folder {})", m.target, source.display())),
                errno: Errno::EOPNOTSUPP,
            });
        }
        tracing::debug!(volume = %source.display(), "bound as it is: its file system cannot be id-mapped");
        m.as_is = true;
    }
    Ok(())
}

/// Whether a probe's answer for `path` means "this file system cannot be id-mapped" (then
/// `Ok(true)`); any other failure is the step's.
fn refused(probe: Result<(), Errno>, path: &Path) -> Result<bool, Failure> {
    match probe {
        Ok(()) => Ok(false),
        Err(Errno::EINVAL | Errno::EPERM | Errno::ENOSYS | Errno::EOPNOTSUPP) => Ok(true),
        Err(errno) => Err(Failure {
            kind: StepKind::Overlay,
            what: "open a host tree to id-map it (open_tree)",
            path: Some(path.display().to_string()),
            errno,
        }),
    }
}

/// A failed step of [`shifted_tree`]: what, on which path, the errno.
type ShiftFailed = (&'static str, PathBuf, Errno);

/// `<tree>.ids-<base>/rootfs`: a copy of `tree` whose owners are shifted by `base`, made once.
/// `<tree>.ids-<base>` is root's and 0700: the copy's setuid files belong to ids of the range, and
/// reachable by host users, running one gave a host process that range's uid, the uid of the
/// sandboxes' root (it could signal their processes). Concurrent sandboxes each build a private
/// copy and rename it into place; the first wins, the others drop theirs. Copies left by a killed
/// process (`.tmp-<pid>` of a pid that is gone) are removed first. An existing copy is used only if
/// it is what this function makes: the folder root's and 0700, the copy in it a directory owned by
/// the shifted owner of the tree, with the tree's mode (a tree kept in a folder others can write,
/// such as `/tmp`, could otherwise be given a copy of someone else's making).
fn shifted_tree(tree: &Path, base: u32) -> Result<PathBuf, ShiftFailed> {
    use std::os::unix::fs::MetadataExt;
    let copy = "copy the rootfs with its owners shifted into the id range";
    let name = tree.file_name().ok_or((copy, tree.to_owned(), Errno::EINVAL))?.to_string_lossy().into_owned();
    let target = tree.with_file_name(format!("{name}.ids-{base}"));
    let tree_meta =
        std::fs::symlink_metadata(tree).map_err(|e| (copy, tree.to_owned(), crate::sys::mount::errno_of(e)))?;
    let trusted = |folder: &Path| {
        let private = std::fs::symlink_metadata(folder)
            .is_ok_and(|m| m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o7777 == 0o700);
        let copied = std::fs::symlink_metadata(folder.join(COPY)).is_ok_and(|m| {
            m.is_dir() && m.uid() == shift_id(tree_meta.uid(), base) && m.mode() & 0o7777 == tree_meta.mode() & 0o7777
        });
        private && copied
    };
    if std::fs::symlink_metadata(&target).is_ok() {
        return match trusted(&target) {
            true => Ok(target.join(COPY)),
            false => Err((
                "use the copy of the rootfs with shifted owners: it was not made by this library (another \
                 owner, or others may open it; an earlier version kept the copy itself there); remove it",
                target,
                Errno::EPERM,
            )),
        };
    }
    let built = build_shifted(tree, &target, &name, base).map_err(|e| (copy, tree.to_owned(), e))?;
    match trusted(&built) {
        true => Ok(built.join(COPY)),
        false => {
            Err(("use the copy of the rootfs with shifted owners: it changed under us; remove it", built, Errno::EPERM))
        }
    }
}

/// The copy's name in its private folder.
const COPY: &str = "rootfs";

/// Builds `target` for [`shifted_tree`] unless a concurrent sandbox did first.
fn build_shifted(tree: &Path, target: &Path, name: &str, base: u32) -> Result<PathBuf, Errno> {
    let parent = tree.parent().ok_or(Errno::EINVAL)?;
    sweep_stale(parent, &format!("{name}.ids-{base}.tmp-"));
    let staging = tree.with_file_name(format!("{name}.ids-{base}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let built = copy_shifted(tree, &staging, base);
    match built.and_then(|()| std::fs::rename(&staging, target).map_err(crate::sys::mount::errno_of)) {
        Ok(()) => Ok(target.to_owned()),
        // Another sandbox won the race: its copy is as good as ours.
        Err(_) if target.is_dir() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(target.to_owned())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// Copies `tree` into `<to>/rootfs`, `to` made root's and 0700 first.
fn copy_shifted(tree: &Path, to: &Path, base: u32) -> Result<(), Errno> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(tree).map_err(crate::sys::mount::errno_of)?;
    std::fs::DirBuilder::new().mode(0o700).create(to).map_err(crate::sys::mount::errno_of)?;
    // Whatever the umask left.
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).map_err(crate::sys::mount::errno_of)?;
    let copy = to.join(COPY);
    std::fs::create_dir(&copy).map_err(crate::sys::mount::errno_of)?;
    crate::sys::mount::copy_dir_contents(tree, &copy, base)?;
    let (uid, gid) = (shift_id(meta.uid(), base), shift_id(meta.gid(), base));
    std::os::unix::fs::lchown(&copy, Some(uid), Some(gid)).map_err(crate::sys::mount::errno_of)?;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(crate::sys::mount::errno_of)
}

/// Removes `<prefix><pid>` entries of `dir` whose process is gone.
fn sweep_stale(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_outside_the_range_become_its_nobody() {
        assert_eq!(shift_id(0, 1000), 1000);
        assert_eq!(shift_id(65535, 1000), 1000 + 65535);
        assert_eq!(shift_id(65536, 1000), 1000 + 65534);
        assert_eq!(shift_id(u32::MAX, 1000), 1000 + 65534);
    }

    #[test]
    fn a_copy_this_library_did_not_make_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).expect("mkdir");
        // Planted next to the tree, as anyone could in a folder like /tmp: writable by everyone.
        let planted = dir.path().join("tree.ids-9");
        std::fs::create_dir(&planted).expect("mkdir");
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let (what, path, errno) = shifted_tree(&tree, 9).expect_err("a planted copy must not be used");
        assert_eq!((path, errno), (planted, Errno::EPERM));
        assert!(what.contains("remove it"), "{what}");
    }

    #[test]
    fn a_shifted_copy_is_made_once_and_stale_copies_are_swept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("etc")).expect("mkdir");
        std::fs::write(tree.join("etc/hostname"), "x\n").expect("write");
        std::os::unix::fs::symlink("etc/hostname", tree.join("link")).expect("symlink");
        // A copy left by a process that is gone (pid 0 never names one we could see in /proc).
        let stale = dir.path().join("tree.ids-7.tmp-0");
        std::fs::create_dir(&stale).expect("mkdir stale");
        let made = shifted_tree(&tree, 7).expect("shifted copy");
        assert_eq!(made, dir.path().join("tree.ids-7/rootfs"));
        assert_eq!(std::fs::read_to_string(made.join("etc/hostname")).expect("copied"), "x\n");
        assert_eq!(std::fs::read_link(made.join("link")).expect("link"), Path::new("etc/hostname"));
        assert!(!stale.exists(), "the stale copy is swept");
        // The second call reuses it.
        std::fs::write(made.join("marker"), "").expect("marker");
        assert!(shifted_tree(&tree, 7).expect("again").join("marker").exists());
        if nix::unistd::geteuid().is_root() {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::symlink_metadata(made.join("etc/hostname")).expect("stat");
            assert_eq!((meta.uid(), meta.gid()), (7, 7), "root's file, shifted by the base");
            let folder = std::fs::symlink_metadata(dir.path().join("tree.ids-7")).expect("stat");
            assert_eq!((folder.uid(), folder.mode() & 0o7777), (0, 0o700), "only root may open the copy's folder");
        }
    }

    /// A copy an earlier version kept there (the copy itself, its mode the tree's) is not used: its
    /// setuid files were within every host user's reach.
    #[test]
    fn a_copy_kept_where_host_users_reach_it_is_refused() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).expect("mkdir");
        let old = dir.path().join("tree.ids-5");
        std::fs::create_dir_all(old.join(COPY)).expect("mkdir");
        let mode = std::fs::metadata(&tree).expect("stat").mode() & 0o7777;
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let (what, path, errno) = shifted_tree(&tree, 5).expect_err("an open copy must not be used");
        assert_eq!((path, errno), (old, Errno::EPERM));
        assert!(what.contains("remove it"), "{what}");
    }
}
