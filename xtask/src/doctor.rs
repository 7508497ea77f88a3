//! `cargo xtask doctor`: what this machine allows, checked by doing it.

use std::path::Path;

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

fn line(ok: Option<bool>, what: &str, detail: &str) {
    let mark = match ok {
        Some(true) => "ok  ",
        Some(false) => "NO  ",
        None => "--  ",
    };
    println!("{mark} {what:<34} {detail}");
}

pub fn run() -> anyhow::Result<()> {
    let root = nix::unistd::geteuid().is_root();
    line(None, "running as", if root { "root" } else { "an ordinary user (rootless sandboxes)" });

    let clone = read("/proc/sys/kernel/unprivileged_userns_clone");
    let max = read("/proc/sys/user/max_user_namespaces");
    let apparmor = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    let userns_ok = clone.as_deref() != Some("0") && max.as_deref() != Some("0") && apparmor.as_deref() != Some("1");
    line(
        Some(userns_ok || root),
        "user namespaces",
        &format!(
            "unprivileged_userns_clone={} max_user_namespaces={} apparmor_restrict_unprivileged_userns={}",
            clone.as_deref().unwrap_or("(absent)"),
            max.as_deref().unwrap_or("?"),
            apparmor.as_deref().unwrap_or("(absent)")
        ),
    );
    let overlay = read("/proc/filesystems").is_some_and(|f| f.lines().any(|l| l.ends_with("overlay")));
    line(
        Some(overlay),
        "overlayfs",
        if overlay { "available (else: a copy per sandbox)" } else { "absent: each sandbox copies the rootfs" },
    );

    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").is_file();
    let cgroup_detail = if v2 {
        let own = read("/proc/self/cgroup").unwrap_or_default();
        let delegated = own.contains("/user@");
        format!(
            "v2{}",
            if root {
                ""
            } else if delegated {
                ", under a user@ service (delegation possible)"
            } else {
                ", not delegated to this user"
            }
        )
    } else {
        format!("v1 (hybrid){}", if root { "" } else { ": limits need root" })
    };
    line(Some(root || v2), "cgroups (for limits)", &cgroup_detail);

    match fetch::Rootfs::from_env() {
        Ok(Some(r)) => line(Some(true), "rootfs", &format!("$SANDBOX_ROOTFS: {}", r.path().display())),
        Ok(None) => match fetch::Alpine::default().offline(true).fetch() {
            Ok(r) => line(
                Some(true),
                "rootfs",
                &format!("cached Alpine {} at {}", r.version().unwrap_or("?"), r.path().display()),
            ),
            Err(_) => line(
                Some(false),
                "rootfs",
                "not cached: run `cargo xtask fetch-rootfs` (online) or set $SANDBOX_ROOTFS",
            ),
        },
        Err(e) => line(Some(false), "rootfs", &format!("$SANDBOX_ROOTFS: {e}")),
    }

    // The real test: a sandbox, if there is a rootfs.
    let rootfs =
        fetch::Rootfs::from_env().ok().flatten().or_else(|| fetch::Alpine::default().offline(true).fetch().ok());
    match rootfs {
        Some(rootfs) => {
            let result = sandbox::Sandbox::builder()
                .rootfs(&rootfs)
                .hostname("doctor")
                .build()
                .and_then(|sb| sb.command("/bin/sh").args(["-c", "hostname"]).output());
            match result {
                Ok(out) if out.stdout == b"doctor\n" => line(Some(true), "a sandbox", "started, ran `hostname`, ended"),
                Ok(out) => line(
                    Some(false),
                    "a sandbox",
                    &format!("unexpected output: {}", String::from_utf8_lossy(&out.stdout)),
                ),
                Err(e) => line(Some(false), "a sandbox", &e.to_string()),
            }
        }
        None => line(None, "a sandbox", "not tried: no rootfs"),
    }
    line(Some(root), "switch networks", if root { "available" } else { "need root" });
    Ok(())
}
