//! cgroup v2: one unified hierarchy; rootless, the user's delegated subtree.

use std::fs;
use std::time::Duration;

use super::{Cgroup, CgroupFs, Limits, Unusable, Usage, field, mkdir, sweep, write};

/// Creates the cgroup `name` with `limits` in the unified hierarchy.
pub(super) fn create(fs: &CgroupFs, name: &str, limits: &Limits) -> Result<Cgroup, Unusable> {
    let own = fs.own_path(None).unwrap_or_else(|| "/".to_owned());
    // Rootless: the user's delegated subtree (systemd's user@UID.service); as root: the root.
    let base = match own.find("/user@") {
        Some(at) => {
            let end = own[at..].find(".service").map_or(own.len(), |e| at + e + ".service".len());
            fs.root.join(own[..end].trim_start_matches('/'))
        }
        None => fs.root.clone(),
    };
    let slice = base.join("sandbox.slice");
    let wanted: Vec<&str> = [limits.memory.map(|_| "memory"), limits.pids.map(|_| "pids"), limits.cpus.map(|_| "cpu")]
        .into_iter()
        .flatten()
        .collect();
    let available = fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
    if let Some(missing) = wanted.iter().find(|c| !available.split_whitespace().any(|a| a == **c)) {
        return Err(Unusable {
            what: format!("find the `{missing}` controller delegated"),
            path: base.join("cgroup.controllers"),
            errno: libc::ENOENT,
        });
    }
    // Usage reports peak memory whatever the limits: with the memory controller where it is there
    // (v1 always accounts memory; on v2 a CPU limit alone left `memory.peak` out).
    let mut wanted = wanted;
    if !wanted.contains(&"memory") && available.split_whitespace().any(|a| a == "memory") {
        wanted.push("memory");
    }
    // cgroups(7), v2: a controller must be enabled in a parent's subtree_control to be used below.
    let enable: String = wanted.iter().map(|c| format!("+{c} ")).collect();
    write(&base.join("cgroup.subtree_control"), enable.trim_end(), "enable controllers in")?;
    mkdir(&slice, "create")?;
    write(&slice.join("cgroup.subtree_control"), enable.trim_end(), "enable controllers in")?;
    sweep(&slice);
    let dir = slice.join(name);
    mkdir(&dir, "create")?;
    // From here on a failure drops `cg`, which removes the directory.
    let cg = Cgroup { v2: true, dirs: vec![("unified".into(), dir.clone())] };
    if let Some(m) = limits.memory {
        write(&dir.join("memory.max"), &m.to_string(), "set the memory limit in")?;
        // Swap is no headroom: a sandbox that exceeds its memory is OOM-killed, not swapped.
        let _ = fs::write(dir.join("memory.swap.max"), "0");
        // An OOM ends the sandbox as one unit (memory.oom.group, cgroup v2; systemd's OOMPolicy=kill):
        // every process but init (oom_score_adj -1000), which reports it.
        let _ = fs::write(dir.join("memory.oom.group"), "1");
    }
    if let Some(p) = limits.pids {
        write(&dir.join("pids.max"), &p.to_string(), "set the pids limit in")?;
    }
    if let Some(c) = limits.cpus {
        let period = 100_000u64;
        let quota = ((c * period as f64).round() as u64).max(1000);
        write(&dir.join("cpu.max"), &format!("{quota} {period}"), "set the CPU limit in")?;
    }
    Ok(cg)
}

/// What the cgroup read through `read(controller, file)` says was used.
pub(super) fn state(read: &dyn Fn(&str, &str) -> Option<String>) -> String {
    let events = read("memory", "memory.events").unwrap_or_default();
    let count = |name: &str| field(&events, name).unwrap_or(0);
    format!(
        "memory {} of {} (peak {}), limit hit {} times, {} OOM runs, {} kills{}",
        super::mib(read("memory", "memory.current").as_deref()),
        super::mib(read("memory", "memory.max").as_deref()),
        super::mib(read("memory", "memory.peak").as_deref()),
        count("max "),
        count("oom "),
        count("oom_kill "),
        super::pids_state(read),
    )
}

pub(super) fn usage(read: &dyn Fn(&str, &str) -> Option<String>) -> Usage {
    Usage {
        peak_memory: read("memory", "memory.peak").and_then(|t| t.trim().parse().ok()),
        cpu_time: read("cpu", "cpu.stat").and_then(|t| field(&t, "usage_usec ")).map(Duration::from_micros),
        oom_kills: read("memory", "memory.events").and_then(|t| field(&t, "oom_kill ")).unwrap_or(0),
    }
}
