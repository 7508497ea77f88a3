//! `--keep-failed DIR` and `--shell-from DIR`: the writable layer of a sandbox whose program failed is
//! kept on the host (what it added, changed and deleted, as a tree plus `changes.txt`), and a shell
//! can be opened on that state later: the tool for a system test that failed once in CI.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::error::io;
use crate::host_path::fd_path;

/// What `sandbox.json` of a kept layer says: enough to start a shell on the same state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeptRecord {
    /// The rootfs the layer lies on: `host`, or the unpacked tree's path.
    pub rootfs: String,
    /// The program and its arguments; one that is not UTF-8 quoted with Rust's escapes
    /// (`"caf\xe9"`, with the quotes).
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
    /// The folder through its descriptor (`/proc/self/fd/N`): the one made, wherever it is now. The
    /// sandbox is given this path, not `DIR`'s, so that it resolves it to the very folder made (an
    /// outside review: a concurrent sandbox able to write `DIR` swapped the fresh folder for a link
    /// before the sandbox was built, and setup made the layer where it pointed).
    pub(crate) fn held(&self) -> PathBuf {
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
    let folder = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let owner = sandbox::kept_layer_owner()?;
    sweep_killed(&base_fd, base, owner.unwrap_or_else(|| nix::unistd::geteuid().as_raw()));
    for n in 1u32.. {
        let leaf = if n == 1 { clean.clone() } else { format!("{clean}-{n}") };
        let path = base.join(&leaf);
        match nix::sys::stat::mkdirat(&base_fd, leaf.as_str(), Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            Err(nix::errno::Errno::EEXIST) => continue,
            Err(e) => return Err(io("create", &path)(e.into())),
        }
        let held = nix::fcntl::openat(&base_fd, leaf.as_str(), folder, Mode::empty())
            .map_err(|e| io("open", &path)(e.into()))?;
        // Held until the layer is kept or removed: what a run killed before then leaves, the next
        // run's sweep tells by the lock being free (see sweep_killed).
        rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| io("lock", &path)(e.into()))?;
        // Locked at once, as root: given to the sandboxes' range, which no sandbox's read-write
        // volume maps, no other sandbox can rename it, swap it or reach inside from here on (the
        // seventh outside review: one that could write DIR swapped the fresh folder for its own, with
        // a shell of its choosing, which sandbox-run then named for --shell-from). Then the name must
        // still lead to the folder held: one swapped in before the lock is refused, never used.
        if let Some(owner) = owner {
            let id = (nix::unistd::Uid::from_raw(owner), nix::unistd::Gid::from_raw(owner));
            nix::unistd::fchown(&held, Some(id.0), Some(id.1)).map_err(|e| io("lock", &path)(e.into()))?;
        }
        // Locked, it must be empty, as made, and its name still lead to it: contents another sandbox
        // put in it before the lock (a record naming its own rootfs: the eighth outside review), or
        // a folder of its own swapped in before the open, are refused, and the folder is unmarked, so
        // that --shell-from does not take it for a kept one.
        let made = nix::sys::stat::fstat(&held).map_err(|e| io("open", &path)(e.into()))?;
        let named = nix::sys::stat::fstatat(&base_fd, leaf.as_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW);
        let empty = names_in(&held).is_ok_and(|n| n.is_empty());
        if !empty || !named.is_ok_and(|st| (st.st_dev, st.st_ino) == (made.st_dev, made.st_ino)) {
            if owner.is_some() {
                let root = Some(nix::unistd::Uid::from_raw(0));
                let _ = nix::unistd::fchown(&held, root, Some(nix::unistd::Gid::from_raw(0)));
            }
            return Err(replaced(&path));
        }
        // Marked as sandbox-run's: the sweep takes nothing else (a file system without user
        // xattrs keeps its killed runs' folders, as it did).
        let _ = rustix::fs::fsetxattr(&held, LAYER_MARK, LAYER, rustix::fs::XattrFlags::CREATE);
        return Ok(Layer { path, base: base_fd, name: leaf.into(), held });
    }
    Err(io("create", base)(std::io::Error::other("no free name")))
}

/// Removes from `base` (held as `base_fd`) what runs killed before their end left there (the
/// twenty-second outside review: a SIGKILL of sandbox-run left its layer for good, with no record,
/// which `--shell-from` refuses): a folder as [`fresh_layer_dir`] makes them (`owner`'s, mode 0700)
/// holding an overlay's layer and nothing else ([`is_overlay_layer`]), whose lock no run holds any
/// more. Anything else is left alone: a folder still empty (its run may be between making and
/// locking it), one with a record, and any folder of the caller's that merely looks alike (the
/// twenty-third: rootless, a `mktemp -d` folder with a `work` folder in it was removed); what cannot
/// be removed stays, for the next sweep.
fn sweep_killed(base_fd: &OwnedFd, base: &Path, owner: u32) {
    // (`base_fd` is O_PATH: listed through a readable descriptor of the same folder.)
    let Ok(names) = open_listing(base_fd, ".".as_ref()).and_then(|b| names_in(&b)) else { return };
    for name in names {
        let Ok(dir) = open_listing(base_fd, &name) else { continue };
        let ours = rustix::fs::fstat(&dir).is_ok_and(|st| st.st_uid == owner && st.st_mode & 0o7777 == 0o700);
        if !ours || !is_overlay_layer(&dir) {
            continue;
        }
        if rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue; // its run is alive
        }
        let shown = base.join(&name);
        if remove_tree(&dir, "upper".as_ref(), &shown).is_ok() && remove_tree(&dir, "work".as_ref(), &shown).is_ok() {
            let _ = rustix::fs::unlinkat(base_fd, &name, rustix::fs::AtFlags::REMOVEDIR);
        }
    }
}

/// The extended attribute that marks a layer folder [`fresh_layer_dir`] made, and its value.
const LAYER_MARK: &str = "user.sandbox-run";
const LAYER: &[u8] = b"layer";

/// Whether `dir` is a layer folder [`fresh_layer_dir`] made (its mark: the twenty-fourth outside
/// review, rootless, had the user's own overlay layer, made by hand under `umask 077`, removed) and
/// holds an overlay's writable layer and nothing else: `upper` (optional) and `work`, in which
/// overlayfs made its own `work` (and, with an index, `index`) when it was mounted.
fn is_overlay_layer(dir: &OwnedFd) -> bool {
    let mut mark = [0u8; 8];
    if rustix::fs::fgetxattr(dir, LAYER_MARK, &mut mark).ok().and_then(|n| mark.get(..n)) != Some(LAYER) {
        return false;
    }
    let Ok(names) = names_in(dir) else { return false };
    if !names.iter().any(|n| n == "work") || names.iter().any(|n| n != "work" && n != "upper") {
        return false;
    }
    let Ok(work) = open_listing(dir, "work".as_ref()) else { return false };
    let Ok(inside) = names_in(&work) else { return false };
    inside.iter().any(|n| n == "work") && inside.iter().all(|n| n == "work" || n == "index")
}

/// The error for a fresh layer folder another sandbox swapped for its own as it was made.
fn replaced(path: &Path) -> Error {
    io("make", path)(std::io::Error::other(
        "it was replaced as it was made: another sandbox can write the --keep-failed folder; choose one no \
         sandbox can write",
    ))
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
            remove_tree(&layer.held, made.as_ref(), &layer.path)?;
        }
        nix::unistd::unlinkat(&layer.base, layer.name.as_os_str(), nix::unistd::UnlinkatFlags::RemoveDir)
            .map_err(|e| io("remove", &layer.path)(e.into()))?;
        return Ok(None);
    }
    // overlayfs' work folder is of no use to anybody (and mode 000 inside).
    let _ = remove_tree(&layer.held, "work".as_ref(), &layer.path);
    let mut lines = Listing::default();
    // The upper layer itself, never a link put in its place, walked from descriptor to descriptor.
    if let Ok(upper) = open_listing(&layer.held, "upper".as_ref()) {
        let lower = rustix::fs::open(
            lower,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        );
        changes(&upper, Path::new("/"), lower.ok().as_ref(), 0, &mut lines);
    }
    let cut = lines.cut;
    let mut lines = lines.lines;
    lines.sort_by(|a: &String, b: &String| a[2..].cmp(&b[2..]));
    let mut text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    if cut {
        text.push_str(&format!("# cut at {} MiB: the layer holds more changes than listed\n", LISTED_BYTES >> 20));
    }
    write_new(&dir.join("changes.txt"), text.as_bytes())?;
    let json = serde_json::to_string_pretty(record).map_err(|e| io("encode", &layer.path)(std::io::Error::other(e)))?;
    write_new(&dir.join("sandbox.json"), (json + "\n").as_bytes())?;
    // Where the folder is now (the same, as root: locked since it was made).
    Ok(Some(std::fs::read_link(layer.held()).unwrap_or_else(|_| layer.path.clone())))
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

/// A kept layer's folder, opened to resume from (`--shell-from`): its record, and its `upper` folder
/// held by descriptor.
#[derive(Debug)]
pub struct Kept {
    /// What `sandbox.json` says.
    pub record: KeptRecord,
    upper: OwnedFd,
}

impl Kept {
    /// The kept upper layer, as the path of the descriptor that holds it (`/proc/self/fd/N`), for
    /// `Builder::layer`: the folder opened, wherever a path to it leads by now.
    pub fn upper(&self) -> PathBuf {
        fd_path(&self.upper)
    }
}

/// Opens the kept layer `dir` (`DIR/NAME` of `--keep-failed`) without following a link at it or in it,
/// and reads its record. It must be a folder a sandbox's setup held: as root owned by the sandboxes'
/// range ([`sandbox::kept_layer_owner`]), rootless the caller's, mode 0700; one another sandbox made or swapped in, through
/// a read-write volume of `DIR` (its own `upper` with a shell of its choosing, a record naming the
/// host's root), is refused (the seventh outside review: the shell started on it ran that sandbox's
/// code with the caller's workspace bound).
///
/// # Errors
/// When `dir` is not a folder `--keep-failed` kept.
pub fn open_kept(dir: &Path) -> Result<Kept, Error> {
    use rustix::fs::{Mode, OFlags};
    let real = crate::host_path::resolve("--shell-from", dir, dir)?;
    let folder = crate::host_path::open_folder(&real, false)?;
    let st = rustix::fs::fstat(&folder).map_err(|e| io("open", &real)(e.into()))?;
    // Rootless, the caller's own (the twenty-third outside review: another user's folder, with a
    // record naming their tree, was opened).
    let owner = sandbox::kept_layer_owner()?.unwrap_or_else(|| rustix::process::geteuid().as_raw());
    if st.st_uid != owner || st.st_mode & 0o777 != 0o700 {
        return Err(Error::Refused {
            value: dir.display().to_string(),
            reason: format!(
                "--shell-from `{}` is not a folder a sandbox kept (its owner is {} and its mode {:o}; a kept \
                 layer's folder is {owner}'s, mode 700): another sandbox that could write its parent may \
                 have put it there; the folder sandbox-run named when it kept the layer is the one to use",
                dir.display(),
                st.st_uid,
                st.st_mode & 0o7777
            ),
        });
    }
    let path = real.join("sandbox.json");
    // Not a FIFO either, which would hang the open (the ninth outside review, rootless).
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = rustix::fs::openat(&folder, "sandbox.json", flags, Mode::empty())
        .map_err(|e| io("read (is it a folder --keep-failed kept?)", &path)(e.into()))?;
    let regular = rustix::fs::fstat(&file)
        .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile);
    if !regular {
        return Err(io("read", &path)(std::io::Error::other("not a file --keep-failed wrote")));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(file), &mut text).map_err(io("read", &path))?;
    let record = serde_json::from_str(&text).map_err(|e| io("read", &path)(std::io::Error::other(e)))?;
    let upper = rustix::fs::openat(
        &folder,
        "upper",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io("open", real.join("upper"))(e.into()))?;
    Ok(Kept { record, upper })
}

/// Removes `name` in `parent` (a layer's `upper` or `work`; `shown`: the layer's path, for errors)
/// and all it holds, however deep, two descriptors at a time: a folder that is not empty has its
/// entries moved up into the top folder (under fresh names) before it is removed, so no walk goes
/// deeper than one level and nothing is followed (a link is removed as itself). An outside review:
/// 30000 nested folders made the recursive removal fail with EMFILE and the walk overflow the stack.
fn remove_tree(parent: &OwnedFd, name: &OsStr, shown: &Path) -> Result<(), Error> {
    use rustix::fs::AtFlags;
    let fail = |e: rustix::io::Errno| io("remove", shown.join(name))(e.into());
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(fail(e)),
        // Not a folder (or a link put in its place): removed as itself.
        Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory => {
            return rustix::fs::unlinkat(parent, name, AtFlags::empty()).map_err(fail);
        }
        Ok(_) => {}
    }
    let top = open_to_empty(parent, name).map_err(fail)?;
    let mut fresh = 0u64;
    loop {
        let entries = names_in(&top).map_err(fail)?;
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            let is_dir = rustix::fs::statat(&top, &entry, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory);
            if !is_dir {
                rustix::fs::unlinkat(&top, &entry, AtFlags::empty()).map_err(fail)?;
                continue;
            }
            match rustix::fs::unlinkat(&top, &entry, AtFlags::REMOVEDIR) {
                Err(rustix::io::Errno::NOTEMPTY | rustix::io::Errno::EXIST) => {}
                other => {
                    other.map_err(fail)?;
                    continue;
                }
            }
            let sub = open_to_empty(&top, &entry).map_err(fail)?;
            for inner in names_in(&sub).map_err(fail)? {
                // A folder moved to another parent must be writable itself (its `..` changes): one
                // the program left 0500 made the removal fail rootless (an outside review).
                let _ = open_to_empty(&sub, &inner);
                loop {
                    fresh += 1;
                    let to = format!(".removing-{fresh}");
                    match rustix::fs::renameat_with(&sub, &inner, &top, &to, rustix::fs::RenameFlags::NOREPLACE) {
                        Err(rustix::io::Errno::EXIST) => continue,
                        other => break other.map_err(fail)?,
                    }
                }
            }
            drop(sub);
            rustix::fs::unlinkat(&top, &entry, AtFlags::REMOVEDIR).map_err(fail)?;
        }
    }
    drop(top);
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR).map_err(fail)
}

/// The folder `name` in `parent`, opened to be emptied without following a link, and made 0700
/// first through a descriptor of that very folder: overlayfs leaves `work/work` 000, and a program
/// may leave a folder it made unwritable (`chmod 0500`), which, rootless, the caller has no right to
/// override (an outside review: the removal of a passing program's layer failed with EACCES).
fn open_to_empty(parent: &OwnedFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    let held = rustix::fs::openat(
        parent,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    rustix::fs::chmod(fd_path(&held), rustix::fs::Mode::from_raw_mode(0o700))?;
    rustix::fs::open(fd_path(&held), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, rustix::fs::Mode::empty())
}

/// The names in the folder `dir`, `.` and `..` left out.
fn names_in(dir: &OwnedFd) -> rustix::io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let name = OsStr::from_bytes(e?.file_name().to_bytes()).to_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// The folder `name` in `parent`, opened to be listed, never through a link.
fn open_listing(parent: &OwnedFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(parent, name, flags, rustix::fs::Mode::empty())
}

/// How deep `changes.txt` lists: below, a folder is named once (`+ path/`), its contents not.
const LISTED_DEPTH: usize = 256;

/// How much `changes.txt` lists in all: a program that made a few thousand hard links with long,
/// deep names made it a gigabyte, built in sandbox-run's memory first (the ninth outside review).
const LISTED_BYTES: usize = 16 << 20;

/// The lines of `changes.txt` as they are found, [`LISTED_BYTES`] at most; `cut` once more were found.
#[derive(Default)]
struct Listing {
    lines: Vec<String>,
    bytes: usize,
    cut: bool,
}

impl Listing {
    fn push(&mut self, line: String) {
        if self.bytes + line.len() + 1 > LISTED_BYTES {
            self.cut = true;
            return;
        }
        self.bytes += line.len() + 1;
        self.lines.push(line);
    }
}

/// `A path` added, `C path` changed, `D path` deleted, `R path/` a folder replaced (its old contents
/// hidden), `+ path/` a folder whose contents are not listed (deeper than [`LISTED_DEPTH`], or one the
/// caller cannot read): the overlay upper layer's folder `dir` (the sandbox's `shown` folder, `depth`
/// folders down) against the lower layer's folder `lower` (none where it has none). Both are walked
/// from descriptor to descriptor without following links: a folder of the upper layer swapped for a
/// link meanwhile is not listed through it, and a link in the rootfs does not make the walk look at
/// the host (an outside review: a rootfs's link to a host folder told which host files exist). Paths
/// are written as [`line`] says.
fn changes(dir: &OwnedFd, shown: &Path, lower: Option<&OwnedFd>, depth: usize, out: &mut Listing) {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    let Ok(names) = names_in(dir) else { return };
    for name in names {
        if out.cut {
            return;
        }
        let inside = shown.join(&name);
        let Ok(st) = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) else { continue };
        let below = lower.and_then(|l| rustix::fs::statat(l, &name, AtFlags::SYMLINK_NOFOLLOW).ok());
        let existed = below.is_some();
        match FileType::from_raw_mode(st.st_mode) {
            FileType::CharacterDevice if st.st_rdev == 0 => out.push(line('D', &inside, "")),
            FileType::Directory if depth >= LISTED_DEPTH => out.push(line('+', &inside, "/")),
            FileType::Directory => {
                let Ok(sub) = open_listing(dir, &name) else {
                    out.push(line('+', &inside, "/"));
                    continue;
                };
                let opaque = ["trusted.overlay.opaque", "user.overlay.opaque"].iter().any(|a| {
                    let mut value = [0u8; 1];
                    rustix::fs::fgetxattr(&sub, *a, &mut value[..]).is_ok_and(|n| n == 1 && value[0] == b'y')
                });
                let was_dir = below.is_some_and(|b| FileType::from_raw_mode(b.st_mode) == FileType::Directory);
                if existed && (opaque || !was_dir) {
                    out.push(line('R', &inside, "/"));
                } else if !existed {
                    out.push(line('A', &inside, "/"));
                }
                // What a replaced folder holds is all new: nothing below is compared.
                let sub_lower = lower.filter(|_| was_dir && !opaque).and_then(|l| {
                    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    rustix::fs::openat(l, &name, flags, Mode::empty()).ok()
                });
                changes(&sub, &inside, sub_lower.as_ref(), depth + 1, out);
            }
            _ => out.push(line(if existed { 'C' } else { 'A' }, &inside, "")),
        }
    }
}

/// Format characters that change how a line reads without showing (bidirectional overrides such as
/// U+202E, zero-width characters, line and paragraph separators): an outside review named a file
/// U+202E followed by `txt.exe`, shown as `exe.txt`.
fn invisible(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
}

/// One line of `changes.txt`: `kind`, a space, the path and `tail`. A path with a control character
/// (a newline would forge a line of its own: an outside review), a quote, a backslash or bytes that
/// are not UTF-8 is written quoted, with Rust's escapes (`"/z\nD /etc"`, `\xff`), as git quotes such
/// paths.
fn line(kind: char, path: &Path, tail: &str) -> String {
    let plain = path.to_str().filter(|p| !p.chars().any(|c| c.is_control() || invisible(c) || c == '"' || c == '\\'));
    match plain {
        Some(p) => format!("{kind} {p}{tail}"),
        None => {
            let mut full = path.as_os_str().to_owned();
            full.push(tail);
            format!("{kind} {full:?}")
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
        // A link in the rootfs to a host folder is not looked through: what the program made in its
        // place is new, whatever that folder holds.
        let host = t.path().join("host");
        std::fs::create_dir(&host).expect("mkdir");
        std::fs::write(host.join("file"), "").expect("write");
        std::os::unix::fs::symlink(&host, lower.join("probe")).expect("link");
        std::fs::create_dir(upper.join("probe")).expect("mkdir");
        std::fs::write(upper.join("probe/file"), "").expect("write");
        let mut listing = Listing::default();
        let top = rustix::fs::open(t.path(), rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).expect("open");
        let below = rustix::fs::open(&lower, rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).expect("open");
        changes(&open_listing(&top, "upper".as_ref()).expect("open"), Path::new("/"), Some(&below), 0, &mut listing);
        let mut out = listing.lines;
        out.sort();
        assert_eq!(
            out,
            ["A /probe/file", "A /srv/", "A /srv/link", "A /srv/new/", "A /srv/new/file", "C /etc/hosts", "R /probe/"]
        );
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

    #[test]
    fn deep_trees_are_removed_and_listed_without_running_out_of_anything() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().canonicalize().expect("resolve");
        // 3000 folders deep (the review's 30000 take a while to make), by short relative steps.
        let upper = root.join("upper");
        std::fs::create_dir(&upper).expect("mkdir");
        let held = rustix::fs::open(&upper, rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).expect("open");
        let mut at = rustix::fs::open(&upper, rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).expect("open");
        for _ in 0..3000 {
            rustix::fs::mkdirat(&at, "d", rustix::fs::Mode::from_raw_mode(0o755)).expect("mkdir");
            at = rustix::fs::openat(&at, "d", rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).expect("open");
        }
        rustix::fs::mkdirat(&at, "locked", rustix::fs::Mode::empty()).expect("a mode-000 folder");
        rustix::fs::symlinkat(&root, &at, "link").expect("a link out");
        std::fs::write(root.join("outside"), "kept").expect("write");
        let mut listing = Listing::default();
        changes(&open_listing(&held, ".".as_ref()).expect("open"), Path::new("/"), None, 0, &mut listing);
        let lines = listing.lines;
        assert_eq!(lines.len(), LISTED_DEPTH + 1, "{:?}", lines.last());
        assert!(lines.last().is_some_and(|l| l.starts_with("+ /d/d/")), "{:?}", lines.last());
        let top = rustix::fs::open(&root, rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).expect("open");
        remove_tree(&top, "upper".as_ref(), &root).expect("removed");
        assert!(!upper.exists());
        assert_eq!(std::fs::read_to_string(root.join("outside")).expect("the link's target"), "kept");
    }

    #[test]
    fn paths_that_could_forge_a_line_are_quoted() {
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(line('A', Path::new("/etc/motd"), ""), "A /etc/motd");
        assert_eq!(line('A', Path::new("/z\nD /etc"), "/"), "A \"/z\\nD /etc/\"");
        assert_eq!(line('C', Path::new("/a\"b\\c"), ""), "C \"/a\\\"b\\\\c\"");
        assert_eq!(line('A', Path::new(OsStr::from_bytes(b"/\xff")), ""), "A \"/\\xFF\"");
        assert_eq!(line('A', Path::new("/\u{202e}txt.exe"), ""), "A \"/\\u{202e}txt.exe\"");
    }

    #[test]
    fn the_listing_stops_at_its_size() {
        let t = tempfile::tempdir().expect("tempdir");
        let long = "\u{1}".repeat(200);
        let dir = t.path().join(&long);
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("f"), "").expect("write");
        // Each hard link's line is about 2 KiB (its name written with escapes): 10000 pass 16 MiB.
        for i in 0..10_000 {
            std::fs::hard_link(dir.join("f"), dir.join(format!("{long}{i}"))).expect("link");
        }
        let held = rustix::fs::open(t.path(), rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).expect("open");
        let mut listing = Listing::default();
        changes(&open_listing(&held, ".".as_ref()).expect("open"), Path::new("/"), None, 0, &mut listing);
        assert!(listing.cut && listing.bytes <= LISTED_BYTES, "{} bytes", listing.bytes);
        assert!(listing.lines.len() < 10_000);
    }
}
