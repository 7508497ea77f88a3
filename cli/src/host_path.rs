//! Host folders sandbox-run writes in as the caller once a program ran (`--keep-failed`,
//! `--json-usage`): their paths resolved link by link, refusing a link that lies where a sandbox can
//! write, and then opened from `/` without following any link, so that what was checked is what is
//! opened.
//!
//! A sandbox may write the workspace, the target folder and read-write `--mount`s, and may plant
//! links there that outlive it: the next run's `--keep-failed DIR` through such a link would make
//! sandbox-run, as root, make the layer, write `changes.txt` or remove folders wherever it points (a
//! fifth outside review of `--keep-failed`).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::Error;
use crate::error::io;

/// The kernel's own limit on links followed in one lookup (`MAXSYMLINKS`).
const MAX_LINKS: u32 = 40;

/// `path` (relative to the working directory) with every link resolved as the kernel would, each one
/// checked first: a link that lies in one of `writable` (host folders, resolved) is refused, since a
/// sandbox could have planted it there. Components that do not exist yet are kept as they are.
///
/// # Errors
/// [`Error::Refused`] for such a link (`what` names the option, `given` its value, of which `path`
/// is the folder); [`Error::Io`] when a link cannot be read or the path names too many.
pub(crate) fn resolve(what: &str, given: &Path, path: &Path, writable: &[PathBuf]) -> Result<PathBuf, Error> {
    let absolute = std::path::absolute(path).map_err(io("resolve", path))?;
    let mut todo: VecDeque<OsString> = names(&absolute).collect();
    let mut real = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            real.pop();
            continue;
        }
        let next = real.join(&name);
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io("resolve", path)(Errno::ELOOP.into()));
                }
                if let Some(folder) = writable.iter().find(|w| real.starts_with(w)) {
                    return Err(Error::Refused {
                        value: given.display().to_string(),
                        reason: format!(
                            "{what} `{}` leads through the link `{}`, which lies in `{}`, a folder a sandbox \
                             can write: one could have planted it there to redirect what sandbox-run writes \
                             as you; give the folder it leads to itself (`readlink -f`) if you trust it, or \
                             a folder outside the workspace, the target folder and read-write --mounts",
                            given.display(),
                            next.display(),
                            folder.display()
                        ),
                    });
                }
                if let Some(owner) = foreign_in_sticky(&real, &m) {
                    return Err(Error::Refused {
                        value: given.display().to_string(),
                        reason: format!(
                            "{what} `{}` leads through the link `{}`, which user {owner} owns in the shared \
                             folder `{}`: the kernel does not follow such a link for anyone else \
                             (fs.protected_symlinks), nor does sandbox-run; give the folder it leads to itself",
                            given.display(),
                            next.display(),
                            real.display()
                        ),
                    });
                }
                let target = std::fs::read_link(&next).map_err(io("read the link", &next))?;
                if target.is_absolute() {
                    real = PathBuf::from("/");
                }
                for n in names(&target).collect::<Vec<_>>().into_iter().rev() {
                    todo.push_front(n);
                }
            }
            Ok(_) => real = next,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => real = next,
            Err(e) => return Err(io("resolve", &next)(e)),
        }
    }
    Ok(real)
}

/// The owner of the link `link` (its metadata) in the folder `folder`, where the kernel's
/// `fs.protected_symlinks` rule would refuse to follow it for this process: the folder is sticky and
/// everyone's to write (`/tmp`, `/var/tmp`), and the link is neither this process's nor the folder
/// owner's. An outside review: resolving links in user space went around that rule.
fn foreign_in_sticky(folder: &Path, link: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let dir = std::fs::metadata(folder).ok()?;
    let shared = dir.mode() & 0o1002 == 0o1002;
    let owner = link.uid();
    (shared && owner != nix::unistd::geteuid().as_raw() && owner != dir.uid()).then_some(owner)
}

/// The names in `path`, `..` included, `/` and `.` left out.
fn names(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_owned()),
        Component::ParentDir => Some("..".into()),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// The folder `real` (absolute, from [`resolve`]) opened `O_PATH`, each component opened relative to
/// the one before without following links, so a link put in the path since it was resolved is an
/// error, never followed. With `create`, missing folders are made (0755), as `mkdir -p` would.
///
/// # Errors
/// When a component is missing (without `create`), is not a folder, or has become a link.
pub(crate) fn open_folder(real: &Path, create: bool) -> Result<OwnedFd, Error> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut fd = nix::fcntl::open("/", flags, Mode::empty()).map_err(|e| io("open", "/")(e.into()))?;
    let mut at = PathBuf::from("/");
    for name in names(real) {
        at.push(&name);
        if name == ".." {
            // `resolve` leaves none; a caller's path with one is not walked through a link's parent.
            return Err(io("open", real)(std::io::Error::other("the path must not name `..`")));
        }
        let mut opened = nix::fcntl::openat(&fd, name.as_os_str(), flags, Mode::empty());
        if matches!(opened, Err(Errno::ENOENT)) && create {
            match nix::sys::stat::mkdirat(&fd, name.as_os_str(), Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(io("create", &at)(e.into())),
            }
            opened = nix::fcntl::openat(&fd, name.as_os_str(), flags, Mode::empty());
        }
        fd = opened.map_err(|e| {
            let e = if e == Errno::ELOOP || e == Errno::ENOTDIR {
                std::io::Error::other(format!("{e}: it must be a folder, not a link to one"))
            } else {
                e.into()
            };
            io("open", &at)(e)
        })?;
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_resolved_and_refused_where_a_sandbox_writes() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().canonicalize().expect("resolve");
        let [ws, out, other] = ["ws", "out", "other"].map(|n| root.join(n));
        for d in [&ws, &out.join("sub"), &other] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::os::unix::fs::symlink(&out, other.join("to-out")).expect("link");
        std::os::unix::fs::symlink("../out/sub", ws.join("planted")).expect("link");
        std::os::unix::fs::symlink(ws.join("planted"), other.join("via-ws")).expect("link");
        let writable = std::slice::from_ref(&ws);
        // A link outside the writable folders is followed; missing components are kept.
        let got = resolve("--x", Path::new("x"), &other.join("to-out/sub/new/../kept"), writable).expect("resolve");
        assert_eq!(got, out.join("sub/kept"));
        // One inside them is refused, also when reached through another link.
        for p in [ws.join("planted/x"), other.join("via-ws/x")] {
            let e = resolve("--x", Path::new("x"), &p, writable).expect_err("a planted link");
            assert!(e.to_string().contains("planted"), "{e}");
        }
        // Without writable folders, the same path resolves.
        assert_eq!(resolve("--x", Path::new("x"), &ws.join("planted/x"), &[]).expect("resolve"), out.join("sub/x"));
        // A loop is an error, not a hang.
        std::os::unix::fs::symlink(other.join("loop"), other.join("loop")).expect("link");
        assert!(resolve("--x", Path::new("x"), &other.join("loop/x"), &[]).is_err());
    }

    #[test]
    fn open_folder_makes_what_is_missing_and_never_follows_a_link() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().canonicalize().expect("resolve");
        open_folder(&root.join("a/b"), true).expect("mkdir -p");
        assert!(root.join("a/b").is_dir());
        assert!(open_folder(&root.join("a/c"), false).is_err(), "missing without create");
        std::os::unix::fs::symlink(root.join("a"), root.join("l")).expect("link");
        let e = open_folder(&root.join("l/b"), true).expect_err("a link in the path");
        assert!(e.to_string().contains("open"), "{e}");
        assert!(!root.join("a/b/b").exists());
    }

    #[test]
    fn another_users_link_in_a_shared_sticky_folder_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            return; // making a link another user owns needs root; CI runs this as root
        }
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().canonicalize().expect("resolve");
        let (shared, target) = (root.join("shared"), root.join("target"));
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::create_dir(&shared).expect("mkdir");
        std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).expect("chmod");
        std::os::unix::fs::symlink(&target, shared.join("l")).expect("link");
        assert_eq!(
            resolve("--x", Path::new("x"), &shared.join("l/x"), &[]).expect("root's own link"),
            target.join("x")
        );
        std::os::unix::fs::lchown(shared.join("l"), Some(1001), Some(1001)).expect("give the link away");
        let e = resolve("--x", Path::new("x"), &shared.join("l/x"), &[]).expect_err("another user's link");
        assert!(e.to_string().contains("protected_symlinks"), "{e}");
    }
}
