//! The builder (pure data, validated up front) and the sandbox it builds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Error;
use crate::config::{Config, DEFAULT_PATH, Job, NetMode, RootMode};
use crate::error::{checked, invalid};
use crate::network::{Lease, Network};

#[derive(Debug, Clone)]
enum RootfsChoice {
    Default,
    Rootfs(fetch::Rootfs),
    Dir(PathBuf),
}

/// Configuration of a [`Sandbox`]. Every setter documents its default; nothing is checked or started
/// until [`build`](Builder::build).
///
/// # Examples
/// ```no_run
/// use sandbox::{Network, Sandbox};
/// let sb = Sandbox::builder()
///     .hostname("box")
///     .network(Network::Loopback)
///     .env("KEY", "value")
///     .current_dir("/root")
///     .timeout(std::time::Duration::from_secs(30))
///     .build()?;
/// # Ok::<(), sandbox::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    rootfs: RootfsChoice,
    hostname: String,
    network: Network,
    env: Vec<(String, String)>,
    current_dir: std::path::PathBuf,
    timeout: Option<Duration>,
    user_namespace: Option<bool>,
    sys: bool,
    copy_rootfs: bool,
    upper_in: Option<PathBuf>,
    layers: Vec<PathBuf>,
    mounts: Vec<crate::Mount>,
    files: Vec<(String, Vec<u8>)>,
    limits: crate::cgroups::Limits,
    writable_size: Option<u64>,
    rlimits: Vec<(crate::Rlimit, u64)>,
    privileged: bool,
    id_base: Option<u32>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            rootfs: RootfsChoice::Default,
            hostname: "sandbox".to_owned(),
            network: Network::Loopback,
            env: Vec::new(),
            current_dir: "/".into(),
            timeout: None,
            user_namespace: None,
            sys: false,
            copy_rootfs: false,
            upper_in: None,
            layers: Vec::new(),
            mounts: Vec::new(),
            files: Vec::new(),
            limits: crate::cgroups::Limits::default(),
            writable_size: None,
            rlimits: Vec::new(),
            privileged: false,
            id_base: None,
        }
    }
}

impl Builder {
    /// The root filesystem: the lower, read-only layer under each sandbox's private writable copy.
    /// Default: [`fetch::default_rootfs`] (`$SANDBOX_ROOTFS`, else the pinned Alpine release, fetched
    /// into the cache on first use).
    pub fn rootfs(mut self, rootfs: &fetch::Rootfs) -> Self {
        self.rootfs = RootfsChoice::Rootfs(rootfs.clone());
        self
    }

    /// Any unpacked tree as the root filesystem (it is never written to).
    pub fn rootfs_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.rootfs = RootfsChoice::Dir(dir.into());
        self
    }

    /// The hostname inside (also in `/etc/hostname` and `/etc/hosts`). Default: `"sandbox"`.
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.hostname = name.into();
        self
    }

    /// The network. Default: [`Network::Loopback`].
    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Adds an environment variable for every process in the sandbox. The default environment is
    /// clean: `PATH`, `HOME=/root`, `HOSTNAME`, and `TERM` if the caller has it.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.into()));
        self
    }

    /// The working directory of processes inside (absolute, inside the rootfs, in UTF-8). Default: `/`.
    pub fn current_dir(mut self, dir: impl AsRef<std::path::Path>) -> Self {
        self.current_dir = dir.as_ref().to_owned();
        self
    }

    /// A deadline for the whole sandbox: when it passes, every process in it is killed and the run
    /// reports [`Error::TimedOut`]. Default: none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether the sandbox gets a user namespace of the caller's making, in which the caller's uid
    /// is root. Rootless it always does (`false` is refused). As root, without
    /// [`privileged`](Builder::privileged), it changes nothing the program sees: the program always
    /// runs in a user namespace of its own whose root is an unprivileged host id range
    /// ([`id_base`](Builder::id_base)). With `privileged()`, as root, `true` puts the program in a
    /// user namespace mapping uid 0 only, to the host's root (its capabilities hold in that
    /// namespace only). A [`Network::Switch`] needs it off as root. Default: only when not root.
    pub fn user_namespace(mut self, enable: bool) -> Self {
        self.user_namespace = Some(enable);
        self
    }

    /// Mounts a read-only `/sys` (sysfs of the sandbox's own network namespace; with
    /// [`Network::Host`], `build` refuses it). Default: no `/sys`, which exposes less of the host.
    pub fn sys(mut self, enable: bool) -> Self {
        self.sys = enable;
        self
    }

    /// Gives each sandbox a full private copy of the rootfs in memory instead of an overlay on top of
    /// the shared tree: slower to start (the copy), for kernels or containers where overlayfs is not
    /// permitted. Default: overlay, falling back to a copy by itself (with one warning) when the kernel
    /// refuses overlayfs.
    pub fn copy_rootfs(mut self, enable: bool) -> Self {
        self.copy_rootfs = enable;
        self
    }

    /// Keeps each sandbox's writable layer in the host folder `dir` instead of the sandbox's memory:
    /// `dir/upper` holds what the sandbox added, changed (whole files) and deleted (overlayfs
    /// whiteouts), and stays after the sandbox ends, for the caller to inspect, keep or delete.
    /// `dir` must be an empty folder on a file system overlayfs accepts as an upper layer (ext4, xfs,
    /// btrfs, tmpfs); one sandbox in its life: a second start of the same `Sandbox` finds the first's
    /// layer there and fails (`File exists`); build one per start. `dir` is made private (mode 0700): the layer holds the
    /// sandbox's files with their modes, setuid ones among them, which no other host user may reach.
    /// As root it is also given to the sandbox's root (the first id of its range), which no other
    /// sandbox's read-write volume maps, so no other sandbox reaches inside it through one. The
    /// folder is held by device and inode from [`Builder::build`] on: a sandbox starts only on that
    /// very folder, reached without following links (one put in its place since is refused).
    /// Rootless, such a sandbox maps root alone (no subordinate ids), so that every file kept there is
    /// the caller's (overlayfs leaves `dir/work/work` mode 0: `chmod -R u+rwX dir` before `rm -rf`).
    /// Default: in memory, gone with the sandbox.
    pub fn writable_layer_in(mut self, dir: impl Into<PathBuf>) -> Self {
        self.upper_in = Some(dir.into());
        self
    }

    /// Adds a read-only layer over the rootfs, under the writable one: e.g. the `upper` folder a
    /// sandbox built with [`Builder::writable_layer_in`] left, to start again from what it changed.
    /// Layers added later lie on top. Default: none.
    pub fn layer(mut self, dir: impl Into<PathBuf>) -> Self {
        self.layers.insert(0, dir.into());
        self
    }

    /// Adds a volume ([`crate::Mount::bind`] or [`crate::Mount::tmpfs`]) to every sandbox. A relative
    /// bind source is relative to the current directory. Default: none.
    pub fn mount(mut self, mount: crate::Mount) -> Self {
        self.mounts.push(mount);
        self
    }

    /// Writes `contents` at the absolute path `path` in each sandbox's private layer (its parent
    /// directories are created): the rootfs in the cache is not touched. Under a read-write
    /// volume's mount point the file is written in that volume, which is the host's folder, at each
    /// start (as is a mount point made below one: [`Builder::mount`]'s nested targets). A file at `/etc/hosts`,
    /// `/etc/hostname` or `/etc/resolv.conf` replaces the one the sandbox writes there (as does a
    /// host file or folder bound there with [`Builder::mount`], which setup never writes into).
    /// Default: none.
    pub fn file(mut self, path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.into(), contents.into()));
        self
    }

    /// Caps the memory of all the sandbox's processes together, in bytes (at least 1 MiB); swap is no
    /// headroom. A sandbox that exceeds it is OOM-killed and its run fails with
    /// [`Error::MemoryLimitExceeded`]. Needs a usable cgroup (see the crate docs). Default: none, and
    /// cgroups are not touched.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.limits.memory = Some(bytes);
        self
    }

    /// Caps the number of processes and threads in the sandbox (at least 2: its init counts): a fork
    /// past it fails (EAGAIN), as the program's own error. Needs a usable cgroup. Default: none, and
    /// [`DEFAULT_PROCESSES`](crate::DEFAULT_PROCESSES) per user inside (`RLIMIT_NPROC`), which a pids
    /// limit replaces.
    pub fn pids_limit(mut self, max: u64) -> Self {
        self.limits.pids = Some(max);
        self
    }

    /// Caps CPU use at `cpus` CPUs' worth of time (0.5: half a core), by CFS quota over a 100 ms
    /// period. Needs a usable cgroup. Default: none.
    pub fn cpu_limit(mut self, cpus: f64) -> Self {
        self.limits.cpus = Some(cpus);
        self
    }

    /// Sizes the sandbox's memory-backed file systems, in bytes (1 MiB to 1 PiB): the writable layer
    /// (what the program writes anywhere outside its volumes, `/tmp` and `/dev`; with
    /// [`Builder::copy_rootfs`], the copy of the rootfs too), `/tmp`, and each
    /// [`crate::Mount::tmpfs`] without a size of its own. A writer past it gets ENOSPC. Their pages
    /// are memory: with a [`Builder::memory_limit`] too, a size above half of it lets a writer meet
    /// the OOM killer first. Default: half the memory limit when one is set, else a quarter of the
    /// machine's RAM. A layer kept on disk ([`Builder::writable_layer_in`]) has its file system's size.
    pub fn writable_size(mut self, bytes: u64) -> Self {
        self.writable_size = Some(bytes);
        self
    }

    /// Sets a setrlimit(2) limit (soft and hard) for the program. Default: the caller's limits,
    /// but for [`Rlimit::NProc`](crate::Rlimit::NProc) in a sandbox that is neither
    /// [`privileged`](Builder::privileged) nor given a [`pids_limit`](Builder::pids_limit):
    /// [`DEFAULT_PROCESSES`](crate::DEFAULT_PROCESSES) (or the caller's, if lower).
    pub fn rlimit(mut self, resource: crate::Rlimit, value: u64) -> Self {
        self.rlimits.retain(|(r, _)| *r != resource);
        self.rlimits.push((resource, value));
        self
    }

    /// Gives up the hardening that takes powers away from the program, for the rare test that needs
    /// the real thing (a kernel module, a block device, the host's clock): as root, **the program is
    /// the host's root**, with every capability, no user namespace, no seccomp filter, no
    /// no_new_privs, unmasked `/proc` and unlocked mounts. What stays: paths resolved inside the
    /// root, only stdio inherited, sized tmpfs mounts, the deadline. Default: off (see the crate's
    /// "Security" section).
    pub fn privileged(mut self) -> Self {
        self.privileged = true;
        self
    }

    /// As root: root inside the sandbox is mapped to the 65536 host ids from `base` (files the program
    /// creates in its private layer are theirs; they own nothing on the host). Default:
    /// `$SANDBOX_ID_BASE`, else 2000000000; at least 100000 (above the system's and its login users'
    /// ids; `cargo xtask doctor` checks the accounts), at most 4294836224 (the range stays below uids
    /// 4294901760 and up, which own the sandboxes' user namespaces). Ranges used side by side must not overlap.
    /// Rootless, root inside is the caller.
    pub fn id_base(mut self, base: u32) -> Self {
        self.id_base = Some(base);
        self
    }

    /// Checks every setting and resolves the rootfs. Nothing runs yet: each [`Sandbox::command`] or
    /// [`Sandbox::run`] starts a fresh sandbox.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad setting, [`Error::Rootfs`] if the default rootfs cannot be
    /// had.
    pub fn build(mut self) -> Result<Sandbox, Error> {
        if let Some(reason) = crate::hints::nested() {
            return Err(invalid("sandbox", "inside a sandbox", reason));
        }
        checked("hostname", &self.hostname, sandbox_validate::hostname(&self.hostname))?;
        let current_dir = crate::error::utf8_dir(&self.current_dir)?.to_owned();
        for (k, v) in &self.env {
            crate::error::check_env(k, v)?;
        }
        let mut mounts = Vec::with_capacity(self.mounts.len());
        for mut m in self.mounts {
            checked("mount target", &m.target, sandbox_validate::path_inside(&m.target))?;
            if m.target.trim_end_matches('/').is_empty() {
                return Err(invalid("mount target", &m.target, "cannot be the root itself"));
            }
            if let crate::volume::MountKind::Bind { source, is_dir, id } = &mut m.kind {
                let shown = source.display().to_string();
                // A source named by a descriptor (`/proc/self/fd/N`) is that file, for every start; a
                // path is whatever folder or file is there (links aside) when the sandbox starts.
                let held = source.starts_with("/proc/self/fd/");
                // Resolved once, through one descriptor (the caller's links followed here), never by a
                // second walk of the name it read back: canonicalize's walk followed a link another
                // sandbox exchanged in for the folder meanwhile (the eleventh outside review). Each
                // start binds it without following links (crate::sys::hardening::clone_source).
                let (real, dir, file) = crate::sys::mount::resolve_source(source).map_err(|e| {
                    let reason = if e == nix::errno::Errno::ESTALE {
                        format!(
                            "{e}: its path names another file on the host (a file reached through another \
                             mount namespace, e.g. /proc/PID/root/...); bind a host path"
                        )
                    } else {
                        format!("{e}: the host path must exist")
                    };
                    invalid("bind source", &shown, &reason)
                })?;
                *source = real;
                *is_dir = dir;
                *id = held.then_some(file);
                if m.size.is_some() {
                    return Err(invalid("mount size", &shown, "only a tmpfs has a size"));
                }
            }
            if let Some(size) = m.size {
                checked("mount size", &size.to_string(), sandbox_validate::tmpfs_size(size))?;
            }
            mounts.push(m);
        }
        for (path, _) in &self.files {
            checked("file path", path, sandbox_validate::path_inside(path))?;
        }
        if let Some(bytes) = self.limits.memory
            && let Err(reason) = sandbox_validate::memory_limit(bytes)
        {
            let reason = format!("{reason} (the limit is in bytes: 64 MiB is 64 << 20)");
            return Err(invalid("memory limit", &bytes.to_string(), &reason));
        }
        if let Some(bytes) = self.writable_size
            && let Err(reason) = sandbox_validate::writable_size(bytes)
        {
            let reason = format!("{reason} (the size is in bytes: 64 MiB is 64 << 20)");
            return Err(invalid("writable_size", &bytes.to_string(), &reason));
        }
        if let Some(n) = self.limits.pids {
            checked("pids limit", &n.to_string(), sandbox_validate::pids_limit(n))?;
        }
        if let Some(c) = self.limits.cpus {
            checked("cpu_limit", &c.to_string(), sandbox_validate::cpus(c))?;
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(invalid("timeout", "0s", "must be longer than zero"));
        }
        // Said, not silently dropped (an outside review: the program found an empty /sys).
        if self.sys && matches!(self.network, Network::Host) {
            let reason =
                "no /sys with Network::Host: a sysfs shows the network namespace that mounts it, here the host's";
            return Err(invalid("sys", "true", reason));
        }
        let lower = match self.rootfs {
            RootfsChoice::Default => fetch::default_rootfs()?.path().to_owned(),
            RootfsChoice::Rootfs(r) => r.path().to_owned(),
            RootfsChoice::Dir(d) => d,
        };
        let lower = match std::fs::metadata(&lower) {
            // Its real path, resolved once here where the caller named it: setup opens the tree
            // following no link, and a link on the way to a folder the caller chose (a symlinked
            // home) made every start fail with ELOOP (an outside review).
            Ok(m) if m.is_dir() => {
                std::fs::canonicalize(&lower).or_else(|_| std::path::absolute(&lower)).unwrap_or(lower)
            }
            Ok(_) => return Err(invalid("rootfs", &lower.display().to_string(), "is not a directory")),
            Err(e) => return Err(invalid("rootfs", &lower.display().to_string(), &e.to_string())),
        };
        // Setup writes /etc/hostname and /etc/hosts there: a folder without /etc is the wrong one (the
        // folder above an unpacked tree, a project folder), better said now than as a failed write.
        // Not followed if a link: it is resolved inside the sandbox, never on the host.
        if self.layers.is_empty() && lower.join("etc").symlink_metadata().is_err() {
            let reason =
                "is no root file system: it has no etc folder (name the unpacked tree, which holds bin, etc and usr)";
            return Err(invalid("rootfs", &lower.display().to_string(), reason));
        }
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let user_namespace = match self.user_namespace {
            Some(false) if uid != 0 => {
                return Err(invalid("user_namespace", "false", "a sandbox without root needs a user namespace"));
            }
            Some(v) => v,
            None => uid != 0,
        };
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), DEFAULT_PATH.into()),
            ("HOME".into(), "/root".into()),
            ("HOSTNAME".into(), self.hostname.clone()),
        ];
        if let Ok(term) = std::env::var("TERM") {
            env.push(("TERM".into(), term));
        }
        for (k, v) in self.env {
            env.retain(|(e, _)| *e != k);
            env.push((k, v));
        }
        let resolv_conf = match self.network {
            Network::Host => std::fs::read_to_string("/etc/resolv.conf").ok(),
            _ => None,
        };
        let (network, switch) = match self.network {
            Network::Loopback => (NetMode::Loopback, None),
            Network::None => (NetMode::None, None),
            Network::Host => (NetMode::Host, None),
            Network::Switch(net) => {
                if user_namespace {
                    return Err(invalid("network", "Switch", crate::network::ROOTLESS_REASON));
                }
                let address = net.register(&self.hostname)?;
                (NetMode::Loopback, Some((net, address)))
            }
        };
        let id_base = match self.id_base {
            Some(base) => checked_id_base("id_base", base)?,
            None => id_base_from_env()?,
        };
        let subordinate_ids = match std::env::var("SANDBOX_SUBORDINATE_IDS").as_deref() {
            Ok("0") => false,
            Ok("1") | Err(_) => true,
            Ok(v) => return Err(invalid("SANDBOX_SUBORDINATE_IDS", v, "must be 0 or 1")),
        };
        let security = crate::hardening::Security {
            privileged: self.privileged,
            tmpfs_size: self.writable_size.unwrap_or_else(|| crate::hardening::default_tmpfs_size(self.limits.memory)),
            id_base,
            subordinate_ids,
            userns_fd: None,
            lower_shifted: false,
            volume_userns_fd: None,
        };
        // Each layer: the folder `dir` names now, held from here on by device and inode (as the
        // writable layer's, below), and its path as that folder's own.
        let mut above_ids = Vec::new();
        for dir in self.layers.iter_mut() {
            let shown = dir.display().to_string();
            let (_, real, id) = crate::sys::mount::identify(dir)
                .map_err(|e| invalid("layer folder", &shown, &format!("{e}: the host folder must exist")))?;
            *dir = real;
            above_ids.push(id);
        }
        if self.copy_rootfs && (self.upper_in.is_some() || !self.layers.is_empty()) {
            return Err(invalid("copy_rootfs", "true", "layers need overlayfs: leave copy_rootfs off"));
        }
        // The writable layer's folder: the one `dir` names now, held from here on by device and inode
        // (crate::plan: init starts only on that very folder), and its path as that folder's own.
        let upper_id = match &mut self.upper_in {
            Some(dir) => {
                let shown = dir.display().to_string();
                let (real, id) = crate::sys::mount::make_private(dir).map_err(|e| {
                    invalid("layer folder", &shown, &format!("{e}: the host folder must exist and be a folder"))
                })?;
                *dir = real;
                Some(id)
            }
            None => None,
        };
        let root = if lower == Path::new("/") {
            if self.copy_rootfs {
                return Err(invalid("rootfs", "/", "the host's root is never copied: leave copy_rootfs off"));
            }
            RootMode::Host { entries: host_entries(&self.layers)? }
        } else if self.copy_rootfs {
            RootMode::Copy { lower }
        } else {
            RootMode::Overlay { lower }
        };
        let mut rlimits = self.rlimits;
        if !self.privileged && self.limits.pids.is_none() && !rlimits.iter().any(|(r, _)| *r == crate::Rlimit::NProc) {
            rlimits.extend(crate::rlimit::default_processes().map(|n| (crate::Rlimit::NProc, n)));
        }
        Ok(Sandbox {
            base: Config {
                root,
                layers: crate::config::Layers { upper_in: self.upper_in, upper_id, above: self.layers, above_ids },
                hostname: self.hostname,
                network,
                env,
                current_dir,
                timeout: self.timeout,
                user_namespace,
                outer_uid: uid,
                outer_gid: gid,
                resolv_conf,
                controlling_terminal: false,
                pty: None,
                sys: self.sys,
                mounts,
                files: self.files,
                limits: self.limits,
                rlimits,
                security,
                network_in_background: None,
                job: Job::Session,
            },
            switch,
        })
    }
}

/// The top-level entries of the host's `/` that a sandbox on the host's root gets (see
/// [`RootMode::Host`]); `/proc`, `/sys`, `/dev`, `/tmp` and `/run` are the sandbox's own.
fn host_entries(layers: &[PathBuf]) -> Result<Vec<crate::config::HostEntry>, Error> {
    use crate::config::{HostEntry, HostEntryKind};
    let listing = std::fs::read_dir("/").map_err(crate::error::io("list", "/"))?;
    let mut entries = Vec::new();
    for e in listing.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_owned) else { continue };
        if matches!(name.as_str(), "proc" | "sys" | "dev" | "tmp" | "run") {
            continue;
        }
        let Ok(kind) = e.file_type() else { continue };
        let kind = if kind.is_symlink() {
            match std::fs::read_link(e.path()) {
                Ok(target) => HostEntryKind::Symlink { target },
                Err(_) => continue,
            }
        } else if kind.is_dir() {
            HostEntryKind::Dir { layers: layers.iter().map(|l| l.join(&name)).filter(|l| l.is_dir()).collect() }
        } else if kind.is_file() {
            HostEntryKind::File
        } else {
            continue;
        };
        entries.push(HostEntry { name, kind, as_is: false });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// `$SANDBOX_ID_BASE`, else the default first host id of the range root inside a sandbox is.
fn id_base_from_env() -> Result<u32, Error> {
    match std::env::var("SANDBOX_ID_BASE") {
        Ok(v) => v
            .parse()
            .map_err(|_| invalid("SANDBOX_ID_BASE", &v, "must be a number of at most 4294836224"))
            .and_then(|base| checked_id_base("SANDBOX_ID_BASE", base)),
        Err(_) => Ok(crate::hardening::DEFAULT_ID_BASE),
    }
}

/// The lowest id base: below it are the ids of the system's accounts and its login users (`UID_MAX`
/// of login.defs is 60000), and the first subordinate range `useradd` gives starts at 100000.
const MIN_ID_BASE: u32 = 100_000;

/// `base`, if root's range may start there (`what` names where it came from in the error): at or
/// above [`MIN_ID_BASE`], and ending below the namespaces' owners ([`namespace_owners`]).
fn checked_id_base(what: &'static str, base: u32) -> Result<u32, Error> {
    if !(MIN_ID_BASE..=crate::hardening::MAX_ID_BASE).contains(&base) {
        return Err(invalid(
            what,
            &base.to_string(),
            "the 65536 ids from it must be at or above 100000, above the system's and its users' own ids (an \
             outside review: 1000 made the sandbox's root a login user, whom that user could signal), and below \
             4294901760, where the sandboxes' namespace owners are (at most 4294836224); `cargo xtask doctor` \
             checks that no account or subordinate range holds them",
        ));
    }
    Ok(base)
}

/// The host uids that own root sandboxes' user namespaces, one per helper: no one's, and in no id
/// range (a process running as one holds every capability over its sandbox). For a tool that checks
/// the host's accounts, as `cargo xtask doctor` does.
pub fn namespace_owners() -> std::ops::RangeInclusive<u32> {
    crate::hardening::OWNERS_FIRST..=u32::MAX - 1
}

/// The owner a writable layer's folder kept on the host ([`Builder::writable_layer_in`]) is given
/// when run as root: the first host id of the sandboxes' range (`$SANDBOX_ID_BASE` or the default),
/// which no sandbox can give a file through a read-write volume. A tool resuming from such a folder
/// ([`Builder::layer`]) can check it, to tell one a sandbox made in its place; `None` rootless, where
/// the folder stays the caller's.
///
/// # Errors
/// [`Error::InvalidConfig`] for a `$SANDBOX_ID_BASE` that is not a number, or that a sandbox refuses.
pub fn kept_layer_owner() -> Result<Option<u32>, Error> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    id_base_from_env().map(Some)
}

/// A configured sandbox. Each [`command`](Sandbox::command) and [`run`](Sandbox::run) starts a
/// fresh one: new namespaces, a new private writable copy of the rootfs, torn down when it ends.
/// [`session`](Sandbox::session) keeps one alive for several commands.
///
/// # Examples
/// ```no_run
/// let sb = sandbox::Sandbox::builder().hostname("box").build()?;
/// let out = sb.command("/bin/sh").args(["-c", "hostname"]).output()?;
/// assert_eq!(out.stdout, b"box\n");
/// # Ok::<(), sandbox::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub(crate) base: Config,
    /// The switch this sandbox is a member of, and its address there.
    switch: Option<(crate::Net, std::net::Ipv4Addr)>,
}

impl Sandbox {
    /// A builder with every default.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The hostname inside.
    pub fn hostname(&self) -> &str {
        &self.base.hostname
    }

    /// The unpacked tree used as the read-only lower layer.
    pub fn rootfs_path(&self) -> &Path {
        match &self.base.root {
            RootMode::Overlay { lower } | RootMode::Copy { lower } => lower,
            RootMode::Host { .. } => Path::new("/"),
        }
    }

    /// The configuration for one start of `job`, with per-command environment and directory, and
    /// what must live as long as that start (its address on a switch).
    pub(crate) fn config(&self, job: Job, overrides: Option<Overrides<'_>>) -> Result<(Config, Option<Lease>), Error> {
        let mut config = self.base.clone();
        config.job = job;
        let mut lease = None;
        if let Some((net, address)) = &self.switch {
            let (member, l) = net.member(&config.hostname, *address)?;
            config.network = NetMode::Switch(member);
            lease = Some(l);
        }
        // A copy has no layers: a sandbox with layers never falls back to one.
        if let RootMode::Overlay { lower } = &config.root
            && config.layers == crate::config::Layers::default()
            && crate::spawn::handle::overlay_refused_here()
        {
            config.root = RootMode::Copy { lower: lower.clone() };
        }
        if let Some((env, dir)) = overrides {
            for (k, v) in env {
                config.env.retain(|(e, _)| e != k);
                if let Some(v) = v {
                    config.env.push((k.clone(), v.clone()));
                }
            }
            if let Some(dir) = dir {
                config.current_dir = dir.to_owned();
            }
        }
        Ok((config, lease))
    }
}

/// Per-command environment changes (`None` removes) and working directory.
pub(crate) type Overrides<'a> = (&'a [(String, Option<String>)], Option<&'a str>);
