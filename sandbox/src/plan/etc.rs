//! Files the sandbox is given: the user's, then `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`.

use std::path::{Path, PathBuf};

use crate::config::{Config, NetMode};

use super::{Op, StepKind, Steps};

/// Writes the user's files, then the `/etc` files that describe the sandbox.
pub(super) fn files(s: &mut Steps, config: &Config) {
    let p = PathBuf::from;
    for (path, contents) in &config.files {
        let target = Path::new("/newroot").join(path.trim_start_matches('/'));
        if let Some(parent) = target.parent() {
            s.add(StepKind::File, "create a file's directory", Op::MkdirAll { path: parent.to_owned() });
        }
        s.add(
            StepKind::File,
            "write a file into the sandbox",
            Op::WriteFile { path: target, contents: contents.clone() },
        );
    }
    s.add(
        StepKind::Etc,
        "write /etc/hostname",
        Op::WriteFile { path: p("/newroot/etc/hostname"), contents: format!("{}\n", config.hostname).into_bytes() },
    );
    let mut hosts = format!(
        "127.0.0.1\tlocalhost localhost.localdomain\n::1\t\tlocalhost localhost.localdomain\n127.0.1.1\t{}\n",
        config.hostname
    );
    if let NetMode::Switch(member) = &config.network {
        for (name, address) in &member.hosts {
            hosts.push_str(&format!("{address}\t{name}\n"));
        }
    }
    s.add(
        StepKind::Etc,
        "write /etc/hosts",
        Op::WriteFile { path: p("/newroot/etc/hosts"), contents: hosts.into_bytes() },
    );
    if let Some(resolv) = &config.resolv_conf {
        s.add(
            StepKind::Etc,
            "write /etc/resolv.conf",
            Op::WriteFile { path: p("/newroot/etc/resolv.conf"), contents: resolv.clone().into_bytes() },
        );
    }
}
