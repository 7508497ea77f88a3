//! What runs inside the guest: `/init` in the initramfs (fixed) and the run's script (generated).

use std::fmt::Write as _;
use std::path::Path;

/// The controllers the guest enables for its cgroups, as a systemd host does.
pub const CONTROLLERS: &str = "+memory +pids +cpu";

/// PID 1 of the initramfs. It loads the modules (numbered in dependency order), mounts the host's `/`
/// read-only over virtio-9p with a tmpfs overlay on top (so nothing the guest writes reaches the
/// host), mounts a fresh `/proc`, `/sys`, cgroup2, `/dev` and `/run` in it and the scratch disk (ext4)
/// on `/tmp`, names the virtio ports as udev would, and hands over to the run's script (`/run/vm/run.sh`, from the `ctl` share).
/// With `vm.probe` on the kernel command line it only says so and powers off (the KVM probe).
pub const INIT: &str = r#"#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "vm init: failed to $*" >&2; echo o > /proc/sysrq-trigger; sleep 10; }
mount -t proc proc /proc && mount -t sysfs sysfs /sys && mount -t devtmpfs devtmpfs /dev || fail "mount proc, sys, dev"
echo 1 > /proc/sys/kernel/sysrq
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m || fail "load module $m"; done
case " $(cat /proc/cmdline) " in *" vm.probe "*) echo "vm: probe ok"; echo o > /proc/sysrq-trigger; sleep 10;; esac
p9=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o $p9,ro,cache=loose host /lower || fail "mount the host's / (9p tag host)"
mount -t tmpfs -o mode=0755 upper /upper && mkdir /upper/data /upper/work || fail "mount the overlay's tmpfs"
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot || fail "mount the overlay"
r=/newroot
mount -t proc proc $r/proc || fail "mount /proc"
mount -t sysfs sysfs $r/sys || fail "mount /sys"
mount -t cgroup2 -o nsdelegate cgroup2 $r/sys/fs/cgroup || fail "mount cgroup2"
mount -t tmpfs -o mode=0755 run $r/run || fail "mount /run"
mount -t ext4 /dev/vda $r/tmp && chmod 1777 $r/tmp || fail "mount the scratch disk (/dev/vda) on /tmp"
mkdir -p $r/run/vm $r/run/vm-bin && cp /bin/busybox $r/run/vm-bin/busybox || fail "copy busybox"
mount -t 9p -o $p9 ctl $r/run/vm || fail "mount the control share (9p tag ctl)"
mount --move /dev $r/dev || fail "move /dev"
mkdir -p $r/dev/pts $r/dev/shm $r/dev/virtio-ports
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts $r/dev/pts && mount -t tmpfs -o mode=1777 shm $r/dev/shm || fail "mount devpts, shm"
for p in /sys/class/virtio-ports/*; do ln -s ../${p##*/} $r/dev/virtio-ports/$(cat $p/name); done
umount /sys /proc
exec switch_root $r /run/vm-bin/busybox sh /run/vm/run.sh
"#;

/// Who runs the program, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum As {
    Root,
    /// An ordinary user; `delegate`: with a delegated cgroup v2 subtree, as systemd's `Delegate=yes`
    /// gives `user@UID.service`.
    User {
        uid: u32,
        gid: u32,
        delegate: bool,
    },
}

/// What the guest runs.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    pub who: As,
    pub cwd: &'a Path,
    pub env: Vec<(String, String)>,
    pub argv: &'a [String],
    /// A host directory shared writable at the same path (9p tag `out`).
    pub out: Option<&'a Path>,
    /// After this many seconds, print to the console what the guest is doing (processes, sandbox
    /// cgroups): what a run killed at its deadline leaves to diagnose.
    pub report_after: Option<u64>,
}

/// `s` as one shell word.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The run's script: PID 1 of the new root. It prepares the cgroups (and the delegation), puts the
/// program in its cgroup, drops to the user, runs the program with the given environment (nothing
/// else) and working directory, its stdout and stderr on the two virtio ports, records its exit
/// status on the control share and powers off. A setup failure is recorded as `error`.
pub fn script(run: &Run<'_>) -> String {
    let mut s = String::from("# Written by `cargo xtask vm`: the guest's PID 1 after switch_root.\n");
    s += "B=/run/vm-bin/busybox\n";
    s += "echo > /run/vm/started\n";
    s += "end() { $B sync; echo o > /proc/sysrq-trigger; $B sleep 10; }\n";
    s += "fail() { echo \"failed to $*\" > /run/vm/error; end; }\n";
    s += "$B hostname vm\n";
    s += "$B ip link set lo up || fail 'bring lo up'\n";
    let _ = writeln!(
        s,
        "echo '{CONTROLLERS}' > /sys/fs/cgroup/cgroup.subtree_control || fail 'enable controllers at the root'"
    );
    if let Some(out) = run.out {
        let o = quote(&out.to_string_lossy());
        let _ = writeln!(
            s,
            "$B mkdir -p {o} && $B mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out {o} || fail 'mount --out'"
        );
    }
    // The cgroup the program starts in: systemd's layout, where the library looks for it.
    let cgroup = match run.who {
        As::Root => "/sys/fs/cgroup".to_owned(),
        As::User { uid, gid, delegate } => {
            let user = format!("/sys/fs/cgroup/user.slice/user-{uid}.slice");
            if delegate {
                // Delegate=yes (cgroups(7), "Cgroups v2 delegation"): the delegatee owns the
                // subtree's directory and its cgroup.procs, cgroup.threads and
                // cgroup.subtree_control, not its limits; the controllers are enabled on the way
                // down and in the subtree itself, as systemd does for user@.service.
                let d = format!("{user}/user@{uid}.service");
                let _ = writeln!(s, "$B mkdir -p {d}/app.slice/vm.scope || fail 'create {d}'");
                for c in ["/sys/fs/cgroup/user.slice".to_owned(), user.clone(), d.clone()] {
                    let _ = writeln!(
                        s,
                        "echo '{CONTROLLERS}' > {c}/cgroup.subtree_control || fail 'enable controllers in {c}'"
                    );
                }
                let _ = writeln!(
                    s,
                    "$B chown {uid}:{gid} {d} {d}/cgroup.procs {d}/cgroup.threads {d}/cgroup.subtree_control \
                     && $B chown -R {uid}:{gid} {d}/app.slice || fail 'delegate {d}'"
                );
                format!("{d}/app.slice/vm.scope")
            } else {
                // A login session's scope: root's, nothing delegated.
                let _ = writeln!(s, "$B mkdir -p {user}/session-1.scope || fail 'create {user}'");
                format!("{user}/session-1.scope")
            }
        }
    };
    if let Some(secs) = run.report_after {
        s +=
            &format!("{{ $B sleep {secs}; echo \"vm: still running after {secs} s; processes and sandbox cgroups:\"; ");
        s += "$B ps -o pid,ppid,stat,rss,args | $B grep -v ' \\[[^]]*\\]$'; for d in $($B find /sys/fs/cgroup -type d -name 'sandbox-*'); do ";
        s += "echo \"$d: procs $($B tr '\\n' ' ' < $d/cgroup.procs)\"; ";
        s += "for f in memory.max memory.current memory.peak memory.events pids.current pids.max; do ";
        s += "[ -f $d/$f ] && echo \"  $f: $($B tr '\\n' ' ' < $d/$f)\"; done; done; } >/dev/console 2>&1 &\n";
    }
    let cwd = quote(&run.cwd.to_string_lossy());
    let _ = writeln!(s, "cd {cwd} || fail \"enter the working directory \"{cwd}");
    let mut cmd = String::from("$B sh -c 'echo $$ > \"$1\" && shift && exec \"$@\"' cgroup ");
    cmd += &quote(&format!("{cgroup}/cgroup.procs"));
    if let As::User { uid, gid, .. } = run.who {
        // util-linux's setpriv, from the host (busybox's cannot change ids).
        let _ = write!(cmd, " /usr/bin/setpriv --reuid={uid} --regid={gid} --init-groups --");
    }
    cmd += " $B env -i";
    for (k, v) in &run.env {
        cmd.push(' ');
        cmd += &quote(&format!("{k}={v}"));
    }
    for a in run.argv {
        cmd.push(' ');
        cmd += &quote(a);
    }
    cmd += " </dev/null >/dev/virtio-ports/stdout 2>/dev/virtio-ports/stderr\n";
    s += &cmd;
    s += "echo $? > /run/vm/status\nend\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn a_delegated_user_owns_its_subtree_but_not_its_limits() {
        let argv = ["cat".to_owned(), "/proc/self/cgroup".to_owned()];
        let run = Run {
            who: As::User { uid: 1001, gid: 1002, delegate: true },
            cwd: Path::new("/work/it's"),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            argv: &argv,
            out: Some(Path::new("/tmp/out")),
            report_after: Some(45),
        };
        let s = script(&run);
        let d = "/sys/fs/cgroup/user.slice/user-1001.slice/user@1001.service";
        assert!(s.contains(&format!(
            "$B chown 1001:1002 {d} {d}/cgroup.procs {d}/cgroup.threads {d}/cgroup.subtree_control"
        )));
        assert!(s.contains(&format!("echo '+memory +pids +cpu' > {d}/cgroup.subtree_control")));
        assert!(
            s.contains(&format!("'{d}/app.slice/vm.scope/cgroup.procs' /usr/bin/setpriv --reuid=1001 --regid=1002"))
        );
        assert!(s.contains(r"cd '/work/it'\''s'"));
        assert!(s.contains("env -i 'PATH=/usr/bin:/bin' 'cat' '/proc/self/cgroup' </dev/null"));
        assert!(s.contains("mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out '/tmp/out'"));
        assert!(!s.contains(&format!("{d}/memory.max")), "the delegatee gets no limits of its own root");
        assert!(s.contains("$B sleep 45;") && s.contains("-name 'sandbox-*'"), "a report before the deadline");
    }

    #[test]
    fn root_and_an_undelegated_user_get_no_owned_cgroup() {
        let argv = ["true".to_owned()];
        let root = script(&Run {
            who: As::Root,
            cwd: Path::new("/"),
            env: vec![],
            argv: &argv,
            out: None,
            report_after: None,
        });
        assert!(!root.contains("setpriv") && !root.contains("chown") && !root.contains(" out "));
        assert!(root.contains("'/sys/fs/cgroup/cgroup.procs'"));
        let user = As::User { uid: 7, gid: 7, delegate: false };
        let s =
            script(&Run { who: user, cwd: Path::new("/"), env: vec![], argv: &argv, out: None, report_after: None });
        assert!(s.contains("user-7.slice/session-1.scope/cgroup.procs") && !s.contains("chown"));
    }
}
