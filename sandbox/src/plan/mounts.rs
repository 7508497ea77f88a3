//! Mounts in the new root: the kernel's file systems (`/proc`, a minimal `/dev`, `/tmp`, `/sys`) and
//! the user's volumes, one function per kind.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::config::Config;
use crate::volume::MountKind;

use super::{Op, StepKind, Steps};

/// The character devices of every sandbox's `/dev`, with their numbers (devices.txt of the kernel).
const DEVICES: [(&str, (u64, u64)); 6] =
    [("null", (1, 3)), ("zero", (1, 5)), ("full", (1, 7)), ("random", (1, 8)), ("urandom", (1, 9)), ("tty", (5, 0))];

/// As root with a shifted id range, tmpfs options that give the mount's root to root inside.
pub(super) fn owned(config: &Config, data: String) -> String {
    match config.security.shifted(config.outer_uid) {
        Some((base, _)) => format!("{data},uid={base},gid={base}"),
        None => data,
    }
}

/// `/proc`, `/dev` and `/tmp`, as every sandbox has them; every tmpfs with a size (issue 9).
pub(super) fn standard(s: &mut Steps, config: &Config) {
    let p = PathBuf::from;
    // proc(5) for the new pid namespace: ps and /proc/self see only the sandbox.
    s.add(StepKind::Proc, "create /proc", Op::Mkdir { path: p("/newroot/proc"), mode: 0o555 });
    s.add(
        StepKind::Proc,
        "mount /proc for the new pid namespace",
        Op::fs("proc", p("/newroot/proc"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, None),
    );
    // A minimal /dev, as bubblewrap's --dev: the harmless character devices. As root, not privileged,
    // they are made in /dev's tmpfs (init holds CAP_MKNOD in the host's user namespace until it enters
    // the program's, which has none: the program makes no device): no mounts of their own, which
    // entering the program's user namespace copies and both namespaces' ends take down again (0.1 ms
    // a sandbox here). Rootless (no CAP_MKNOD) and privileged, the host's are bound, one mount each.
    let made = config.outer_uid == 0 && !config.security.privileged;
    s.add(StepKind::Dev, "create /dev", Op::Mkdir { path: p("/newroot/dev"), mode: 0o755 });
    // nodev where the devices are bound: those are mounts of their own; nothing made in /dev opens a
    // device. Where they are made, only init made any (the program has no CAP_MKNOD).
    let nodev = if made { MsFlags::empty() } else { MsFlags::MS_NODEV };
    s.add(
        StepKind::Dev,
        "mount a tmpfs on /dev",
        Op::fs(
            "tmpfs",
            p("/newroot/dev"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | nodev,
            Some(&owned(config, format!("mode=0755,size={}", crate::hardening::DEV_SIZE))),
        ),
    );
    let host = |dev: &str| format!("/oldroot/dev/{dev}");
    if made {
        let nodes = DEVICES.iter().map(|&(dev, number)| (dev, number, host(dev))).collect();
        s.add(StepKind::Dev, "make the device nodes (mknod)", Op::CharDevices { dir: p("/newroot/dev"), nodes });
    } else {
        for (dev, _) in DEVICES {
            let target = Path::new("/newroot/dev").join(dev);
            s.add(StepKind::Dev, "create a device mount point", Op::Touch { path: target.clone() });
            s.add(StepKind::Dev, "bind-mount a host device", Op::bind(host(dev), target, MsFlags::MS_BIND));
        }
    }
    s.add(StepKind::Dev, "create /dev/pts", Op::Mkdir { path: p("/newroot/dev/pts"), mode: 0o755 });
    // devpts(5) newinstance: the sandbox's ptys are its own.
    s.add(
        StepKind::Dev,
        "mount a private devpts instance",
        Op::fs(
            "devpts",
            p("/newroot/dev/pts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some(&format!("newinstance,ptmxmode=0666,mode=0620,max={}", crate::hardening::PTY_MAX)),
        ),
    );
    s.add(StepKind::Dev, "link /dev/ptmx", Op::Symlink { target: p("pts/ptmx"), link: p("/newroot/dev/ptmx") });
    // /dev is a tmpfs already: /dev/shm is a sticky, world-writable directory in it.
    s.add(StepKind::Dev, "create /dev/shm", Op::Mkdir { path: p("/newroot/dev/shm"), mode: 0o1777 });
    s.add(StepKind::Dev, "make /dev/shm world-writable", Op::Chmod { path: p("/newroot/dev/shm"), mode: 0o1777 });
    for (target, link) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        s.add(
            StepKind::Dev,
            "link a /dev/fd entry",
            Op::Symlink { target: p(target), link: Path::new("/newroot/dev").join(link) },
        );
    }
    s.add(StepKind::Tmp, "create /tmp", Op::Mkdir { path: p("/newroot/tmp"), mode: 0o1777 });
    s.add(
        StepKind::Tmp,
        "mount a tmpfs on /tmp",
        Op::fs(
            "tmpfs",
            p("/newroot/tmp"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(&owned(config, format!("mode=1777,size={}", config.security.tmpfs_size))),
        ),
    );
}

/// crun's masked paths under `prefix` (`/proc/` or `/sys/`), and Docker's read-only ones
/// (crate::hardening); `/dev/null` exists by then.
pub(super) fn mask(s: &mut Steps, prefix: &str) {
    let kind = if prefix == "/sys/" { StepKind::Sys } else { StepKind::Proc };
    let in_new_root = |path: &str| Path::new("/newroot").join(path.trim_start_matches('/'));
    for path in crate::hardening::MASKED_PATHS.iter().filter(|m| m.starts_with(prefix)) {
        s.add(kind, "mask a kernel path", Op::Mask { path: in_new_root(path) });
    }
    for path in crate::hardening::READ_ONLY_PATHS.iter().filter(|m| m.starts_with(prefix)) {
        s.add(kind, "make a kernel path read-only", Op::ReadOnly { path: in_new_root(path) });
    }
}

/// The user's volumes, in order.
pub(super) fn volumes(s: &mut Steps, config: &Config) {
    let shifted = config.security.shifted(config.outer_uid);
    for m in &config.mounts {
        let target = Path::new("/newroot").join(m.target.trim_start_matches('/'));
        match &m.kind {
            MountKind::Bind { source, is_dir, id } => {
                let from = super::rootfs::on_host(source);
                if *is_dir {
                    s.add(StepKind::Volume, "create a volume's mount point", Op::MkdirAll { path: target.clone() });
                } else {
                    if let Some(parent) = target.parent() {
                        s.add(
                            StepKind::Volume,
                            "create a volume's parent directory",
                            Op::MkdirAll { path: parent.to_owned() },
                        );
                    }
                    s.add(StepKind::Volume, "create a volume's mount point", Op::Touch { path: target.clone() });
                }
                // A written volume only maps root (crate::spawn::helper::volume_namespace).
                let written = config.security.volume_userns_fd.filter(|_| !m.read_only);
                match shifted.filter(|_| !m.as_is).map(|(_, userns)| written.unwrap_or(userns)) {
                    // What the test writes there is the caller's on the host, not a shifted id's.
                    Some(userns) => s.add(
                        StepKind::Volume,
                        "bind-mount a volume id-mapped (mount_setattr MOUNT_ATTR_IDMAP)",
                        Op::IdmappedBind {
                            source: from,
                            target: target.clone(),
                            userns,
                            read_only: m.read_only,
                            recursive: true,
                            id: *id,
                        },
                    ),
                    None => s.add(
                        StepKind::Volume,
                        "bind-mount a volume",
                        Op::BindNoLinks { source: from, target: target.clone(), id: *id },
                    ),
                }
                s.add(
                    StepKind::Volume,
                    "make a volume nosuid, nodev (and read-only)",
                    Op::LockBind { target, read_only: m.read_only },
                );
            }
            MountKind::Tmpfs => {
                // Without a size of its own, the same as /tmp: never unbounded (issue 9).
                let size = m.size.unwrap_or(config.security.tmpfs_size);
                let data = owned(config, format!("mode=1777,size={size}"));
                let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
                if m.read_only {
                    flags |= MsFlags::MS_RDONLY;
                }
                s.add(StepKind::Volume, "create a tmpfs mount point", Op::MkdirAll { path: target.clone() });
                s.add(StepKind::Volume, "mount a tmpfs volume", Op::fs("tmpfs", target, flags, Some(&data)));
            }
        }
    }
}

/// A read-only `/sys`, best effort.
pub(super) fn sys(s: &mut Steps) {
    let p = PathBuf::from;
    // sysfs may only be mounted by the owner of the network namespace; read-only, best effort.
    s.add(StepKind::Sys, "create /sys", Op::Mkdir { path: p("/newroot/sys"), mode: 0o555 });
    s.add(
        StepKind::Sys,
        "mount a read-only /sys",
        Op::fs(
            "sysfs",
            p("/newroot/sys"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None,
        ),
    );
}
