//! What the default sandbox hides or freezes of the kernel's interfaces, as data: the paths of `/proc`
//! and `/sys` that crun (and podman) mask by default, and the `/proc` trees Docker makes read-only.
//!
//! A masked file gets `/dev/null` bound over it, a masked directory an empty read-only tmpfs; a
//! read-only path is bound onto itself read-only. Paths that do not exist on the running kernel are
//! skipped. Inside a user namespace these mounts are locked (mount_namespaces(7)): the program cannot
//! unmount them to see what is underneath.

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

/// Masked: kernel memory, the host's keys, timers and scheduler internals that leak other tenants'
/// activity, firmware tables, and the magic SysRq trigger.
pub(crate) const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/sysrq-trigger",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/dev/block",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
    "/sys/fs/selinux",
];

/// Read-only: global sysctls (`kernel.core_pattern` runs a program on the host as root), bus and
/// interrupt settings of the host's hardware, and filesystem-wide tunables.
pub(crate) const READ_ONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"];

/// How many pseudo-terminals one sandbox may hold at once (devpts(5) `max=`, as LXC's `pty.max`):
/// every devpts instance but the host's own shares one pool (`kernel.pty.max` - `kernel.pty.reserve`,
/// 3072 by default), which a sandbox must not be able to empty for the others.
pub(crate) const PTY_MAX: u32 = 256;

/// The size of `/dev` (device nodes and POSIX shared memory in `/dev/shm`), as Docker's `/dev/shm`.
pub(crate) const DEV_SIZE: u64 = 64 << 20;

/// How many ids root's range has inside a sandbox run as root (0..65536, as `--userns=auto`).
pub(crate) const ID_COUNT: u32 = 65536;

/// The first of the host uids that own root sandboxes' user namespaces (spawn::userns::owned_by): the
/// top block, 0xFFFF0000 up to 0xFFFFFFFE, above every range a base may have (a base whose range
/// would reach it is refused), so that no sandbox's root, and no file of any sandbox's, is an owner,
/// whatever bases run side by side (the twentieth outside review: with the owner at base + 65536, a
/// second job with that base had root inside as the first one's owner, and a setuid file of its
/// shifted rootfs copy gave any host user every capability over the first job's sandboxes). The last
/// uid, u32::MAX, means "unchanged" to setresuid(2) and is left out.
pub(crate) const OWNERS_FIRST: u32 = 0xFFFF_0000;

/// How many owners there are: up to the last uid but one (crate::namespace_owners).
const OWNERS: u32 = u32::MAX - OWNERS_FIRST;

/// The largest id base: its range ends just below [`OWNERS_FIRST`].
pub(crate) const MAX_ID_BASE: u32 = OWNERS_FIRST - ID_COUNT;

/// The owner of the user namespace the helper `helper_pid` makes: one of the block, chosen by the
/// pid, so that sandboxes running at once have owners of their own (the kernel's per-user quotas, at
/// the host's level, are the owner's: one shared owner let any root sandbox take all of them from
/// every other, the twenty-first outside review). Two helpers whose pids differ by a multiple of
/// 65535 share one.
pub(crate) fn namespace_owner(helper_pid: u32) -> u32 {
    OWNERS_FIRST + helper_pid % OWNERS
}

/// The first host id of that range unless `$SANDBOX_ID_BASE` or [`crate::Builder::id_base`] says
/// otherwise: above systemd's container range (up to 0x6FFFFFFF), below 2^31.
pub(crate) const DEFAULT_ID_BASE: u32 = 2_000_000_000;

/// The security settings of one sandbox start, as the helper, init and the program's process need them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Security {
    /// [`crate::Builder::privileged`]: the program keeps the caller's powers (as root: the host's root).
    pub privileged: bool,
    /// The size of the tmpfs holding the writable layer, and of `/tmp`, in bytes.
    pub tmpfs_size: u64,
    /// As root: the first host id of the range root inside is mapped to.
    pub id_base: u32,
    /// Rootless: whether the caller's subordinate ids may be mapped (`$SANDBOX_SUBORDINATE_IDS`;
    /// crate::spawn::subids).
    #[serde(default = "yes")]
    pub subordinate_ids: bool,
    /// The program's user namespace, once the helper has made it: init enters it after setup.
    #[serde(default)]
    pub userns_fd: Option<i32>,
    /// As root: the rootfs is a copy whose owners are shifted into the range on disk (the helper's
    /// fallback where the kernel cannot id-map the tree's file system; crate::spawn::idmap).
    #[serde(default)]
    pub lower_shifted: bool,
    /// As root with a read-write volume: the user namespace its id-mapped bind uses, where only root
    /// is mapped (the volume's files are root's, or nobody's), made by the helper.
    #[serde(default)]
    pub volume_userns_fd: Option<i32>,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            privileged: false,
            tmpfs_size: default_tmpfs_size(None),
            id_base: DEFAULT_ID_BASE,
            subordinate_ids: true,
            userns_fd: None,
            lower_shifted: false,
            volume_userns_fd: None,
        }
    }
}

fn yes() -> bool {
    true
}

impl Security {
    /// Whether the program's filter refuses setuid and setgid bits and extended attributes
    /// (crate::seccomp): as root and not privileged, with a read-write volume, where root inside writes
    /// as the host's root and such a file would be setuid-root on the host. Decided from the
    /// sandbox's volumes, so that a session's commands (which join, and make no namespace of their
    /// own) get the same filter as its init's program.
    pub(crate) fn no_setid(&self, outer_uid: u32, mounts: &[crate::volume::Mount]) -> bool {
        outer_uid == 0
            && !self.privileged
            && mounts
                .iter()
                .any(|m| !m.read_only && !m.as_is && matches!(m.kind, crate::volume::MountKind::Bind { .. }))
    }

    /// As root and not privileged: the first shifted id, for the owners of what setup creates and of
    /// the tmpfs mounts, and the user namespace that id-mapped mounts use.
    pub(crate) fn shifted(&self, outer_uid: u32) -> Option<(u32, i32)> {
        match self.userns_fd {
            Some(fd) if outer_uid == 0 && !self.privileged => Some((self.id_base, fd)),
            _ => None,
        }
    }
}

/// A host id of the tree as the range shows it: `base + id`, or the range's `nobody` for an id the
/// range does not hold.
pub(crate) fn shift_id(id: u32, base: u32) -> u32 {
    if id < ID_COUNT { base + id } else { base + 65534 }
}

/// The size of the writable layer and of `/tmp`: half the memory limit when there is one (the pages of
/// a tmpfs count against it: a writer must get ENOSPC before the OOM killer comes), else a quarter of
/// the machine's RAM.
pub(crate) fn default_tmpfs_size(memory_limit: Option<u64>) -> u64 {
    match memory_limit {
        Some(limit) => (limit / 2).clamp(1 << 20, sandbox_validate::MAX_TMPFS_SIZE),
        None => {
            let ram = nix::sys::sysinfo::sysinfo().map(|i| i.ram_total()).unwrap_or(4 << 30);
            (ram / 4).clamp(64 << 20, sandbox_validate::MAX_TMPFS_SIZE)
        }
    }
}

/// What the program's process does right before `exec` (or before a closure runs), in this order: a
/// new session keyring (keyrings(7): the caller's would be readable otherwise), every descriptor
/// above stderr close-on-exec (only stdio reaches the program), then no_new_privs and the seccomp
/// filter, last, because it refuses keyctl. Allocates nothing: the filter was compiled before fork.
/// Where the default filter was inherited (crate::seccomp::installed: the filtered fork server, which
/// joined a keyring of its own before installing it), no keyring is joined (keyctl is refused), and
/// `filter` is what goes over it, if anything.
///
/// # Errors
/// The step that failed and its errno; only the filter's installation can fail (the first two are
/// best effort: a kernel without keyrings, or without close_range and a huge fd table, is no reason to
/// refuse to run).
pub(crate) fn harden_program(
    security: &Security,
    filter: Option<&crate::seccomp::Filter>,
    keep_open: &[std::os::fd::RawFd],
) -> Result<(), Errno> {
    if !crate::seccomp::installed() {
        let _ = crate::sys::hardening::join_new_session_keyring();
    }
    crate::sys::hardening::cloexec_above_stdio(keep_open);
    if security.privileged {
        return Ok(());
    }
    match filter {
        Some(f) => f.install(),
        None => nix::sys::prctl::set_no_new_privs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_absolute_sorted_and_disjoint() {
        for list in [MASKED_PATHS, READ_ONLY_PATHS] {
            assert!(list.iter().all(|p| p.starts_with("/proc/") || p.starts_with("/sys/")), "{list:?}");
            assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates: {list:?}");
        }
        let under = |m: &str, r: &str| std::path::Path::new(m).starts_with(r);
        assert!(MASKED_PATHS.iter().all(|m| !READ_ONLY_PATHS.iter().any(|r| under(m, r))));
        assert!(MASKED_PATHS.contains(&"/proc/kcore") && READ_ONLY_PATHS.contains(&"/proc/sys"));
    }
}
