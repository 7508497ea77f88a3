//! `--keep-failed DIR` and `--shell-from DIR`: the writable layer of a sandbox whose program failed is
//! kept on the host (what it added, changed and deleted, as a tree plus `changes.txt`), and a shell
//! can be opened on that state later: the tool for a system test that failed once in CI.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
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

/// A fresh, empty folder under `base` for one sandbox's writable layer, named after `name`.
///
/// # Errors
/// When `base` cannot be created or written.
pub fn fresh_layer_dir(base: &Path, name: &str) -> Result<Layer, Error> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    std::fs::create_dir_all(base).map_err(io("create", base))?;
    // Not through a link at `DIR` itself (one an earlier sandbox could have planted there: a fourth
    // outside review); links further up are the caller's own paths (`/var/run`, say).
    let folder = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let base_fd = nix::fcntl::open(base, folder, Mode::empty()).map_err(|e| {
        let e = if e == nix::errno::Errno::ELOOP || e == nix::errno::Errno::ENOTDIR {
            std::io::Error::other(format!("{e}: it must be a folder, not a link to one"))
        } else {
            e.into()
        };
        io("open", base)(e)
    })?;
    let real_base = std::fs::read_link(fd_path(&base_fd)).map_err(io("resolve", base))?;
    let clean: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).take(100).collect();
    let clean = if clean.is_empty() { "run".to_owned() } else { clean };
    for n in 1u32.. {
        let leaf = if n == 1 { clean.clone() } else { format!("{clean}-{n}") };
        match nix::sys::stat::mkdirat(&base_fd, leaf.as_str(), Mode::from_bits_truncate(0o755)) {
            Ok(()) => {}
            Err(nix::errno::Errno::EEXIST) => continue,
            Err(e) => return Err(io("create", &base.join(&leaf))(e.into())),
        }
        let held = nix::fcntl::openat(&base_fd, leaf.as_str(), folder, Mode::empty())
            .map_err(|e| io("open", &base.join(&leaf))(e.into()))?;
        return Ok(Layer { path: real_base.join(&leaf), base: base_fd, name: leaf.into(), held });
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
    // The upper layer itself, never a link put in its place.
    if std::fs::symlink_metadata(dir.join("upper")).is_ok_and(|m| m.is_dir()) {
        changes(&dir.join("upper"), Path::new("/"), lower, &mut lines);
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

/// `A path` added, `C path` changed, `D path` deleted, `R path/` a folder replaced (its old contents
/// hidden): the overlay upper layer `upper` (the sandbox's `shown` folder) against `lower`.
fn changes(upper: &Path, shown: &Path, lower: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(upper) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let (here, inside, below) = (e.path(), shown.join(&name), lower.join(&name));
        let Ok(meta) = std::fs::symlink_metadata(&here) else { continue };
        let existed = std::fs::symlink_metadata(&below).is_ok();
        let kind = meta.file_type();
        if kind.is_char_device() && meta.rdev() == 0 {
            out.push(format!("D {}", inside.display()));
        } else if kind.is_dir() {
            let opaque = ["trusted.overlay.opaque", "user.overlay.opaque"]
                .iter()
                .any(|a| xattr::get(&here, a).ok().flatten().is_some_and(|v| v == b"y"));
            if opaque && existed {
                out.push(format!("R {}/", inside.display()));
            } else if !existed {
                out.push(format!("A {}/", inside.display()));
            }
            changes(&here, &inside, &below, out);
        } else {
            out.push(format!("{} {}", if existed { 'C' } else { 'A' }, inside.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_added_changed_and_deleted_paths() {
        let Ok(t) = tempfile::tempdir() else { return };
        let (upper, lower) = (t.path().join("upper"), t.path().join("lower"));
        for d in [upper.join("etc"), lower.join("etc"), upper.join("srv/new")] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(lower.join("etc/hosts"), "old").expect("write");
        std::fs::write(upper.join("etc/hosts"), "new").expect("write");
        std::fs::write(upper.join("srv/new/file"), "x").expect("write");
        let mut out = Vec::new();
        changes(&upper, Path::new("/"), &lower, &mut out);
        out.sort();
        assert_eq!(out, ["A /srv/", "A /srv/new/", "A /srv/new/file", "C /etc/hosts"]);
    }

    #[test]
    fn fresh_names_do_not_collide() {
        let Ok(t) = tempfile::tempdir() else { return };
        let a = fresh_layer_dir(t.path(), "net::binds port").expect("first");
        let b = fresh_layer_dir(t.path(), "net::binds port").expect("second");
        assert_eq!(a.file_name().and_then(|n| n.to_str()), Some("net__binds_port"));
        assert_eq!(b.file_name().and_then(|n| n.to_str()), Some("net__binds_port-2"));
    }
}
