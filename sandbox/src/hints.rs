//! What to do when the kernel refuses a setup step: read from the host's configuration.

use nix::errno::Errno;

use crate::report::StepKind;

fn sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

type Sysctl<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Why no sandbox can be made here, when this process runs in a sandbox of this crate's already
/// (its PID 1 is `sandbox-init`) that is not `privileged()` (its user namespace is not the host's):
/// sandboxes do not nest, and the setup failed with a misleading step (a uid map refused, "a
/// container runtime's seccomp profile"), or, in a closure's clean environment, tried to download
/// the rootfs (a new user's review). Looked at once per process.
pub(crate) fn nested() -> Option<&'static str> {
    static NESTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let nested = *NESTED.get_or_init(|| {
        let init = std::fs::read_to_string("/proc/1/comm").is_ok_and(|name| name.trim_end() == "sandbox-init");
        let host_ids = std::fs::read_to_string("/proc/self/uid_map")
            .is_ok_and(|map| map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]);
        init && !host_ids
    });
    nested.then_some(
        "sandboxes do not nest: this process runs inside one already (its PID 1 is sandbox-init, as in a \
         closure, a #[sandbox_test] body, or under sandbox-run); make sandboxes from outside it, or leave \
         #[sandbox_test] tests out of sandbox-run's wrapper filter (they are isolated already)",
    )
}

/// A hint for `errno` from a step of `kind`, if we know one.
pub(crate) fn for_step(kind: StepKind, errno: Errno, rootless: bool) -> Option<String> {
    match (kind, errno) {
        (StepKind::Namespaces, Errno::EPERM | Errno::ENOSPC | Errno::EINVAL | Errno::EACCES) if rootless => {
            Some(user_namespace_hint(errno, &sysctl))
        }
        (StepKind::Namespaces, Errno::EPERM) => Some(
            "creating namespaces was refused even as root: a container runtime's seccomp profile or a \
             missing CAP_SYS_ADMIN forbids unshare(2); run the container privileged, or with a profile that allows it"
                .to_owned(),
        ),
        (StepKind::Rlimit, Errno::EPERM | Errno::EINVAL) => Some(
            "a resource limit above the hard limit the sandbox inherits needs CAP_SYS_RESOURCE over the host, \
             which root inside a sandbox does not have: ask for at most the hard limit (`ulimit -H -a`), or raise \
             the hard limit of the process that runs the tests"
                .to_owned(),
        ),
        // The network namespace made in the background (crate::spawn::netns) fails on its own.
        (StepKind::Network, Errno::ENOSPC) => Some(
            "the limit of network namespaces is reached: sysctl user.max_net_namespaces (0 disables them), or \
             the per-user count; raise it with `sysctl -w user.max_net_namespaces=15000`, or end the sandboxes \
             and containers that hold one"
                .to_owned(),
        ),
        (StepKind::Etc | StepKind::File, Errno::EACCES | Errno::EPERM | Errno::EOVERFLOW) if rootless => Some(
            "the rootfs tree is not yours: its files belong to a user this sandbox's user namespace cannot map, \
                 so they cannot be copied up to be written; use a tree you unpacked yourself (fetch's cache keeps \
                 one per user), or Builder::copy_rootfs(true)"
                .to_owned(),
        ),
        (StepKind::Limits, _) => Some(
            "resource limits need a cgroup this process may create: as root on cgroup v1 or v2, or rootless on \
             cgroup v2 with a delegated subtree (systemd: run under `systemd-run --user --scope -p Delegate=yes`, \
             or a service with Delegate=yes); without limits, no cgroup is needed"
                .to_owned(),
        ),
        (StepKind::UserMap, _) => Some(
            "the kernel refused the user namespace's id map; an unprivileged user may map only its own uid and gid"
                .to_owned(),
        ),
        (StepKind::Overlay, Errno::EPERM | Errno::EINVAL | Errno::ENODEV | Errno::EOPNOTSUPP) => Some(
            "overlayfs was refused: it needs the overlay module, and inside a user namespace Linux >= 5.11; \
             run as root, or use Builder::copy_rootfs(true) for a private copy instead"
                .to_owned(),
        ),
        (StepKind::Proc, Errno::EPERM) => Some(
            "mounting a new /proc was refused: inside a container whose /proc is masked (partly covered by \
             other mounts) the kernel forbids it; run the outer container with an unmasked /proc \
             (e.g. docker --security-opt systempaths=unconfined, or --privileged)"
                .to_owned(),
        ),
        (StepKind::Volume, Errno::EOPNOTSUPP) if !rootless => Some(
            "as root, a volume is bound through the sandbox's id mapping (root inside is not the host's root), \
             and this volume's file system cannot be id-mapped (9p, NFS, FUSE, or overlayfs/tmpfs on an older \
             kernel): put the folder on ext4, xfs or btrfs (tmpfs from Linux 6.3), mount it read-only \
             (Mount::read_only), or build the sandbox with privileged()"
                .to_owned(),
        ),
        (StepKind::CurrentDir, Errno::ENOENT | Errno::ENOTDIR) => {
            Some("the working directory does not exist inside the rootfs; create it first or pick another".to_owned())
        }
        (StepKind::Security, _) => Some(
            "this kernel, or the container this runs in, refuses seccomp filters; Builder::privileged() runs \
             without one (and without the rest of the hardening)"
                .to_owned(),
        ),
        (StepKind::CopyRoot | StepKind::Etc | StepKind::File | StepKind::Hostname, Errno::ENOSPC) => Some(
            "a file system of the sandbox is full before the program started: give the writable layer more \
             room with Builder::writable_size (`sandbox-run --writable-size`, `#[sandbox_test(writable_size = \
             \"…\")]`), or a tmpfs volume with a size of its own a larger Mount::size"
                .to_owned(),
        ),
        (StepKind::Staging | StepKind::Pivot, Errno::EINVAL) => Some(
            "pivot_root(2) was refused; this happens when the process runs from an initramfs root (rootfs), \
             where pivot_root is impossible: run from a real root filesystem"
                .to_owned(),
        ),
        _ => None,
    }
}

fn user_namespace_hint(errno: Errno, sysctl: Sysctl<'_>) -> String {
    if sysctl("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return "unprivileged user namespaces are disabled: sysctl kernel.unprivileged_userns_clone = 0; \
                enable them with `sysctl -w kernel.unprivileged_userns_clone=1`, or run as root"
            .to_owned();
    }
    if sysctl("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return "user namespaces are disabled: sysctl user.max_user_namespaces = 0; raise it with \
                `sysctl -w user.max_user_namespaces=15000`, or run as root"
            .to_owned();
    }
    if sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return "AppArmor restricts unprivileged user namespaces: sysctl kernel.apparmor_restrict_unprivileged_userns = 1 \
                (Ubuntu 23.10 and later); set it to 0, or load an AppArmor profile that allows `userns` for this binary, or run as root"
            .to_owned();
    }
    if errno == Errno::ENOSPC {
        return "the limit of user namespaces is reached (user.max_user_namespaces, or the per-user count); \
                raise it or end other sandboxes"
            .to_owned();
    }
    "an unprivileged user namespace was refused; inside a container, its seccomp profile usually forbids \
     unshare(CLONE_NEWUSER): allow it, or run as root"
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint_with(values: &[(&str, &str)], errno: Errno) -> String {
        let lookup = |path: &str| values.iter().find(|(p, _)| path.ends_with(p)).map(|(_, v)| (*v).to_owned());
        user_namespace_hint(errno, &lookup)
    }

    #[test]
    fn names_the_sysctl_that_blocks_user_namespaces() {
        assert!(
            hint_with(&[("unprivileged_userns_clone", "0")], Errno::EPERM)
                .contains("kernel.unprivileged_userns_clone=1")
        );
        assert!(hint_with(&[("max_user_namespaces", "0")], Errno::ENOSPC).contains("user.max_user_namespaces"));
        let ubuntu = hint_with(&[("apparmor_restrict_unprivileged_userns", "1")], Errno::EACCES);
        assert!(ubuntu.contains("apparmor_restrict_unprivileged_userns") && ubuntu.contains("Ubuntu"), "{ubuntu}");
        assert!(hint_with(&[("max_user_namespaces", "15000")], Errno::ENOSPC).contains("limit of user namespaces"));
        assert!(hint_with(&[], Errno::EPERM).contains("seccomp"));
    }

    #[test]
    fn other_steps() {
        assert!(for_step(StepKind::Proc, Errno::EPERM, true).is_some_and(|h| h.contains("masked")));
        assert!(for_step(StepKind::Overlay, Errno::EINVAL, true).is_some_and(|h| h.contains("copy_rootfs")));
        assert!(for_step(StepKind::Etc, Errno::EACCES, true).is_some_and(|h| h.contains("not yours")));
        assert!(for_step(StepKind::File, Errno::ENOSPC, false).is_some_and(|h| h.contains("writable_size")));
        assert!(for_step(StepKind::Etc, Errno::EACCES, false).is_none());
        assert!(for_step(StepKind::Hostname, Errno::EPERM, true).is_none());
        let rlimit = for_step(StepKind::Rlimit, Errno::EPERM, true);
        assert!(rlimit.is_some_and(|h| h.contains("hard limit") && !h.contains("cgroup")));
        let net = for_step(StepKind::Network, Errno::ENOSPC, false);
        assert!(net.is_some_and(|h| h.contains("user.max_net_namespaces")));
    }
}
