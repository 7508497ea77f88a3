//! Rootless: ids other than root inside, from the caller's subordinate id ranges (subuid(5),
//! subgid(5)), mapped by the setuid tools newuidmap(1) and newgidmap(1) of shadow-utils (`uidmap` on
//! Debian, `shadow-subids` on Alpine), as rootless podman does.
//!
//! An unprivileged process may map only its own ids into a user namespace (user_namespaces(7)): inside,
//! only root would exist, and `chown 1000 f`, `adduser`, or a daemon that drops to its own user would
//! fail. With a range, the setup namespace (crate::spawn::userns) maps `0` to the caller and
//! `1..=count` to the range, and the program's user namespace, nested in it, maps all of them.
//!
//! Two execs of setuid programs cost milliseconds, so the setup namespace is made once per process,
//! for the first sandbox that uses it: by the fork server before it forks that sandbox's helper, or
//! by a single-threaded caller before it forks its helper. `SANDBOX_SUBORDINATE_IDS=0` turns it off.
//! Helpers inherit its descriptor and enter it (setns(2)); a helper that was executed rather than
//! forked makes one of its own. Where the caller has no range, a tool is missing or refuses, the
//! sandbox gets root only, as before.
//!
//! A sandbox whose program could give a host file to an id of the range maps root only ([`allowed`]):
//! the file would stay owned by an id the caller cannot write, chmod or take back without newuidmap
//! (and `chmod 4755` on top would make it setuid to that id on the host).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::sched::CloneFlags;

use crate::config::{Config, Job, RootMode};
use crate::sys::{NamespaceHolder, SingleThreaded};

/// A setup user namespace with the caller's ranges, and how many uids and gids it maps from 0.
pub(crate) struct Mapped {
    pub userns: OwnedFd,
    pub counts: [u32; 2],
}

/// This process's setup namespace with ranges: `None` once tried without success.
static SHARED: OnceLock<Option<Mapped>> = OnceLock::new();

/// The setup namespace this process made, or inherited from the process it was forked from.
pub(crate) fn inherited() -> Option<&'static Mapped> {
    SHARED.get().and_then(Option::as_ref)
}

/// Whether this process has tried to make its setup namespace already (the fork server asks before
/// it reads a request's configuration).
pub(crate) fn tried() -> bool {
    SHARED.get().is_some()
}

/// The most ids besides root: 65536 in all, as root's range as root (crate::hardening::ID_COUNT).
const MOST: u32 = crate::hardening::ID_COUNT - 1;

/// Where shadow-utils installs its tools (Debian, Alpine, Fedora). Not `$PATH`: a setuid tool is
/// looked for only where the system puts it.
const TOOL_DIRS: [&str; 2] = ["/usr/bin", "/bin"];

/// Whether a rootless sandbox may map the caller's subordinate ids: not when its program could reach a
/// host file of the caller's, to give it to one of them. So not in a sandbox that binds any host
/// folder or file (a volume, read-only too: a socket there can hand out descriptors; a kept writable
/// layer; the host's own root), nor on the host's network (its abstract sockets), nor in a session
/// (its commands may be handed host files after its namespaces are made), nor when the program's
/// stdin, stdout or stderr (`stdio`) is a host file, folder, device or named FIFO, the caller's
/// terminal among them (`cmd < fixture > log`).
pub(crate) fn allowed(config: &Config, stdio: [BorrowedFd<'_>; 3]) -> bool {
    let binds = config.mounts.iter().any(|m| matches!(m.kind, crate::volume::MountKind::Bind { .. }));
    config.security.subordinate_ids
        && !binds
        && config.layers.upper_in.is_none()
        && !matches!(config.root, RootMode::Host { .. })
        && config.network.own_namespace()
        && !matches!(config.job, Job::Session)
        && !stdio.iter().any(|fd| on_host(*fd))
}

/// pipefs's magic number (statfs(2), `PIPEFS_MAGIC` in linux/magic.h): an anonymous pipe.
const PIPEFS_MAGIC: libc::c_long = 0x5049_5045;

/// Whether `fd` is an inode of a host file system whose owner fchown(2) through it could change:
/// anything but a socket, an anonymous pipe, or a device node of root's (`/dev/null`; root is no id of
/// a rootless program's). The caller's terminal is one: given to an id of the range, and made mode
/// 0666, it would stay readable by every local user until it closes. An fd that cannot be examined
/// counts as one.
fn on_host(fd: BorrowedFd<'_>) -> bool {
    let Ok(st) = nix::sys::stat::fstat(fd) else { return true };
    match st.st_mode & libc::S_IFMT {
        libc::S_IFSOCK => false,
        libc::S_IFCHR => st.st_uid != 0,
        libc::S_IFIFO => nix::sys::statfs::fstatfs(fd).map_or(true, |fs| fs.filesystem_type().0 != PIPEFS_MAGIC),
        _ => true,
    }
}

/// Makes this process's setup namespace now if the sandbox `config` (with the program's `stdio`) will
/// use it, so that its helper, forked next, and every later one inherit it.
pub(crate) fn prepare(t: SingleThreaded, config: &Config, stdio: [BorrowedFd<'_>; 3]) {
    if !tried() && config.outer_uid != 0 && !config.security.privileged && allowed(config, stdio) {
        let _ = shared(t, config.outer_uid, config.outer_gid);
    }
}

/// This process's setup namespace for the caller `uid`:`gid`, made on first use (helpers forked
/// later inherit it); `None` where the caller has no subordinate ranges or the tools refuse.
pub(crate) fn shared(t: SingleThreaded, uid: u32, gid: u32) -> Option<&'static Mapped> {
    SHARED.get_or_init(|| make(t, uid, gid)).as_ref()
}

/// Makes a user namespace mapping `0` to `uid`:`gid` and `1..` to the first of the caller's ranges that
/// the system lists, through newuidmap and newgidmap run at the same time.
fn make(t: SingleThreaded, uid: u32, gid: u32) -> Option<Mapped> {
    let deadline = std::time::Instant::now() + TOOLS_DEADLINE;
    let (uids, gids) = ranges_by(t, uid, gid, deadline)?;
    let (newuidmap, newgidmap) = (tool("newuidmap")?, tool("newgidmap")?);
    let holder = NamespaceHolder::spawn(CloneFlags::CLONE_NEWUSER)
        .map_err(|e| tracing::debug!(%e, "no user namespace for the subordinate ids"))
        .ok()?;
    let pid = holder.pid().to_string();
    let args = |own: u32, (start, count): (u32, u32)| {
        [pid.clone(), "0".into(), own.to_string(), "1".into(), "1".into(), start.to_string(), count.to_string()]
    };
    let spawn = |tool: &Path, args: [String; 7]| {
        std::process::Command::new(tool)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
    };
    // Both at once: each is an exec of a setuid program that reads the user database.
    let (u, g) = (spawn(&newuidmap, args(uid, uids)), spawn(&newgidmap, args(gid, gids)));
    let mut ok = true;
    for (tool, child) in [(&newuidmap, u), (&newgidmap, g)] {
        let ended = child.and_then(|mut c| match ends_by(&mut c, deadline) {
            true => c.wait_with_output(),
            false => {
                let _ = c.kill();
                let _ = c.wait();
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "did not end in time: killed"))
            }
        });
        match ended {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                let said = String::from_utf8_lossy(&out.stderr);
                tracing::debug!(tool = %tool.display(), status = %out.status, %said, "no subordinate ids");
                ok = false;
            }
            Err(e) => {
                tracing::debug!(tool = %tool.display(), %e, "no subordinate ids");
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    let userns = super::userns::open(&holder, "user")
        .map_err(|e| tracing::debug!(%e, "the subordinate ids' user namespace cannot be opened"))
        .ok()?;
    drop(holder);
    Some(Mapped { userns, counts: [1 + uids.1, 1 + gids.1] })
}

/// How long the caller's lookup and newuidmap and newgidmap may take, together: they read the user
/// database, through NSS (possibly a directory service over the network). Past it they are killed and
/// the sandbox maps root only: a hanging lookup must not stall the fork server, and with it every
/// sandbox of the caller.
const TOOLS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// The name of user `uid`, from NSS, by `deadline`. With glibc linked in (`target-feature=+crt-static`:
/// `cargo xtask install-cli`), NSS modules other than `files` and `dns` cannot run in-process (they
/// are linked against the shared glibc; `libnss_systemd` crashes the process), so where
/// `/etc/nsswitch.conf` names one, `getent passwd`, a program of the machine's own glibc, looks the
/// name up instead. Without getent, the in-process lookup is tried anyway: this is a forked process
/// of its own, which a crash ends without a core file (the ranges are then not found: root only).
fn user_name(uid: u32, deadline: std::time::Instant) -> Option<String> {
    let nss = || nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name);
    if !cfg!(all(target_env = "gnu", target_feature = "crt-static")) || fetch::getent::builtin_only("passwd") {
        return nss();
    }
    match fetch::getent::getent("passwd", &uid.to_string(), deadline) {
        Ok(line) => line.as_deref().and_then(passwd_name),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
            nss()
        }
        Err(_) => None,
    }
}

/// The first field of a passwd(5) line (`name:password:uid:gid:gecos:home:shell`).
fn passwd_name(line: &str) -> Option<String> {
    let name = line.split(':').next()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// How long before its deadline the lookup process stops what it runs, so that it ends, and reports,
/// before its parent kills it.
const LOOKUP_MARGIN: std::time::Duration = std::time::Duration::from_millis(500);

/// The caller's first subordinate uid and gid ranges (see [`first_range`]), looked up by its name
/// (NSS) and number in a forked process, which is killed at `deadline`.
fn ranges_by(t: SingleThreaded, uid: u32, gid: u32, deadline: std::time::Instant) -> Option<((u32, u32), (u32, u32))> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
    let parent = nix::unistd::getpid();
    match crate::sys::fork(t).ok()? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            // It dies with this process: a lookup left hanging (a FIFO, a dead directory service)
            // would otherwise outlive it, holding the caller's stdio.
            let _ = nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGKILL));
            if nix::unistd::getppid() != parent {
                crate::sys::exit_now(0);
            }
            // What this process starts (getent) gets no blocked signal (the caller may block those it
            // forwards: getent would then outlive a SIGTERM), and is killed by it before this process
            // is killed at `deadline`: never left running after the lookup.
            let _ = nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            );
            let own_deadline = deadline.checked_sub(LOOKUP_MARGIN).unwrap_or(deadline);
            let found = (|| {
                let name = user_name(uid, own_deadline).unwrap_or_default();
                let uids = first_range(&std::fs::read_to_string("/etc/subuid").ok()?, &name, uid)?;
                let gids = first_range(&std::fs::read_to_string("/etc/subgid").ok()?, &name, gid)?;
                Some([uids.0, uids.1, gids.0, gids.1])
            })();
            if let Some(numbers) = found {
                let bytes: Vec<u8> = numbers.iter().flat_map(|n| n.to_le_bytes()).collect();
                let _ = nix::unistd::write(&w, &bytes);
            }
            // Not std::process::exit: that would flush a copy of the caller's buffered stdout.
            crate::sys::exit_now(0);
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut bytes = Vec::new();
            let mut file = std::fs::File::from(r);
            let ended = loop {
                if readable_by(file.as_fd(), deadline) != Some(true) {
                    break false;
                }
                let mut chunk = [0u8; 16];
                match std::io::Read::read(&mut file, &mut chunk) {
                    Ok(0) => break true,
                    Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break true,
                }
            };
            if !ended {
                tracing::debug!("the lookup of the caller's subordinate ids did not end in time: killed");
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = nix::sys::wait::waitpid(child, None);
            let n: Vec<u32> = bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            match n[..] {
                [a, b, c, d] if ended => Some(((a, b), (c, d))),
                _ => None,
            }
        }
    }
}

/// Whether `child` ends by `deadline` (it is then left to be reaped); waits on a pidfd, or without a
/// deadline where pidfd_open(2) is not to be had (before Linux 5.3, or refused by a seccomp profile).
fn ends_by(child: &mut std::process::Child, deadline: std::time::Instant) -> bool {
    let pid = rustix::process::Pid::from_raw(child.id() as i32);
    let Some(pidfd) = pid.and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
    else {
        return true;
    };
    // A pidfd is readable once its process has ended; a failed poll waits without a deadline.
    readable_by(pidfd.as_fd(), deadline) != Some(false)
}

/// Whether `fd` is readable by `deadline`: `Some(true)` once it is, `Some(false)` at the deadline,
/// `None` if poll(2) fails (other than EINTR, which is retried).
fn readable_by(fd: BorrowedFd<'_>, deadline: std::time::Instant) -> Option<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], ms) {
            Ok(0) => return Some(false),
            Err(nix::errno::Errno::EINTR) => {}
            Ok(_) => return Some(true),
            Err(_) => return None,
        }
    }
}

/// The first range of at most [`MOST`] ids listed for the user `name` (or its number `id`) in a
/// subuid(5)/subgid(5) file: `start`, `count`.
fn first_range(listing: &str, name: &str, id: u32) -> Option<(u32, u32)> {
    let id = id.to_string();
    listing.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (owner, start, count) = (f.next()?, f.next()?.parse::<u32>().ok()?, f.next()?.parse::<u32>().ok()?);
        let ours = (!name.is_empty() && owner == name) || owner == id;
        (ours && count > 0 && f.next().is_none()).then_some((start, count.min(MOST)))
    })
}

/// A shadow-utils tool, where the system installs it.
fn tool(name: &str) -> Option<PathBuf> {
    TOOL_DIRS.iter().map(|d| Path::new(d).join(name)).find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_past_its_deadline_is_reported_and_one_in_time_is_not() {
        let soon = || std::time::Instant::now() + std::time::Duration::from_millis(100);
        let mut hung = std::process::Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        assert!(!ends_by(&mut hung, soon()), "sleep 30 does not end in 100 ms");
        let _ = hung.kill();
        let _ = hung.wait();
        let mut quick = std::process::Command::new("true").spawn().expect("spawn true");
        let far = std::time::Instant::now() + std::time::Duration::from_secs(30);
        assert!(ends_by(&mut quick, far));
        assert!(quick.wait().expect("reap").success());
    }

    #[test]
    fn getent_names_a_user_as_nss_does() {
        let nss = |uid| nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name);
        let soon = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let by_getent = |uid: u32| fetch::getent::getent("passwd", &uid.to_string(), soon).expect("getent");
        let me = nix::unistd::getuid().as_raw();
        assert_eq!(by_getent(0).as_deref().and_then(passwd_name).as_deref(), Some("root"));
        assert_eq!(by_getent(me).as_deref().and_then(passwd_name), nss(me));
        assert_eq!(user_name(me, soon), nss(me));
        // Far above any range a system gives out.
        assert_eq!(by_getent(3_999_999_999), None);
        assert_eq!(passwd_name(":x:1:1::/:/bin/sh"), None);
    }

    #[test]
    fn the_callers_first_range_by_name_or_number() {
        let listing = "root:10:5\nalice:100000:65536\n1001:300000:10\nalice:500000:65536\n";
        assert_eq!(first_range(listing, "alice", 1000), Some((100000, 65535)), "capped: 65536 ids in all");
        assert_eq!(first_range(listing, "bob", 1001), Some((300000, 10)));
        assert_eq!(first_range(listing, "carol", 1002), None);
        assert_eq!(first_range(listing, "", 1002), None, "an unnamed user matches no empty owner");
        assert_eq!(first_range("alice:1:0\nalice:x:3\nalice:1:2:9\n", "alice", 7), None, "malformed lines");
    }

    #[test]
    fn pipes_and_roots_devices_are_not_host_files_but_files_and_folders_are() {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        assert!(!on_host(r.as_fd()) && !on_host(w.as_fd()));
        let null = std::fs::File::open("/dev/null").expect("/dev/null");
        assert!(!on_host(null.as_fd()));
        let dir = tempfile::tempdir().expect("tempdir");
        let file = std::fs::File::create(dir.path().join("f")).expect("a file");
        assert!(on_host(file.as_fd()));
        assert!(on_host(std::fs::File::open(dir.path()).expect("the folder").as_fd()));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
        let named = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).expect("open the fifo");
        assert!(on_host(named.as_fd()), "a named FIFO is a host inode");
    }
}
