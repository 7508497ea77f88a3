//! Files the sandbox is given: the user's, then `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`,
//! each unless the user gave that file ([`crate::Builder::file`]) or bound a host file or folder at
//! it or above it (a volume): setup never writes into a host file, and the user's file wins.

use std::path::{Path, PathBuf};

use crate::config::{Config, NetMode, RootMode};

use super::{Op, StepKind, Steps};

/// Writes the user's files, then the `/etc` files that describe the sandbox.
pub(super) fn files(s: &mut Steps, config: &Config) {
    // On the host's root, as root: the staged files are root's inside.
    let host = matches!(config.root, RootMode::Host { .. })
        .then(|| config.security.shifted(config.outer_uid).map(|(base, _)| base));
    for (i, (path, contents)) in config.files.iter().enumerate() {
        let target = Path::new("/newroot").join(path.trim_start_matches('/'));
        if let Some(parent) = target.parent() {
            s.add(StepKind::File, "create a file's directory", Op::MkdirAll { path: parent.to_owned() });
        }
        put(s, host, StepKind::File, "write a file into the sandbox", &format!("file-{i}"), target, contents.clone());
    }
    if !users(config, "/etc/hostname") {
        let hostname = format!("{}\n", config.hostname).into_bytes();
        let target = PathBuf::from("/newroot/etc/hostname");
        put(s, host, StepKind::Etc, "write /etc/hostname", "etc-hostname", target, hostname);
    }
    if users(config, "/etc/hosts") {
        return resolv_conf(s, config, host);
    }
    let mut hosts = format!(
        "127.0.0.1\tlocalhost localhost.localdomain\n::1\t\tlocalhost localhost.localdomain\n127.0.1.1\t{}\n",
        config.hostname
    );
    if let NetMode::Switch(member) = &config.network {
        for (name, address) in &member.hosts {
            hosts.push_str(&format!("{address}\t{name}\n"));
        }
    }
    let target = PathBuf::from("/newroot/etc/hosts");
    put(s, host, StepKind::Etc, "write /etc/hosts", "etc-hosts", target, hosts.into_bytes());
    resolv_conf(s, config, host);
}

/// `/etc/resolv.conf`, where the network mode gives one (see [`files`]).
fn resolv_conf(s: &mut Steps, config: &Config, host: Option<Option<u32>>) {
    if let Some(resolv) = config.resolv_conf.as_ref().filter(|_| !users(config, "/etc/resolv.conf")) {
        let target = PathBuf::from("/newroot/etc/resolv.conf");
        put(s, host, StepKind::Etc, "write /etc/resolv.conf", "etc-resolv.conf", target, resolv.clone().into_bytes());
    }
}

/// Whether `path` (absolute) is the user's: a file they gave there, or a host file or folder bound
/// at it or above it.
fn users(config: &Config, path: &str) -> bool {
    let inside = |p: &str| PathBuf::from("/").join(p.trim_start_matches('/'));
    let path = inside(path);
    config.files.iter().any(|(p, _)| inside(p) == path)
        || config
            .mounts
            .iter()
            .any(|m| matches!(m.kind, crate::volume::MountKind::Bind { .. }) && path.starts_with(inside(&m.target)))
}

/// Writes `contents` at `target`. On the host's root (see `RootMode::Host`) the file is written in the
/// staging tmpfs as `staged` and bound over `target` instead: rootless, the host's `/etc` belongs to a
/// user the sandbox cannot map, so its files cannot be copied up to be written, while a bound file of
/// the sandbox's own stays writable inside (`Some(Some(base))`: given to root inside, a shifted id).
fn put(
    s: &mut Steps,
    host: Option<Option<u32>>,
    kind: StepKind,
    what: &'static str,
    staged: &str,
    target: PathBuf,
    contents: Vec<u8>,
) {
    if let Some(owner) = host {
        let source = Path::new("/").join(staged);
        s.add(kind, what, Op::WriteFile { path: source.clone(), contents });
        if let Some(id) = owner {
            s.add(kind, what, Op::Chown { path: source.clone(), id });
        }
        s.add(kind, what, Op::BindFile { source, target });
    } else if kind == StepKind::Etc {
        // The sandbox's own, never into a mount the path leads to (a volume: the user's).
        s.add(kind, what, Op::WriteOwnFile { path: target, contents });
    } else {
        s.add(kind, what, Op::WriteFile { path: target, contents });
    }
}
