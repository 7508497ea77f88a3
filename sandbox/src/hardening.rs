//! What the default sandbox hides or freezes of the kernel's interfaces, as data: the paths of `/proc`
//! and `/sys` that crun (and podman) mask by default, and the `/proc` trees Docker makes read-only.
//!
//! A masked file gets `/dev/null` bound over it, a masked directory an empty read-only tmpfs; a
//! read-only path is bound onto itself read-only. Paths that do not exist on the running kernel are
//! skipped. Inside a user namespace these mounts are locked (mount_namespaces(7)): the program cannot
//! unmount them to see what is underneath.

// Wired into the setup plan with the rest of the hardening (issue 9, phase 2).
#![cfg_attr(not(test), allow(dead_code))]

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
