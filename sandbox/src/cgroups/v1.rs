//! cgroup v1: one hierarchy per controller, each with a directory for the sandbox.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use super::{Cgroup, CgroupFs, Limits, Unusable, Usage, V1_CONTROLLERS, field, mkdir, sweep, write};

/// Creates the cgroup `name` with `limits`: one directory per controller hierarchy.
pub(super) fn create(fs: &CgroupFs, name: &str, limits: &Limits) -> Result<Cgroup, Unusable> {
    // Each directory joins `cg` as soon as it exists: a failure further on drops `cg`, which removes
    // every one made so far.
    let mut cg = Cgroup { v2: false, dirs: Vec::new() };
    // memory and cpuacct always (create is only called with limits): they account the peak memory
    // and the CPU time that the usage reports.
    let needed = |c: &str| match c {
        "memory" | "cpuacct" => true,
        "pids" => limits.pids.is_some(),
        "cpu" => limits.cpus.is_some(),
        _ => false,
    };
    // Every hierarchy a sandbox may use is swept, also those this one does not: a killed run's
    // `pids` cgroup stayed until a run with a pids limit came (the twenty-second outside review).
    for controller in V1_CONTROLLERS {
        if let Some(own) = fs.own_path(Some(controller)) {
            sweep(&fs.root.join(controller).join(own.trim_start_matches('/')));
        }
    }
    for controller in V1_CONTROLLERS.iter().filter(|c| needed(c)) {
        let Some(own) = fs.own_path(Some(controller)) else {
            if *controller == "cpuacct" {
                continue;
            }
            return Err(Unusable {
                what: format!("find the v1 `{controller}` hierarchy for"),
                path: PathBuf::from("/proc/self/cgroup"),
                errno: libc::ENOENT,
            });
        };
        let dir = fs.root.join(controller).join(own.trim_start_matches('/')).join(name);
        mkdir(&dir, "create")?;
        cg.dirs.push((controller.to_string(), dir));
    }
    if let Some(m) = limits.memory {
        let dir = cg.dir("memory").unwrap_or_default();
        write(&dir.join("memory.limit_in_bytes"), &m.to_string(), "set the memory limit in")?;
        // With swap accounting, swap is no headroom either.
        let _ = fs::write(dir.join("memory.memsw.limit_in_bytes"), m.to_string());
        // Nor TCP socket buffers: v1 charges them to a cgroup only once it has a TCP limit of its
        // own (v2 charges them to the memory limit). Without one, a program under a 64 MiB limit
        // queued 1.5 to 2.2 GB on its loopback's connections, out of the host's shared TCP memory
        // (net.ipv4.tcp_mem), with 1 MiB shown as used (the eighteenth outside review). With it, a
        // program's sockets hold at most the limit: past it, TCP behaves as under memory pressure.
        if let Err(e) = fs::write(dir.join("memory.kmem.tcp.limit_in_bytes"), m.to_string()) {
            tracing::debug!(%e, "no TCP limit in the v1 memory cgroup: socket buffers go unlimited");
        }
    }
    if let Some(p) = limits.pids {
        write(&cg.dir("pids").unwrap_or_default().join("pids.max"), &p.to_string(), "set the pids limit in")?;
    }
    if let Some(c) = limits.cpus {
        let dir = cg.dir("cpu").unwrap_or_default();
        let period = 100_000u64;
        write(&dir.join("cpu.cfs_period_us"), &period.to_string(), "set the CPU period in")?;
        write(
            &dir.join("cpu.cfs_quota_us"),
            &((c * period as f64).round() as u64).max(1000).to_string(),
            "set the CPU quota in",
        )?;
    }
    Ok(cg)
}

/// What the cgroup read through `read(controller, file)` says was used.
pub(super) fn state(read: &dyn Fn(&str, &str) -> Option<String>) -> String {
    let limit = read("memory", "memory.limit_in_bytes");
    // v1 shows "no limit" as a huge number (PAGE_COUNTER_MAX pages).
    let limit = limit.filter(|l| l.trim().parse::<u64>().is_ok_and(|b| b < 1 << 62));
    // TCP socket buffers, limited apart (see create): past their limit sockets stall, with no kill,
    // and a program waiting on one runs into its timeout (the nineteenth outside review: the message
    // then showed 0.4 MiB used of 64 MiB).
    let tcp = read("memory", "memory.kmem.tcp.limit_in_bytes")
        .filter(|l| l.trim().parse::<u64>().is_ok_and(|b| b < 1 << 62))
        .map(|limit| {
            format!(
                "; TCP buffers {} of {} (peak {}), limit hit {} times: past it sockets wait, nothing is killed",
                super::mib(read("memory", "memory.kmem.tcp.usage_in_bytes").as_deref()),
                super::mib(Some(&limit)),
                super::mib(read("memory", "memory.kmem.tcp.max_usage_in_bytes").as_deref()),
                read("memory", "memory.kmem.tcp.failcnt").map_or_else(|| "?".to_owned(), |t| t.trim().to_owned()),
            )
        })
        .unwrap_or_default();
    format!(
        "memory {} of {} (peak {}), limit hit {} times, {} kills{}{tcp}",
        super::mib(read("memory", "memory.usage_in_bytes").as_deref()),
        limit.as_deref().map_or_else(|| "no limit".to_owned(), |l| super::mib(Some(l))),
        super::mib(read("memory", "memory.max_usage_in_bytes").as_deref()),
        read("memory", "memory.failcnt").map_or_else(|| "?".to_owned(), |t| t.trim().to_owned()),
        read("memory", "memory.oom_control").and_then(|t| field(&t, "oom_kill ")).unwrap_or(0),
        super::pids_state(read),
    )
}

pub(super) fn usage(read: &dyn Fn(&str, &str) -> Option<String>) -> Usage {
    Usage {
        peak_memory: read("memory", "memory.max_usage_in_bytes").and_then(|t| t.trim().parse().ok()),
        cpu_time: read("cpuacct", "cpuacct.usage").and_then(|t| t.trim().parse().ok()).map(Duration::from_nanos),
        oom_kills: read("memory", "memory.oom_control").and_then(|t| field(&t, "oom_kill ")).unwrap_or(0),
    }
}
