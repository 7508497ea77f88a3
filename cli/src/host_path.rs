//! Host folders sandbox-run writes in as the caller once a program ran (`--keep-failed`,
//! `--json-usage`) or resumes from (`--shell-from`): their paths must hold no link but the kernel's
//! own (`/dev/fd`, `/dev/stdout`, `/proc/self`), and are opened from `/` without following any, so
//! that what was checked is what is opened.
//!
//! A sandbox may write the workspace, the target folder and read-write `--mount`s, and may plant
//! links there that outlive it; one whose volume holds a folder this run does not bind plants links
//! there that are root's, like the caller's own. Through such a link the next `--keep-failed DIR`
//! made sandbox-run, as root, make folders, the layer and its record wherever it pointed (the fifth
//! and eighth outside reviews of `--keep-failed`). No rule tells a planted link from the caller's,
//! so none is followed: the caller gives the folder it leads to (`readlink -f`).

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

/// `path` (relative to the working directory) as an absolute path, `.` and `..` taken as the kernel
/// would, and links resolved only where the kernel made them (in `/dev` and `/proc`). Components that
/// do not exist yet are kept as they are.
///
/// # Errors
/// [`Error::Refused`] for any other link (`what` names the option, `given` its value, of which `path`
/// is the folder); [`Error::Io`] when a link cannot be read or the path names too many.
pub(crate) fn resolve(what: &str, given: &Path, path: &Path) -> Result<PathBuf, Error> {
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
                if !(real == Path::new("/dev") || real.starts_with("/proc")) {
                    return Err(Error::Refused {
                        value: given.display().to_string(),
                        reason: format!(
                            "{what} `{}` leads through the link `{}`: sandbox-run works there as you, and a \
                             sandbox able to write `{}` (through its workspace or a --mount) could have \
                             planted that link; give the path it leads to (`readlink -f`)",
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

/// `real` (a path [`resolve`] gave: no link in it) opened `O_PATH` without following any link, a
/// file or a folder: held, so that what was checked is what is bound (passed on as [`fd_path`]).
///
/// # Errors
/// When a component is missing, or has become a link.
pub(crate) fn hold(real: &Path) -> Result<OwnedFd, Error> {
    let parent = real.parent().unwrap_or(Path::new("/"));
    let dir = open_folder(parent, false)?;
    let Some(name) = real.file_name() else { return Ok(dir) };
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(&dir, name, flags, Mode::empty()).map_err(|e| io("open", real)(e.into()))?;
    // O_PATH with O_NOFOLLOW opens a link itself, which a path through the descriptor would follow.
    let st = nix::sys::stat::fstat(&fd).map_err(|e| io("open", real)(e.into()))?;
    if st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFLNK {
        return Err(io("open", real)(std::io::Error::other("it has become a link")));
    }
    Ok(fd)
}

/// A workspace folder (the working directory, a folder above it, or the target folder) opened
/// `O_PATH`: one at or above the working directory from the working directory itself, through `..`
/// (the working directory is this process's own, whatever its path says now, and `..` follows no
/// link), any other by its path, its links followed once, here.
///
/// # Errors
/// When it cannot be opened.
pub(crate) fn hold_workspace(dir: &Path) -> Result<OwnedFd, Error> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if let Ok(cwd) = std::env::current_dir()
        && let Ok(below) = cwd.strip_prefix(dir)
    {
        let mut fd = nix::fcntl::open(".", flags, Mode::empty()).map_err(|e| io("open", &cwd)(e.into()))?;
        for _ in below.components() {
            fd = nix::fcntl::openat(&fd, "..", flags, Mode::empty()).map_err(|e| io("open", dir)(e.into()))?;
        }
        return Ok(fd);
    }
    nix::fcntl::open(dir, flags, Mode::empty()).map_err(|e| io("open", dir)(e.into()))
}

/// What `fd` refers to, as a path (`/proc/self/fd/N`): the inode it holds, not a name looked up again.
pub(crate) fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd)))
}

/// Where the file or folder `fd` holds is now, as a path (for messages and checks).
pub(crate) fn held_path(fd: &OwnedFd) -> PathBuf {
    std::fs::read_link(fd_path(fd)).unwrap_or_else(|_| fd_path(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_link_is_followed_but_the_kernels() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().canonicalize().expect("resolve");
        let [out, other] = ["out", "other"].map(|n| root.join(n));
        for d in [&out.join("sub"), &other] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::os::unix::fs::symlink(&out, other.join("to-out")).expect("link");
        // `.` and `..` are taken as the kernel would; missing components are kept.
        let got = resolve("--x", Path::new("x"), &out.join("sub/new/../kept")).expect("resolve");
        assert_eq!(got, out.join("sub/kept"));
        let e = resolve("--x", Path::new("x"), &other.join("to-out/sub")).expect_err("a link");
        assert!(e.to_string().contains("to-out"), "{e}");
        // The kernel's own: /dev/fd (bash's `>(…)`) leads to /proc/self/fd, then /proc/PID/fd.
        let fds = resolve("--x", Path::new("x"), Path::new("/dev/fd")).expect("the kernel's links");
        assert!(fds.starts_with("/proc/") && fds.ends_with("fd"), "{}", fds.display());
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
    fn hold_takes_a_file_or_folder_and_never_a_link() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().canonicalize().expect("resolve");
        std::fs::create_dir(root.join("dir")).expect("mkdir");
        std::fs::write(root.join("file"), "").expect("write");
        std::os::unix::fs::symlink(root.join("dir"), root.join("link")).expect("link");
        for held in ["dir", "file"] {
            let fd = hold(&root.join(held)).expect("held");
            assert_eq!(held_path(&fd), root.join(held));
        }
        // O_PATH with O_NOFOLLOW would open the link itself, which a path through it then follows.
        assert!(hold(&root.join("link")).is_err());
    }
}
