//! `cargo xtask doctor`: what this machine allows, checked by doing it.

use std::path::Path;

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

thread_local! {
    static FAILED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn line(ok: Option<bool>, what: &str, detail: &str) {
    let mark = match ok {
        Some(true) => "ok  ",
        Some(false) => "NO  ",
        None => "--  ",
    };
    if ok == Some(false) {
        FAILED.with(|f| f.set(f.get() + 1));
    }
    println!("{mark} {what:<34} {detail}");
}

/// Who else holds uids of a root sandbox's range (`base` .. `base + 65536`) or of the namespaces'
/// owners (each holds every capability over its sandboxes): subordinate ranges of `/etc/subuid` (which `newuidmap`
/// gives their users) and accounts of `/etc/passwd` that overlap them. A process running as the owner
/// could ptrace any root sandbox's program and enter its namespaces as root (the nineteenth outside
/// review, with a base inside a user's subordinate range). Other bases in use at once are not seen
/// here: their ranges must not overlap this one (README).
fn id_range_clashes(base: u32, subuid: &str, passwd: &str) -> Vec<String> {
    let (first, last) = (u64::from(base), u64::from(base) + 65535);
    let owners = sandbox::namespace_owners();
    let (owners_first, owners_last) = (u64::from(*owners.start()), u64::from(*owners.end()));
    let ours = |id: u64| (first..=last).contains(&id) || (owners_first..=owners_last).contains(&id);
    let mut clashes = Vec::new();
    for line in subuid.lines() {
        let mut parts = line.trim().split(':');
        let (Some(name), Some(start), Some(count)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let (Ok(start), Ok(count)) = (start.parse::<u64>(), count.parse::<u64>()) else { continue };
        let end = start + count;
        if count > 0 && ((start <= last && end > first) || (start <= owners_last && end > owners_first)) {
            clashes.push(format!("{name}'s subordinate ids {start}-{} in /etc/subuid", end - 1));
        }
    }
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if let (Some(name), Some(Ok(uid))) = (fields.first(), fields.get(2).map(|u| u.parse::<u64>()))
            && ours(uid)
        {
            clashes.push(format!("the account {name} (uid {uid}) in /etc/passwd"));
        }
    }
    clashes
}

/// The controllers sandbox limits use.
const LIMIT_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// Whether this process can give sandboxes cgroup v2 limits: as root, the root's controllers; rootless,
/// a delegated subtree (systemd's `user@UID.service` with `Delegate=yes`) that this user owns, with
/// the controllers available in it. The detail names what was found and, if short, what to do.
fn cgroup_v2(root: bool, self_cgroup: &str, fs_root: &Path) -> (bool, String) {
    let own = self_cgroup.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/");
    let controllers = |dir: &Path| read(&dir.join("cgroup.controllers").to_string_lossy()).unwrap_or_default();
    let missing = |have: &str| -> Vec<&str> {
        LIMIT_CONTROLLERS.iter().copied().filter(|c| !have.split_whitespace().any(|h| h == *c)).collect()
    };
    if root {
        let have = controllers(fs_root);
        let lacking = missing(&have);
        return if lacking.is_empty() {
            (true, format!("v2, as root: controllers {have}"))
        } else {
            (false, format!("v2, as root, but the kernel lacks the {} controller(s)", lacking.join(", ")))
        };
    }
    let hint = "run under a delegated subtree: `systemd-run --user --scope -p Delegate=yes cargo test`, \
                or as root create one for this user (see docs/design/vm-lane.md)";
    let Some(at) = own.find("/user@") else {
        return (false, format!("v2, not delegated to this user (in {own}): {hint}"));
    };
    let end = own[at + 1..].find('/').map_or(own.len(), |e| at + 1 + e);
    let base = fs_root.join(own[..end].trim_start_matches('/'));
    let uid = nix::unistd::getuid();
    let owned = ["", "cgroup.procs", "cgroup.subtree_control"].iter().all(|f| {
        std::fs::metadata(base.join(f)).is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == uid.as_raw())
    });
    let have = controllers(&base);
    let lacking = missing(&have);
    match (owned, lacking.is_empty()) {
        (true, true) => (true, format!("v2, delegated to this user: {} (controllers {have})", base.display())),
        (false, _) => (false, format!("v2, {} is not this user's (not delegated): {hint}", base.display())),
        (true, false) => (
            false,
            format!(
                "v2, delegated {} lacks the {} controller(s): enable them in its parent",
                base.display(),
                lacking.join(", ")
            ),
        ),
    }
}

pub fn run() -> anyhow::Result<()> {
    check();
    let failed = FAILED.with(std::cell::Cell::get);
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed (NO above)");
    }
    Ok(())
}

fn check() {
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
    if root {
        let file = |p: &str| read(p).unwrap_or_default();
        let (ok, detail) = match sandbox::kept_layer_owner() {
            Err(e) => (false, sandbox::error_chain(&e)),
            Ok(None) => (true, "rootless: none".to_owned()),
            Ok(Some(base)) => {
                let clashes = id_range_clashes(base, &file("/etc/subuid"), &file("/etc/passwd"));
                let range = format!(
                    "{base}-{} (root inside) and {}-{} (owners of the namespaces)",
                    u64::from(base) + 65535,
                    sandbox::namespace_owners().start(),
                    sandbox::namespace_owners().end()
                );
                match clashes.is_empty() {
                    true => (true, format!("{range} are no one's in /etc/subuid and /etc/passwd")),
                    false => (
                        false,
                        format!(
                            "{range} must be no one's, but {}: choose another $SANDBOX_ID_BASE",
                            clashes.join("; ")
                        ),
                    ),
                }
            }
        };
        line(Some(ok), "sandbox id range", &detail);
    }
    let overlay = read("/proc/filesystems").is_some_and(|f| f.lines().any(|l| l.ends_with("overlay")));
    line(
        Some(overlay),
        "overlayfs",
        if overlay { "available (else: a copy per sandbox)" } else { "absent: each sandbox copies the rootfs" },
    );

    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").is_file();
    // Limits are optional: without them every sandbox still runs (a test asking for them says SKIP),
    // so where they cannot be had the line says how to get them and fails nothing (a new user's
    // review: rootless on cgroup v1, the supported way to run without root, exited 1).
    let (ok, detail) = if v2 {
        cgroup_v2(root, &read("/proc/self/cgroup").unwrap_or_default(), Path::new("/sys/fs/cgroup"))
    } else if root {
        (true, "v1 (hybrid)".to_owned())
    } else {
        (false, "v1 (hybrid): limits need root".to_owned())
    };
    let detail = if ok { detail } else { format!("{detail} (optional: sandboxes without limits run)") };
    line(ok.then_some(true), "cgroups (for limits)", &detail);

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
    line(root.then_some(true), "switch networks", if root { "available" } else { "need root" });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(controllers: &str, owner_is_me: bool) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        let d = root.path().join("user.slice/user-1001.slice/user@1001.service");
        std::fs::create_dir_all(&d).expect("mkdir");
        for f in ["cgroup.controllers", "cgroup.procs", "cgroup.subtree_control"] {
            std::fs::write(d.join(f), if f == "cgroup.controllers" { controllers } else { "" }).expect("write");
        }
        std::fs::write(root.path().join("cgroup.controllers"), "cpuset cpu io memory pids").expect("write");
        if !owner_is_me {
            // Only root can give files away; as anyone else the "not mine" case is the fake root's.
            let nobody = Some(nix::unistd::Uid::from_raw(65534));
            for f in ["", "cgroup.procs", "cgroup.subtree_control"] {
                let _ = nix::unistd::chown(&d.join(f), nobody, None);
            }
        }
        root
    }

    const DELEGATED: &str = "0::/user.slice/user-1001.slice/user@1001.service/app.slice/vm.scope\n";

    #[test]
    fn an_id_range_shared_with_a_user_is_named() {
        let subuid = "sandbox-test:100000:65536\nother:300000:65536\ntop:4294967000:295\n";
        let passwd = "root:x:0:0::/root:/bin/sh\nodd:x:165535:165535::/:/bin/sh\nowner:x:4294901761:0::/:/bin/sh\n";
        let clashes = id_range_clashes(100000, subuid, passwd);
        assert_eq!(clashes.len(), 4, "{clashes:?}");
        assert!(clashes[0].contains("sandbox-test's subordinate ids 100000-165535"), "{clashes:?}");
        assert!(clashes[1].contains("top's subordinate ids"), "the owner id in a range: {clashes:?}");
        assert!(clashes[2].contains("odd (uid 165535)"), "{clashes:?}");
        assert!(clashes[3].contains("owner (uid 4294901761)"), "an owner id: {clashes:?}");
        assert!(id_range_clashes(2_000_000_000, "sandbox-test:100000:65536\n", "root:x:0:0::/:/bin/sh\n").is_empty());
    }

    #[test]
    fn v2_delegation_is_reported_for_root_delegated_and_undelegated_users() {
        let t = tree("cpu memory pids", true);
        let (ok, detail) = cgroup_v2(true, "0::/\n", t.path());
        assert!(ok && detail.starts_with("v2, as root"), "{detail}");
        let (ok, detail) = cgroup_v2(false, DELEGATED, t.path());
        assert!(ok && detail.contains("delegated to this user") && detail.contains("user@1001.service"), "{detail}");
        let (ok, detail) = cgroup_v2(false, "0::/user.slice/user-1001.slice/session-1.scope\n", t.path());
        assert!(!ok && detail.contains("not delegated") && detail.contains("Delegate=yes"), "{detail}");
        let (ok, detail) = cgroup_v2(false, DELEGATED, tree("cpu", true).path());
        assert!(!ok && detail.contains("lacks the memory, pids"), "{detail}");
        if nix::unistd::geteuid().is_root() {
            let (ok, detail) = cgroup_v2(false, DELEGATED, tree("cpu memory pids", false).path());
            assert!(!ok && detail.contains("is not this user's"), "{detail}");
        }
    }
}
