//! The options that describe one sandbox, shared by `sandbox-run`, `cargo xtask run` and `cargo xtask shell`.

use std::path::PathBuf;
use std::time::Duration;

use crate::Error;
use crate::rootfs::RootfsSpec;

/// How to build the sandbox a program runs in.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SandboxOptions {
    /// `host` (the host's `/`, read-only under a private writable layer), `alpine[:VERSION]`, or a
    /// rootfs tarball or directory [default: `host` for a program given as a path outside the system
    /// folders, e.g. `./target/debug/deps/t-1a2b`; otherwise `alpine`: $SANDBOX_ROOTFS, else the pinned
    /// Alpine release]
    #[arg(long, value_name = "SPEC")]
    pub rootfs: Option<RootfsSpec>,
    /// The hostname inside
    #[arg(long, default_value = "sandbox", value_name = "NAME", value_parser = parse_hostname)]
    pub hostname: String,
    /// `loopback` (own network namespace, lo up), `none` (lo down) or `host` (no network isolation)
    #[arg(long, default_value = "loopback", value_name = "MODE")]
    pub network: NetworkArg,
    /// Kill everything in the sandbox after this long (`500ms`, `30s`, `2m`); exit code 124
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
    /// Memory limit (`64M`, `1G`; bytes without a suffix; K, M, G, T, P are binary); exceeded: exit
    /// code 137
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    pub memory: Option<u64>,
    /// Most processes at once (a cgroup's; without it: 2048 per user inside, by RLIMIT_NPROC)
    #[arg(long, value_name = "N", value_parser = parse_pids)]
    pub pids: Option<u64>,
    /// CPU limit, in CPUs (`0.5`)
    #[arg(long, value_name = "CPUS", value_parser = parse_cpus)]
    pub cpus: Option<f64>,
    /// Size of the in-memory writable layer, of `/tmp` and of each `--tmpfs` without a size, each
    /// (`2G`, 1M to 1P; default: a quarter of RAM, or half of `--memory`); a writer past it gets
    /// ENOSPC. With `--keep-failed` the layer is on disk, unsized
    #[arg(long, value_name = "SIZE", value_parser = parse_writable_size)]
    pub writable_size: Option<u64>,
    /// Bind a host path: `SRC:DST` (read-write) or `SRC:DST:ro`; repeatable
    #[arg(long = "mount", value_name = "SRC:DST[:ro]", value_parser = parse_mount)]
    pub mounts: Vec<MountArg>,
    /// A private tmpfs: `DST` or `DST:SIZE`; repeatable. Volumes are mounted parents first (`--tmpfs
    /// /data --mount SRC:/data/in` shows the bind inside the tmpfs)
    #[arg(long = "tmpfs", value_name = "DST[:SIZE]", value_parser = parse_tmpfs)]
    pub tmpfs: Vec<TmpfsArg>,
    /// Set a variable inside: `KEY=VALUE`; repeatable
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Pass this process's whole environment in (the default with `--rootfs host`; with another
    /// rootfs the program gets a clean one: PATH, HOME, TERM, HOSTNAME; `$HOSTNAME` is the sandbox's
    /// either way)
    #[arg(long)]
    pub keep_env: bool,
    /// The working directory inside [default: the current directory with `--rootfs host`, else `/root`
    /// (`/` in a rootfs without it)]
    #[arg(long, value_name = "DIR", value_parser = parse_workdir)]
    pub workdir: Option<String>,
    /// Do not bind the current cargo workspace and target folders read-write at their own paths
    /// (done by default with `--rootfs host` and for a program under a cargo target folder)
    #[arg(long)]
    pub no_workspace: bool,
    /// Keep the writable layer of a sandbox whose program fails, in a new folder under DIR: the files
    /// it added, changed and deleted, and changes.txt; `--shell-from DIR/NAME` opens a shell on it (not
    /// with --shell)
    #[arg(long, value_name = "DIR")]
    pub keep_failed: Option<PathBuf>,
    /// Read-only layers over the rootfs, topmost first (what `--shell-from` resumes from)
    #[arg(skip)]
    pub layers: Vec<PathBuf>,
    /// The sandbox resumes a kept state (`--shell-from`): its files are the failed program's, and run
    /// as the shell starts (`/etc/profile`, `/bin/sh` itself), so it gets nothing of the caller's it
    /// was not given by name: no workspace folder, no environment but `--env` (and `--keep-env`),
    /// `/` as its working directory on the host's root (the twenty-second outside review: a failed
    /// test's planted profile wrote into the opener's workspace, as root, and read their environment)
    #[arg(skip)]
    pub resumed: bool,
    /// The program is the host's root: no user namespace, no seccomp filter, no masked paths
    /// (`Builder::privileged`); only for programs you trust like the host's own
    #[arg(long)]
    pub privileged: bool,
    /// Run PROGRAM on a pseudo-terminal of the sandbox's own (`tty` names it inside), relayed to this
    /// one, as `docker run -t` does: for editors, pagers, `top`, prompts (not with --per-test)
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Write what the sandbox used (peak memory, CPU time, OOM kills) to FILE as JSON when it ends (one
    /// program: not with --per-test or --shell)
    #[arg(long, value_name = "FILE")]
    pub json_usage: Option<PathBuf>,
}

/// `--network`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NetworkArg {
    /// Its own network namespace, `lo` up.
    #[default]
    Loopback,
    /// Its own network namespace, `lo` down.
    None,
    /// The host's network namespace.
    Host,
}

/// `--mount SRC:DST[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountArg {
    /// The host path.
    pub source: PathBuf,
    /// Where it appears inside.
    pub target: String,
    /// Read-only.
    pub read_only: bool,
}

/// `--tmpfs DST[:SIZE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsArg {
    /// Where it appears inside.
    pub target: String,
    /// Its size cap in bytes.
    pub size: Option<u64>,
}

/// Parses `500ms`, `30s`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    let bad = || Error::Option { option: "duration", value: text.to_owned(), expected: "e.g. 500ms, 30s, 2m, 1h" };
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs).ok_or_else(bad),
        "h" => n.checked_mul(3600).map(Duration::from_secs).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// Parses `64M`, `1G`, `512K`, `1048576` (binary units: K = 1024).
pub fn parse_size(text: &str) -> Result<u64, Error> {
    sandbox_validate::size_bytes(text).ok_or_else(|| Error::Option {
        option: "size",
        value: text.to_owned(),
        expected: "e.g. 64M, 1G, 512K, 1T or bytes",
    })
}

/// `text`, if the sandbox's own check (`sandbox_validate`) takes it: refused here, the error names
/// the option given (clap adds it), where the library's would name its builder's setting.
fn checked<T>(text: &str, value: T, check: Result<(), &'static str>) -> Result<T, Error> {
    check.map(|()| value).map_err(|reason| Error::Refused { value: text.to_owned(), reason: reason.to_owned() })
}

fn parse_hostname(text: &str) -> Result<String, Error> {
    checked(text, text.to_owned(), sandbox_validate::hostname(text))
}

fn parse_workdir(text: &str) -> Result<String, Error> {
    checked(text, text.to_owned(), sandbox_validate::path_inside(text))
}

fn parse_cpus(text: &str) -> Result<f64, Error> {
    let cpus = text.parse::<f64>().unwrap_or(f64::NAN);
    checked(text, cpus, sandbox_validate::cpus(cpus))
}

fn parse_timeout(text: &str) -> Result<Duration, Error> {
    let timeout = parse_duration(text)?;
    let check = match timeout {
        t if t.is_zero() => Err("must be longer than zero"),
        t if std::time::Instant::now().checked_add(t).is_none() => Err("is longer than this machine's clock can count"),
        _ => Ok(()),
    };
    checked(text, timeout, check)
}

fn parse_memory(text: &str) -> Result<u64, Error> {
    let bytes = parse_size(text)?;
    sandbox_validate::memory_limit(bytes).map(|()| bytes).map_err(|reason| Error::Refused {
        value: text.to_owned(),
        reason: format!("{reason} (a size without a suffix is in bytes)"),
    })
}

fn parse_writable_size(text: &str) -> Result<u64, Error> {
    let bytes = parse_size(text)?;
    sandbox_validate::writable_size(bytes).map(|()| bytes).map_err(|reason| Error::Refused {
        value: text.to_owned(),
        reason: format!("{reason} (a size without a suffix is in bytes)"),
    })
}

fn parse_pids(text: &str) -> Result<u64, Error> {
    let n = text
        .parse::<u64>()
        .map_err(|_| Error::Refused { value: text.to_owned(), reason: "expected a whole number".into() })?;
    checked(text, n, sandbox_validate::pids_limit(n))
}

fn parse_mount(text: &str) -> Result<MountArg, Error> {
    let bad = || Error::Option { option: "mount", value: text.to_owned(), expected: "SRC:DST or SRC:DST:ro" };
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [s, d] => (*s, *d, false),
        [s, d, "ro"] => (*s, *d, true),
        [s, d, "rw"] => (*s, *d, false),
        _ => return Err(bad()),
    };
    if source.is_empty() || !target.starts_with('/') {
        return Err(bad());
    }
    Ok(MountArg { source: PathBuf::from(source), target: target.to_owned(), read_only })
}

fn parse_tmpfs(text: &str) -> Result<TmpfsArg, Error> {
    let (target, size) = match text.split_once(':') {
        Some((t, s)) => (t, Some(parse_size(s)?)),
        None => (text, None),
    };
    if let Some(Err(reason)) = size.map(sandbox_validate::tmpfs_size) {
        return Err(Error::Refused { value: text.to_owned(), reason: format!("the size {reason}") });
    }
    if !target.starts_with('/') {
        return Err(Error::Option { option: "tmpfs", value: text.to_owned(), expected: "/ABSOLUTE/PATH[:SIZE]" });
    }
    Ok(TmpfsArg { target: target.to_owned(), size })
}

fn parse_env(text: &str) -> Result<(String, String), Error> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(Error::Option { option: "variable", value: text.to_owned(), expected: "KEY=VALUE" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").ok(), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("7").ok(), Some(Duration::from_secs(7)));
        assert!(parse_duration("2 minutes").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M").ok(), Some(64 << 20));
        assert_eq!(parse_size("1G").ok(), Some(1 << 30));
        assert_eq!(parse_size("4096").ok(), Some(4096));
        assert!(parse_size("64X").is_err());
        assert!(parse_size("99999999999999999G").is_err());
    }

    #[test]
    fn mounts_tmpfs_env() {
        let m = parse_mount("/data:/srv:ro").ok();
        assert_eq!(m, Some(MountArg { source: "/data".into(), target: "/srv".into(), read_only: true }));
        assert!(parse_mount("/data").is_err());
        assert!(parse_mount("/data:relative").is_err());
        assert_eq!(
            parse_tmpfs("/scratch:16M").ok(),
            Some(TmpfsArg { target: "/scratch".into(), size: Some(16 << 20) })
        );
        assert!(parse_tmpfs("scratch").is_err());
        assert_eq!(parse_env("A=b=c").ok(), Some(("A".into(), "b=c".into())));
        assert!(parse_env("=x").is_err());
    }
}
