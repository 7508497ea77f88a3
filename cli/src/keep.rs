//! `--keep-failed DIR` and `--shell-from DIR`: the writable layer of a sandbox whose program failed is
//! kept on the host (what it added, changed and deleted, as a tree plus `changes.txt`), and a shell
//! can be opened on that state later: the tool for a system test that failed once in CI.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::error::io;

/// What `sandbox.json` of a kept layer says: enough to start a shell on the same state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeptRecord {
    /// The rootfs the layer lies on: `host`, or the unpacked tree's path.
    pub rootfs: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// How it ended: its exit code, or sandbox-run's error.
    pub outcome: String,
}

/// A fresh, empty folder for one sandbox's writable layer, held by descriptor from before the program
/// runs: what sandbox-run does there once the program ended (walk it, write `changes.txt`, remove it)
/// goes through the descriptor, never through `DIR`'s path again, which the program, or another
/// sandbox's, may have redirected meanwhile by renaming a folder above it and planting a link (three
/// outside reviews). Derefs to the folder's path, for the sandbox's setup.
#[derive(Debug)]
pub struct Layer {
    path: PathBuf,
    base: OwnedFd,
    name: std::ffi::OsString,
    held: OwnedFd,
}

impl std::ops::Deref for Layer {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl Layer {
    /// The folder through its descriptor: the one made, wherever it is now.
    fn held(&self) -> PathBuf {
        fd_path(&self.held)
    }

    /// Removes the folder while it is still empty (the sandbox could not be set up).
    pub fn remove_empty(&self) {
        let _ = nix::unistd::unlinkat(&self.base, self.name.as_os_str(), nix::unistd::UnlinkatFlags::RemoveDir);
    }
}

/// A fresh, empty folder under `base` for one sandbox's writable layer, named after `name`. `base` is
/// a path [`crate::host_path::resolve`] gave: it is made and opened without following any link.
///
/// # Errors
/// When `base` cannot be created or written, or a link has been put in its path.
pub fn fresh_layer_dir(base: &Path, name: &str) -> Result<Layer, Error> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let base_fd = crate::host_path::open_folder(base, true)?;
    let clean: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).take(100).collect();
    let clean = if clean.is_empty() { "run".to_owned() } else { clean };
    let folder = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    for n in 1u32.. {
        let leaf = if n == 1 { clean.clone() } else { format!("{clean}-{n}") };
        match nix::sys::stat::mkdirat(&base_fd, leaf.as_str(), Mode::from_bits_truncate(0o755)) {
            Ok(()) => {}
            Err(nix::errno::Errno::EEXIST) => continue,
            Err(e) => return Err(io("create", &base.join(&leaf))(e.into())),
        }
        let held = nix::fcntl::openat(&base_fd, leaf.as_str(), folder, Mode::empty())
            .map_err(|e| io("open", &base.join(&leaf))(e.into()))?;
        return Ok(Layer { path: base.join(&leaf), base: base_fd, name: leaf.into(), held });
    }
    Err(io("create", base)(std::io::Error::other("no free name")))
}

/// After the sandbox ended: removes the layer's folder if the program passed; otherwise writes
/// `changes.txt` and `sandbox.json` next to the layer and returns the folder's path.
///
/// # Errors
/// When the record cannot be written or the folder removed.
pub fn finish(layer: &Layer, passed: bool, lower: &Path, record: &KeptRecord) -> Result<Option<PathBuf>, Error> {
    let dir = layer.held();
    if passed {
        // Only what the sandbox made there: anything else (put there by whoever could write the
        // folder) makes the removal fail rather than be walked.
        for made in ["upper", "work"] {
            remove_layer(&dir.join(made))?;
        }
        nix::unistd::unlinkat(&layer.base, layer.name.as_os_str(), nix::unistd::UnlinkatFlags::RemoveDir)
            .map_err(|e| io("remove", &layer.path)(e.into()))?;
        return Ok(None);
    }
    // overlayfs' work folder is of no use to anybody (and mode 000 inside).
    let _ = remove_layer(&dir.join("work"));
    let mut lines = Vec::new();
    // The upper layer itself, never a link put in its place, walked from descriptor to descriptor.
    if let Ok(upper) = open_listing(&layer.held, "upper".as_ref()) {
        changes(&upper, Path::new("/"), lower, &mut lines);
    }
    lines.sort_by(|a: &String, b: &String| a[2..].cmp(&b[2..]));
    let text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    write_new(&dir.join("changes.txt"), text.as_bytes())?;
    let json = serde_json::to_string_pretty(record).map_err(|e| io("encode", &layer.path)(std::io::Error::other(e)))?;
    write_new(&dir.join("sandbox.json"), (json + "\n").as_bytes())?;
    Ok(Some(layer.path.clone()))
}

/// Writes a file that must not exist yet, never through a link (`O_CREAT | O_EXCL | O_NOFOLLOW`):
/// one the program planted is refused, not written through.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .mode(0o644)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(io("write", path))
}

/// Reads the record of a kept layer.
///
/// # Errors
/// When `dir` is not a folder `--keep-failed` wrote.
pub fn read_record(dir: &Path) -> Result<KeptRecord, Error> {
    let path = dir.join("sandbox.json");
    let text = std::fs::read_to_string(&path).map_err(io("read (is it a folder --keep-failed kept?)", &path))?;
    serde_json::from_str(&text).map_err(|e| io("read", &path)(std::io::Error::other(e)))
}

/// Removes a layer folder, making its folders searchable first (overlayfs leaves `work/work` 000).
fn remove_layer(dir: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(dir) {
        Err(_) => return Ok(()),
        // A link is removed, never followed (open_up changes modes).
        Ok(m) if !m.is_dir() => return std::fs::remove_file(dir).map_err(io("remove", dir)),
        Ok(_) => {}
    }
    if let (Some(parent), Some(name)) = (dir.parent(), dir.file_name())
        && let Ok(parent) = open_path(None, parent, false)
    {
        open_up(&parent, name);
    }
    // std's remove_dir_all opens each level without following links.
    std::fs::remove_dir_all(dir).map_err(io("remove", dir))
}

/// What `fd` refers to, as a path (`/proc/self/fd/N`): the inode it holds, not a name looked up again.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `path` opened `O_PATH` (relative to `at`, if given); with `no_follow`, not through a link as its
/// last component.
fn open_path(at: Option<&OwnedFd>, path: &Path, no_follow: bool) -> nix::Result<OwnedFd> {
    use nix::fcntl::OFlag;
    let mut flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    if no_follow {
        flags |= OFlag::O_NOFOLLOW;
    }
    match at {
        Some(dir) => nix::fcntl::openat(dir, path, flags, nix::sys::stat::Mode::empty()),
        None => nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty()),
    }
}

/// Makes the folder `name` in `parent`, and every folder below it, searchable (0700), each opened
/// relative to its parent's descriptor without following links, its mode set through that descriptor:
/// a folder swapped for a link meanwhile (a fourth outside review: by a sandbox that could write the
/// kept layers' folder) is left alone, not followed.
fn open_up(parent: &OwnedFd, name: &std::ffi::OsStr) {
    let Ok(fd) = open_path(Some(parent), Path::new(name), true) else { return };
    if !nix::sys::stat::fstat(&fd).is_ok_and(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR) {
        return;
    }
    let itself = fd_path(&fd);
    let _ = std::fs::set_permissions(&itself, std::fs::Permissions::from_mode(0o700));
    let Ok(entries) = std::fs::read_dir(&itself) else { return };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            open_up(&fd, &e.file_name());
        }
    }
}

/// The folder `name` in `parent`, opened to be listed, never through a link.
fn open_listing(parent: &OwnedFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(parent, name, flags, rustix::fs::Mode::empty())
}

/// `A path` added, `C path` changed, `D path` deleted, `R path/` a folder replaced (its old contents
/// hidden): the overlay upper layer's folder `dir` (the sandbox's `shown` folder) against `lower`.
/// Each folder is opened relative to its parent's descriptor without following links: one swapped for
/// a link meanwhile (by a sandbox that could write the kept layers' folder) is not listed.
fn changes(dir: &OwnedFd, shown: &Path, lower: &Path, out: &mut Vec<String>) {
    use rustix::fs::{AtFlags, FileType};
    let Ok(entries) = rustix::fs::Dir::read_from(dir) else { return };
    for e in entries.flatten() {
        let name = OsStr::from_bytes(e.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let (inside, below) = (shown.join(name), lower.join(name));
        let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else { continue };
        let existed = std::fs::symlink_metadata(&below).is_ok();
        match FileType::from_raw_mode(st.st_mode) {
            FileType::CharacterDevice if st.st_rdev == 0 => out.push(format!("D {}", inside.display())),
            FileType::Directory => {
                let Ok(sub) = open_listing(dir, name) else { continue };
                let opaque = ["trusted.overlay.opaque", "user.overlay.opaque"].iter().any(|a| {
                    let mut value = [0u8; 1];
                    rustix::fs::fgetxattr(&sub, *a, &mut value[..]).is_ok_and(|n| n == 1 && value[0] == b'y')
                });
                if opaque && existed {
                    out.push(format!("R {}/", inside.display()));
                } else if !existed {
                    out.push(format!("A {}/", inside.display()));
                }
                changes(&sub, &inside, &below, out);
            }
            _ => out.push(format!("{} {}", if existed { 'C' } else { 'A' }, inside.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_added_changed_and_deleted_paths() {
        let t = tempfile::tempdir().expect("tempdir");
        let (upper, lower) = (t.path().join("upper"), t.path().join("lower"));
        for d in [upper.join("etc"), lower.join("etc"), upper.join("srv/new")] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(lower.join("etc/hosts"), "old").expect("write");
        std::fs::write(upper.join("etc/hosts"), "new").expect("write");
        std::fs::write(upper.join("srv/new/file"), "x").expect("write");
        // A link to a folder is a change of its own, never walked.
        std::os::unix::fs::symlink(lower.join("etc"), upper.join("srv/link")).expect("link");
        let mut out = Vec::new();
        let top = open_path(None, t.path(), false).expect("open");
        changes(&open_listing(&top, "upper".as_ref()).expect("open"), Path::new("/"), &lower, &mut out);
        out.sort();
        assert_eq!(out, ["A /srv/", "A /srv/link", "A /srv/new/", "A /srv/new/file", "C /etc/hosts"]);
    }

    #[test]
    fn fresh_names_do_not_collide() {
        let t = tempfile::tempdir().expect("tempdir");
        let base = t.path().canonicalize().expect("resolve");
        let a = fresh_layer_dir(&base, "net::binds port").expect("first");
        let b = fresh_layer_dir(&base, "net::binds port").expect("second");
        assert_eq!(a.file_name().and_then(|n| n.to_str()), Some("net__binds_port"));
        assert_eq!(b.file_name().and_then(|n| n.to_str()), Some("net__binds_port-2"));
    }
}
