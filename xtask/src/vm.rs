//! `cargo xtask vm -- PROGRAM ARGS…`: runs PROGRAM in a throw-away qemu guest with a kernel of
//! its own and cgroup v2, on this machine's files. See `docs/design/vm-lane.md`.
//!
//! The guest boots Debian's `linux-image-amd64` with a hand-made initramfs, sees the host's `/`
//! read-only over virtio-9p under a tmpfs overlay (writes vanish with the guest, except in `--out`),
//! has no network device (loopback only), and runs PROGRAM in the same working directory with the
//! same environment, as root or `--user`. PROGRAM's stdout and stderr arrive live on ours, on two
//! virtio serial ports; the kernel's console goes to a log file. The exit code is PROGRAM's.

mod guest;
mod initramfs;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Folders the guest has of its own (docs/design/vm-lane.md): a host path below one is not there.
const GUEST_OWN: [&str; 5] = ["/tmp", "/run", "/dev", "/proc", "/sys"];

use anyhow::{Context, bail};

pub use guest::As;

#[derive(clap::Args)]
pub struct Args {
    /// Run PROGRAM as this user of the host's /etc/passwd (default: root).
    #[arg(long)]
    user: Option<String>,
    /// Give --user a delegated cgroup v2 subtree, as systemd's `Delegate=yes` does for
    /// user@UID.service (owned subtree, controllers enabled).
    #[arg(long, requires = "user")]
    delegate: bool,
    /// The guest's memory (qemu's -m).
    #[arg(long, default_value = "2G")]
    mem: String,
    /// The guest's CPUs.
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// A host directory the guest may write, at the same path (created if missing).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Kill the guest after this many seconds and exit with 124 (default: no limit).
    #[arg(long)]
    timeout: Option<u64>,
    /// kvm, tcg, or auto: KVM where a probe guest boots in time, else TCG (plain emulation).
    #[arg(long, default_value = "auto", env = "SANDBOX_VM_ACCEL")]
    accel: String,
    /// The program and its arguments.
    #[arg(trailing_var_arg = true, required = true)]
    command: Vec<String>,
}

/// Environment variables that name things of this host session the guest does not have.
const NOT_IN_GUEST: [&str; 16] = [
    "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
    "SSH_CONNECTION",
    "SSH_CLIENT",
    "SSH_TTY",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XDG_RUNTIME_DIR",
    "XDG_SESSION_ID",
    "DBUS_SESSION_BUS_ADDRESS",
    "TMUX",
    "TMUX_PANE",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "NOTIFY_SOCKET",
    "GPG_AGENT_INFO",
];

pub fn run(args: Args) -> anyhow::Result<()> {
    let code = run_guest(&args)?;
    std::process::exit(code);
}

fn run_guest(args: &Args) -> anyhow::Result<i32> {
    if !nix::unistd::geteuid().is_root() {
        bail!("`cargo xtask vm` needs root: qemu shares the host's / with the guest as it is (9p passthrough)");
    }
    let vm_dir = crate::target_dir().join("vm");
    let kernel = initramfs::Kernel::find()?;
    let initrd = prepare_initramfs(&vm_dir, &kernel)?;
    let accel = match args.accel.as_str() {
        "auto" => probe_accel(&vm_dir, &kernel, &initrd),
        "kvm" | "tcg" => args.accel.clone(),
        other => bail!("--accel {other}: expected kvm, tcg or auto"),
    };

    let who = match &args.user {
        None => As::Root,
        Some(name) => {
            let user = nix::unistd::User::from_name(name)
                .with_context(|| format!("look up user `{name}`"))?
                .with_context(|| format!("no user `{name}` in this host's /etc/passwd"))?;
            if !Path::new("/usr/bin/setpriv").exists() {
                bail!("--user needs util-linux's /usr/bin/setpriv on the host (apt-get install util-linux)");
            }
            As::User { uid: user.uid.as_raw(), gid: user.gid.as_raw(), delegate: args.delegate }
        }
    };
    let env = guest_env(std::env::vars(), args.user.as_deref())?;
    let cwd = std::env::current_dir().context("read the working directory")?;
    // The guest shows this machine's files, but its /tmp, /run, /dev, /proc and /sys are its own (a
    // new user's review: from a folder under /tmp the guest failed with "failed to enter the working
    // directory", naming neither).
    if let Some(own) = GUEST_OWN.iter().find(|d| cwd.starts_with(d)) {
        bail!(
            "the working directory {} is under {own}, which the guest has of its own (fresh): run from a folder \
             outside {} (e.g. /var/tmp)",
            cwd.display(),
            GUEST_OWN.join(", ")
        );
    }
    if let Some(out) = args.out.as_ref().filter(|o| !o.exists()) {
        std::fs::create_dir_all(out).with_context(|| format!("create --out {}", out.display()))?;
        // Created for the program: its user's, so that it can write there.
        if let As::User { uid, gid, .. } = who {
            nix::unistd::chown(out, Some(uid.into()), Some(gid.into()))
                .with_context(|| format!("give --out {} to --user", out.display()))?;
        }
    }
    let out = args.out.as_ref().map(std::path::absolute).transpose().context("resolve --out")?;

    // The report comes well before the deadline, which counts from qemu's start (boot included).
    let report_after = args.timeout.map(|t| t.saturating_sub(30).max(t / 2));
    let script =
        guest::script(&guest::Run { who, cwd: &cwd, env, argv: &args.command, out: out.as_deref(), report_after });
    let mut attempt = 1;
    let (run, status, started) = loop {
        let run = RunDir::create(&vm_dir, attempt)?;
        std::fs::write(run.ctl().join("run.sh"), &script).context("write the guest's script")?;
        let scratch = scratch_disk(&run.path)?;
        let mut qemu = qemu(&kernel, &initrd, &accel, &args.mem, args.cpus, &run.console(), "");
        qemu.arg("-drive")
            .arg(format!("file={},if=virtio,format=raw,cache=unsafe", escape(&scratch.to_string_lossy())));
        qemu.arg("-virtfs").arg(virtfs("/", "host", true));
        qemu.arg("-virtfs").arg(virtfs(&run.ctl().to_string_lossy(), "ctl", false));
        if let Some(out) = &out {
            qemu.arg("-virtfs").arg(virtfs(&out.to_string_lossy(), "out", false));
        }
        qemu.args(["-device", "virtio-serial-pci,id=ports"]);
        let mut relays = Vec::new();
        for (name, to_stderr) in [("stdout", false), ("stderr", true)] {
            let fifo = run.path.join(name);
            for end in ["in", "out"] {
                let path = fifo.with_extension(end);
                nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .with_context(|| format!("create the fifo {}", path.display()))?;
            }
            qemu.arg("-chardev").arg(format!("pipe,id={name},path={}", escape(&fifo.to_string_lossy())));
            qemu.arg("-device").arg(format!("virtserialport,bus=ports.0,chardev={name},name={name}"));
            relays.push(relay(fifo.with_extension("out"), to_stderr));
        }
        let started = Instant::now();
        let boot = (run.ctl().join("started"), BOOT_DEADLINE);
        let status = wait(&mut qemu, args.timeout.map(Duration::from_secs), &run.path.join("qemu.log"), Some(boot))?;
        for r in relays {
            let _ = r.join();
        }
        if status == Ended::NoBoot && attempt == 1 {
            // TCG boots stall now and then (seen: a soft lockup in the kernel's early self-tests).
            eprintln!(
                "vm: the guest did not boot within {} s; trying once more. Its console:\n{}",
                BOOT_DEADLINE.as_secs(),
                tail(&run.console())
            );
            run.remove();
            attempt += 1;
            continue;
        }
        break (run, status, started);
    };
    let elapsed = started.elapsed();
    let read = |name: &str| std::fs::read_to_string(run.ctl().join(name)).ok().map(|s| s.trim().to_owned());
    let result = match (status, read("error"), read("status")) {
        (Ended::TimedOut, _, _) => {
            eprintln!(
                "vm: killed the guest after {}s (--timeout); its console:\n{}",
                elapsed.as_secs(),
                tail(&run.console())
            );
            Ok(124)
        }
        (Ended::NoBoot, _, _) => Err(anyhow::anyhow!(
            "the guest did not boot within {} s, twice; its console:\n{}",
            BOOT_DEADLINE.as_secs(),
            tail(&run.console())
        )),
        (_, Some(error), _) => Err(anyhow::anyhow!("the guest could not start the program: {error}")),
        (_, None, Some(code)) => code.parse::<i32>().with_context(|| format!("the guest's exit status `{code}`")),
        (Ended::Exited(st), None, None) => Err(anyhow::anyhow!(
            "the guest ended ({st}) without running the program; qemu said:\n{}\nits console:\n{}",
            tail(&run.path.join("qemu.log")),
            tail(&run.console())
        )),
    };
    if std::env::var_os("SANDBOX_VM_VERBOSE").is_some() {
        eprintln!("vm: {accel}, {:.1}s from qemu's start to its end", elapsed.as_secs_f64());
    }
    if result.is_ok() {
        run.remove();
    } else {
        eprintln!("vm: kept {} for a look", run.path.display());
    }
    result
}

/// The initramfs for `kernel`, rebuilt when its inputs changed (cheap: a few MB).
fn prepare_initramfs(vm_dir: &Path, kernel: &initramfs::Kernel) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(vm_dir).with_context(|| format!("create {}", vm_dir.display()))?;
    let busybox_path = sandbox_fixtures::busybox_path();
    let busybox = sandbox_fixtures::read_static_busybox(&busybox_path)?;
    let bytes = initramfs::build(kernel, &busybox, guest::INIT)?;
    let path = vm_dir.join(format!("initramfs-{}.cpio", kernel.version));
    if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &bytes).with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("rename to {}", path.display()))?;
    }
    Ok(path)
}

/// `kvm` if a probe guest boots with it before a deadline, else `tcg`. KVM can be present and
/// still never run a guest (nested virtualisation that hangs, MSRs it refuses); the answer is kept
/// per kernel in `target/vm/accel-VERSION`.
fn probe_accel(vm_dir: &Path, kernel: &initramfs::Kernel, initrd: &Path) -> String {
    let cache = vm_dir.join(format!("accel-{}", kernel.version));
    if let Ok(known) = std::fs::read_to_string(&cache) {
        return known.trim().to_owned();
    }
    let kvm_opens = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    let answer = if kvm_opens {
        let console = vm_dir.join("kvm-probe.log");
        let _ = std::fs::remove_file(&console);
        let mut qemu = qemu(kernel, initrd, "kvm", "256M", 1, &console, " vm.probe");
        let booted = wait(&mut qemu, Some(Duration::from_secs(30)), &vm_dir.join("kvm-probe-qemu.log"), None);
        let said = std::fs::read_to_string(&console).unwrap_or_default().contains("vm: probe ok");
        if matches!(booted, Ok(Ended::Exited(_))) && said { "kvm" } else { "tcg" }
    } else {
        "tcg"
    };
    eprintln!(
        "vm: using {answer} (KVM {}; kept in {})",
        if kvm_opens { "probed" } else { "unavailable" },
        cache.display()
    );
    let _ = std::fs::write(&cache, answer);
    answer.to_owned()
}

/// The guest's `/tmp`: a sparse 8 GiB ext4 image in the run's folder (gone with it). ext4, not tmpfs:
/// Debian 12's kernel cannot id-map a tmpfs (Linux 6.3 can), and a host's `/tmp` is usually on disk.
fn scratch_disk(run: &Path) -> anyhow::Result<PathBuf> {
    let image = run.join("scratch.img");
    let file = std::fs::File::create(&image).with_context(|| format!("create {}", image.display()))?;
    file.set_len(8 << 30).with_context(|| format!("size {}", image.display()))?;
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1"])
        .arg(&image)
        .status()
        .context("run mkfs.ext4 (apt-get install e2fsprogs)")?;
    if !status.success() {
        bail!("mkfs.ext4 {} failed ({status})", image.display());
    }
    Ok(image)
}

/// qemu with no devices but a serial console (to `console`), the kernel and the initramfs.
fn qemu(
    kernel: &initramfs::Kernel,
    initrd: &Path,
    accel: &str,
    mem: &str,
    cpus: u32,
    console: &Path,
    cmdline: &str,
) -> Command {
    // setpriv --pdeathsig: qemu dies with us, even when we are SIGKILLed.
    let mut c = Command::new("setpriv");
    c.args(["--pdeathsig", "KILL", "--", "qemu-system-x86_64"]);
    c.args(["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-nic", "none"]);
    match accel {
        "kvm" => c.args(["-accel", "kvm", "-cpu", "host"]),
        _ => c.args(["-accel", "tcg", "-cpu", "max"]),
    };
    c.args(["-m", mem, "-smp", &cpus.to_string()]);
    c.arg("-kernel").arg(&kernel.image).arg("-initrd").arg(initrd);
    // cryptomgr.notests: the crypto self-tests cost boot time and once locked a TCG guest up.
    c.arg("-append").arg(format!("console=ttyS0 quiet loglevel=4 panic=-1 cryptomgr.notests rdinit=/init{cmdline}"));
    c.arg("-serial").arg(format!("file:{}", console.display()));
    c.stdin(Stdio::null()).stdout(Stdio::null());
    c
}

/// A `-virtfs` share of `path`: ownership and modes as on the host (passthrough), inode numbers
/// remapped so that a tree spanning several filesystems stays consistent under an overlay.
fn virtfs(path: &str, tag: &str, read_only: bool) -> String {
    let ro = if read_only { ",readonly=on" } else { "" };
    format!("local,path={},mount_tag={tag},security_model=passthrough,multidevs=remap{ro}", escape(path))
}

/// qemu's option syntax doubles a comma inside a value.
fn escape(value: &str) -> String {
    value.replace(',', ",,")
}

/// How long a guest may take to reach the run's script (normally 5-20 s under TCG).
const BOOT_DEADLINE: Duration = Duration::from_secs(120);

/// How a guest ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Exited(ExitStatus),
    /// Killed at the deadline.
    TimedOut,
    /// Killed because the boot marker did not appear in time.
    NoBoot,
}

/// Runs `cmd` (its stderr to `log`) until it exits or `timeout` passes (then it is killed). With
/// `boot`, it is also killed if the marker file does not exist once the boot deadline has passed.
fn wait(
    cmd: &mut Command,
    timeout: Option<Duration>,
    log: &Path,
    boot: Option<(PathBuf, Duration)>,
) -> anyhow::Result<Ended> {
    let log_file = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let mut child =
        cmd.stderr(log_file).spawn().context("start qemu-system-x86_64 (apt-get install qemu-system-x86)")?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let deadline = timeout.map(|t| Instant::now() + t);
    let left = |d: Option<Instant>| d.map(|d| d.saturating_duration_since(Instant::now()));
    let mut ended = None;
    if let Some((marker, within)) = boot {
        let first = left(deadline).map_or(within, |l| l.min(within));
        match rx.recv_timeout(first) {
            Ok(status) => ended = Some(Ended::Exited(status.context("wait for qemu")?)),
            Err(_) if !marker.exists() && first == within => ended = Some(Ended::NoBoot),
            Err(_) => {}
        }
    }
    let ended = match ended {
        Some(e) => e,
        None => match left(deadline) {
            Some(l) => rx.recv_timeout(l).ok().map_or(Ok(Ended::TimedOut), |s| s.map(Ended::Exited))?,
            None => rx.recv().map_err(|_| anyhow::anyhow!("qemu's waiter vanished"))?.map(Ended::Exited)?,
        },
    };
    if !matches!(ended, Ended::Exited(_)) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    let _ = waiter.join();
    Ok(ended)
}

/// Copies what the guest writes to a port, from the fifo qemu writes, to our stdout or stderr, as
/// it comes.
fn relay(fifo: PathBuf, to_stderr: bool) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        // Opening blocks until qemu opens its end; the end comes when qemu exits.
        let Ok(mut from) = std::fs::File::open(&fifo) else { return };
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let _ = if to_stderr {
                        let mut e = std::io::stderr().lock();
                        e.write_all(&buf[..n]).and_then(|()| e.flush())
                    } else {
                        let mut o = std::io::stdout().lock();
                        o.write_all(&buf[..n]).and_then(|()| o.flush())
                    };
                }
            }
        }
    })
}

/// The environment PROGRAM gets: ours, minus what names this host session's sockets, displays and
/// services, and with `HOME`, `USER`, `LOGNAME` of `user` when one is given.
fn guest_env(
    vars: impl Iterator<Item = (String, String)>,
    user: Option<&str>,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = vars
        .filter(|(k, _)| !NOT_IN_GUEST.contains(&k.as_str()) && !matches!(k.as_str(), "PWD" | "OLDPWD" | "SHLVL" | "_"))
        .collect();
    if let Some(name) = user {
        let home = nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .map(|u| u.dir.to_string_lossy().into_owned())
            .with_context(|| format!("no user `{name}`"))?;
        env.retain(|(k, _)| !matches!(k.as_str(), "HOME" | "USER" | "LOGNAME" | "MAIL"));
        env.extend([("HOME".into(), home), ("USER".into(), name.into()), ("LOGNAME".into(), name.into())]);
    }
    env.sort();
    Ok(env)
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}

/// One guest run's files: `ctl/` (the guest's script in, its status out), the port fifos, the
/// console log. Run directories of processes that no longer exist are swept.
struct RunDir {
    path: PathBuf,
}

impl RunDir {
    fn create(vm_dir: &Path, attempt: u32) -> anyhow::Result<RunDir> {
        if let Ok(entries) = std::fs::read_dir(vm_dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("run-").and_then(|p| p.split('-').next()?.parse::<u32>().ok())
                    && !Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let path = vm_dir.join(format!("run-{}-{attempt}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("ctl")).with_context(|| format!("create {}", path.display()))?;
        Ok(RunDir { path })
    }

    fn ctl(&self) -> PathBuf {
        self.path.join("ctl")
    }

    fn console(&self) -> PathBuf {
        self.path.join("console.log")
    }

    fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_gets_our_environment_minus_the_session() {
        let vars = [("PATH", "/usr/bin"), ("SSH_AUTH_SOCK", "/tmp/agent"), ("CI", "true"), ("PWD", "/x")];
        let env = guest_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())), None).expect("env");
        assert_eq!(env, vec![("CI".into(), "true".into()), ("PATH".into(), "/usr/bin".into())]);
        let as_root =
            guest_env([("HOME".to_string(), "/home/me".to_string())].into_iter(), Some("root")).expect("root");
        assert!(
            as_root.contains(&("HOME".into(), "/root".into())) && as_root.contains(&("USER".into(), "root".into()))
        );
    }

    #[test]
    fn shares_escape_commas() {
        assert_eq!(
            virtfs("/a,b", "out", false),
            "local,path=/a,,b,mount_tag=out,security_model=passthrough,multidevs=remap"
        );
    }
}
