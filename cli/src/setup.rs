//! From options and a program to a built sandbox: rootfs, limits, volumes, the workspace binds, the
//! environment and the working directory.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use sandbox::{Mount, Network, Sandbox};

use crate::Error;
use crate::options::{NetworkArg, SandboxOptions};
use crate::rootfs::{Resolved, RootfsSpec};

/// A sandbox ready to run `program`.
#[derive(Debug)]
pub struct Prepared {
    /// The sandbox.
    pub sandbox: Sandbox,
    /// The program as it is to be named inside (made absolute where it is a host path).
    pub program: String,
    /// Its `argv[0]` where that differs from `program`: a host program on another rootfs runs at its
    /// real path, and keeps the name it was given (a multi-call program reads it: a rustup proxy, a
    /// busybox link).
    arg0: Option<String>,
    /// The rootfs on the host: `/`, or the unpacked tree.
    pub lower: PathBuf,
    /// With `--keep-failed`: the folder made for the sandbox's writable layer.
    pub(crate) kept: Option<crate::keep::Layer>,
    /// A host program on another rootfs, as it was opened ([`crate::elf::hold_program`]): what later
    /// sandboxes for it are prepared from ([`prepare_held`]), whatever is at its path by then. `None`
    /// for a sandbox prepared from a program held already.
    pub(crate) program_file: Option<OwnedFd>,
}

/// Variables of this crate's own machinery, never passed into a sandbox.
fn internal(key: &str) -> bool {
    key.starts_with("__SANDBOX")
}

/// Builds the sandbox for `program` as `opts` say.
///
/// # Errors
/// [`Error::Rootfs`] when the rootfs cannot be had, [`Error::Sandbox`] for an invalid setting.
pub fn prepare(opts: &SandboxOptions, program: &str) -> Result<Prepared, Error> {
    prepare_in(opts, program, None)
}

/// [`prepare`], with the writable layer in a fresh folder of `--keep-failed`'s, named after `keep_as`
/// (a test's name), when both are given.
///
/// # Errors
/// As [`prepare`]; [`Error::Refused`] for a `--keep-failed` folder a sandbox could redirect.
pub fn prepare_in(opts: &SandboxOptions, program: &str, keep_as: Option<&str>) -> Result<Prepared, Error> {
    prepare_held(opts, program, keep_as, None)
}

/// [`prepare_in`], for a host program on another rootfs held already (`program_held`, another [`Prepared`]'s
/// `program_file`): `--per-test` prepares each test's sandbox from the file it listed the tests of,
/// not from what its path names by then (the fifteenth outside review: a test put a link there, to a
/// root-only script whose `#!` line a later test's error then showed).
///
/// # Errors
/// As [`prepare_in`].
pub(crate) fn prepare_held(
    opts: &SandboxOptions,
    program: &str,
    keep_as: Option<&str>,
    program_held: Option<&OwnedFd>,
) -> Result<Prepared, Error> {
    let spec = opts.rootfs.clone().unwrap_or_else(|| RootfsSpec::default_for(program));
    let rootfs = Resolved::get(&spec)?;
    let host_program = host_path(program);
    let mut b = Sandbox::builder();
    b = match &rootfs {
        Resolved::Host => b.rootfs_dir("/"),
        Resolved::Tree(tree) => b.rootfs(tree),
    };
    let lower = match &rootfs {
        Resolved::Host => PathBuf::from("/"),
        Resolved::Tree(tree) => tree.path().to_owned(),
    };
    for layer in opts.layers.iter().rev() {
        b = b.layer(layer);
    }
    b = b.hostname(&opts.hostname).network(match opts.network {
        NetworkArg::Loopback => Network::Loopback,
        NetworkArg::None => Network::None,
        NetworkArg::Host => Network::Host,
    });
    if opts.privileged {
        b = b.privileged();
    }
    if let Some(t) = opts.timeout {
        b = b.timeout(t);
    }
    if let Some(m) = opts.memory {
        b = b.memory_limit(m);
    }
    if let Some(p) = opts.pids {
        b = b.pids_limit(p);
    }
    if let Some(c) = opts.cpus {
        b = b.cpu_limit(c);
    }
    if let Some(bytes) = opts.writable_size {
        b = b.writable_size(bytes);
    }
    // Every volume, each with its target: mounted parents first (as Docker orders them), so that
    // `--tmpfs /data --mount SRC:/data/in` shows the bind inside the tmpfs whatever the order given.
    let mut volumes: Vec<(String, Mount)> = Vec::new();
    // Host files and folders handed to the library as /proc/self/fd/N (crate::host_path::fd_path),
    // held until it is built: what was checked is what is bound.
    let mut held: Vec<OwnedFd> = Vec::new();
    // A host file bound read-only at its own path, through its descriptor.
    let read_only_at = |shown: &Path, file: &OwnedFd| {
        let target = shown.display().to_string();
        (target.clone(), Mount::bind(crate::host_path::fd_path(file), target).read_only())
    };
    let mut as_it_is = |shown: &Path, file: OwnedFd, volumes: &mut Vec<(String, Mount)>| {
        volumes.push(read_only_at(shown, &file));
        held.push(file);
    };
    // A host program on another rootfs: its loader and libraries, read-only at their own paths, and
    // the program at its own, real path, run from there: the loader takes `$ORIGIN` from where it
    // runs, and its libraries beside it are found from the real folder (through a link to it, a
    // program did not start: the fourteenth outside review).
    let mut run_at = None;
    let mut program_file = None;
    if let (Some(path), false) = (&host_program, rootfs.is_host()) {
        // The file listed already, or held now (then kept in `Prepared`); open until built.
        let program = match program_held {
            Some(file) => file,
            None => program_file.insert(crate::elf::hold_program(path)?),
        };
        // A script's interpreter is the rootfs's: one it lacks is named now, not as the script's
        // "No such file or directory".
        if let Some(named) = crate::elf::script_interpreter(program)
            && !in_rootfs(&lower, &named)
        {
            return Err(Error::Interpreter { script: path.clone(), interpreter: named });
        }
        // The LD_LIBRARY_PATH the sandbox is given (--env's, else the caller's with --keep-env).
        let given = opts.env.iter().rev().find(|(k, _)| k == "LD_LIBRARY_PATH").map(|(_, v)| v.clone());
        let library_path = given.or_else(|| opts.keep_env.then(|| std::env::var("LD_LIBRARY_PATH").ok()).flatten());
        for file in crate::libraries::closure(path, program, library_path.as_deref())? {
            as_it_is(&file.shown, file.file, &mut volumes);
        }
        let real = crate::host_path::held_path(program);
        volumes.push(read_only_at(&real, program));
        run_at = Some(real);
    }
    let workspace = if !opts.no_workspace && !opts.resumed && (rootfs.is_host() || host_program.is_some()) {
        workspace_dirs(host_program.as_deref())
    } else {
        Vec::new()
    };
    // On the host's root the sandbox's /tmp and /dev are its own: a program there that no workspace
    // folder brings is bound in (the file alone, read-only), as one elsewhere on the host is seen.
    if let (Some(path), true) = (&host_program, rootfs.is_host())
        && (path.starts_with("/tmp") || path.starts_with("/dev"))
        && !workspace.iter().any(|dir| path.starts_with(dir))
    {
        as_it_is(path, crate::elf::hold_program(path)?, &mut volumes);
    }
    // Host folders the program can write: (host folder, where the sandbox shows it). Each bind's
    // source is opened here, once, and the sandbox given it as /proc/self/fd/N, so the folder checked
    // is the folder bound: a sandbox that could write where a source lies exchanged it with a link
    // between sandbox-run's check and the library's resolution (the eleventh outside review: a
    // root-only host folder bound read-write as the workspace, or as a --mount). Held until built.
    let mut writable_binds: Vec<(PathBuf, String)> = Vec::new();
    for dir in workspace {
        let target = dir.display().to_string();
        let fd = crate::host_path::hold_workspace(&dir)?;
        writable_binds.push((crate::host_path::held_path(&fd), target.clone()));
        volumes.push((target.clone(), Mount::bind(crate::host_path::fd_path(&fd), target)));
        held.push(fd);
    }
    for m in &opts.mounts {
        // No link on the way, as for --keep-failed: one a sandbox planted where it could write (the
        // workspace) sent a later run's volume to any host path, read-write as root (the tenth
        // outside review). The library binds it without following one either.
        let source = crate::host_path::resolve("--mount", &m.source, &m.source)?;
        let fd = crate::host_path::hold(&source)?;
        if !m.read_only {
            writable_binds.push((crate::host_path::held_path(&fd), m.target.clone()));
        }
        let mount = Mount::bind(crate::host_path::fd_path(&fd), m.target.clone());
        volumes.push((m.target.clone(), if m.read_only { mount.read_only() } else { mount }));
        held.push(fd);
    }
    let kept = match &opts.keep_failed {
        Some(base) => {
            let base = keep_folder(base, &writable_binds)?;
            keep_as.map(|name| crate::keep::fresh_layer_dir(&base, name)).transpose()?
        }
        None => None,
    };
    if let Some(layer) = &kept {
        b = b.writable_layer_in(layer.held());
    }
    for t in &opts.tmpfs {
        let mount = Mount::tmpfs(t.target.clone());
        let mount = match t.size {
            Some(size) => mount.size(size),
            None => mount,
        };
        volumes.push((t.target.clone(), mount));
    }
    volumes.sort_by_key(|(target, _)| Path::new(target).components().count());
    for (_, mount) in volumes {
        b = b.mount(mount);
    }
    if opts.keep_env || (rootfs.is_host() && !opts.resumed) {
        for (k, v) in std::env::vars_os() {
            // $HOSTNAME stays the sandbox's (the library's default environment sets it), as
            // `hostname` says inside: a shell's or Docker's exported value is the host's.
            if let (Some(k), Some(v)) = (k.to_str(), v.to_str())
                && !internal(k)
                && k != "HOSTNAME"
            {
                b = b.env(k, v);
            }
        }
    }
    for (k, v) in &opts.env {
        b = b.env(k, v);
    }
    let workdir = match (&opts.workdir, rootfs.is_host()) {
        (Some(w), _) => Some(w.clone()),
        (None, true) if opts.resumed => Some("/".to_owned()),
        (None, true) => std::env::current_dir().ok().map(|d| d.display().to_string()),
        // HOME's folder, as a login shell starts in; `/` in a rootfs without one.
        // Not through a link in the rootfs: one to a host folder told whether that exists (the ninth
        // outside review).
        (None, false) => {
            let home = lower.join("root").symlink_metadata().is_ok_and(|m| m.is_dir());
            Some(if home { "/root" } else { "/" }.to_owned())
        }
    };
    if let Some(w) = workdir {
        b = b.current_dir(w);
    }
    let arg0 = run_at.is_some().then(|| host_program.as_ref().map(|p| p.display().to_string())).flatten();
    let program = run_at.or(host_program).map_or_else(|| program.to_owned(), |p| p.display().to_string());
    let built = b.build();
    drop(held);
    let sandbox = built.inspect_err(|_| {
        if let Some(layer) = &kept {
            layer.remove_empty();
        }
    })?;
    Ok(Prepared { sandbox, program, arg0, lower, kept, program_file })
}

impl Prepared {
    /// A command running the program in this sandbox, named as it was given.
    pub fn command(&self) -> sandbox::Command<'_> {
        let mut cmd = self.sandbox.command(&self.program);
        if let Some(name) = &self.arg0 {
            cmd.arg0(name);
        }
        cmd
    }
}

/// Whether `path` exists in the rootfs `lower`, looked up inside it as the sandbox would
/// (`RESOLVE_IN_ROOT`): a link in the rootfs never leads the lookup onto the host (the tenth outside
/// review: a rootfs's link told whether a root-only host path exists).
fn in_rootfs(lower: &Path, path: &Path) -> bool {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let Ok(root) =
        nix::fcntl::open(lower, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
    else {
        return false;
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    nix::fcntl::openat2(&root, path.strip_prefix("/").unwrap_or(path), how).is_ok()
}

/// `program` as an absolute host path, when it names a file on the host by a path outside the system
/// folders (see [`RootfsSpec::default_for`]).
fn host_path(program: &str) -> Option<PathBuf> {
    if RootfsSpec::default_for(program) != RootfsSpec::Host {
        return None;
    }
    std::path::absolute(program).ok()
}

/// The target folder: `env` (`$CARGO_TARGET_DIR`), else the folder `program` lies in that is named
/// `target` or holds the `CACHEDIR.TAG` cargo writes into every target folder, whatever its name (a
/// new user's review: one named `target-plain` was not bound, and what the tests wrote there was lost).
fn target_folder(program: Option<&Path>, env: Option<std::ffi::OsString>) -> Option<PathBuf> {
    env.map(PathBuf::from).and_then(|t| std::path::absolute(t).ok()).or_else(|| {
        program?
            .ancestors()
            .skip(1)
            .find(|a| a.file_name().is_some_and(|n| n == "target") || a.join("CACHEDIR.TAG").is_file())
            .map(Path::to_path_buf)
    })
}

/// `--keep-failed`'s folder `base`, resolved ([`crate::host_path::resolve`]: no link in it), once it
/// is known to lie outside every folder the program can write (`binds`: host folder, resolved, and
/// where the sandbox shows it) and to hold none of them.
///
/// sandbox-run, as the caller, makes the layer there, walks it, writes `changes.txt` and removes
/// folders there after the program ended. Outside reviews: through a link the program planted there,
/// root wrote and deleted any host file; with the folder hidden behind a read-only tmpfs, the program
/// renamed a folder above it and planted the link at the old path; through a link an earlier or
/// another sandbox planted above the folder, root made the layer anywhere. (The work itself goes
/// through descriptors of the folder made, crate::keep::Layer; these refusals are the first line.)
fn keep_folder(base: &Path, binds: &[(PathBuf, String)]) -> Result<PathBuf, Error> {
    let real = crate::host_path::resolve("--keep-failed", base, base)?;
    let refuse = |why: String| Error::Refused {
        value: base.display().to_string(),
        reason: format!(
            "--keep-failed `{}` {why}, where the program could redirect what sandbox-run writes and removes \
             there once it ends; choose a folder outside the workspace, the target folder, the working \
             directory and read-write --mounts (e.g. under $RUNNER_TEMP or /var/tmp), or pass --no-workspace",
            base.display()
        ),
    };
    for (source, target) in binds {
        if let Ok(rest) = real.strip_prefix(source) {
            let inside = Path::new(target).join(rest);
            return Err(refuse(format!(
                "lies in a folder the sandbox can write (it sees it at `{}`)",
                inside.display()
            )));
        }
        if source.starts_with(&real) {
            return Err(refuse(format!(
                "holds `{}`, which the sandbox can write (it sees it at `{target}`)",
                source.display()
            )));
        }
    }
    Ok(real)
}

/// The current cargo workspace (the nearest folder above the working directory holding a `Cargo.lock`),
/// the working directory itself when it lies under `/tmp` (which the sandbox replaces), and the target
/// folder (`target_folder`), when they exist; never `/`, a top-level folder or another folder every
/// user shares, also through a symlink (then only the program, if it lies there).
pub fn workspace_dirs(program: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let cwd = std::env::current_dir().ok();
    let workspace = cwd.as_deref().and_then(|c| c.ancestors().find(|a| a.join("Cargo.lock").is_file()));
    if let Some(ws) = workspace {
        dirs.push(ws.to_path_buf());
    }
    // The sandbox has a /tmp of its own: a working directory there would not exist inside.
    if let Some(c) = &cwd
        && c.starts_with("/tmp")
        && !dirs.iter().any(|d| c.starts_with(d))
    {
        dirs.push(c.clone());
    }
    if let Some(t) = target_folder(program, std::env::var_os("CARGO_TARGET_DIR"))
        && !dirs.iter().any(|d| t.starts_with(d))
    {
        dirs.push(t);
    }
    // Never a folder that is everyone's as a whole, also through a symlink (`cd /tmp`,
    // `CARGO_TARGET_DIR=/tmp`): the program would get every other service's socket and file there
    // (tmux's, ssh-agent's, X11's in /tmp). Then only the program itself, if it lies there.
    let real_program = program.and_then(|p| std::fs::canonicalize(p).ok());
    let dirs = dirs.into_iter().filter_map(|d| {
        let real = std::fs::canonicalize(&d).ok()?;
        if !everyones(&real) {
            return real.is_dir().then_some(d);
        }
        program.filter(|_| real_program.as_ref().is_some_and(|p| p.starts_with(&real))).map(Path::to_path_buf)
    });
    let mut dirs: Vec<PathBuf> = dirs.collect();
    dirs.dedup();
    dirs
}

/// Whether `dir` is the host's root, a top-level folder (`/tmp`, `/home`, `/srv`), or another folder
/// that every user shares: any folder everyone may write (`/var/tmp`, `/dev/shm`, `/run/lock`).
fn everyones(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    dir.parent().is_none_or(|p| p == Path::new("/")) || std::fs::metadata(dir).is_ok_and(|m| m.mode() & 0o002 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_folder_is_found_by_its_name_or_cargos_tag() {
        let root = tempfile::tempdir().expect("tempdir");
        let deps = |top: &str| root.path().join(top).join("debug/deps");
        for top in ["target", "target-plain", "untagged"] {
            std::fs::create_dir_all(deps(top)).expect("mkdir");
        }
        std::fs::write(root.path().join("target-plain/CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55\n")
            .expect("tag");
        let found = |top: &str| target_folder(Some(&deps(top).join("t-1a2b")), None);
        assert_eq!(found("target"), Some(root.path().join("target")));
        assert_eq!(found("target-plain"), Some(root.path().join("target-plain")));
        assert_eq!(found("untagged"), None);
        let named = target_folder(Some(&deps("untagged").join("t")), Some(root.path().join("target-plain").into()));
        assert_eq!(named, Some(root.path().join("target-plain")), "$CARGO_TARGET_DIR first");
    }
}
