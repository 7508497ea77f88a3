//! A hostile test author's attempts to reach the host from inside a default sandbox (issue 9), as root
//! and again as the unprivileged `sandbox-test` user. Each attempt is written so that it changes
//! nothing on the host even if it succeeds (it writes back the value it read, mounts read-only, or
//! aims at a scratch folder the test owns), and each test asserts that the host is unchanged.
//!
//! Attacks that need a system call busybox has no applet for (keyctl, open_by_handle_at, ptrace,
//! TIOCSTI) use the host's `perl` (Debian's essential `perl-base`), bound read-only into the sandbox
//! with the C library it needs: its `syscall` builtin reaches any system call.
//!
//! Also here: what works in a sandbox today keeps working (a privileged port, sethostname, mounts
//! inside, `chown` between ids inside, busybox applets, `apk`).

#![forbid(unsafe_code)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use sandbox::{Error, Mount, Sandbox, Stdio};
use system_tests::{ChildTest, dir_owned_by, fixture_rootfs, is_child, is_root, marker, skip, test_user};

fn rootfs() -> fetch::Rootfs {
    fixture_rootfs(env!("CARGO_TARGET_TMPDIR"))
}

fn builder() -> sandbox::Builder {
    Sandbox::builder().rootfs(&rootfs())
}

/// Runs `script` with `sh -c`; returns its output whatever its status.
fn run(sb: &Sandbox, script: &str) -> Output {
    sb.command("/bin/sh").args(["-c", script]).output().expect("run a shell in the sandbox")
}

/// Runs `script` and returns its stdout; it must succeed.
fn sh(sb: &Sandbox, script: &str) -> String {
    let out = run(sb, script);
    assert!(out.status.success(), "`{script}` failed with {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn both(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// What the host shows at `path` (a sysctl, a sysfs file), or "" if unreadable.
fn host_file(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The host's perl and the C library it needs, bound read-only into the sandbox, if this is an
/// x86_64 host with a dynamically linked `/usr/bin/perl` (the syscall numbers below are x86_64's).
fn perl_mounts() -> Option<Vec<Mount>> {
    let present = PERL_BINDS.iter().all(|(host, _)| Path::new(host).exists());
    (cfg!(target_arch = "x86_64") && present)
        .then(|| PERL_BINDS.iter().map(|(host, inside)| Mount::bind(*host, *inside).read_only()).collect())
}

/// What [`perl_mounts`] binds: host path, path inside.
const PERL_BINDS: [(&str, &str); 3] = [
    ("/usr/bin/perl", "/usr/local/bin/perl"),
    ("/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"),
    ("/lib64", "/lib64"),
];

/// A builder with perl inside, or `None` after printing why the test is skipped.
fn builder_with_perl() -> Option<sandbox::Builder> {
    let Some(mounts) = perl_mounts() else {
        skip("needs an x86_64 host with /usr/bin/perl (Debian's perl-base) and its C library");
        return None;
    };
    Some(mounts.into_iter().fold(builder(), sandbox::Builder::mount))
}

/// Runs a perl program in the sandbox and returns what it printed (stdout and stderr).
fn perl(sb: &Sandbox, program: &str) -> String {
    let out = sb.command("/usr/local/bin/perl").args(["-e", program]).output().expect("run perl in the sandbox");
    both(&out)
}

// ---- the attacks ----

/// `mknod` the disk of a host folder and mount it (read-only, or else sharing the host's mounted superblock,
/// only to read a marker): the host's files must stay out of reach.
fn check_host_disk_via_mknod() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let secret = scratch.path().join("secret");
    std::fs::write(&secret, "host secret").expect("write the marker");
    let Some(disk) = block_device_of(scratch.path()) else {
        return skip("the temporary directory is not on a block device here");
    };
    let (major, minor) = disk.major_minor.split_once(':').unwrap_or(("0", "0"));
    let sb = builder().build().expect("build");
    // The marker's path relative to the disk's root.
    let relative = secret.strip_prefix(&disk.mount_point).expect("below its mount point");
    let inside = Path::new("/tmp/m").join(relative);
    let fstype = disk.fstype;
    let script = format!(
        "mkdir /tmp/m /tmp/fresh; mount -t tmpfs -o dev tmpfs /tmp/fresh; \
         for d in /disk /root/disk /dev/disk /dev/shm/disk /tmp/disk /tmp/fresh/disk; do \
           mknod $d b {major} {minor} 2>/dev/null || continue; \
           mount -t {fstype} -o ro $d /tmp/m 2>/dev/null || mount -t {fstype} $d /tmp/m 2>/dev/null || continue; \
           cat {}; umount /tmp/m; \
         done; echo done",
        inside.display()
    );
    let out = run(&sb, &script);
    assert!(!both(&out).contains("host secret"), "the host's disk was mounted: {}", both(&out));
    assert_eq!(std::fs::read_to_string(&secret).expect("marker"), "host secret");
}

/// A block device holding a host folder: its `major:minor`, file system type and mount point.
struct Disk {
    major_minor: String,
    fstype: String,
    mount_point: PathBuf,
}

/// The disk `path` is on (the mount whose mount point is the longest prefix of `path`), if that mount
/// shows the file system's root and is on a block device.
fn block_device_of(path: &Path) -> Option<Disk> {
    let path = std::fs::canonicalize(path).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let line = info
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| path.starts_with(m)))
        .max_by_key(|l| l.split(' ').nth(4).map_or(0, str::len))?;
    let fields: Vec<&str> = line.split(' ').collect();
    let fstype = line.split(" - ").nth(1)?.split(' ').next()?.to_owned();
    let (major_minor, root, mount_point) = (fields.get(2)?.to_string(), *fields.get(3)?, fields.get(4)?);
    let is_block = Path::new(&format!("/sys/dev/block/{major_minor}")).exists();
    (is_block && root == "/").then(|| Disk { major_minor, fstype, mount_point: PathBuf::from(mount_point) })
}

/// open_by_handle_at ("shocker"): a handle for inode 2 (the root of an ext4 filesystem), anchored on a
/// volume of the host's disk, opens the host's root directory without any mount.
fn check_open_by_handle_at() {
    let Some(b) = builder_with_perl() else { return };
    let scratch = tempfile::tempdir().expect("tempdir");
    let sb = b.mount(Mount::bind(scratch.path(), "/data").read_only()).build().expect("build");
    // struct file_handle { u32 handle_bytes = 8; i32 handle_type = 1 (FILEID_INO32_GEN); u32 ino = 2; u32 gen = 0 }
    let out = perl(
        &sb,
        r#"opendir(my $d, "/data") or die "opendir: $!";
           my $h = pack("IiII", 8, 1, 2, 0);
           my $fd = syscall(304, fileno($d), $h, 0);
           if ($fd < 0) { print "refused errno=", $!+0, "\n"; exit 0 }
           opendir(my $root, "/proc/self/fd/$fd") or die "opendir root: $!";
           print "opened: ", join(" ", sort readdir($root)), "\n";"#,
    );
    assert_eq!(out, "refused errno=1\n", "open_by_handle_at must be refused with EPERM");
}

/// Global sysctls: write back the value just read (a no-op if it works). Each must be refused.
fn check_global_sysctls() {
    let sysctls = ["kernel/core_pattern", "kernel/modprobe", "vm/overcommit_memory", "kernel/panic", "fs/file-max"];
    let before: Vec<String> = sysctls.iter().map(|s| host_file(&format!("/proc/sys/{s}"))).collect();
    let sb = builder().build().expect("build");
    for s in sysctls {
        let script = format!(
            "mount -o remount,rw /proc/sys 2>/dev/null; umount /proc/sys 2>/dev/null; \
             v=$(cat /proc/sys/{s}) && printf '%s\\n' \"$v\" > /proc/sys/{s} && echo WROTE"
        );
        let out = run(&sb, &script);
        assert!(!both(&out).contains("WROTE"), "/proc/sys/{s} is writable: {}", both(&out));
    }
    let after: Vec<String> = sysctls.iter().map(|s| host_file(&format!("/proc/sys/{s}"))).collect();
    assert_eq!(after, before, "the host's sysctls are unchanged");
}

/// A fresh sysfs, or `/sys` remounted read-write: the host's kernel settings must stay read-only.
fn check_sysfs_writes() {
    let thp = "kernel/mm/transparent_hugepage/enabled";
    let before = host_file(&format!("/sys/{thp}"));
    let sb = builder().sys(true).build().expect("build");
    let write_back = |dir: &str| {
        format!(
            "v=$(sed 's/.*\\[\\(.*\\)\\].*/\\1/' {dir}/{thp}) && [ -n \"$v\" ] && echo \"$v\" > {dir}/{thp} && echo WROTE {dir}"
        )
    };
    let script = format!(
        "mkdir /tmp/s && mount -t sysfs sysfs /tmp/s && {}; mount -o remount,rw /sys && {}; {}; echo done",
        write_back("/tmp/s"),
        write_back("/sys"),
        write_back("/sys")
    );
    let out = run(&sb, &script);
    assert!(!both(&out).contains("WROTE"), "sysfs is writable: {}", both(&out));
    assert_eq!(host_file(&format!("/sys/{thp}")), before);
}

/// The clock is the host's: setting it (to the value it has: `adjtimex -t` with the current tick,
/// `settimeofday(NULL, NULL)`) must be refused.
fn check_clock() {
    let sb = builder().build().expect("build");
    let out = run(
        &sb,
        "t=$(adjtimex 2>/dev/null | awk '/tick:/ {print $2}'); [ -n \"$t\" ] && adjtimex -t \"$t\" >/dev/null 2>&1 && echo SET; echo done",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n", "adjtimex wrote the host's tick: {}", both(&out));
    if let Some(b) = builder_with_perl() {
        let sb = b.build().expect("build");
        // settimeofday(NULL, NULL) changes nothing even when allowed; the filter refuses it anyway.
        let out = perl(&sb, r#"my $r = syscall(164, 0, 0); print $r < 0 ? "refused errno=".($!+0) : "allowed", "\n";"#);
        assert_eq!(out, "refused errno=1\n");
    }
}

/// Mount the cgroup hierarchies (v1's controllers, or cgroup2) and write back what their files hold:
/// the program must see only its own cgroup (no `release_agent`, no other cgroup) and change nothing.
fn check_cgroups() {
    let mut b = builder();
    if is_root() {
        b = b.memory_limit(256 << 20);
    }
    let sb = b.build().expect("build");
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let mounts = if v2 { "cgroup2:none" } else { "cgroup:memory cgroup:pids cgroup:cpu,cpuacct cgroup:name=systemd" };
    let script = format!(
        "for m in {mounts}; do t=${{m%%:*}}; c=${{m#*:}}; \
          d=/tmp/cg-$c; mkdir -p $d; o=; [ $c = none ] || o=\"-o $c\"; \
          mount -t $t $o $t $d 2>/dev/null || continue; \
          echo mounted $c; \
          test -e $d/release_agent && echo AGENT $c; \
          for f in $d/release_agent $d/notify_on_release $d/memory.limit_in_bytes $d/memory.max $d/pids.max \
                   $d/cgroup.procs $d/cgroup.subtree_control; do \
            [ -f $f ] || continue; v=$(cat $f | head -n 1); echo \"$v\" > $f 2>/dev/null && echo WROTE $f; \
          done; \
          n=$(find $d -mindepth 1 -type d | wc -l); [ $n -gt 0 ] && echo OTHERS $c $n; \
        done; echo done"
    );
    let out = run(&sb, &script);
    let text = both(&out);
    // Rootless, no cgroup of its own can be made under the caller's (owned by root here): the namespace
    // is rooted at the caller's cgroup, whose files the program may see but, lacking any capability
    // over the host, not write.
    let refused: &[&str] = if is_root() { &["AGENT", "WROTE", "OTHERS"] } else { &["WROTE"] };
    for bad in refused {
        assert!(!text.contains(bad), "{bad}: {text}");
    }
    assert!(text.ends_with("done\n"), "{text}");
}

/// Without limits too, no cgroup hierarchy is in view: the program's cgroup paths are its namespace's
/// root, no cgroup file system (v1's controllers, cgroup2) can be mounted (its cgroup namespace
/// belongs to a more privileged user namespace than the program's), and the sandbox's own `/sys` has
/// none mounted.
fn check_cgroups_without_limits() {
    let sb = builder().sys(true).build().expect("build");
    let script = "cat /proc/self/cgroup; \
        for m in cgroup2:none cgroup:memory cgroup:pids cgroup:name=systemd; do t=${m%%:*}; c=${m#*:}; \
          d=/tmp/cg-$c; mkdir -p $d; o=; [ $c = none ] || o=\"-o $c\"; \
          mount -t $t $o $t $d 2>/dev/null && echo MOUNTED $c; \
        done; \
        ls /sys/fs/cgroup 2>/dev/null | grep -q . && echo HIERARCHY IN SYS; echo done";
    let text = both(&run(&sb, script));
    for line in text.lines().filter(|l| l.contains(':')) {
        assert!(line.ends_with(":/"), "a cgroup path other than the namespace's root: {line}\n{text}");
    }
    for bad in ["MOUNTED", "HIERARCHY IN SYS"] {
        assert!(!text.contains(bad), "{bad}: {text}");
    }
    assert!(text.ends_with("done\n"), "{text}");
}

/// A read-only volume: remount read-write, unmount to reveal, or re-bind elsewhere and remount: none
/// may make it writable. The victim is a scratch folder.
fn check_read_only_volume() {
    let host = tempfile::tempdir().expect("tempdir");
    std::fs::write(host.path().join("data.txt"), "hello").expect("write");
    let sb = builder().mount(Mount::bind(host.path(), "/data").read_only()).build().expect("build");
    let script = "mount -o remount,bind,rw /data 2>/dev/null; echo x > /data/remounted 2>/dev/null && echo WROTE remount; \
        mkdir /tmp/again && mount --bind /data /tmp/again 2>/dev/null && { mount -o remount,bind,rw /tmp/again 2>/dev/null; \
        echo x > /tmp/again/rebound 2>/dev/null && echo WROTE rebind; }; \
        umount /data 2>/dev/null || umount -l /data 2>/dev/null; cat /data/data.txt 2>/dev/null || echo UNMOUNTED; \
        echo done";
    let out = run(&sb, script);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, "hellodone\n", "{}", both(&out));
    assert_eq!(system_tests::list(host.path()), vec!["data.txt".to_owned()], "nothing written on the host");
}

/// Masked `/proc` files stay masked: unmounting the mask is refused, and they read empty.
fn check_masked_proc() {
    let sb = builder().build().expect("build");
    let script = "for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /proc/sysrq-trigger; do \
          umount $f 2>/dev/null && echo UNMASKED $f; umount -l $f 2>/dev/null && echo UNMASKED $f; \
        done; \
        for f in /proc/kcore /proc/timer_list /proc/sched_debug; do \
          [ \"$(head -c 1 $f 2>/dev/null | wc -c)\" = 0 ] || echo READ $f; \
        done; \
        printf '' 2>/dev/null > /proc/sysrq-trigger && echo SYSRQ; echo done";
    // printf '' opens the trigger for writing and writes nothing: no SysRq command runs, even if allowed.
    let out = run(&sb, script);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n", "{}", both(&out));
}

/// A host directory holding a file `secret`, open, and a copy of its descriptor at fd 200 without
/// close-on-exec, as a careless library would leave it: (the directory, the open descriptor, the
/// leaked number).
fn leak_host_directory() -> (tempfile::TempDir, std::os::fd::OwnedFd, std::os::fd::RawFd) {
    let secret_dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(secret_dir.path().join("secret"), "host secret").expect("write");
    let dir = nix::fcntl::open(
        secret_dir.path(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .expect("open the host directory");
    let leaked = nix::fcntl::fcntl(&dir, nix::fcntl::FcntlArg::F_DUPFD(200)).expect("dup");
    (secret_dir, dir, leaked)
}

/// A descriptor the caller holds without close-on-exec (here: a host directory, at fd 200) must not
/// reach the program, which could walk out of it (`/proc/self/fd/200/../..`). Run in a fresh process,
/// where the descriptor exists before the first sandbox starts the fork server (which inherits it).
fn check_leaked_descriptors() {
    ChildTest::new("child_leaked_descriptors").assert_success();
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_leaked_descriptors() {
    if !is_child("child_leaked_descriptors") {
        return;
    }
    let (_secret_dir, dir, leaked) = leak_host_directory();
    let sb = builder().build().expect("build");
    let script = format!("cat /proc/self/fd/{leaked}/secret; cat /proc/self/fd/{leaked}/../*/secret");
    let out = sb.command("/bin/sh").args(["-c", &script]).output().expect("run");
    let listed = sb.command("/bin/ls").arg("/proc/self/fd").stdout(Stdio::piped()).output().expect("run");
    let text = both(&out);
    assert!(!text.contains("host secret"), "read the host through a leaked fd: {text}");
    // ls's own: stdin, stdout, stderr, and the directory it reads.
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "0\n1\n2\n3\n", "{}", both(&listed));
    nix::unistd::close(leaked).expect("close the leaked fd");
    drop(dir);
}

/// A closure's process (`Sandbox::run`) never execs: what it starts in the sandbox must not reach its
/// `/proc` files as the program once reached init's (check_init_memory): its executable is the
/// caller's own binary on the host (chmod-able rootless), and close-on-exec does not close the
/// descriptors the caller, the fork server, the helper and init left it (here: a host directory the
/// caller leaked at fd 200, as in check_leaked_descriptors). The executable's mode is set to what it
/// is; the directory is only read.
fn check_closure_process() {
    ChildTest::new("child_closure_process").assert_success();
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_closure_process() {
    if !is_child("child_closure_process") {
        return;
    }
    let (_secret_dir, dir, leaked) = leak_host_directory();
    assert_eq!(leaked, 200, "fd 200 was free");
    let sb = builder().build().expect("build");
    // The closure only starts a shell: the shell is the attacker, the closure its victim.
    let text: String = sb
        .run(|| {
            let script = r#"p=$PPID
                cat /proc/$p/fd/200/secret 2>/dev/null && echo " <- THROUGH THE CLOSURE'S FD"
                ls /proc/$p/fd/ 2>/dev/null | grep -q . && echo "CLOSURE FDS"
                readlink /proc/$p/exe >/dev/null 2>&1 && echo "CLOSURE EXE LINK"
                cat /proc/$p/exe >/dev/null 2>&1 && echo "READ CLOSURE EXE"
                if mode=$(stat -L -c %a /proc/$p/exe 2>/dev/null); then
                    chmod "$mode" /proc/$p/exe 2>/dev/null && echo "CHMOD CLOSURE EXE"
                fi
                echo done"#;
            let out = std::process::Command::new("/bin/sh").args(["-c", script]).output().expect("run sh");
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        })
        .expect("run the closure");
    for bad in ["host secret", "CLOSURE FDS", "CLOSURE EXE LINK", "READ CLOSURE EXE", "CHMOD CLOSURE EXE"] {
        assert!(!text.contains(bad), "{bad}: {text}");
    }
    assert!(text.ends_with("done\n"), "{text}");
    nix::unistd::close(leaked).expect("close the leaked fd");
    drop(dir);
}

/// A small rootfs (busybox, `/bin/true`, the usual directories) where each `link` is a symlink to
/// its `target`, to use as a hostile rootfs.
fn hostile_rootfs(parent: &Path, links: &[(&str, String)]) -> PathBuf {
    let tree = parent.join("rootfs");
    for dir in ["bin", "dev", "etc", "proc", "root", "sys", "tmp"] {
        std::fs::create_dir_all(tree.join(dir)).expect("create a directory of the tree");
    }
    std::fs::copy(rootfs().path().join("bin/busybox"), tree.join("bin/busybox")).expect("copy busybox");
    for applet in ["true", "sh"] {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).expect("link an applet");
    }
    for (link, target) in links {
        let path = tree.join(link);
        let _ = std::fs::remove_dir(&path);
        std::os::unix::fs::symlink(target, &path).expect("plant the symlink");
    }
    tree
}

/// A rootfs whose directories are symlinks out of it (to the host's root as setup sees it at
/// `/oldroot`, absolute and relative, and through `/proc/1/root`): setup must write nothing on the
/// host, through any path it writes (hostname, hosts, files, volume and tmpfs mount points).
fn check_hostile_rootfs_symlinks() {
    let work = tempfile::tempdir().expect("tempdir");
    let victim = work.path().join("victim");
    std::fs::create_dir(&victim).expect("victim dir");
    let v = victim.display().to_string();
    let tree = hostile_rootfs(
        work.path(),
        &[
            ("etc", format!("/oldroot{v}")),
            ("srv", format!("../../../../../../../oldroot{v}")),
            ("opt", format!("/proc/1/root{v}")),
            ("home", v.clone()),
        ],
    );
    let volume = tempfile::tempdir().expect("tempdir");
    let sb = Sandbox::builder()
        .rootfs_dir(&tree)
        .hostname("hostile")
        .file("/etc/app.toml", "x")
        .file("/srv/conf/app.toml", "x")
        .file("/opt/app.toml", "x")
        .file("/home/app.toml", "x")
        .mount(Mount::bind(volume.path(), "/srv/data"))
        .mount(Mount::bind(volume.path(), "/opt/data").read_only())
        .mount(Mount::tmpfs("/home/scratch"))
        .build()
        .expect("build");
    // Setup may fail with an error (a path that leads out of the root), or succeed with everything
    // inside: either way, nothing lands on the host.
    let result = sb.command("/bin/true").status();
    assert_eq!(system_tests::list(&victim), Vec::<String>::new(), "setup wrote on the host ({result:?})");
    assert_eq!(system_tests::list(volume.path()), Vec::<String>::new());
}

/// The same through a tarball, as `$SANDBOX_ROOTFS` would give it: fetch keeps absolute symlinks.
fn check_hostile_tarball() {
    let work = tempfile::tempdir().expect("tempdir");
    let victim = work.path().join("victim");
    std::fs::create_dir(&victim).expect("victim dir");
    let tree = hostile_rootfs(work.path(), &[("etc", format!("/oldroot{}", victim.display()))]);
    let tarball = work.path().join("hostile.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success());
    let rootfs = fetch::Rootfs::from_tarball_in(&tarball, Some(&work.path().join("cache"))).expect("unpack");
    let sb = Sandbox::builder().rootfs(&rootfs).file("/etc/app.toml", "x").build().expect("build");
    let result = sb.command("/bin/true").status();
    assert_eq!(system_tests::list(&victim), Vec::<String>::new(), "setup wrote on the host ({result:?})");
}

/// Without a memory limit each tmpfs has a size (a quarter of RAM for `/` and `/tmp`, 64 MiB for
/// `/dev`); with one, a runaway writer gets ENOSPC before the OOM killer.
fn check_tmpfs_sizes() {
    let ram_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse::<u64>().ok())
        .expect("MemTotal");
    let sb = builder().build().expect("build");
    let sizes = sh(&sb, "df -k / /tmp /dev | tail -n +2 | awk '{print $6, $2}'");
    for line in sizes.lines() {
        let (mount, kib) = line.split_once(' ').expect("df line");
        let kib: u64 = kib.parse().expect("size");
        let max = if mount == "/dev" { 64 << 10 } else { ram_kib / 4 + 1024 };
        assert!(kib <= max, "{mount} is {kib} KiB, more than {max} KiB (RAM {ram_kib} KiB)");
    }
    if !is_root() {
        return; // limits need root on this machine's cgroup v1
    }
    let sb = builder().memory_limit(64 << 20).build().expect("build");
    let out = sb
        .command("/bin/sh")
        .args(["-c", "dd if=/dev/zero of=/tmp/big bs=1M count=200; echo rc=$?; rm /tmp/big; echo alive"])
        .output()
        .expect("the writer is not OOM-killed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("No space left on device"), "{}", both(&out));
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("alive\n"), "{}", both(&out));
}

/// The caller's keyrings: keyctl is refused (and `/proc/keys` is masked, see check_masked_proc).
fn check_keyring() {
    let Some(b) = builder_with_perl() else { return };
    let sb = b.build().expect("build");
    // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0); add_key("user", …, KEY_SPEC_SESSION_KEYRING)
    let out = perl(
        &sb,
        r#"my $r = syscall(250, 0, -3, 0); print $r < 0 ? "keyctl errno=".($!+0) : "keyctl ok", "\n";
           my ($type, $desc, $payload) = ("user", "escape-test", "x");
           $r = syscall(248, $type, $desc, $payload, 1, -3);
           print $r < 0 ? "add_key errno=".($!+0) : "add_key ok", "\n";"#,
    );
    assert_eq!(out, "keyctl errno=1\nadd_key errno=1\n");
}

/// Init's memory, descriptors and executable (`/proc/1/mem`, `/proc/1/fd`, `/proc/1/exe`): rootless,
/// init is the program's uid; writing its memory would run code outside the filter, and its
/// executable is the caller's own binary on the host. Init is not dumpable, so none is reachable.
/// Here 16 bytes of init's stack are read and written back unchanged, and the executable's mode is
/// set to what it is.
fn check_init_memory() {
    let sb = builder().build().expect("build");
    let script = r#"
        a=64
        if line=$(grep '\[stack\]' /proc/1/maps 2>/dev/null); then a=$((0x${line%%-*} + 64)); fi
        dd if=/proc/1/mem bs=1 skip=$a count=16 of=/tmp/b 2>/dev/null && echo "READ INIT MEMORY"
        dd if=/tmp/b of=/proc/1/mem bs=1 seek=$a conv=notrunc 2>/dev/null && echo "WROTE INIT MEMORY"
        ls /proc/1/fd/ 2>/dev/null | grep -q . && echo "INIT FDS"
        readlink /proc/1/exe >/dev/null 2>&1 && echo "INIT EXE LINK"
        cat /proc/1/exe >/dev/null 2>&1 && echo "READ INIT EXE"
        if mode=$(stat -L -c %a /proc/1/exe 2>/dev/null); then
            chmod "$mode" /proc/1/exe 2>/dev/null && echo "CHMOD INIT EXE"
        fi
        echo done"#;
    let out = both(&run(&sb, script));
    for bad in ["READ INIT MEMORY", "WROTE INIT MEMORY", "INIT FDS", "INIT EXE LINK", "READ INIT EXE", "CHMOD INIT EXE"]
    {
        assert!(!out.contains(bad), "{bad}: {out}");
    }
    assert!(out.ends_with("done\n"), "{out}");
    // What a test may look at stays: init's status.
    assert_eq!(both(&run(&sb, "grep -c PPid /proc/1/status")), "1\n");
}

/// A tree with busybox whose `dev` is a symlink to `dev_target` (that path also exists in the tree).
fn tree_with_dev_link(parent: &Path, dev_target: &str) -> PathBuf {
    let tree = parent.join("rootfs");
    for dir in ["bin", "etc", "proc", "root", "sys", "tmp"] {
        std::fs::create_dir_all(tree.join(dir)).expect("create a directory of the tree");
    }
    std::fs::create_dir_all(tree.join(dev_target.trim_start_matches('/'))).expect("the link's target inside");
    std::fs::copy(rootfs().path().join("bin/busybox"), tree.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "cat", "grep"] {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).expect("link an applet");
    }
    std::os::unix::fs::symlink(dev_target, tree.join("dev")).expect("plant the symlink");
    tree
}

/// The masks' `/dev/null` is the sandbox's own: a rootfs whose `dev` leads to `/oldroot/…` (the host
/// during setup) gets no host file bound over `/proc/keys`, and one whose `dev` leads nowhere on the
/// host does not switch the masks off.
fn check_mask_source() {
    let work = tempfile::tempdir().expect("tempdir");
    let scratch = work.path().join("scratch");
    std::fs::create_dir(&scratch).expect("scratch");
    std::fs::write(scratch.join("secret"), "HOST SECRET\n").expect("secret");
    std::os::unix::fs::symlink("secret", scratch.join("null")).expect("null -> secret");
    let hostile = work.path().join("a");
    std::fs::create_dir(&hostile).expect("mkdir");
    let tree = tree_with_dev_link(&hostile, &format!("/oldroot{}", scratch.display()));
    let sb = Sandbox::builder().rootfs_dir(&tree).build().expect("build");
    let out = run(&sb, "cat /proc/keys; grep -c ' /proc/keys ' /proc/self/mountinfo");
    assert!(!both(&out).contains("HOST SECRET"), "a host file is bound over /proc/keys: {}", both(&out));
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("1\n"), "/proc/keys is masked: {}", both(&out));
    let nowhere = work.path().join("b");
    std::fs::create_dir(&nowhere).expect("mkdir");
    let tree = tree_with_dev_link(&nowhere, "/no-such-folder-on-the-host");
    let sb = Sandbox::builder().rootfs_dir(&tree).build().expect("build");
    assert_eq!(both(&run(&sb, "grep -c ' /proc/keys ' /proc/self/mountinfo")), "1\n", "/proc/keys is masked");
    assert_eq!(std::fs::read_to_string(scratch.join("secret")).expect("secret"), "HOST SECRET\n");
}

/// Builds `tests/attacks/NAME.c` with `cc -static` into a new folder, as `NAME`; `None` (after a
/// SKIP line) without a C compiler and a static C library.
fn build_attacker(name: &str) -> Option<tempfile::TempDir> {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("attacks/{name}.c"));
    let bin = dir.path().join(name);
    let built = std::process::Command::new("cc").args(["-static", "-O2", "-o"]).arg(&bin).arg(&src).status();
    if !built.is_ok_and(|s| s.success()) {
        skip("no C compiler with a static C library (cc -static; Debian: gcc, libc6-dev)");
        return None;
    }
    Some(dir)
}

/// Review 19: a program binds `/dev/zero` over its own `/proc/self/cmdline` as soon as it runs
/// (tests/attacks/endless-cmdline.c). Init, which waits for the program's command line before it
/// reports the start, then reads zeros without end into its memory (6.5 GB of the host's in 10 s
/// without limits, as seen by hand), never sees the program end, and the sandbox runs to its
/// deadline (none: until the host's OOM killer acts); here, capped at 64 MiB and 3 s, the clean exit
/// becomes a timeout or an OOM kill. It is a race with init's first reading (won about 2 runs in 3
/// on this machine): 20 tries. Init should read at most a bounded amount, of a file nothing inside
/// can replace, and the program's own end be reported.
fn check_endless_command_line() {
    if !cfg!(target_arch = "x86_64") {
        return skip("the attacker is built for this machine only");
    }
    if !is_root() {
        return skip("needs a memory limit to bound what init reads (root, on this cgroup v1 machine)");
    }
    let Some(dir) = build_attacker("endless-cmdline") else { return };
    let sb = builder()
        .memory_limit(64 << 20)
        .timeout(Duration::from_secs(3))
        .mount(Mount::bind(dir.path(), "/attacks").read_only())
        .build()
        .expect("build");
    for attempt in 0..20 {
        let out = sb.command("/attacks/endless-cmdline").output().map_err(|e| sandbox::error_chain(&e));
        match out {
            Ok(o) if o.status.success() => {
                if String::from_utf8_lossy(&o.stdout) != "bound: 0\n" {
                    return; // the bind was refused: nothing to read without end
                }
            }
            other => panic!("attempt {attempt}: the program ended cleanly after 200 ms, and the sandbox: {other:?}"),
        }
    }
}

/// Review 19: at the deadline init lists what the sandbox was doing, reading each process's
/// `/proc/PID/cmdline` to its end, before it kills anything: a program that bound `/dev/zero` over
/// its own command line (`mount --bind /dev/zero /proc/$$/cmdline`, no race) makes init read zeros
/// until the helper kills it a second later. By hand, without limits: sandbox-init grew to 1.5 GB of
/// the host's RAM, the timeout came after 2.2 s instead of 1 s and listed nothing. With a memory
/// limit (here) the OOM killer ends init and the run fails as "memory limit of 64 MiB exceeded",
/// though the program used none. The deadline should be reported as a timeout, listing the
/// processes, with init reading a bounded amount of each file.
fn check_deadline_with_an_endless_command_line() {
    if !is_root() {
        return skip("needs a memory limit to bound what init reads (root, on this cgroup v1 machine)");
    }
    let sb = builder().memory_limit(64 << 20).timeout(Duration::from_secs(1)).build().expect("build");
    let result = sb.command("/bin/sh").args(["-c", "mount --bind /dev/zero /proc/$$/cmdline && sleep 30"]).output();
    match result {
        Err(Error::TimedOut { doing, .. }) => {
            // Its command line is zeros (the bind): it is listed by its name.
            assert!(doing.iter().any(|p| p.ends_with(" S [sleep]")), "what the sandbox was doing: {doing:?}");
        }
        other => panic!("expected a timeout: {:?}", other.map_err(|e| sandbox::error_chain(&e))),
    }
}

/// In a session, a command looks for another one not yet filtered, seizes it with ptrace and makes
/// it call keyctl (tests/attacks/session-attacker.c): every command is out of reach until its
/// filter is installed.
fn check_session_seize() {
    if !cfg!(target_arch = "x86_64") {
        return skip("the attacker is x86_64 code");
    }
    let Some(dir) = build_attacker("session-attacker") else { return };
    let sb = builder().mount(Mount::bind(dir.path(), "/attacks").read_only()).build().expect("build");
    let session = sb.session().expect("session");
    let attacker =
        session.command("/attacks/session-attacker").stdout(Stdio::piped()).spawn().expect("start the attacker");
    for _ in 0..300 {
        let _ = session.command("/bin/true").status();
    }
    let out = attacker.wait_with_output().expect("the attacker's output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("attacker's own keyctl: -1"), "the attacker ran: {text}");
    assert!(!text.contains("INJECTED"), "{text}");
}

/// The caller is SIGKILLed while its sandbox's helper holds the program's namespaces through a
/// holder (a `clone(CLONE_VM | CLONE_NEWUSER | ...)` child waiting in pause(2) until the helper kills
/// it): nothing of the sandbox may outlive the caller. tests/attacks/holder-orphan.c runs a child test
/// that starts one sandbox, makes the timing certain with ptrace (it kills the caller at the holder's
/// birth) and kills a holder that outlived its helper, so that the host is left as it was.
fn check_holder_orphan() {
    let (caller, _copy) = ChildTest::new("child_one_sandbox").command();
    check_orphan("user", caller);
}

/// The caller is SIGKILLed right after its sandbox's helper forked init (PID 1 of a new pid
/// namespace), before init asked to die with the helper: init must not carry on alone and start the
/// program (here `sleep 30`). The caller is single-threaded (tests/bin/one-sandbox.rs), as
/// `sandbox-run` is: its helper is its own fork. The tracer kills an init that outlived its helper,
/// with its namespace.
fn check_init_orphan() {
    let mut caller = std::process::Command::new(env!("CARGO_BIN_EXE_one-sandbox"));
    caller.args(["/bin/sleep", "30"]).env("SANDBOX_ROOTFS", rootfs().path());
    check_orphan("pid", caller);
}

/// Runs `caller` under tests/attacks/holder-orphan.c, watching the birth of a process in a new `ns`
/// namespace; it must say "NO LEAK".
fn check_orphan(ns: &str, caller: std::process::Command) {
    let Some(dir) = build_attacker("holder-orphan") else { return };
    let envs: Vec<_> = caller.get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))).collect();
    let out = std::process::Command::new(dir.path().join("holder-orphan"))
        .arg(ns)
        .arg(caller.get_program())
        .args(caller.get_args())
        .envs(envs)
        .output()
        .expect("run the tracer");
    let text = both(&out);
    assert!(text.contains("NO LEAK"), "a process of the sandbox ({ns}) outlived its helper and its caller: {text}");
}

/// Under a seccomp filter that refuses pidfd_open(2) with EPERM, as a container runtime's profile
/// from before Linux 5.3 does on a newer kernel (tests/attacks/no-pidfd.c), a default sandbox starts
/// as it did before its network namespace was made in the background: the holder's pidfd is an
/// optimisation, and its absence falls back to making the namespace up front (before the tenth
/// review, every start failed with `open the network namespace's holder (pidfd_open)`).
fn check_without_pidfd_open() {
    if !cfg!(target_arch = "x86_64") {
        return skip("the filter is x86_64 code");
    }
    let Some(dir) = build_attacker("no-pidfd") else { return };
    let (caller, _copy) = ChildTest::new("child_sandboxes_without_pidfd_open").command();
    let envs: Vec<_> = caller.get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))).collect();
    let out = std::process::Command::new(dir.path().join("no-pidfd"))
        .arg(caller.get_program())
        .args(caller.get_args())
        .envs(envs)
        .output()
        .expect("run the child test under the filter");
    let text = both(&out);
    assert!(out.status.success() && text.contains("1 passed"), "without pidfd_open: {text}");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_sandboxes_without_pidfd_open() {
    if !is_child("child_sandboxes_without_pidfd_open") {
        return;
    }
    for network in [sandbox::Network::Host, sandbox::Network::Loopback, sandbox::Network::None] {
        let sb = builder().network(network.clone()).build().expect("build");
        let out = run(&sb, "echo started");
        assert!(out.status.success(), "{network:?}: {}", both(&out));
    }
}

/// The processes in /proc: (pid, parent, state, command name).
fn all_processes() -> Vec<(u32, u32, String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("list /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((head, tail)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = tail.split_whitespace().collect();
        let (Some(state), Some(Ok(parent))) = (fields.first(), fields.get(1).map(|p| p.parse::<u32>())) else {
            continue;
        };
        found.push((pid, parent, (*state).to_owned(), head.split_once('(').map_or("?", |h| h.1).to_owned()));
    }
    found
}

/// Waits (at most 10 s) until the sandboxes' helpers, children of the fork servers, have ended after
/// reporting; fails if they have not.
fn wait_until_the_helpers_end() {
    let helpers_alive = || {
        let all = all_processes();
        let me = std::process::id();
        let helpers: Vec<u32> =
            system_tests::child_processes().into_iter().filter_map(|p| u32::try_from(p).ok()).collect();
        all.iter().filter(|p| helpers.contains(&p.0) && p.1 != me && p.2 != "Z").count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while helpers_alive() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(helpers_alive(), 0, "the helpers did not end");
}

/// This process's zombie children: `pid command`.
fn my_zombies() -> Vec<String> {
    let me = std::process::id();
    all_processes().into_iter().filter(|p| p.1 == me && p.2 == "Z").map(|p| format!("{} {}", p.0, p.3)).collect()
}

/// A caller that is a child subreaper (prctl(2) `PR_SET_CHILD_SUBREAPER`: a test harness that
/// collects the daemons its tests start; or PID 1 of a container that runs `cargo test` without an
/// init, to which orphans go anyway) inherits whatever a sandbox leaves unreaped when its helper
/// exits. The network namespace's holder (the helper's `CLONE_VM` child, crate::spawn::netns) must
/// be reaped by its helper: before the tenth review, each Loopback or None sandbox left one zombie
/// in such a caller for good (8 of these 12), which counts against `pids.max` and RLIMIT_NPROC.
fn check_subreaper_zombies() {
    ChildTest::new("child_a_subreaper_caller_collects_no_zombies").assert_success();
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_a_subreaper_caller_collects_no_zombies() {
    if !is_child("child_a_subreaper_caller_collects_no_zombies") {
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
    for network in [sandbox::Network::Host, sandbox::Network::Loopback, sandbox::Network::None] {
        let sb = builder().network(network).build().expect("build");
        for _ in 0..4 {
            sh(&sb, "true");
        }
    }
    wait_until_the_helpers_end();
    let zombies = my_zombies();
    assert!(zombies.is_empty(), "{} zombies left in the caller after 12 sandboxes: {zombies:?}", zombies.len());
}

/// A start that fails in the helper before init is forked (here: the switch's holder is dead, so
/// opening the switch fails): the helper exits at once, and nothing it started may be left to a
/// subreaper caller as a zombie (the fourteenth review found one: a masker of `/proc`, since taken
/// out, that died with the helper).
#[test]
fn a_subreaper_caller_collects_no_zombie_of_a_failed_start() {
    if !is_root() {
        return; // switches need root
    }
    ChildTest::new("child_a_failed_start_leaves_no_zombie").assert_success();
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_a_failed_start_leaves_no_zombie() {
    if !is_child("child_a_failed_start_leaves_no_zombie") {
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
    let net = sandbox::Net::new().expect("a switch");
    let sb = builder().network(sandbox::Network::Switch(net.clone())).build().expect("build");
    system_tests::kill_switch_holder();
    let before = my_zombies();
    let err = sb.command("/bin/true").status().expect_err("the switch is gone");
    assert!(matches!(&err, sandbox::Error::Setup { step, .. } if step.contains("switch")), "{err:?}");
    drop((sb, net));
    wait_until_the_helpers_end();
    let after: Vec<String> = my_zombies().into_iter().filter(|z| !before.contains(z)).collect();
    assert!(after.is_empty(), "zombies left in the caller by a failed start: {after:?}");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_one_sandbox() {
    if !is_child("child_one_sandbox") {
        return;
    }
    let sb = builder().build().expect("build");
    let _ = sb.command("/bin/true").status();
}

/// As root, a read-write volume maps only root: what the program writes there is root's on the host,
/// never setuid (the filter refuses the bit there), never another host user's.
fn check_volume_setid() {
    if !is_root() {
        return; // rootless, root inside is the caller: a setuid file there is the caller's own
    }
    let vol = tempfile::tempdir().expect("tempdir");
    let sb = builder().mount(Mount::bind(vol.path(), "/data")).build().expect("build");
    let out = run(
        &sb,
        "cp /bin/busybox /data/suid; chmod 4755 /data/suid || echo chmod refused; \
         touch /data/other; chown 1001:1001 /data/other || echo chown refused; echo done",
    );
    let text = both(&out);
    let suid = std::fs::metadata(vol.path().join("suid")).expect("the copy");
    assert_eq!((suid.uid(), suid.mode() & 0o6000), (0, 0), "root's, not setuid: {text}");
    let other = std::fs::metadata(vol.path().join("other")).expect("the file");
    assert_eq!((other.uid(), other.gid()), (0, 0), "given to no other host user: {text}");
    assert!(text.contains("chmod refused") && text.contains("chown refused"), "{text}");
    // Elsewhere in the sandbox, setuid bits stay possible (apk installs setuid programs).
    let plain = builder().build().expect("build");
    assert_eq!(both(&run(&plain, "cp /bin/busybox /tmp/s && chmod 4755 /tmp/s && stat -c %a /tmp/s")), "4755\n");
}

/// The same through a session: its commands are filtered like a program (no setuid bit, no
/// extended attribute where root inside writes as the host's root). The volume is a private scratch
/// folder (mode 0700), removed at the end.
fn check_session_volume_setid() {
    if !is_root() {
        return; // rootless, root inside is the caller: a setuid file there is the caller's own
    }
    let vol = tempfile::tempdir().expect("tempdir");
    let sb = builder().mount(Mount::bind(vol.path(), "/data")).build().expect("build");
    let session = sb.session().expect("session");
    let out = session
        .command("/bin/sh")
        .args(["-c", "cp /bin/busybox /data/suid; chmod 4755 /data/suid || echo chmod refused; echo done"])
        .output()
        .expect("run a command in the session");
    let text = both(&out);
    let suid = std::fs::metadata(vol.path().join("suid")).expect("the copy");
    assert_eq!((suid.uid(), suid.mode() & 0o6000), (0, 0), "root's, not setuid: {text}");
    assert!(text.contains("chmod refused"), "{text}");
}

/// As root with a read-write volume, the routes to a capability-bearing or setuid file that the
/// filter does not see (review of the issue 9 fixes): io_uring's `IORING_OP_SETXATTR` and
/// `IORING_OP_OPENAT` (seccomp sees only `io_uring_enter`), `setxattrat(2)` (Linux 6.13) and
/// `open(O_TMPFILE)` with a setuid mode (the filter looks for the mode only with `O_CREAT`). A
/// root-owned copy of a program with `cap_setuid+ep` on the host makes any host user root.
fn check_volume_setid_unfiltered() {
    if !is_root() {
        return; // rootless, root inside is the caller: such a file gives nothing the caller lacks
    }
    if !cfg!(target_arch = "x86_64") {
        return skip("the attacker uses x86_64 syscall numbers");
    }
    let Some(dir) = build_attacker("volume-attacker") else { return };
    let vol = tempfile::tempdir().expect("tempdir");
    let sb = builder()
        .mount(Mount::bind(dir.path(), "/attacks").read_only())
        .mount(Mount::bind(vol.path(), "/data"))
        .build()
        .expect("build");
    let out = run(
        &sb,
        "cp /bin/busybox /data/a; cp /bin/busybox /data/b; a=/attacks/volume-attacker; \
         $a uring-setcap /data/a; $a setxattrat /data/b; $a uring-suid /data/c; $a tmpfile-suid /data; echo done",
    );
    let text = both(&out);
    assert!(text.ends_with("done\n"), "{text}");
    for name in ["a", "b"] {
        let caps = std::process::Command::new(dir.path().join("volume-attacker"))
            .arg("caps")
            .arg(vol.path().join(name))
            .output()
            .expect("read the file's capabilities on the host");
        assert_eq!(String::from_utf8_lossy(&caps.stdout), "none\n", "/data/{name} has file capabilities: {text}");
    }
    for name in ["c", "d"] {
        if let Ok(meta) = std::fs::metadata(vol.path().join(name)) {
            assert_eq!(meta.mode() & 0o6000, 0, "/data/{name} is setuid root on the host: {text}");
        }
    }
}

/// As root with a read-write volume, overlayfs (which root inside may mount in its own namespaces)
/// copies a file up into its upper layer inside the kernel, mode and owner included, out of the
/// filter's sight: an upper layer on the volume receives a root-owned setuid copy of any setuid-root
/// program the sandbox can see (here the rootfs's own `/bin/bbsuid`, setuid root in Alpine's
/// minirootfs and in the fixture). The copy is root's on the host (the volume maps only root) and
/// keeps its setuid bit; then a write through a shared mapping (tests/attacks/volume-attacker.c
/// `mmap-write`), which unlike write(2) does not clear the bit, gives it content of the program's
/// choosing. The volume is a private scratch folder (mode 0700), removed at the end; nothing else is
/// written, and nothing is executed.
fn check_volume_setid_overlay_copy_up() {
    if !is_root() {
        return; // rootless, root inside is the caller: a setuid file there is the caller's own
    }
    let Some(dir) = build_attacker("volume-attacker") else { return };
    let vol = tempfile::tempdir().expect("tempdir");
    let sb = builder()
        .mount(Mount::bind(dir.path(), "/attacks").read_only())
        .mount(Mount::bind(vol.path(), "/data"))
        .build()
        .expect("build");
    let script = "stat -c 'rootfs: %a %u' /bin/bbsuid; mkdir -p /data/upper /data/work /mnt/o && \
         mount -t overlay overlay -o lowerdir=/bin,upperdir=/data/upper,workdir=/data/work /mnt/o \
         && touch -c /mnt/o/bbsuid; umount /mnt/o; /attacks/volume-attacker mmap-write /data/upper/bbsuid; \
         stat -c 'copy: %a %u' /data/upper/bbsuid; echo done";
    let out = run(&sb, script);
    let text = both(&out);
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("done\n"), "{text}");
    let copy = vol.path().join("upper/bbsuid");
    if let Ok(meta) = std::fs::symlink_metadata(&copy) {
        let head = std::fs::read(&copy).map(|b| String::from_utf8_lossy(&b[..b.len().min(5)]).into_owned());
        assert!(
            !(meta.uid() == 0 && meta.mode() & 0o6000 != 0),
            "/data/upper/bbsuid is setuid root on the host (mode {:o}, starts with {head:?}): {text}",
            meta.mode()
        );
    }
}

/// A closure gets the sandbox's environment, exactly, as a program does: not the fork server's
/// internal variable (`__SANDBOX_FORK_SERVER=<fd>`), which every program it starts inherits too
/// (a re-executed test binary inside would take that number for a fork server's socket).
fn check_closure_environment() {
    let sb = builder().build().expect("build");
    let inherited: String = sb
        .run(|| {
            let out = std::process::Command::new("/bin/sh").args(["-c", "env"]).output().expect("run env");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .expect("run the closure");
    let internal: Vec<&str> = inherited.lines().filter(|l| l.starts_with("__SANDBOX")).collect();
    assert!(internal.is_empty(), "the library's own variables reach what a closure starts: {internal:?}");
}

/// As root, a writable layer kept on the host (`Builder::writable_layer_in`, `sandbox-run
/// --keep-failed`) holds the program's files with their modes, a setuid one among them (setuid to the
/// range's first id, the id every as-root sandbox's root is): its folder is private, so no other host
/// user can reach it, nor another sandbox through a read-write volume.
fn check_kept_layer_setid() {
    if !is_root() {
        return; // rootless, the kept files are the caller's own
    }
    let keep = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(keep.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let sb = builder().writable_layer_in(keep.path()).build().expect("build");
    let out = both(&run(&sb, "mkdir -p /srv && cp /bin/busybox /srv/s && chmod 6755 /srv/s; echo done"));
    assert!(out.ends_with("done\n"), "{out}");
    // Private, and the range's root's: an id no host user is and no sandbox's read-write volume maps
    // (a volume maps the host's root alone), so no other sandbox's root reaches inside either.
    let meta = std::fs::metadata(keep.path()).expect("the kept folder");
    assert_eq!((meta.mode() & 0o777, meta.uid()), (0o700, 2_000_000_000), "the kept layer's folder is private");
    if let Some((_, uid, gid)) = test_user() {
        let reached = std::process::Command::new("setpriv")
            .args([format!("--reuid={uid}"), format!("--regid={gid}"), "--clear-groups".into(), "--".into()])
            .arg("/bin/test")
            .arg("-e")
            .arg(keep.path().join("upper/srv/s"))
            .status()
            .expect("run test(1) as the test user");
        assert!(!reached.success(), "another host user reaches the kept setuid file");
    }
}

/// As root, a mount point setup makes in a kept writable layer (a file volume's, where the rootfs has
/// no such file) is left there with the layer, as what the program makes is: it must be root's inside
/// too (the range's first id on the host), so that a sandbox started again on that layer
/// (`Builder::layer`) can write it. Left the host's root's, it shows as `nobody`'s, which root inside
/// may neither write nor chown.
fn check_kept_layer_mount_point_owner() {
    if !is_root() {
        return; // rootless, everything setup makes is the caller's
    }
    let keep = tempfile::tempdir().expect("tempdir");
    let host = tempfile::tempdir().expect("tempdir");
    std::fs::write(host.path().join("app.conf"), "host\n").expect("write");
    let sb = builder()
        .writable_layer_in(keep.path())
        .mount(Mount::bind(host.path().join("app.conf"), "/etc/app.conf").read_only())
        .build()
        .expect("build");
    assert_eq!(sh(&sb, "cat /etc/app.conf"), "host\n");
    let again = builder().layer(keep.path().join("upper")).build().expect("build");
    let out = run(&again, "stat -c %u:%g /etc/app.conf; echo changed > /etc/app.conf && cat /etc/app.conf");
    assert_eq!(both(&out), "0:0\nchanged\n", "the kept mount point is root's inside");
}

/// Rootless, what the program leaves in a host folder (a read-write volume, a kept writable layer)
/// stays the caller's, removable by the caller: such a sandbox maps no subordinate ids, so nothing
/// there can be given to an id of the range. Elsewhere other ids exist where newuidmap allows.
fn check_written_host_folders_stay_the_callers() {
    if is_root() {
        return; // as root, check_volume_setid: a written volume maps only root
    }
    let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    let give_away =
        "mkdir -p /data/d && touch /data/d/f && chown -R 1000:1000 /data/d || echo chown refused; echo done";
    let vol = tempfile::tempdir().expect("tempdir");
    let sb = builder().mount(Mount::bind(vol.path(), "/data")).build().expect("build");
    let text = both(&run(&sb, give_away));
    assert!(text.contains("chown refused") && text.contains("done\n"), "{text}");
    for path in ["d", "d/f"] {
        let meta = std::fs::metadata(vol.path().join(path)).expect("written");
        assert_eq!((meta.uid(), meta.gid()), me, "{path} is the caller's: {text}");
    }
    let keep = tempfile::tempdir().expect("tempdir");
    let sb = builder().writable_layer_in(keep.path()).build().expect("build");
    let text = both(&run(&sb, give_away));
    assert!(text.contains("chown refused") && text.contains("done\n"), "{text}");
    let meta = std::fs::metadata(keep.path().join("upper/data/d/f")).expect("kept");
    assert_eq!((meta.uid(), meta.gid()), me, "the kept file is the caller's: {text}");
    if subordinate_ids() {
        let plain = builder().build().expect("build");
        assert_eq!(
            sh(&plain, "mkdir -p /data/d && touch /data/d/f && chown -R 1000:1000 /data/d && stat -c %u:%g /data/d/f"),
            "1000:1000\n"
        );
    }
}

/// What setup itself writes into a read-write volume lands there, the caller's, as what the program
/// writes does: a `Builder::file` whose path is in the volume (plan::filesystem_phase: "a
/// file may land in a volume") and the mount point of a volume inside it. As root the volume is
/// id-mapped through a namespace that maps root alone, and init creates there as the host's root, an
/// id that mapping does not hold: setup fails with EOVERFLOW and the sandbox does not start.
fn check_setup_writes_into_a_written_volume() {
    let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    let vol = tempfile::tempdir().expect("tempdir");
    let inner = tempfile::tempdir().expect("tempdir");
    std::fs::write(inner.path().join("inner.txt"), "inner\n").expect("write");
    let sb = builder()
        .mount(Mount::bind(vol.path(), "/data"))
        .mount(Mount::bind(inner.path(), "/data/sub/inner").read_only())
        .file("/data/given.txt", "given\n")
        .build()
        .expect("build");
    let out = sb.command("/bin/cat").args(["/data/given.txt", "/data/sub/inner/inner.txt"]).output();
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!("a file and a volume inside a read-write volume: the sandbox does not start: {e:?}"),
    };
    assert_eq!(both(&out), "given\ninner\n");
    for path in ["given.txt", "sub"] {
        let meta = std::fs::metadata(vol.path().join(path)).expect("written by setup");
        assert_eq!((meta.uid(), meta.gid()), me, "{path} is the caller's");
    }
}

/// Review 19: setup writes `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` into a host folder
/// bound at another path when the rootfs's `/etc` leads there (a symlink `etc -> /data/etc` resolved
/// inside the root, as every setup path is): the user's host files are overwritten (read-write), or
/// the start fails with "write /etc/hostname: Read-only file system" (read-only), though only a bind
/// at or above `/etc` was checked. Setup should write into no host file, whatever way `/etc` leads.
fn check_etc_through_a_symlink_to_a_volume() {
    let work = tempfile::tempdir().expect("tempdir");
    let tree = hostile_rootfs(work.path(), &[("etc", "/data/etc".to_owned())]);
    let volume = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(volume.path().join("etc")).expect("mkdir");
    let hosts = volume.path().join("etc/hosts");
    std::fs::write(&hosts, "10.0.0.5\tapi.example.com\n").expect("write");
    let rw = Sandbox::builder().rootfs_dir(&tree).mount(Mount::bind(volume.path(), "/data")).build().expect("build");
    let result = rw.command("/bin/true").status().map_err(|e| sandbox::error_chain(&e));
    assert_eq!(
        (std::fs::read_to_string(&hosts).expect("read"), system_tests::list(&volume.path().join("etc"))),
        ("10.0.0.5\tapi.example.com\n".to_owned(), vec!["hosts".to_owned()]),
        "setup wrote into the host folder ({result:?})"
    );
    let ro = Sandbox::builder()
        .rootfs_dir(&tree)
        .mount(Mount::bind(volume.path(), "/data").read_only())
        .build()
        .expect("build");
    let result = ro.command("/bin/true").status().map(|s| s.success()).map_err(|e| sandbox::error_chain(&e));
    assert_eq!(result, Ok(true), "a read-only volume that /etc leads into");
}

/// A host file the caller hands a program as its stdin or stdout (a fixture, a log:
/// `sandbox-run … > log`, `Command::stdout(File)`), also a session command's, and a folder handed as
/// stdin, stay the caller's: the program cannot give them to another id through its descriptor
/// (`chown … /proc/self/fd/1`). Rootless with subordinate ids, it could: the file would be left owned
/// by an id of the range, which the caller cannot chmod, write or give back without newuidmap (and
/// `chmod 4755` on top makes it setuid to that id on the host), although no host folder is bound.
fn check_stdio_files_stay_the_callers() {
    let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, log) = (dir.path().join("input"), dir.path().join("log"));
    std::fs::write(&input, "fixture\n").expect("write the input");
    std::fs::set_permissions(&input, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let give_away = "chown 1000:1000 /proc/self/fd/0 /proc/self/fd/1 && chmod 4755 /proc/self/fd/1 && \
                     echo given away >&2; echo done >&2";
    let sb = builder().build().expect("build");
    let session = sb.session().expect("a session");
    for (who, mut cmd) in [("a command", sb.command("/bin/sh")), ("a session command", session.command("/bin/sh"))] {
        let stdin = std::fs::File::open(&input).expect("open the input");
        let stdout = std::fs::File::create(&log).expect("create the log");
        let out = cmd.args(["-c", give_away]).stdin(stdin).stdout(stdout).stderr(Stdio::piped()).output();
        let text = both(&out.expect("run a shell in the sandbox"));
        assert!(text.ends_with("done\n"), "{who}: {text}");
        for path in [&input, &log] {
            let meta = std::fs::metadata(path).expect("the caller's file");
            assert_eq!(
                (meta.uid(), meta.gid()),
                me,
                "{who} gave the caller's {} to another id (mode {:o}): {text}",
                path.display(),
                meta.mode()
            );
        }
    }
    // A folder as stdin would be a host folder the program writes through /proc/self/fd/0: refused
    // (check_directory_stdio_is_refused), and nothing is written there.
    let folder = tempfile::tempdir().expect("tempdir");
    let into_folder = "mkdir /proc/self/fd/0/d && touch /proc/self/fd/0/d/f && chown -R 1000:1000 /proc/self/fd/0/d";
    let stdin = std::fs::File::open(folder.path()).expect("open the folder");
    let refused = sb.command("/bin/sh").args(["-c", into_folder]).stdin(stdin).output();
    assert!(refused.is_err(), "a folder as stdin was taken: {refused:?}");
    assert!(!folder.path().join("d").exists(), "the program wrote into the caller's stdin folder");
}

/// Rootless, a single-threaded caller (tests/bin/one-sandbox.rs, as `sandbox-run`) maps the subordinate
/// ids too, unless `SANDBOX_SUBORDINATE_IDS=0` says not to (then only the caller's own ids); anything but
/// 0 or 1 there is an error that names the variable.
fn check_subordinate_ids_switch() {
    if is_root() {
        return; // as root, the program's range is the library's own (id_base)
    }
    let map = |value: Option<&str>| {
        let mut caller = std::process::Command::new(env!("CARGO_BIN_EXE_one-sandbox"));
        caller
            .args(["cat", "/proc/self/uid_map"])
            .env("SANDBOX_ROOTFS", rootfs().path())
            .stdin(std::process::Stdio::null());
        if let Some(v) = value {
            caller.env("SANDBOX_SUBORDINATE_IDS", v);
        }
        let out = caller.output().expect("run one-sandbox");
        (out.status.code(), both(&out))
    };
    let (code, text) = map(None);
    assert_eq!((code, text.lines().count()), (Some(0), if subordinate_ids() { 2 } else { 1 }), "{text}");
    let (code, text) = map(Some("0"));
    assert_eq!((code, text.lines().count()), (Some(0), 1), "only the caller's own id: {text}");
    let (code, text) = map(Some("yes"));
    assert!(code == Some(125) && text.contains("SANDBOX_SUBORDINATE_IDS"), "{text}");
}

/// The program cannot ptrace init (not dumpable), and the deadline holds even if init is stopped:
/// the helper, outside the sandbox, enforces it.
fn check_ptrace_init() {
    let Some(b) = builder_with_perl() else { return };
    let sb = b.build().expect("build");
    // PTRACE_SEIZE = 0x4206, PTRACE_INTERRUPT = 0x4207.
    let out =
        perl(&sb, r#"my $r = syscall(101, 0x4206, 1, 0, 0); print $r < 0 ? "seize errno=".($!+0) : "seized", "\n";"#);
    assert_eq!(out, "seize errno=1\n", "init can be ptraced");
    let m = marker();
    let sb = builder_with_perl().expect("perl").timeout(Duration::from_millis(500)).build().expect("build");
    let t = Instant::now();
    let program = format!(
        r#"if (syscall(101, 0x4206, 1, 0, 0) >= 0) {{ syscall(101, 0x4207, 1, 0, 0) }} exec("/bin/sleep", "{m}") or sleep 20;"#
    );
    let err = sb.command("/usr/local/bin/perl").args(["-e", &program]).status().expect_err("must time out");
    assert!(matches!(err, Error::TimedOut { .. }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "the deadline held: {:?}", t.elapsed());
    assert_eq!(system_tests::wait_until_gone(&format!("sleep {m}")), Vec::<i32>::new());
}

/// TIOCSTI on the terminal the program was given (the test's own pseudo-terminal) is refused: it
/// would type into the caller's shell.
fn check_tiocsti() {
    let Some(b) = builder_with_perl() else { return };
    let sb = b.build().expect("build");
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let out = sb
        .command("/usr/local/bin/perl")
        .args([
            "-e",
            r#"my $c = "x"; my $r = ioctl(STDIN, 0x5412, $c); print defined $r ? "injected" : "errno=".($!+0), "\n";"#,
        ])
        .stdin(Stdio::from(pty.slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert_eq!(both(&out), "errno=1\n");
    drop(pty.master);
}

/// The caller's own terminal, inherited (a suite or `sandbox-run` started from a shell; here a scratch
/// pseudo-terminal `script` runs a one-sandbox caller on): what the program changes of it is set back
/// when the sandbox ends: its settings (`stty raw -echo`: `stty -g` shows the same before and after),
/// its line discipline (TIOCSETD N_NULL, under which all later output vanished and the settings could
/// not even be read), exclusive mode (TIOCEXCL), and stopped output (TCXONC TCOOFF: the caller's next
/// line is printed, where it blocked for good). Two sandboxes of one caller holding the terminal at
/// once, the first making it raw and ending first, leave it as it was before both (the second had set
/// back the raw mode it saw at its start). The twenty-ninth to thirty-first outside reviews.
fn check_terminal_settings_are_set_back() {
    if std::process::Command::new("script").arg("--version").output().is_err() || perl_mounts().is_none() {
        return skip("needs util-linux's script, and a host perl to bind in");
    }
    let one = env!("CARGO_BIN_EXE_one-sandbox");
    let binds: Vec<String> = PERL_BINDS.iter().map(|(host, inside)| format!("{host}:{inside}")).collect();
    // Printed first: once its output is stopped, the program's own writes would block.
    let tamper = r#"print "tampered\n"; system("stty raw -echo"); ioctl(STDIN, 0x540C, 0); ioctl(STDIN, 0x540A, 0);
        my $l = pack("i", 27); ioctl(STDIN, 0x5423, $l);"#;
    let state = r#"ioctl(STDIN, 0x80045440, $x) or die "TIOCGEXCL: $!"; ioctl(STDIN, 0x5424, $d) or die "TIOCGETD: $!";
        print "exclusive=", unpack("i", $x), " discipline=", unpack("i", $d), "\n""#;
    let line = format!(
        "stty -g; {one} /usr/local/bin/perl -e '{tamper}'; stty -g; perl -e '{state}'; {one} --overlap-terminal; stty -g"
    );
    let out = std::process::Command::new("timeout")
        .args(["60", "script", "-qec", &line, "/dev/null"])
        .env("SANDBOX_ROOTFS", rootfs().path())
        .env("ONE_SANDBOX_BINDS", binds.join(","))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lines[1], "tampered", "{text}");
    assert_eq!(lines[0], lines[2], "the settings stayed changed: {text}");
    assert_eq!(lines[3], "exclusive=0 discipline=0", "{text}");
    assert_eq!(lines[0], lines[4], "overlapping sandboxes left the terminal changed: {text}");
}

/// A directory as a standard stream (`sandbox-run … 0</`) would be a host path the program could walk
/// from (`/proc/self/fd/0/etc/…`, the twenty-ninth outside review): refused before anything runs.
fn check_directory_stdio_is_refused() {
    let sb = builder().build().expect("build");
    let secret_dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(secret_dir.path().join("secret"), "host secret").expect("write");
    let dir = std::fs::File::open(secret_dir.path()).expect("open the directory");
    let err = sb
        .command("/bin/cat")
        .arg("/proc/self/fd/0/secret")
        .stdin(Stdio::from(dir))
        .output()
        .expect_err("a directory as stdin");
    let text = sandbox::error_chain(&err);
    assert!(text.contains("stdin") && text.contains("directory"), "{text}");
}

/// The caller's terminal as the program's stdin (a suite or `sandbox-run` started from a shell; here the
/// test's own pseudo-terminal) is a host inode of the caller's, on the host's devpts, and no anonymous
/// pipe: rootless with subordinate ids, the program must not give it to an id of the range. It can
/// (subids::on_host counts a character device as no host file): where devpts makes it group `tty`
/// (unmapped, so CAP_CHOWN does not apply), the program joins a group of the range, which chown(2) lets an
/// owner give its file to, then gives it to uid 1000 inside and makes it 0666. Every host user can then
/// read what the caller types there (`sudo` passwords) and write to it, and the caller can neither chmod
/// it back nor `mesg n` until the terminal is closed. The terminal here is a scratch one, gone with the
/// test.
fn check_terminal_stays_the_callers() {
    let Some(b) = builder_with_perl() else { return };
    let sb = b.build().expect("build");
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let ours = pty.slave.try_clone().expect("dup the terminal");
    let before = nix::sys::stat::fstat(&ours).expect("fstat the terminal");
    let give_away = r#"$) = "1 1"; chown(-1, 1, \*STDIN); chown(1000, 1000, \*STDIN); chmod(0666, \*STDIN);
        my @st = stat(STDIN); printf "inside %d:%d %o\n", $st[4], $st[5], $st[2] & 07777;"#;
    let out = sb
        .command("/usr/local/bin/perl")
        .args(["-e", give_away])
        .stdin(Stdio::from(pty.slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run perl in the sandbox");
    let after = nix::sys::stat::fstat(&ours).expect("fstat the terminal");
    assert_eq!(
        (after.st_uid, after.st_gid),
        (before.st_uid, before.st_gid),
        "the program gave the caller's terminal to another id (mode {:o} -> {:o}): {}",
        before.st_mode & 0o7777,
        after.st_mode & 0o7777,
        both(&out)
    );
    drop(pty.master);
}

/// A read-only volume may hold a host service's unix socket (a runtime folder: the caller's
/// `$XDG_RUNTIME_DIR`, a test's own fixture server), and connect(2) goes through a read-only bind. A
/// service that hands out descriptors (SCM_RIGHTS: a D-Bus method returning a file, a fixture server;
/// here the test, on a scratch file of its own) gives the program a host file of the caller's that no
/// bind makes read-only: rootless with subordinate ids, the program must not give it to an id of the
/// range (subids::allowed looks at stdio and read-write binds only), nor make it setuid to one.
fn check_passed_descriptor_stays_the_callers() {
    use std::os::fd::AsRawFd;
    let Some(b) = builder_with_perl() else { return };
    let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    let service = tempfile::tempdir().expect("tempdir");
    let scratch = tempfile::tempdir().expect("tempdir");
    let (sock, victim) = (service.path().join("sock"), scratch.path().join("victim"));
    std::fs::write(&victim, "the caller's file\n").expect("write the victim");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind the service's socket");
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&victim).expect("open the victim");
    let server = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        let fds = [file.as_raw_fd()];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        let iov = [std::io::IoSlice::new(b"x")];
        // Fails (EPIPE) where the test itself unblocked the accept below.
        let _ =
            nix::sys::socket::sendmsg::<()>(conn.as_raw_fd(), &iov, &cmsg, nix::sys::socket::MsgFlags::empty(), None);
    });
    let sb = b.mount(Mount::bind(service.path(), "/svc").read_only()).build().expect("build");
    // AF_UNIX and SOCK_STREAM are 1 (Socket.pm is not among what perl_mounts binds), and recvmsg(2)
    // (47 on x86_64) by hand: perl-base has no Socket::MsgHdr.
    let program = r#"socket(my $s, 1, 1, 0) or die "socket: $!";
        connect($s, pack("S Z108", 1, "/svc/sock")) or die "connect: $!";
        my ($buf, $ctl) = ("\0", "\0" x 64);
        my $iov = pack("P Q", $buf, 1);
        my $msg = pack("Q L x4 P Q P Q i x4", 0, 0, $iov, 1, $ctl, 64, 0);
        syscall(47, fileno($s), $msg, 0) == 1 or die "recvmsg: $!";
        my (undef, undef, undef, $fd) = unpack("Q i i i", $ctl);
        open(my $f, "<&=", $fd) or die "fdopen $fd: $!";
        print "received a descriptor\n";
        chown(1000, 1000, $f) and chmod(04755, $f) and print "given away\n";"#;
    let out = sb.command("/usr/local/bin/perl").args(["-e", program]).output().expect("run perl in the sandbox");
    let text = both(&out);
    // Unblocks the service if the program never connected.
    let _ = std::os::unix::net::UnixStream::connect(&sock);
    server.join().expect("the service");
    let meta = std::fs::metadata(&victim).expect("the victim");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7000),
        (me.0, me.1, 0),
        "a descriptor passed through a read-only volume's socket let the program give the caller's file \
         away (mode {:o}): {text}",
        meta.mode()
    );
}

/// `user_namespace(true)` as root maps root inside to an unprivileged host range, never to uid 0, and
/// the program has no capability over the host (`/proc/sys` stays read-only by permissions too).
/// Rootless, root inside is the caller, and ids 1.. its subordinate range where newuidmap allows it.
fn check_identity() {
    let sb = builder().build().expect("build");
    let out = sh(
        &sb,
        "cat /proc/self/uid_map; echo -; cat /proc/self/gid_map; echo -; grep -E '^(NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status",
    );
    let parts: Vec<&str> = out.split("-\n").collect();
    assert_eq!(parts.len(), 3, "{out}");
    for map in &parts[..2] {
        let extents: Vec<Vec<u64>> =
            map.lines().map(|l| l.split_whitespace().filter_map(|f| f.parse().ok()).collect()).collect();
        if is_root() {
            assert_eq!(extents.len(), 1, "one range: {out}");
            assert_eq!((extents[0][0], extents[0][2]), (0, 65536), "root and 65535 more ids: {out}");
            assert!(extents[0][1] >= 65536, "root inside is an unprivileged host id: {out}");
        } else if subordinate_ids() {
            // Nested in the setup namespace: root is the caller there, 1.. its subordinate range.
            assert_eq!(extents, [vec![0, 0, 1], vec![1, 1, 65535]], "{out}");
        } else {
            assert_eq!(extents, [vec![0, 0, 1]], "only the caller's own id: {out}");
        }
    }
    // One filter, whether the program installed it or inherited it (as root, from the filtered fork
    // server): never the same one twice.
    assert_eq!(parts[2], "NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n", "{out}");
}

/// `privileged()` restores the behaviour from before issue 9: as root, no user namespace at all (the
/// full identity map), and neither no_new_privs nor a seccomp filter, nor masks.
fn check_privileged() {
    let sb = builder().privileged().build().expect("build");
    let out = sh(
        &sb,
        "cat /proc/self/uid_map; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; grep -c ' /proc/kcore ' /proc/mounts || true",
    );
    let mut lines = out.lines();
    let map: Vec<u64> = lines.next().unwrap_or_default().split_whitespace().filter_map(|f| f.parse().ok()).collect();
    if is_root() {
        assert_eq!(map, [0, 0, 4_294_967_295], "the host's root: {out}");
    } else {
        assert_eq!(map, [0, u64::from(nix::unistd::geteuid().as_raw()), 1], "{out}");
    }
    assert_eq!(lines.collect::<Vec<_>>(), ["NoNewPrivs:\t0", "Seccomp:\t0", "0"], "{out}");
}

/// `privileged()` leaves init as it was before f754eaf: dumpable, so that the program (root of its
/// user namespace rootless, the host's root as root) can look at it as at any process of its own
/// (`/proc/1/fd`, `/proc/1/exe`, a debugger). Init starts the program in a process that shares its
/// memory until the exec (clone with CLONE_VM | CLONE_VFORK), and PR_SET_DUMPABLE is a property of
/// that memory: the eleventh review found that process's "not dumpable until exec" step made init
/// not dumpable too (rootless, the program was then refused init's files; as root it keeps
/// CAP_SYS_PTRACE over the host). It now leaves the flag as init had it. (In a default sandbox init
/// is dumpable for as long as the program's process writes its oom_score_adj.)
fn check_privileged_init_as_before() {
    let sb = builder().privileged().build().expect("build");
    // `cd` asks for what `ls` would (the ptrace check of a not dumpable init) without stat-ing each
    // descriptor: `ls` failed when init closed one between listing and stat-ing it (seen in CI).
    let out = both(&run(&sb, "cd /proc/1/fd && readlink /proc/1/exe >/dev/null && echo reachable"));
    assert_eq!(out, "reachable\n", "a privileged sandbox's init was made not dumpable by the program's start");
}

#[test]
fn a_privileged_init_is_left_as_it_was() {
    check_privileged_init_as_before();
}

#[test]
fn rootless_a_privileged_init_is_left_as_it_was() {
    rootless_checks(&["privileged_init"]);
}

/// The attribute's `privileged`: the same, for a test body.
#[sandbox::sandbox_test(privileged)]
fn privileged_test_body_has_no_filter() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    assert!(status.lines().any(|l| l == "NoNewPrivs:\t0") && status.lines().any(|l| l == "Seccomp:\t0"), "{status}");
}

#[test]
fn privileged_restores_the_old_behaviour() {
    check_privileged();
}

/// The seccomp filter of the helper (the process `Child::id` names) of a running sandbox, as the
/// host's `/proc` shows it: (`Seccomp`, `Seccomp_filters`).
fn helper_filter(sb: &Sandbox) -> (String, String) {
    let mut child = sb.command("sleep").arg("30").stdout(Stdio::null()).spawn().expect("spawn");
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let field =
        |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned()).unwrap_or_default();
    (field("Seccomp:"), field("Seccomp_filters:"))
}

/// As root, from a caller with threads (a test harness), a default sandbox's helper is forked by the
/// filtered fork server, which installed the default filter once: the helper, init and the program
/// inherit it (the program then installs none: one filter, `check_identity`), so that no start pays
/// the filter's compilation into the kernel. A privileged sandbox's helper has no filter.
/// Rootless, installing a filter needs no_new_privs, which would keep the server's later helpers from
/// running `newuidmap`: there each program installs its own, and helpers have none.
#[test]
fn as_root_sandboxes_inherit_the_filter_from_the_fork_server() {
    if !is_root() {
        assert_eq!(helper_filter(&builder().build().expect("build")), ("0".to_owned(), "0".to_owned()));
        return;
    }
    assert_eq!(helper_filter(&builder().build().expect("build")), ("2".to_owned(), "1".to_owned()));
    assert_eq!(helper_filter(&builder().privileged().build().expect("build")), ("0".to_owned(), "0".to_owned()));
    // Killed from outside, it is started again: in a process of its own, whose servers no other test
    // of this binary uses.
    ChildTest::new("child_a_killed_filtered_server_is_started_again").assert_success();
    // A read-write volume's stricter filter goes over the inherited one, in the program only.
    let vol = tempfile::tempdir().expect("tempdir");
    let sb = builder().mount(Mount::bind(vol.path(), "/data")).build().expect("build");
    assert_eq!(helper_filter(&sb), ("2".to_owned(), "1".to_owned()));
    let out = sh(&sb, "grep -E '^Seccomp_filters:' /proc/self/status");
    assert_eq!(out, "Seccomp_filters:\t2\n");
}

/// A single-threaded caller (tests/bin/one-sandbox.rs: `sandbox-run --per-test`, a tool's `main`) forks
/// its first sandbox's helper itself and, as root, its later ones' through a filtered server of its
/// own: a fork of it that installed the default filter once, which their helpers inherit (before,
/// each program installed its own: 0.12 ms a sandbox here). That server keeps none of the caller's
/// descriptors (a pipe's reader sees the end once the caller closes its write end) and ends with the
/// caller. Rootless there is none (as for the fork servers' filtered one). A caller with threads'
/// executed fork server keeps none of what the caller held without close-on-exec either.
#[test]
fn a_single_threaded_caller_s_later_sandboxes_come_from_a_filtered_server_of_its_own() {
    use std::io::{BufRead, Write};
    let mut caller = std::process::Command::new(env!("CARGO_BIN_EXE_one-sandbox"))
        .args(["/bin/sh", "-c", "echo started; read line"])
        .env("SANDBOX_ROOTFS", rootfs().path())
        .env("ONE_SANDBOX_REPEAT", "3")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run one-sandbox");
    let mut input = caller.stdin.take().expect("stdin");
    let mut lines = std::io::BufReader::new(caller.stdout.take().expect("stdout")).lines();
    let filter_of = |pid: i32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status.lines().find_map(|l| l.strip_prefix("Seccomp_filters:")).map(|v| v.trim().to_owned())
    };
    // Per sandbox, while it runs: the caller's filtered servers, and the filters of their children.
    let mut seen = Vec::new();
    for round in 0..3 {
        assert_eq!(lines.next().map(|l| l.expect("read")), Some("started".to_owned()), "round {round}");
        let servers: Vec<i32> = system_tests::children_of(caller.id() as i32)
            .into_iter()
            .filter(|&p| system_tests::is_filtered_server(p))
            .collect();
        let helpers: Vec<Option<String>> =
            servers.iter().flat_map(|&s| system_tests::children_of(s)).map(filter_of).collect();
        let others = system_tests::children_of(caller.id() as i32).into_iter().filter(|p| !servers.contains(p)).count();
        seen.push((servers, helpers, others));
        writeln!(input, "go").expect("write");
    }
    assert!(caller.wait().expect("wait").success());
    if is_root() {
        assert!(
            seen[0].0.is_empty() && seen[0].2 == 1,
            "the first sandbox's helper is the caller's own fork: {seen:?}"
        );
        let server = seen[1].0.clone();
        assert_eq!(server.len(), 1, "{seen:?}");
        assert_eq!(seen[2].0, server, "one server for all later sandboxes: {seen:?}");
        for (_, helpers, _) in &seen[1..] {
            assert_eq!(helpers, &[Some("1".to_owned())], "a helper under the inherited filter: {seen:?}");
        }
        // The first helper, ended, was reaped when the second sandbox ended (not left a zombie).
        assert_eq!(seen[2].2, 0, "{seen:?}");
        // It ends right after its caller (the end of its socket, or its parent-death signal).
        let ended = || {
            let state = std::fs::read_to_string(format!("/proc/{}/stat", server[0])).unwrap_or_default();
            state.is_empty() || state.contains(") Z")
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ended() && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(ended(), "the server ends with its caller");
    } else {
        assert!(seen.iter().all(|(servers, _, _)| servers.is_empty()), "{seen:?}");
    }
    // Also from a caller with threads, whose fork server is executed with what the caller holds
    // without close-on-exec (the twenty-seventh outside review: it kept such a pipe open).
    for threaded in [false, true] {
        let mut caller = std::process::Command::new(env!("CARGO_BIN_EXE_one-sandbox"));
        caller.arg("--pipe-eof").env("SANDBOX_ROOTFS", rootfs().path()).stdin(std::process::Stdio::null());
        if threaded {
            caller.env("ONE_SANDBOX_THREADED", "1");
        }
        let out = caller.output().expect("run one-sandbox");
        assert_eq!(both(&out), "eof\n", "no process of the sandboxes holds the caller's pipe (threads: {threaded})");
    }
}

/// Where the kernel (or a container's profile) refuses seccomp filters, the filtered fork server cannot
/// install its own: it says so, and the caller's sandboxes go to the first server, whose programs
/// fail to install theirs with the step, the errno and a hint, as before it existed (an outside
/// review: the requests sent to it were lost, and every start failed with `HelperDied`).
#[test]
fn where_seccomp_is_refused_a_start_fails_with_its_reason() {
    if !is_root() {
        return; // rootless, there is no filtered server
    }
    ChildTest::new("child_seccomp_refused").assert_success();
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_seccomp_refused() {
    if !is_child("child_seccomp_refused") {
        return;
    }
    // Every thread of this process, and all it starts, gets EPERM from seccomp(2).
    let rules = std::collections::BTreeMap::from([(nix::libc::SYS_seccomp, Vec::new())]);
    let filter = seccompiler::SeccompFilter::new(
        rules,
        seccompiler::SeccompAction::Allow,
        seccompiler::SeccompAction::Errno(1),
        std::env::consts::ARCH.try_into().expect("a seccompiler architecture"),
    )
    .expect("filter");
    let program: seccompiler::BpfProgram = filter.try_into().expect("compile");
    seccompiler::apply_filter_all_threads(&program).expect("install");
    for attempt in 0..3 {
        let err = builder().build().expect("build").command("/bin/true").status().expect_err("no filter");
        let text = sandbox::error_chain(&err);
        assert!(
            matches!(&err, Error::Setup { step, .. } if step.contains("seccomp"))
                && text.contains("Builder::privileged()"),
            "attempt {attempt}: {err:?}"
        );
    }
    let filtered = system_tests::filtered_servers();
    assert!(filtered.is_empty(), "no filtered server is left or started again: {filtered:?}");
}

/// The first fork server killed while the filtered one is being made (a second outside review: the
/// caller then gave up the filtered server for good, and every later helper ran unfiltered, each
/// program paying its own install): that start goes to a new first server, and later ones get a
/// filtered server again.
#[test]
fn a_start_that_loses_its_servers_mid_way_is_served_and_later_ones_filtered() {
    if !is_root() {
        return; // rootless, there is no filtered server
    }
    ChildTest::new("child_servers_lost_mid_handshake").assert_success();
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_servers_lost_mid_handshake() {
    if !is_child("child_servers_lost_mid_handshake") {
        return;
    }
    use nix::sys::signal::{Signal, kill};
    let privileged = builder().privileged().build().expect("build");
    assert_eq!(sh(&privileged, "echo first"), "first\n", "the first server is started");
    let first = system_tests::fork_servers();
    assert_eq!(first.len(), 1, "{first:?}");
    let first = nix::unistd::Pid::from_raw(first[0]);
    kill(first, Signal::SIGSTOP).expect("stop");
    let start = std::thread::spawn(|| sh(&builder().build().expect("build"), "echo served"));
    // Most often the default start is waiting for the filtered server by now; if not, its request
    // finds the first server dead: either way it must be served.
    std::thread::sleep(Duration::from_millis(300));
    kill(first, Signal::SIGKILL).expect("kill");
    assert_eq!(start.join().expect("thread"), "served\n");
    assert_eq!(helper_filter(&builder().build().expect("build")), ("2".to_owned(), "1".to_owned()));
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_a_killed_filtered_server_is_started_again() {
    if !is_child("child_a_killed_filtered_server_is_started_again") {
        return;
    }
    assert_eq!(helper_filter(&builder().build().expect("build")), ("2".to_owned(), "1".to_owned()));
    let filtered = system_tests::filtered_servers();
    assert_eq!(filtered.len(), 1, "one filtered server below {:?}", system_tests::fork_servers());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(filtered[0]), nix::sys::signal::Signal::SIGKILL).expect("kill");
    // Gone (reaped by the fork server), and with it its end of the socket: a request sent while it
    // was dying would be lost with it, as one sent to a dying fork server is.
    let gone = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{}", filtered[0])).exists() && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(5));
    }
    let sb = builder().build().expect("build");
    assert_eq!(sh(&sb, "echo again"), "again\n");
    assert_eq!(helper_filter(&sb), ("2".to_owned(), "1".to_owned()));
}

// ---- what works today still works ----

fn check_what_worked_still_works() {
    let sb = builder().hostname("works").build().expect("build");
    // First, as a closure re-runs the test up to this call inside the sandbox: a privileged port.
    let (bound, uid_map) = sb
        .run(|| {
            let bound = std::net::TcpListener::bind("0.0.0.0:80").map(|_| ()).map_err(|e| e.to_string());
            (bound, std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default())
        })
        .expect("closure");
    assert_eq!(bound, Ok(()));
    // A closure runs in the sandbox's user namespace too: as root, not the host's root.
    let outside: u64 = uid_map.split_whitespace().nth(1).and_then(|f| f.parse().ok()).unwrap_or(0);
    assert!(!is_root() || outside >= 65536, "{uid_map}");
    // Root powers over the sandbox's own namespaces: a tmpfs, the hostname, lo's settings, modes.
    let out = sh(
        &sb,
        "mkdir /tmp/m && mount -t tmpfs -o size=1m tmpfs /tmp/m && echo x > /tmp/m/f && umount /tmp/m && echo tmpfs; \
         hostname renamed && hostname; \
         ip link set lo mtu 1400 && ip link show lo | grep -o 'mtu [0-9]*'; \
         echo hi > /tmp/own && chmod 600 /tmp/own && cat /tmp/own; \
         printf 'b\\na\\n' | sort | tr '\\n' ' '; echo; \
         echo abc | sed s/b/B/ | awk '{print toupper($0)}'",
    );
    assert_eq!(out, "tmpfs\nrenamed\nmtu 1400\nhi\na b \nABC\n");
    if is_root() || subordinate_ids() {
        // Ids other than root inside: a file given to uid 1000.
        assert_eq!(sh(&sb, "touch /tmp/f && chown 1000:1000 /tmp/f && stat -c %u:%g /tmp/f"), "1000:1000\n");
    }
    if rootfs().path().join("sbin/apk").exists() {
        assert!(sh(&sb, "apk --version").starts_with("apk-tools"));
    } else {
        eprintln!("note: the fixture rootfs has no apk; checked with a real Alpine only");
    }
}

/// Whether this (rootless) user has subordinate ids that `newuidmap` can map.
fn subordinate_ids() -> bool {
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten().map(|u| u.name).unwrap_or_default();
    let listed = std::fs::read_to_string("/etc/subuid")
        .is_ok_and(|s| s.lines().any(|l| l.split(':').next() == Some(me.as_str())));
    listed && Path::new("/usr/bin/newuidmap").exists()
}

// ---- as the invoking user (root in CI) ----

#[test]
fn what_worked_still_works() {
    check_what_worked_still_works();
}

#[test]
fn host_disk_is_out_of_reach() {
    check_host_disk_via_mknod();
}

#[test]
fn open_by_handle_at_is_refused() {
    check_open_by_handle_at();
}

#[test]
fn global_sysctls_are_read_only() {
    check_global_sysctls();
}

#[test]
fn sysfs_is_read_only() {
    check_sysfs_writes();
}

#[test]
fn clock_is_read_only() {
    check_clock();
}

#[test]
fn cgroup_mounts_show_only_the_sandbox() {
    check_cgroups();
}

#[test]
fn without_limits_no_cgroup_hierarchy_is_in_view() {
    check_cgroups_without_limits();
}

#[test]
fn read_only_volume_stays_read_only() {
    check_read_only_volume();
}

#[test]
fn proc_is_masked() {
    check_masked_proc();
}

#[test]
fn no_descriptor_leaks_in() {
    check_leaked_descriptors();
}

#[test]
fn a_closures_process_is_out_of_reach() {
    check_closure_process();
}

#[test]
fn hostile_rootfs_symlinks_write_nothing_on_the_host() {
    check_hostile_rootfs_symlinks();
}

#[test]
fn etc_through_a_symlink_to_a_volume_writes_nothing_there() {
    check_etc_through_a_symlink_to_a_volume();
}

#[test]
fn rootless_etc_through_a_symlink_to_a_volume_writes_nothing_there() {
    rootless_checks(&["etc_through_a_symlink"]);
}

#[test]
fn a_program_cannot_make_init_read_without_end() {
    check_endless_command_line();
}

#[test]
fn a_deadline_is_a_timeout_whatever_a_command_line_holds() {
    check_deadline_with_an_endless_command_line();
}

#[test]
fn hostile_tarball_writes_nothing_on_the_host() {
    check_hostile_tarball();
}

#[test]
fn tmpfs_mounts_have_sizes() {
    check_tmpfs_sizes();
}

#[test]
fn keyring_is_out_of_reach() {
    check_keyring();
}

#[test]
fn init_cannot_be_stopped() {
    check_ptrace_init();
}

#[test]
fn tiocsti_is_refused() {
    check_tiocsti();
}

#[test]
fn the_callers_terminal_settings_are_set_back() {
    check_terminal_settings_are_set_back();
}

#[test]
fn a_directory_as_stdio_is_refused() {
    check_directory_stdio_is_refused();
}

#[test]
fn a_kept_layers_mount_point_is_root_inside() {
    check_kept_layer_mount_point_owner();
}

#[test]
fn setup_writes_into_a_written_volume_as_the_caller() {
    check_setup_writes_into_a_written_volume();
}

#[test]
fn root_inside_is_not_the_hosts_root() {
    check_identity();
}

// ---- as an unprivileged user ----

/// Runs `child` (a test of this binary) as the unprivileged test user, with a cache of its own.
fn as_test_user(child: &str) {
    if !is_root() {
        return; // this run is already unprivileged: the tests above were the rootless run
    }
    let Some((_, uid, gid)) = test_user() else {
        return skip("no unprivileged test user: create one (`useradd sandbox-test`) or set $SANDBOX_TEST_USER");
    };
    let home = dir_owned_by(uid, gid);
    ChildTest::new(child)
        .as_user(uid, gid)
        .env("SANDBOX_TEST_CACHE", home.path().join("cache"))
        .env("TMPDIR", home.path())
        .assert_success();
}

#[test]
fn init_memory_and_descriptors_are_out_of_reach() {
    check_init_memory();
}

#[test]
fn masks_use_the_sandboxs_own_dev_null() {
    check_mask_source();
}

#[test]
fn session_commands_are_out_of_reach_until_filtered() {
    check_session_seize();
}

#[test]
fn sandboxes_start_where_pidfd_open_is_refused() {
    check_without_pidfd_open();
}

#[test]
fn a_subreaper_caller_collects_no_zombies() {
    check_subreaper_zombies();
}

#[test]
fn rootless_a_subreaper_caller_collects_no_zombies() {
    as_test_user("child_a_subreaper_caller_collects_no_zombies");
}

#[test]
fn a_killed_caller_leaves_no_namespace_holder() {
    check_holder_orphan();
}

#[test]
fn a_killed_caller_leaves_no_init_behind() {
    check_init_orphan();
}

#[test]
fn a_written_volume_gets_no_setuid_file_and_no_foreign_owner() {
    check_volume_setid();
}

#[test]
fn a_written_volume_gets_no_setuid_file_from_a_session_command() {
    check_session_volume_setid();
}

#[test]
fn a_written_volume_gets_no_capabilities_through_io_uring_or_setxattrat() {
    check_volume_setid_unfiltered();
}

#[test]
fn a_written_volume_gets_no_setuid_copy_up_from_overlayfs() {
    check_volume_setid_overlay_copy_up();
}

#[test]
fn a_closure_gets_only_the_sandboxs_environment() {
    check_closure_environment();
}

#[test]
fn a_kept_layer_holds_no_setuid_file() {
    check_kept_layer_setid();
}

#[test]
fn a_callers_stdio_file_stays_the_callers() {
    check_stdio_files_stay_the_callers();
}

#[test]
fn rootless_a_callers_stdio_file_stays_the_callers() {
    rootless_checks(&["stdio_files"]);
}

#[test]
fn a_callers_terminal_stays_the_callers() {
    check_terminal_stays_the_callers();
}

#[test]
fn rootless_a_callers_terminal_stays_the_callers() {
    rootless_checks(&["terminal"]);
}

#[test]
fn rootless_terminal_settings_are_set_back_and_directory_stdio_refused() {
    rootless_checks(&["terminal_settings", "directory_stdio"]);
}

#[test]
fn a_descriptor_passed_through_a_read_only_volume_stays_the_callers() {
    check_passed_descriptor_stays_the_callers();
}

#[test]
fn rootless_a_descriptor_passed_through_a_read_only_volume_stays_the_callers() {
    rootless_checks(&["passed_descriptor"]);
}

/// `sandbox-run --rootfs host` (the default for a test binary; `Builder::rootfs_dir("/")`): a top-level
/// host folder with a mount below it (`/run`, with `/run/lock` and `/run/user/$UID` on Debian and
/// Ubuntu) cannot be an overlay's lower layer inside a user namespace, so it is bound read-only instead
/// (plan::host_overlay), the mounts below it included, and connect(2) needs no writable mount: the
/// program reaches every host service listening there (the caller's systemd manager and D-Bus session
/// bus at `/run/user/$UID/systemd/private` and `/run/user/$UID/bus`, where a transient unit runs any
/// command on the host; docker's socket for a caller in group `docker`, whose groups a sandbox without
/// subordinate ids keeps). A socket in an overlay connects to nothing (ECONNREFUSED), as a host
/// service must not. Here, in a mount namespace of the test's own: a tmpfs at `/srv` with one below it,
/// a scratch service at `/srv/service.sock`, rootless.
#[test]
fn host_rootfs_reaches_no_host_service() {
    let Some(user) = srv_test_user() else { return };
    in_srv_as(Some(user), "child_host_rootfs_reaches_no_host_service", "");
}

/// For a `host_rootfs_*` check, which needs a mount namespace of its own: as root, the unprivileged
/// test user the root run checks as; `None` rootless, or (with a skip line) where the test user or a
/// `/srv` folder to mount a scratch tmpfs on is missing.
fn srv_test_user() -> Option<(u32, u32)> {
    if !is_root() {
        return None; // the root run does it as the test user
    }
    let Some((_, uid, gid)) = test_user() else {
        skip("no unprivileged test user: create one (`useradd sandbox-test`) or set $SANDBOX_TEST_USER");
        return None;
    };
    if !Path::new("/srv").is_dir() {
        skip("needs a /srv folder to mount a scratch tmpfs on, in a mount namespace of the test's own");
        return None;
    }
    Some((uid, gid))
}

/// Runs `child` as `user` (`None`: root) with a scratch `/srv` ([`in_srv_with_a_submount`]), and checks
/// that it passed.
fn in_srv_as(user: Option<(u32, u32)>, child: &str, prepare: &str) {
    let text = in_srv_with_a_submount(child, prepare, user);
    assert!(text.contains("1 passed"), "as {user:?}: {text}");
}

/// Runs the child test `child` (as `user`, or root) in a mount namespace of its own where `/srv` is a
/// scratch tmpfs with another below it (`/srv/lock`): a top-level host folder overlayfs refuses inside
/// a user namespace. `prepare` (shell) runs there first. Returns the child's output; panics if it fails.
fn in_srv_with_a_submount(child: &str, prepare: &str, user: Option<(u32, u32)>) -> String {
    let home = user.map(|(uid, gid)| dir_owned_by(uid, gid));
    let mut test = ChildTest::new(child);
    if let (Some((uid, gid)), Some(home)) = (user, &home) {
        test = test.as_user(uid, gid).env("TMPDIR", home.path());
    }
    let (child, _copy) = test.command();
    let mounts = format!(
        "mount --make-rprivate / && mount -t tmpfs -o mode=0777,size=1m scratch /srv && mkdir /srv/lock && \
         mount -t tmpfs -o size=1m lock /srv/lock && {prepare} true && exec \"$@\""
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "sh", "-c", &mounts, "sh"]).arg(child.get_program()).args(child.get_args());
    for (k, v) in child.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().expect("run the child in a mount namespace of its own");
    let text = both(&out);
    assert!(out.status.success(), "{text}");
    text
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_host_rootfs_reaches_no_host_service() {
    use std::io::Write;
    if !is_child("child_host_rootfs_reaches_no_host_service") {
        return;
    }
    let sock = Path::new("/srv/service.sock");
    let listener = std::os::unix::net::UnixListener::bind(sock).expect("bind the scratch service");
    let server = std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let _ = conn.write_all(b"HOST SERVICE REACHED\n");
        }
    });
    let sb = Sandbox::builder().rootfs_dir("/").current_dir("/").build().expect("build");
    let connect = r#"socket(my $s, 1, 1, 0) or die "socket: $!";
        if (connect($s, pack("S Z108", 1, "/srv/service.sock"))) { print scalar <$s> } else { print "errno=", $!+0, "\n" }"#;
    let out = sb.command("/usr/bin/perl").args(["-e", connect]).output().expect("run the host's perl");
    let text = both(&out);
    // Unblocks the service if the program never connected.
    let _ = std::os::unix::net::UnixStream::connect(sock);
    server.join().expect("the service");
    assert!(!text.contains("HOST SERVICE REACHED"), "a host service under a submount is reachable: {text}");
    assert!(text.starts_with("errno="), "{text}");
}

/// `--rootfs host` where a top-level host folder overlayfs refuses holds an entry whose name is not
/// UTF-8 (any local user can make one in a folder they may write, and a program in another sandbox
/// through a read-write volume): plan::host_overlay rebuilds the folder from `Sys::list_dir`, which
/// names entries by `to_string_lossy`, so the bind source `/oldroot/srv/\u{FFFD}` does not exist and
/// every rootless host-rootfs sandbox of every user fails to start (ENOENT). As root (no refusal: the
/// id-mapped lower layer) it starts; the test checks both.
#[test]
fn host_rootfs_starts_beside_a_host_file_whose_name_is_not_utf8() {
    let Some(user) = srv_test_user() else { return };
    let child = "child_host_rootfs_starts_beside_a_host_file_whose_name_is_not_utf8";
    let prepare = "echo note > \"/srv/name-$(printf '\\377')\" && chmod 0644 /srv/name-* &&";
    for user in [Some(user), None] {
        in_srv_as(user, child, prepare);
    }
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_host_rootfs_starts_beside_a_host_file_whose_name_is_not_utf8() {
    if !is_child("child_host_rootfs_starts_beside_a_host_file_whose_name_is_not_utf8") {
        return;
    }
    let sb = Sandbox::builder().rootfs_dir("/").current_dir("/").build().expect("build");
    let out = sb.command("/bin/sh").args(["-c", "cat /srv/name-*"]).output().expect("run the host's sh");
    let text = both(&out);
    assert!(out.status.success() && text.contains("note"), "a host-rootfs sandbox does not start: {text}");
}

/// `--rootfs host`, a top-level host folder overlayfs refuses: plan::host_overlay lists it, then binds
/// each entry listed as a regular file by its path, and mount(2) follows a symlink there. An entry that
/// turns into a symlink between the listing and the bind (a program in another sandbox with a
/// read-write volume on that folder can flip one in a loop, as any local user who may write there)
/// gets what the symlink names bound instead: `lock/service.sock`, a host service's socket below a
/// submount, which connect(2) then reaches. Here the flipper is a program in a sandbox with `/srv` as
/// a read-write volume, rootless.
#[test]
fn host_rootfs_binds_no_socket_a_listed_file_turned_into_a_symlink_names() {
    let Some(user) = srv_test_user() else { return };
    let child = "child_host_rootfs_binds_no_socket_a_listed_file_turned_into_a_symlink_names";
    in_srv_as(Some(user), child, "mkdir -m 0777 /srv/stage && chmod 0777 /srv/lock &&");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_host_rootfs_binds_no_socket_a_listed_file_turned_into_a_symlink_names() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    if !is_child("child_host_rootfs_binds_no_socket_a_listed_file_turned_into_a_symlink_names") {
        return;
    }
    let sock = Path::new("/srv/lock/service.sock");
    let listener = std::os::unix::net::UnixListener::bind(sock).expect("bind the scratch service");
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(mut conn) = conn {
                    let _ = conn.write_all(b"HOST SERVICE REACHED\n");
                }
            }
        })
    };
    std::fs::write("/srv/flip", "a plain file\n").expect("write /srv/flip");
    // The flipper: a program in another sandbox, with /srv as a read-write volume.
    let flip = r#"while (1) { symlink("lock/service.sock", "/data/stage/l"); rename("/data/stage/l", "/data/flip");
        open(my $f, ">", "/data/stage/f"); close($f); rename("/data/stage/f", "/data/flip") }"#;
    let other = Sandbox::builder().rootfs_dir("/").mount(Mount::bind("/srv", "/data")).build().expect("build");
    let mut flipper = other.command("/usr/bin/perl").args(["-e", flip]).spawn().expect("start the flipper");
    let connect = r#"socket(my $s, 1, 1, 0) or die "socket: $!";
        if (connect($s, pack("S Z108", 1, "/srv/flip"))) { print scalar <$s> } else { print "errno=", $!+0, "\n" }"#;
    let mut reached = None;
    let mut started = 0;
    for attempt in 0..150 {
        let Ok(sb) = Sandbox::builder().rootfs_dir("/").current_dir("/").build() else { continue };
        let Ok(out) = sb.command("/usr/bin/perl").args(["-e", connect]).output() else { continue };
        started += 1;
        let text = both(&out);
        if text.contains("HOST SERVICE REACHED") {
            reached = Some((attempt, text));
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    flipper.kill().expect("stop the flipper");
    let _ = flipper.wait();
    let _ = std::os::unix::net::UnixStream::connect(sock);
    server.join().expect("the service");
    assert!(reached.is_none(), "a host service is reachable through a flipped entry: {reached:?} ({started} started)");
    assert!(started > 0, "no sandbox started");
}

/// `--rootfs host`, rootless, a top-level host folder overlayfs refuses: plan::host_overlay binds each
/// of its files one by one, in every sandbox, and a mount namespace holds at most `fs.mount-max`
/// (100000) mounts. A folder of 100100 empty files (any local user who may write there, or a program
/// in another sandbox through a read-write volume, makes one in a second) costs each start ~7 s, then
/// fails it: "mount a writable overlay of a host folder `/srv`: No space left on device"; 10000 files
/// cost ~0.7 s a start. Every host-rootfs sandbox of every user on the machine stops starting. Now at
/// most 512 entries of such a folder are rebuilt, and the sandbox starts.
#[test]
fn host_rootfs_starts_beside_a_host_folder_of_many_files() {
    let Some(user) = srv_test_user() else { return };
    let child = "child_host_rootfs_starts_beside_a_host_folder_of_many_files";
    let prepare = "(cd /srv && seq -f 'f%g' 1 100100 | xargs touch) &&";
    in_srv_as(Some(user), child, prepare);
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_host_rootfs_starts_beside_a_host_folder_of_many_files() {
    if !is_child("child_host_rootfs_starts_beside_a_host_folder_of_many_files") {
        return;
    }
    check_srv_shows_512_of_100101_entries();
}

/// A host-rootfs sandbox starts beside a `/srv` of 100101 entries (with a mount below it) and shows the
/// first 512 by name (plan::HOST_ENTRIES): the README says the rest is left out, and the program's
/// stderr says so.
fn check_srv_shows_512_of_100101_entries() {
    let sb = Sandbox::builder().rootfs_dir("/").current_dir("/").build().expect("build");
    let out = sb.command("/bin/sh").args(["-c", "ls /srv | wc -l"]).output().expect("run the host's sh");
    let text = both(&out);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && shown.trim() == "512", "a host-rootfs sandbox does not start: {text}");
    assert!(text.contains("only 512 of the 100101 entries of the host folder /srv"), "{text}");
}

/// `--rootfs host`, rootless: a host folder with a mount below it that the caller may not list (docker's
/// `/var/lib/docker`, mode 0710, with its containers' overlays mounted below; kubelet's pods) makes
/// overlayfs refuse it, and plan::host_overlay then lists it: EACCES, and the sandbox does not start
/// ("mount a writable overlay of a host folder `/srv`: Permission denied"). Before the rebuild, `/srv`
/// was bound read-only and the sandbox started: every rootless host-rootfs sandbox on a machine that
/// runs docker containers now fails.
#[test]
fn host_rootfs_starts_beside_a_host_folder_the_caller_may_not_list() {
    let Some(user) = srv_test_user() else { return };
    let child = "child_host_rootfs_starts_beside_a_host_folder_the_caller_may_not_list";
    let prepare = "mkdir -m 0710 /srv/docker && mkdir /srv/docker/overlay2 && \
                   mount -t tmpfs -o size=1m merged /srv/docker/overlay2 &&";
    in_srv_as(Some(user), child, prepare);
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_host_rootfs_starts_beside_a_host_folder_the_caller_may_not_list() {
    if !is_child("child_host_rootfs_starts_beside_a_host_folder_the_caller_may_not_list") {
        return;
    }
    let sb = Sandbox::builder().rootfs_dir("/").current_dir("/").build().expect("build");
    let out = sb.command("/bin/ls").arg("/srv").output().expect("run the host's ls");
    let text = both(&out);
    assert!(out.status.success() && text.contains("docker"), "a host-rootfs sandbox does not start: {text}");
}

/// `--rootfs host`, rootless: a host folder with a mount below it deeper than plan::HOST_DEPTH (a CI
/// checkout `/home/ci/src/proj` whose `target` is a volume; `/var/lib/docker/overlay2`) is left empty,
/// all of it, not just the mount: `/srv/d1/d2/d3/f` is gone, a host test binary's fixture there with it,
/// and nothing says so. Before the rebuild, `/srv` was bound read-only and the file was there.
#[test]
fn host_rootfs_shows_a_host_file_beside_a_deep_mount() {
    let Some(user) = srv_test_user() else { return };
    let child = "child_host_rootfs_shows_a_host_file_beside_a_deep_mount";
    let prepare = "mkdir -p /srv/d1/d2/d3/m && echo fixture > /srv/d1/d2/d3/f && \
                   mount -t tmpfs -o size=1m deep /srv/d1/d2/d3/m &&";
    in_srv_as(Some(user), child, prepare);
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_host_rootfs_shows_a_host_file_beside_a_deep_mount() {
    if !is_child("child_host_rootfs_shows_a_host_file_beside_a_deep_mount") {
        return;
    }
    let sb = Sandbox::builder().rootfs_dir("/").current_dir("/").build().expect("build");
    let out = sb.command("/bin/cat").arg("/srv/d1/d2/d3/f").output().expect("run the host's cat");
    let text = both(&out);
    assert!(out.status.success() && text.contains("fixture"), "a host file is gone: {text}");
}

/// `--rootfs host`, rootless, a top-level host folder overlayfs refuses: plan::host_overlay caps the
/// *files* it binds at 512 a folder, but not the subfolders: each one gets three `mkdir`s and an
/// overlay mount of its own, in every sandbox. A folder of 100100 empty subfolders (any local user who
/// may write there, or a program in another sandbox through a read-write volume, makes one in seconds)
/// costs each start ~30 s, then fails it on `fs.mount-max` (100000 mounts a namespace): "mount /proc
/// for the new pid namespace: No space left on device" (sandbox-run: "mount a writable overlay of a
/// host folder `/usr`: No space left on device"); 5000 subfolders cost ~0.9 s a start. Every host-rootfs sandbox of every user on the machine stops starting.
#[test]
fn host_rootfs_starts_beside_a_host_folder_of_many_subfolders() {
    let Some(user) = srv_test_user() else { return };
    let child = "child_host_rootfs_starts_beside_a_host_folder_of_many_subfolders";
    let prepare = "(cd /srv && seq -f 'd%g' 1 100100 | xargs mkdir) &&";
    in_srv_as(Some(user), child, prepare);
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_host_rootfs_starts_beside_a_host_folder_of_many_subfolders() {
    if !is_child("child_host_rootfs_starts_beside_a_host_folder_of_many_subfolders") {
        return;
    }
    // As with files.
    check_srv_shows_512_of_100101_entries();
}

/// `--rootfs host`, rootless, a top-level host folder overlayfs refuses: plan::host_overlay copies each
/// of its symlinks into the new root's tmpfs, in every sandbox, with no cap (the 512 cap counts files
/// only), and a symlink whose target is longer than a few dozen bytes takes a page there. A folder of
/// 20000 symlinks to 3000-byte names (any local user who may write there makes one in a second) costs
/// each sandbox 80 MB of memory and ~0.9 s of start (`df /` inside: 80000 KiB used, 0 without them);
/// 1.5 million of them fill the new root (a quarter of RAM) and no sandbox of anyone's starts.
#[test]
fn host_rootfs_copies_a_bounded_number_of_host_symlinks() {
    let Some(user) = srv_test_user() else { return };
    let child = "child_host_rootfs_copies_a_bounded_number_of_host_symlinks";
    let prepare =
        "mount -o remount,size=128m /srv && (cd /srv && perl -e 'symlink(q(x) x 3000, qq(s$_)) for 1..20000') &&";
    in_srv_as(Some(user), child, prepare);
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_host_rootfs_copies_a_bounded_number_of_host_symlinks() {
    if !is_child("child_host_rootfs_copies_a_bounded_number_of_host_symlinks") {
        return;
    }
    let sb = Sandbox::builder().rootfs_dir("/").current_dir("/").build().expect("build");
    let out = sb.command("/bin/sh").args(["-c", "df -k / | tail -1"]).output().expect("run the host's sh");
    let text = both(&out);
    let used: u64 = text.split_whitespace().nth(2).and_then(|u| u.parse().ok()).unwrap_or(u64::MAX);
    assert!(out.status.success() && used < 4096, "the new root holds {used} KiB of the host's symlinks: {text}");
}

/// A supplementary group the rootless run's user is given, which the host file below denies.
const DENIED_GROUP: u32 = 54321;

/// Rootless, the caller's supplementary groups hold inside as on the host wherever a host file is in
/// reach: a host file that denies one of them (mode 0604, group `DENIED_GROUP`) stays unreadable
/// through a read-only volume. (A sandbox that maps subordinate ids, where setgroups is allowed and
/// the program starts without supplementary groups, binds no host folder: crate::spawn::subids.)
#[test]
fn rootless_a_group_denied_file_stays_unreadable() {
    if !is_root() {
        return;
    }
    let Some((_, uid, gid)) = test_user() else {
        return skip("no unprivileged test user: create one (`useradd sandbox-test`) or set $SANDBOX_TEST_USER");
    };
    let denied = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(denied.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let file = denied.path().join("f");
    std::fs::write(&file, "group-denied secret\n").expect("write the file");
    std::os::unix::fs::chown(&file, Some(0), Some(DENIED_GROUP)).expect("chown");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o604)).expect("chmod");
    let home = dir_owned_by(uid, gid);
    let (template, _copy) = ChildTest::new("child_rootless_a_group_denied_file_stays_unreadable")
        .as_user(uid, gid)
        .env("SANDBOX_TEST_CACHE", home.path().join("cache"))
        .env("TMPDIR", home.path())
        .env("ESCAPE_DENIED_DIR", denied.path())
        .command();
    // ChildTest's command, with the group instead of --clear-groups.
    let mut cmd = std::process::Command::new(template.get_program());
    cmd.args(
        template
            .get_args()
            .map(|a| if a == "--clear-groups" { format!("--groups={DENIED_GROUP}").into() } else { a.to_owned() }),
    );
    cmd.envs(template.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
    let out = cmd.output().expect("run the child test");
    let text = both(&out);
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_rootless_a_group_denied_file_stays_unreadable() {
    if !is_child("child_rootless_a_group_denied_file_stays_unreadable") {
        return;
    }
    let dir = PathBuf::from(std::env::var_os("ESCAPE_DENIED_DIR").expect("the parent names the folder"));
    assert!(std::fs::read(dir.join("f")).is_err(), "the host denies the file to the caller's group");
    let sb = builder().mount(Mount::bind(&dir, "/denied").read_only()).build().expect("build");
    let text = both(&run(&sb, "grep Groups /proc/self/status; cat /denied/f; echo done"));
    assert!(text.contains("done\n") && text.contains("Groups:\t65534"), "the group is kept: {text}");
    assert!(!text.contains("secret"), "the program reads a file the host denies its caller's group: {text}");
}

#[test]
fn rootless_what_worked_still_works() {
    as_test_user("child_rootless_what_worked_still_works");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_rootless_what_worked_still_works() {
    if !is_child("child_rootless_what_worked_still_works") {
        return;
    }
    check_what_worked_still_works();
}

/// Every attack, by name, for the rootless runs.
const CHECKS: &[(&str, fn())] = &[
    ("volume_relinked", check_volume_source_relinked),
    ("kept_layer_folder", check_kept_layer_folder_held),
    ("host_disk", check_host_disk_via_mknod),
    ("open_by_handle_at", check_open_by_handle_at),
    ("sysctls", check_global_sysctls),
    ("sysfs", check_sysfs_writes),
    ("clock", check_clock),
    ("cgroups", check_cgroups),
    ("cgroups_without_limits", check_cgroups_without_limits),
    ("read_only_volume", check_read_only_volume),
    ("masked_proc", check_masked_proc),
    ("descriptors", check_leaked_descriptors),
    ("rootfs_symlinks", check_hostile_rootfs_symlinks),
    ("tarball_symlinks", check_hostile_tarball),
    ("tmpfs_sizes", check_tmpfs_sizes),
    ("keyring", check_keyring),
    ("ptrace_init", check_ptrace_init),
    ("tiocsti", check_tiocsti),
    ("terminal_settings", check_terminal_settings_are_set_back),
    ("directory_stdio", check_directory_stdio_is_refused),
    ("init_memory", check_init_memory),
    ("mask_source", check_mask_source),
    ("session_seize", check_session_seize),
    ("identity", check_identity),
    ("privileged", check_privileged),
    ("privileged_init", check_privileged_init_as_before),
    ("holder_orphan", check_holder_orphan),
    ("closure_process", check_closure_process),
    ("closure_environment", check_closure_environment),
    ("written_host_folders", check_written_host_folders_stay_the_callers),
    ("stdio_files", check_stdio_files_stay_the_callers),
    ("subordinate_ids_switch", check_subordinate_ids_switch),
    ("terminal", check_terminal_stays_the_callers),
    ("passed_descriptor", check_passed_descriptor_stays_the_callers),
    ("setup_writes_into_a_written_volume", check_setup_writes_into_a_written_volume),
    ("etc_through_a_symlink", check_etc_through_a_symlink_to_a_volume),
    ("pty_lease", check_session_lease_on_the_ptmx),
    ("pty_pool", check_pseudo_terminals_are_bounded),
];

/// Runs the named checks as the unprivileged test user.
fn rootless_checks(names: &[&str]) {
    if !is_root() {
        for (name, check) in CHECKS {
            if names.contains(name) {
                check();
            }
        }
        return;
    }
    let Some((_, uid, gid)) = test_user() else {
        return skip("no unprivileged test user: create one (`useradd sandbox-test`) or set $SANDBOX_TEST_USER");
    };
    let home = dir_owned_by(uid, gid);
    ChildTest::new("child_rootless_checks")
        .as_user(uid, gid)
        .env("SANDBOX_TEST_CACHE", home.path().join("cache"))
        .env("TMPDIR", home.path())
        .env("ESCAPE_CHECKS", names.join(","))
        .assert_success();
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_rootless_checks() {
    if !is_child("child_rootless_checks") {
        return;
    }
    let names = std::env::var("ESCAPE_CHECKS").unwrap_or_default();
    for name in names.split(',') {
        let (_, check) = CHECKS.iter().find(|(n, _)| *n == name).expect("a known check");
        check();
    }
}

#[test]
fn rootless_attacks_are_refused() {
    rootless_checks(&[
        "open_by_handle_at",
        "clock",
        "descriptors",
        "rootfs_symlinks",
        "tarball_symlinks",
        "tmpfs_sizes",
        "keyring",
        "ptrace_init",
        "tiocsti",
        "privileged",
        "init_memory",
        "mask_source",
        "session_seize",
        "holder_orphan",
        "closure_process",
    ]);
}

#[test]
fn rootless_closures_see_what_programs_see() {
    rootless_checks(&["closure_environment"]);
}

#[test]
fn rootless_setup_writes_into_a_written_volume_as_the_caller() {
    rootless_checks(&["setup_writes_into_a_written_volume"]);
}

#[test]
fn rootless_attacks_on_mounts_are_refused() {
    rootless_checks(&[
        "host_disk",
        "sysctls",
        "sysfs",
        "cgroups",
        "cgroups_without_limits",
        "read_only_volume",
        "masked_proc",
        "identity",
        "written_host_folders",
        "subordinate_ids_switch",
    ]);
}

/// Review 20: an earlier command of a session stalls a later `pty` command's start for the host's
/// `fs.lease-break-time` (45 s by default), then makes it fail. The session's root may mount in the
/// session's mount namespace: here it mounts a tmpfs over `/dev/pts`, puts a regular file `ptmx`
/// there and takes a read lease on it (fcntl F_SETLEASE; perl, as a hostile test would). The pty
/// command's process opens `/dev/pts/ptmx` for writing before its exec, which blocks until the
/// kernel breaks the lease: `spawn()` took 46 s by hand, then failed ("open a pseudo-terminal of
/// the sandbox's own"). The open should not wait on anything a program inside holds (O_NONBLOCK,
/// then a check that it is a pty master of a devpts), so that the start fails at once. Bounded here
/// by the session's 15 s deadline, at which the start fails with "failed to receive the sandbox's
/// pseudo-terminal over `its console socket`: unexpected end of file" rather than a timeout (the
/// killed process's exec pipe closed as an exec's would, and it was reported started). (A session
/// command's exec of a program file that another command holds a write lease on stalls the same
/// way; that one predates pseudo-terminals.)
fn check_session_lease_on_the_ptmx() {
    let Some(b) = builder_with_perl() else { return };
    let sb = b.timeout(Duration::from_secs(15)).build().expect("build");
    let session = sb.session().expect("session");
    let holder = r#"$SIG{IO} = "IGNORE"; system("mount -t tmpfs t /dev/pts") == 0 or die "mount";
        open(my $w, ">", "/dev/pts/ptmx") or die "create: $!"; close $w;
        open(my $f, "<", "/dev/pts/ptmx") or die "open: $!"; fcntl($f, 1024, 0) or die "lease: $!";
        $| = 1; print "leased\n"; sleep 100;"#;
    let mut attacker = session
        .command("/usr/local/bin/perl")
        .args(["-e", holder])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the attacker");
    let mut line = String::new();
    let stdout = attacker.stdout.as_mut().expect("the attacker's stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("read the attacker");
    assert_eq!(line, "leased\n", "the attacker took its lease");
    let t = Instant::now();
    let started = session.command("/usr/bin/tty").pty(24, 80).spawn().map(|_| ());
    let took = t.elapsed();
    let _ = attacker.kill();
    assert!(
        took < Duration::from_secs(5),
        "a pty command's start waited {took:?} on a lease another command holds: {:?}",
        started.map_err(|e| sandbox::error_chain(&e))
    );
}

#[test]
fn a_session_command_cannot_stall_a_pty_commands_start() {
    check_session_lease_on_the_ptmx();
}

/// Review 20: one sandbox can take every pseudo-terminal the host's non-initial devpts instances
/// share (`kernel.pty.max` - `kernel.pty.reserve`, 3072 here): its devpts is mounted without `max=`
/// and a single process may hold as many masters as its descriptor limit allows (20000 here, no
/// pids limit involved). Every other sandbox's `pty` command and `sandbox-run --shell` then fail
/// with ENOSPC (and so do other containers' terminals) for as long as it holds them; before
/// `Command::pty`, `--shell` allocated on the host's devpts, whose reserve kept it working. Each
/// sandbox's devpts should be bounded (`max=`, as LXC's `pty.max`), well below the host's pool.
/// Checked with at most half the pool (so that the check itself leaves the host some): the sandbox
/// must be refused before it gets that many.
fn check_pseudo_terminals_are_bounded() {
    let Some(b) = builder_with_perl() else { return };
    let number = |path: &str| host_file(path).trim().parse::<u64>().ok();
    let (Some(max), Some(reserve)) = (number("/proc/sys/kernel/pty/max"), number("/proc/sys/kernel/pty/reserve"))
    else {
        return skip("no /proc/sys/kernel/pty/{max,reserve}");
    };
    let half = max.saturating_sub(reserve) / 2 + 1;
    let sb = b.timeout(Duration::from_secs(60)).build().expect("build");
    let hog = format!(
        r#"ulimit -n $(ulimit -Hn); exec /usr/local/bin/perl -e 'my @m; while (@m < {half}) {{ open(my $f, "+<", "/dev/ptmx") or last; push @m, $f }} print scalar(@m), "\n"'"#
    );
    let held: u64 = sh(&sb, &hog).trim().parse().expect("a count");
    assert!(held > 0, "the sandbox could open no pseudo-terminal at all");
    assert!(held < half, "one sandbox held {held} of the host's {} shared pseudo-terminals", max - reserve);
}

#[test]
fn a_sandbox_cannot_take_the_hosts_pseudo_terminals() {
    check_pseudo_terminals_are_bounded();
}

/// Review 20: the lease on the ptmx above, rootless.
#[test]
fn rootless_a_session_command_cannot_stall_a_pty_commands_start() {
    rootless_checks(&["pty_lease"]);
}

/// Review 20: the pool of pseudo-terminals above, rootless.
#[test]
fn rootless_a_sandbox_cannot_take_the_hosts_pseudo_terminals() {
    rootless_checks(&["pty_pool"]);
}

/// A scratch folder and the paths `names` in it, those in `made` made as folders.
fn scratch<const N: usize>(names: [&str; N], made: &[&str]) -> (tempfile::TempDir, [PathBuf; N]) {
    let top = tempfile::tempdir().expect("tempdir");
    for name in made {
        std::fs::create_dir(top.path().join(name)).expect("mkdir");
    }
    let paths = names.map(|n| top.path().join(n));
    (top, paths)
}

/// The fifth outside review of `--keep-failed`: a sandbox that could write the folder holding a kept
/// layer's folder (through a read-write volume) swapped that folder for a link between its making and
/// setup's use of it, and root then created, chowned and mounted the layer in a host folder of its
/// choice, where the program read and deleted root's files. Setup now holds the very folder made when
/// the sandbox was built, through a descriptor opened without following links, and makes it the
/// range's root's, private: replaced by a link or by another folder, the start fails at that step and
/// nothing is made where the path leads; as root, another sandbox's root cannot reach inside it.
fn check_kept_layer_folder_held() {
    let (top, [keep, aside, victim]) = scratch(["keep", "aside", "victim"], &["keep", "victim"]);
    std::fs::write(victim.join("file"), "precious").expect("write the victim");
    let sb = builder().writable_layer_in(&keep).build().expect("build");
    std::fs::rename(&keep, &aside).expect("move the folder aside");
    for replaced_by_a_link in [true, false] {
        if replaced_by_a_link {
            // Relative: it leads to the victim from the host's root and from setup's staging root.
            std::os::unix::fs::symlink("victim", &keep).expect("link");
        } else {
            std::fs::create_dir(&keep).expect("another folder");
        }
        let err = sb.command("/bin/true").output().expect_err("a replaced folder is refused");
        assert!(err.to_string().contains("hold the writable layer's folder"), "{err}");
        assert_eq!(system_tests::list(&victim), ["file"]);
        assert_eq!(std::fs::metadata(&victim).expect("victim").mode() & 0o777, 0o755, "the victim's mode");
        if replaced_by_a_link {
            std::fs::remove_file(&keep).expect("unlink");
        } else {
            assert_eq!(system_tests::list(&keep), Vec::<String>::new(), "nothing made in the other folder");
            std::fs::remove_dir(&keep).expect("rmdir");
        }
    }
    std::fs::rename(&aside, &keep).expect("put the folder back");
    assert_eq!(sh(&sb, "echo kept > /etc/motd && cat /etc/motd"), "kept\n");
    assert_eq!(std::fs::read_to_string(keep.join("upper/etc/motd")).expect("kept"), "kept\n");
    // A caller that holds the folder it made names it by its descriptor (sandbox-run does): the
    // sandbox is built on that very folder, though its path leads elsewhere by then (the sixth
    // review: a link swapped in before the build sent the layer where it pointed).
    let fresh = top.path().join("fresh");
    std::fs::create_dir(&fresh).expect("mkdir");
    let held = std::fs::File::open(&fresh).expect("hold the folder");
    let moved = top.path().join("moved");
    std::fs::rename(&fresh, &moved).expect("move it");
    std::os::unix::fs::symlink("victim", &fresh).expect("link");
    let by_fd = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&held));
    let sb = builder().writable_layer_in(by_fd).build().expect("build");
    assert_eq!(sh(&sb, "echo held > /etc/motd && cat /etc/motd"), "held\n");
    assert_eq!(std::fs::read_to_string(moved.join("upper/etc/motd")).expect("kept"), "held\n");
    assert_eq!(system_tests::list(&victim), ["file"]);
    // A read-only layer (`--shell-from`'s) is held the same way: a folder swapped in for it after
    // the build, with a /bin/sh of someone else's, is refused, never mounted (the eighth review).
    let resumed = builder().layer(moved.join("upper")).build().expect("build");
    let decoy = top.path().join("decoy");
    std::fs::create_dir_all(decoy.join("etc")).expect("mkdir");
    std::fs::write(decoy.join("etc/motd"), "decoy\n").expect("write");
    std::fs::rename(moved.join("upper"), top.path().join("upper-aside")).expect("move the layer");
    std::fs::rename(&decoy, moved.join("upper")).expect("swap in the decoy");
    let err = resumed.command("/bin/cat").arg("/etc/motd").output().expect_err("a swapped layer is refused");
    assert!(err.to_string().contains("hold a layer's folder"), "{err}");
    std::fs::remove_dir_all(moved.join("upper")).expect("remove the decoy");
    std::fs::rename(top.path().join("upper-aside"), moved.join("upper")).expect("put the layer back");
    assert_eq!(sh(&resumed, "cat /etc/motd"), "held\n");
    if is_root() {
        let other = builder().mount(Mount::bind(top.path(), "/k")).build().expect("build");
        let out = run(&other, "ls /k/keep/upper; mkdir /k/keep/upper/x; ln -s / /k/keep/planted; echo done");
        let text = both(&out);
        assert!(out.stdout.ends_with(b"done\n") && text.matches("Permission denied").count() == 3, "{text}");
        assert!(!keep.join("upper/x").exists() && !keep.join("planted").exists(), "{text}");
    }
}

#[test]
fn a_kept_layers_folder_is_neither_replaced_nor_reached_by_another_sandbox() {
    check_kept_layer_folder_held();
}

#[test]
fn rootless_a_kept_layers_folder_is_not_replaced() {
    rootless_checks(&["kept_layer_folder"]);
}

/// The tenth outside review: a volume's source swapped for a link after the sandbox was built (one
/// sandbox-run test did it to the next through the workspace) bound whatever the link led to, a
/// root-only host file read through it. Sources are bound without following links: the start fails
/// at that step, and binds the folder again once it is back.
fn check_volume_source_relinked() {
    let (_top, [vol, aside, secret]) = scratch(["vol", "aside", "secret"], &["vol", "secret"]);
    std::fs::write(vol.join("mine"), "").expect("write");
    std::fs::write(secret.join("secret.txt"), "TOPSECRET").expect("write");
    let sb = builder().mount(Mount::bind(&vol, "/data").read_only()).build().expect("build");
    assert_eq!(sh(&sb, "ls /data"), "mine\n");
    std::fs::rename(&vol, &aside).expect("move the volume aside");
    std::os::unix::fs::symlink("secret", &vol).expect("link");
    let out = sb.command("/bin/cat").arg("/data/secret.txt").output();
    let shown = match &out {
        Ok(o) => both(o),
        Err(e) => e.to_string(),
    };
    assert!(!shown.contains("TOPSECRET"), "{shown}");
    let err = out.expect_err("a relinked source is refused");
    assert!(err.to_string().contains("setup failed"), "{err}");
    std::fs::remove_file(&vol).expect("unlink");
    // A folder put in its place is what a path names then (a test may make its folder anew between
    // runs), but not for a source named by a descriptor (`/proc/self/fd/N`, as sandbox-run holds what
    // it checked): that is the folder the sandbox was built on, or none (the fourteenth review).
    std::fs::create_dir(&vol).expect("another folder");
    std::fs::write(vol.join("other"), "").expect("write");
    assert_eq!(sh(&sb, "ls /data"), "other\n");
    std::fs::remove_dir_all(&vol).expect("remove the other folder");
    std::fs::rename(&aside, &vol).expect("put the volume back");
    let held = std::fs::File::open(&vol).expect("hold the volume");
    let by_fd = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&held));
    let pinned = builder().mount(Mount::bind(&by_fd, "/data").read_only()).build().expect("build");
    assert_eq!(sh(&pinned, "ls /data"), "mine\n");
    std::fs::rename(&vol, &aside).expect("move the volume aside");
    std::fs::rename(&secret, &vol).expect("the secret folder in its place");
    let out = pinned.command("/bin/cat").arg("/data/secret.txt").output();
    let shown = match &out {
        Ok(o) => both(o),
        Err(e) => e.to_string(),
    };
    assert!(!shown.contains("TOPSECRET"), "{shown}");
    assert!(out.is_err(), "another folder at a held source's path is refused: {shown}");
    std::fs::rename(&vol, &secret).expect("move the secret folder back");
    std::fs::rename(&aside, &vol).expect("put the volume back");
    assert_eq!(sh(&sb, "ls /data"), "mine\n");
    assert_eq!(sh(&pinned, "ls /data"), "mine\n");
}

/// The fourteenth outside review: a file of another mount namespace, named through
/// `/proc/PID/root/…` (a link a sandbox planted beside a program led there, into another sandbox of
/// its own), was checked there, while the library bound the path it read back, which named a
/// root-only file on the host. Such a source is refused when the sandbox is built. Here a scratch
/// tmpfs holds the decoy, over the folder holding the secret, in a mount namespace of the test's own.
#[test]
fn a_bind_source_in_another_mount_namespace_is_refused() {
    if !is_root() {
        return skip("needs root to make a mount namespace of its own (unshare -m)");
    }
    let (_top, [dir]) = scratch(["dir"], &["dir"]);
    std::fs::write(dir.join("f"), "TOPSECRET\n").expect("write the secret");
    let script = "mount --make-rprivate / && mount -t tmpfs -o size=1m decoy \"$1\" && echo decoy > \"$1/f\" && \
                  echo ready && exec cat";
    let mut other = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", script, "sh"])
        .arg(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start a process in a mount namespace of its own");
    let mut ready = String::new();
    let stdout = other.stdout.take().expect("its stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut ready).expect("read");
    assert_eq!(ready, "ready\n");
    let through = format!("/proc/{}/root{}", other.id(), dir.join("f").display());
    assert_eq!(std::fs::read_to_string(&through).expect("the decoy"), "decoy\n");
    let built = builder().mount(Mount::bind(&through, "/data/f").read_only()).build();
    drop(other.stdin.take());
    let _ = other.wait();
    let err = match built {
        Ok(sb) => panic!("built; the sandbox reads {:?}", sh(&sb, "cat /data/f")),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("names another file"), "{err}");
}

#[test]
fn a_volume_source_relinked_after_the_build_is_refused() {
    check_volume_source_relinked();
}

#[test]
fn rootless_a_volume_source_relinked_after_the_build_is_refused() {
    rootless_checks(&["volume_relinked"]);
}
