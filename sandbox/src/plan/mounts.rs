//! Mounts in the new root: the kernel's file systems (`/proc`, a minimal `/dev`, `/tmp`, `/sys`) and
//! the user's volumes, one function per kind.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::volume::{Mount, MountKind};

use super::{Op, StepKind, Steps};

const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// `/proc`, `/dev` and `/tmp`, as every sandbox has them.
pub(super) fn standard(s: &mut Steps) {
    let p = PathBuf::from;
    // proc(5) for the new pid namespace: ps and /proc/self see only the sandbox.
    s.add(StepKind::Proc, "create /proc", Op::Mkdir { path: p("/newroot/proc"), mode: 0o555 });
    s.add(
        StepKind::Proc,
        "mount /proc for the new pid namespace",
        Op::fs("proc", p("/newroot/proc"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, None),
    );
    // A minimal /dev, as bubblewrap's --dev: the harmless character devices, bound from the host.
    s.add(StepKind::Dev, "create /dev", Op::Mkdir { path: p("/newroot/dev"), mode: 0o755 });
    s.add(
        StepKind::Dev,
        "mount a tmpfs on /dev",
        Op::fs("tmpfs", p("/newroot/dev"), MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, Some("mode=0755")),
    );
    for dev in DEVICES {
        let target = Path::new("/newroot/dev").join(dev);
        s.add(StepKind::Dev, "create a device mount point", Op::Touch { path: target.clone() });
        s.add(
            StepKind::Dev,
            "bind-mount a host device",
            Op::bind(format!("/oldroot/dev/{dev}"), target, MsFlags::MS_BIND),
        );
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
            Some("newinstance,ptmxmode=0666,mode=0620"),
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
        Op::fs("tmpfs", p("/newroot/tmp"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777")),
    );
}

/// The user's volumes, in order.
pub(super) fn volumes(s: &mut Steps, mounts: &[Mount]) {
    for m in mounts {
        let target = Path::new("/newroot").join(m.target.trim_start_matches('/'));
        match &m.kind {
            MountKind::Bind { source, is_dir } => {
                let from = Path::new("/oldroot").join(source.strip_prefix("/").unwrap_or(source));
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
                s.add(
                    StepKind::Volume,
                    "bind-mount a volume",
                    Op::bind(from.display().to_string(), target.clone(), MsFlags::MS_BIND | MsFlags::MS_REC),
                );
                s.add(
                    StepKind::Volume,
                    "make a volume nosuid, nodev (and read-only)",
                    Op::LockBind { target, read_only: m.read_only },
                );
            }
            MountKind::Tmpfs => {
                let mut data = "mode=1777".to_owned();
                if let Some(size) = m.size {
                    data.push_str(&format!(",size={size}"));
                }
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
