//! The default seccomp filter: the system calls Docker's default profile refuses that no test needs
//! (kernel keyrings, `open_by_handle_at`, `kexec_*`, module loading, `perf_event_open`, `bpf`,
//! `userfaultfd`, setting the clocks, `reboot`, swap, process accounting, quotas, the kernel log)
//! and the `TIOCSTI` ioctl, which pushes input into a terminal.
//!
//! A refused call fails with `EPERM`, as on a locked-down host, rather than killing the program
//! (`SIGSYS`): a test sees an ordinary error. Everything else is allowed: mount, unshare, setns,
//! ptrace, pivot_root and friends stay available, because a test may use them inside its own
//! namespaces, where the user namespace already keeps them away from the host.
//!
//! The filter is compiled with `seccompiler` once, where allocating is fine (the helper, before any
//! fork); the program's process only installs it, right before `exec`, with no allocation
//! (`prctl(PR_SET_NO_NEW_PRIVS)` then `seccomp(SECCOMP_SET_MODE_FILTER)`).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch, sock_filter,
};

/// seccompiler refused the rules (a bug here, not a property of the host).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SeccompError {
    #[error("failed to compile the default seccomp filter for {arch}")]
    Compile {
        arch: &'static str,
        #[source]
        source: seccompiler::BackendError,
    },
}

/// Why each system call is refused; the syscall numbers are this architecture's.
fn refused_syscalls() -> Vec<(i64, &'static str)> {
    let mut list = vec![
        // keyrings(7) are not namespaced: a test could read or fill the host user's keys.
        (libc::SYS_add_key, "kernel keyring"),
        (libc::SYS_request_key, "kernel keyring"),
        (libc::SYS_keyctl, "kernel keyring"),
        // Opens any file of a mounted filesystem by handle, bypassing the mount tree (the "shocker"
        // escape); name_to_handle_at only makes handles and stays allowed.
        (libc::SYS_open_by_handle_at, "file handles bypass the mount tree"),
        // Copies another process's descriptor into the caller: rootless, init's (Docker allows it
        // only with CAP_SYS_PTRACE).
        (libc::SYS_pidfd_getfd, "takes another process's descriptors"),
        // io_uring performs system calls (openat, setxattr, ...) out of this filter's sight; Docker
        // refuses it by default since 2023.
        (libc::SYS_io_uring_setup, "system calls the filter cannot see"),
        (libc::SYS_io_uring_enter, "system calls the filter cannot see"),
        (libc::SYS_io_uring_register, "system calls the filter cannot see"),
        (libc::SYS_kexec_load, "replaces the running kernel"),
        (libc::SYS_kexec_file_load, "replaces the running kernel"),
        (libc::SYS_init_module, "kernel modules"),
        (libc::SYS_finit_module, "kernel modules"),
        (libc::SYS_delete_module, "kernel modules"),
        (libc::SYS_perf_event_open, "observes the whole machine; kernel attack surface"),
        (libc::SYS_bpf, "kernel programs; kernel attack surface"),
        (libc::SYS_userfaultfd, "stalls the kernel at will (exploit primitive)"),
        // The clocks are the host's: there is no time namespace for CLOCK_REALTIME. seccomp cannot
        // look inside adjtimex's struct, so reading through adjtimex is refused too (clock_gettime
        // and gettimeofday read the time).
        (libc::SYS_clock_settime, "sets the host's clock"),
        (libc::SYS_clock_adjtime, "adjusts the host's clock"),
        (libc::SYS_settimeofday, "sets the host's clock"),
        (libc::SYS_adjtimex, "adjusts the host's clock"),
        (libc::SYS_reboot, "reboots the host"),
        (libc::SYS_swapon, "host swap"),
        (libc::SYS_swapoff, "host swap"),
        (libc::SYS_acct, "host process accounting"),
        (libc::SYS_quotactl, "host disk quotas"),
        (libc::SYS_quotactl_fd, "host disk quotas"),
        (libc::SYS_syslog, "the host's kernel log"),
        (libc::SYS_lookup_dcookie, "kernel profiling"),
    ];
    #[cfg(target_arch = "x86_64")]
    list.extend([
        (libc::SYS_iopl, "raw I/O ports"),
        (libc::SYS_ioperm, "raw I/O ports"),
        (libc::SYS_uselib, "obsolete"),
        (libc::SYS__sysctl, "obsolete"),
        (libc::SYS_nfsservctl, "obsolete"),
    ]);
    list
}

/// System calls a test does use inside its own namespaces: the filter must never refuse them.
#[cfg(test)]
const KEPT: [i64; 9] = [
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_pivot_root,
    libc::SYS_ptrace,
    libc::SYS_sethostname,
    libc::SYS_name_to_handle_at,
    libc::SYS_clock_gettime,
];

/// x86_64's x32 ABI: the same calls with this bit set in the number. The filter refuses the whole
/// ABI (as a kernel built without it does, with ENOSYS), so that no refused call sneaks in through it.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The default filter, compiled for this machine's architecture; `None` on architectures seccompiler
/// does not support (the sandbox then runs without one: the user namespace is the boundary).
///
/// # Errors
/// [`SeccompError::Compile`] if seccompiler rejects the rules.
pub(crate) fn default_filter() -> Result<Option<Filter>, SeccompError> {
    filter(false)
}

/// The default filter, and, with `no_setid`, also refusing to give a file the setuid or setgid bit
/// (`chmod` family, or `open`/`creat`/`mknod` with such a mode) or an extended attribute (file
/// capabilities are one): used as root when the sandbox has a read-write volume, where root inside
/// writes as the host's root and such a file would be setuid-root (or carry capabilities) on the host.
fn filter(no_setid: bool) -> Result<Option<Filter>, SeccompError> {
    compile(no_setid, true)
}

/// [`filter`], with or without the [`dispatch`] prologue (without: for the tests that compare both).
fn compile(no_setid: bool, prologue: bool) -> Result<Option<Filter>, SeccompError> {
    let arch = std::env::consts::ARCH;
    let Ok(target) = TargetArch::try_from(arch) else {
        return Ok(None);
    };
    let compile = |source| SeccompError::Compile { arch, source };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        refused_syscalls().into_iter().map(|(nr, _)| (nr, Vec::new())).collect();
    // tty_ioctl(4): TIOCSTI fakes input on a terminal; a program holding the caller's terminal could
    // type commands into the caller's shell. Compared on 32 bits, as the kernel reads the request.
    #[allow(clippy::unnecessary_cast)] // an int on musl
    let tiocsti = SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, libc::TIOCSTI as u64)
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(compile)?;
    rules.insert(libc::SYS_ioctl, vec![tiocsti]);
    // The sandbox's init is PID 1 of its pid namespace: tracing it, or reading and writing its memory,
    // would let the program stop the deadline or act outside this filter (init is not dumpable as
    // root; rootless it must stay dumpable for `Session` to enter its namespaces).
    let pid_is_init = |arg| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, 1)
            .and_then(|c| SeccompRule::new(vec![c]))
            .map_err(compile)
    };
    rules.insert(libc::SYS_ptrace, vec![pid_is_init(1)?]);
    rules.insert(libc::SYS_process_vm_readv, vec![pid_is_init(0)?]);
    rules.insert(libc::SYS_process_vm_writev, vec![pid_is_init(0)?]);
    if no_setid {
        for (nr, rule) in setid_rules().map_err(compile)? {
            rules.entry(nr).or_default().extend(rule);
        }
    }
    // With the prologue, seccompiler compiles the rules with conditions only; the prologue refuses
    // the calls refused whatever their arguments. Without (`prologue` false: the tests' reference),
    // seccompiler compiles them all. A number out of u32's range (none is) leaves the prologue out.
    let split: Option<Vec<(u32, Verdict)>> = rules
        .iter()
        .map(|(&nr, r)| Some((u32::try_from(nr).ok()?, if r.is_empty() { Verdict::Refuse } else { Verdict::Chain })))
        .collect();
    let split = split.filter(|_| prologue);
    if split.is_some() {
        rules.retain(|_, r| !r.is_empty());
    }
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), target)
        .map_err(compile)?;
    let mut program = BpfProgram::try_from(filter).map_err(compile)?;
    let at = refuse_x32(&mut program);
    if let Some(named) = split {
        program.splice(at..at, dispatch(&named));
    }
    Ok(Some(Filter { program }))
}

/// What the prologue does with a call the rules name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Refused whatever its arguments (a rule without conditions): EPERM at once.
    Refuse,
    /// Refused for some arguments: seccompiler's chain decides.
    Chain,
}

/// Installing a filter costs the kernel a run of it for every system call number, to cache those it
/// always allows (kernel/seccomp.c, `seccomp_cache_prepare`), and a compilation of it: with
/// seccompiler's program alone (a chain of tests, five instructions per named call, walked to its end
/// by every call it does not name) that was 0.22 ms per sandbox here. This prologue, put before
/// seccompiler's chain, finds the call's number in `named` (sorted) by a binary search: a call no rule
/// names is allowed, one refused whatever its arguments gets EPERM, and the others go on to the
/// chain, where seccompiler compiled the rules with conditions. The same decisions as seccompiler's
/// program of all the rules (the test `the_prologue_decides_as_seccompilers_chain_and_quickly`
/// compares both on every number), in a third of the time.
fn dispatch(named: &[(u32, Verdict)]) -> Vec<sock_filter> {
    let mut out = vec![stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, SECCOMP_DATA_NR_OFFSET)];
    let mut to_chain = Vec::new();
    search(named, &mut out, &mut to_chain);
    let end = out.len();
    for at in to_chain {
        // A jump lands after the instruction that follows it, plus k: here, on the chain's first.
        out[at].k = (end - at - 1) as u32;
    }
    out
}

/// The numbers a leaf of the search compares one by one.
const LEAF: usize = 6;

/// Appends the search of `named` (sorted) to `out`. A leaf compares each number: none equal, the
/// call is allowed; equal, it is refused or goes on to the chain (a jump recorded in `to_chain`,
/// aimed by [`dispatch`]). A node compares with the middle number and goes on in the half that can
/// hold the call's.
fn search(named: &[(u32, Verdict)], out: &mut Vec<sock_filter>, to_chain: &mut Vec<usize>) {
    let jump = |op: u32, k: u32, jt: usize, jf: usize| sock_filter {
        code: (libc::BPF_JMP | op | libc::BPF_K) as u16,
        // At most LEAF + 1 instructions on: always fits.
        jt: u8::try_from(jt).expect("a short jump"),
        jf: u8::try_from(jf).expect("a short jump"),
        k,
    };
    if named.len() <= LEAF {
        // n comparisons, then: allow, refuse, on to the chain.
        let n = named.len();
        for (i, &(nr, verdict)) in named.iter().enumerate() {
            let to = match verdict {
                Verdict::Refuse => n + 1,
                Verdict::Chain => n + 2,
            };
            out.push(jump(libc::BPF_JEQ, nr, to - i - 1, 0));
        }
        out.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
        out.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32));
        to_chain.push(out.len());
        out.push(stmt(libc::BPF_JMP | libc::BPF_JA, 0));
        return;
    }
    let (lower, upper) = named.split_at(named.len() / 2);
    // At least the upper half's first: over the lower half's code (the jump after this test).
    out.push(jump(libc::BPF_JGE, upper[0].0, 0, 1));
    let over_lower = out.len();
    out.push(stmt(libc::BPF_JMP | libc::BPF_JA, 0));
    search(lower, out, to_chain);
    out[over_lower].k = (out.len() - over_lower - 1) as u32;
    search(upper, out, to_chain);
}

/// A BPF instruction without jump offsets.
fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

/// Where seccomp_data keeps the system call's number.
const SECCOMP_DATA_NR_OFFSET: u32 = 0;

/// Inserts, right after seccompiler's architecture check (3 instructions: load the arch, compare,
/// kill on mismatch), a refusal of every x32 system call: load the number, and if it has the x32
/// bit, return ENOSYS. The jumps of the rest of the program are relative, so they stay valid.
/// Returns where the inserted instructions end.
#[cfg(target_arch = "x86_64")]
fn refuse_x32(program: &mut BpfProgram) -> usize {
    let x32 = [
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, SECCOMP_DATA_NR_OFFSET),
        sock_filter { code: (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16, jt: 0, jf: 1, k: X32_SYSCALL_BIT },
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ];
    let (at, n) = (ARCH_CHECK_LEN.min(program.len()), x32.len());
    program.splice(at..at, x32);
    at + n
}

/// See the x86_64 one: elsewhere there is no x32 ABI; the program goes on after the architecture check.
#[cfg(not(target_arch = "x86_64"))]
fn refuse_x32(program: &mut BpfProgram) -> usize {
    ARCH_CHECK_LEN.min(program.len())
}

/// seccompiler's architecture check, first in its program: load the arch, compare, kill on mismatch.
const ARCH_CHECK_LEN: usize = 3;

/// The default filter, compiled once per process (in the fork server before it forks helpers, or in
/// the helper before it forks init), so that the program's process only installs it.
///
/// # Errors
/// As [`default_filter`], every time it is asked for.
pub(crate) fn shared() -> Result<Option<&'static Filter>, &'static SeccompError> {
    static FILTER: std::sync::OnceLock<Result<Option<Filter>, SeccompError>> = std::sync::OnceLock::new();
    FILTER.get_or_init(default_filter).as_ref().map(Option::as_ref)
}

/// The rules of [`filter`]'s `no_setid`: each call refused when its mode argument holds the setuid
/// or setgid bit, whatever the flags (`O_CREAT` and `O_TMPFILE` both create; without either the
/// kernel ignores the mode, and C libraries pass 0); `openat2` (whose mode seccomp cannot read) and
/// the `setxattr` family (with `setxattrat`, Linux 6.13), always. io_uring, which would do the same
/// out of sight, is refused in every sandbox.
///
/// Also every mount of a new file system (`mount(2)` without `MS_BIND`, `MS_REMOUNT`, `MS_MOVE` or a
/// propagation change, and `fsopen(2)`): an overlayfs whose upper layer is on the volume copies a
/// setuid-root file of the rootfs up into it, mode and owner kept, inside the kernel and out of the
/// filter's sight (found by the fourth outside review). seccomp cannot read the file system's name,
/// so a tmpfs is refused too, in these sandboxes only; binds, remounts and moves still work.
fn setid_rules() -> Result<Vec<(i64, Vec<SeccompRule>)>, seccompiler::BackendError> {
    let bit = |arg: u8, bit: u32| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(u64::from(bit)), u64::from(bit))
    };
    let mut out = Vec::new();
    // (call, argument holding the mode)
    let mut calls: Vec<(i64, u8)> =
        vec![(libc::SYS_fchmod, 1), (libc::SYS_fchmodat, 2), (libc::SYS_mknodat, 2), (libc::SYS_openat, 3)];
    #[cfg(target_arch = "x86_64")]
    calls.extend([(libc::SYS_chmod, 1), (libc::SYS_creat, 1), (libc::SYS_mknod, 1), (libc::SYS_open, 2)]);
    calls.push((FCHMODAT2, 2));
    for (nr, mode) in calls {
        let rules = [libc::S_ISUID, libc::S_ISGID].into_iter().map(|setid| SeccompRule::new(vec![bit(mode, setid)?]));
        out.push((nr, rules.collect::<Result<Vec<_>, _>>()?));
    }
    for nr in [libc::SYS_openat2, libc::SYS_setxattr, libc::SYS_lsetxattr, libc::SYS_fsetxattr, SETXATTRAT] {
        out.push((nr, Vec::new()));
    }
    out.push((libc::SYS_fsopen, Vec::new()));
    // mount(2)'s flags, an unsigned long: a new file system is a mount with none of these.
    let keeps = libc::MS_BIND
        | libc::MS_REMOUNT
        | libc::MS_MOVE
        | libc::MS_SHARED
        | libc::MS_PRIVATE
        | libc::MS_SLAVE
        | libc::MS_UNBINDABLE;
    #[allow(clippy::useless_conversion)] // c_ulong: 32 bits on 32-bit targets
    let keeps = u64::from(keeps);
    let new_fs = SeccompCondition::new(3, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(keeps), 0)?;
    out.push((libc::SYS_mount, vec![SeccompRule::new(vec![new_fs])?]));
    Ok(out)
}

/// fchmodat2(2) (Linux 6.6) and setxattrat(2) (Linux 6.13): the same number on every architecture
/// of the unified syscall table (include/uapi/asm-generic/unistd.h, arch/x86/entry/syscalls).
const FCHMODAT2: i64 = 452;
const SETXATTRAT: i64 = 463;

/// Whether this process has the default filter installed already, inherited from the filtered fork
/// server (crate::spawn::server) that forked it or its parent.
static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Says that the default filter is installed on this process, and so on everything it forks from now
/// on (the filtered fork server, right after installing it).
pub(crate) fn mark_installed() {
    INSTALLED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the default filter is installed on this process already (see [`mark_installed`]).
pub(crate) fn installed() -> bool {
    INSTALLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The filter a sandbox's program installs on itself: [`for_sandbox`]'s, or none where the default
/// filter is installed already and is all the sandbox needs. With `no_setid`, the stricter filter is
/// installed over the inherited one: the kernel runs both, and a call either refuses is refused.
pub(crate) fn to_install(no_setid: bool) -> Result<Option<&'static Filter>, &'static SeccompError> {
    if installed() && !no_setid {
        return Ok(None);
    }
    for_sandbox(no_setid)
}

/// The filter of a sandbox, by its settings (see [`filter`]); compiled once per process.
pub(crate) fn for_sandbox(no_setid: bool) -> Result<Option<&'static Filter>, &'static SeccompError> {
    if !no_setid {
        return shared();
    }
    static FILTER: std::sync::OnceLock<Result<Option<Filter>, SeccompError>> = std::sync::OnceLock::new();
    FILTER.get_or_init(|| filter(true)).as_ref().map(Option::as_ref)
}

/// A compiled filter, ready to install.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    program: BpfProgram,
}

impl Filter {
    /// Sets no_new_privs and installs the filter on the calling thread (and so on everything it
    /// execs and forks). Allocates nothing: safe to call after fork in a multi-threaded process.
    ///
    /// # Errors
    /// The errno of prctl(PR_SET_NO_NEW_PRIVS) or seccomp(SECCOMP_SET_MODE_FILTER): no seccomp in
    /// this kernel, or a container that forbids it.
    pub(crate) fn install(&self) -> Result<(), nix::errno::Errno> {
        seccompiler::apply_filter(&self.program).map_err(|e| {
            let os = match &e {
                seccompiler::Error::Prctl(io) | seccompiler::Error::Seccomp(io) => io.raw_os_error(),
                _ => None,
            };
            nix::errno::Errno::from_raw(os.unwrap_or(libc::EINVAL))
        })
    }

    /// The number of BPF instructions (the kernel's limit is 4096).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.program.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_for_this_machine_and_refuses_no_call_a_test_needs() {
        let filter = default_filter().expect("compile").expect("x86_64, aarch64 and riscv64 are supported");
        assert!(filter.len() < 512, "{} instructions", filter.len());
        let refused: Vec<i64> = refused_syscalls().into_iter().map(|(nr, _)| nr).collect();
        for nr in KEPT {
            assert!(!refused.contains(&nr), "syscall {nr} is needed inside a sandbox");
        }
        let mut sorted = refused.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), refused.len(), "no syscall listed twice");
    }

    #[test]
    fn installed_filter_refuses_with_eperm_and_allows_the_rest() {
        let filter = default_filter().expect("compile").expect("supported arch");
        // seccomp(2) and no_new_privs apply to the calling thread only (no TSYNC): install the filter
        // on a thread of its own, which ends with the test.
        let outcome = std::thread::spawn(move || {
            filter.install().expect("install");
            use nix::time::{ClockId, clock_gettime, clock_settime};
            let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("reading a clock is allowed");
            // CLOCK_MONOTONIC cannot be set: unfiltered, this is EINVAL and changes nothing.
            let set = clock_settime(ClockId::CLOCK_MONOTONIC, now);
            let dir = std::fs::read_dir("/").map(|d| d.count());
            let nnp = nix::sys::prctl::get_no_new_privs();
            (set, dir.is_ok(), nnp)
        })
        .join()
        .expect("filtered thread");
        use nix::errno::Errno;
        assert_eq!(outcome, (Err(Errno::EPERM), true, Ok(true)));
    }

    /// Runs a classic BPF program on `data` (a struct seccomp_data) as the kernel would, with the
    /// instructions seccompiler and [`dispatch`] use; returns the action and the instructions run.
    fn run(program: &[sock_filter], data: &[u8; 64]) -> (u32, usize) {
        let (mut a, mut pc, mut steps) = (0u32, 0usize, 0usize);
        loop {
            let i = &program[pc];
            steps += 1;
            pc += 1;
            let k = i.k;
            let code = u32::from(i.code);
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    let at = k as usize;
                    a = u32::from_ne_bytes(data[at..at + 4].try_into().expect("4 bytes"));
                }
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => a &= k,
                c if c == libc::BPF_RET | libc::BPF_K => return (k, steps),
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += k as usize,
                c if c & 0x07 == libc::BPF_JMP && c & 0x08 == libc::BPF_K => {
                    let taken = match c & 0xf0 {
                        op if op == libc::BPF_JEQ => a == k,
                        op if op == libc::BPF_JGT => a > k,
                        op if op == libc::BPF_JGE => a >= k,
                        op if op == libc::BPF_JSET => a & k != 0,
                        op => panic!("jump {op:#x} not interpreted"),
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                other => panic!("instruction {other:#x} not interpreted"),
            }
        }
    }

    fn seccomp_data(nr: u32, arch: u32, args: [u64; 6]) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&nr.to_ne_bytes());
        d[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, arg) in args.iter().enumerate() {
            d[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_ne_bytes());
        }
        d
    }

    /// The prologue changes no decision: every number (and x32's), every architecture, arguments that
    /// each rule compares; and a call no rule names is decided in a few instructions.
    #[test]
    fn the_prologue_decides_as_seccompilers_chain_and_quickly() {
        let arch_native = match std::env::consts::ARCH {
            "x86_64" => 0xc000_003e,
            "aarch64" => 0xc000_00b7,
            "riscv64" => 0xc000_00f3,
            other => panic!("no AUDIT_ARCH for {other}"),
        };
        #[allow(clippy::unnecessary_cast)] // c_ulong and int differ between targets
        let values: Vec<u64> = vec![
            0,
            1,
            2,
            libc::TIOCSTI as u64,
            u64::from(libc::S_ISUID),
            u64::from(libc::S_ISGID),
            u64::from(libc::S_ISUID | 0o755),
            0o755,
            libc::MS_BIND as u64,
            (libc::MS_REMOUNT | libc::MS_RDONLY) as u64,
            libc::MS_RDONLY as u64,
            0xffff_ffff,
            1 << 32,
            u64::MAX,
        ];
        let mut argsets: Vec<[u64; 6]> = values.iter().map(|&v| [v; 6]).collect();
        for i in 0..6 {
            argsets.extend(values.iter().map(|&v| {
                let mut args = [0; 6];
                args[i] = v;
                args
            }));
        }
        for no_setid in [false, true] {
            let with = compile(no_setid, true).expect("compile").expect("supported arch").program;
            let without = compile(no_setid, false).expect("compile").expect("supported arch").program;
            assert!(with.len() < without.len(), "{} instructions, {} without the prologue", with.len(), without.len());
            let mut numbers: Vec<u32> = (0..1024).collect();
            numbers.extend((0..1024).map(|nr| nr | 0x4000_0000));
            numbers.extend([0x7fff_ffff, 0xffff_ffff, 0x8000_0000]);
            let mut most = 0;
            for &nr in &numbers {
                for arch in [arch_native, 0x4000_0003, 0] {
                    let mut always_allowed = true;
                    let mut steps = 0;
                    for args in std::iter::once(&[0; 6]).chain(&argsets) {
                        let d = seccomp_data(nr, arch, *args);
                        let ((verdict, n), (expected, _)) = (run(&with, &d), run(&without, &d));
                        assert_eq!(verdict, expected, "nr {nr} arch {arch:#x} args {args:?} no_setid {no_setid}");
                        always_allowed &= verdict == libc::SECCOMP_RET_ALLOW;
                        steps = steps.max(n);
                    }
                    if always_allowed {
                        // No rule names the call (each rule refuses one of the argument sets).
                        most = most.max(steps);
                    }
                }
            }
            assert!(most <= 20, "an allowed call took {most} instructions");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_check_follows_the_arch_check() {
        let filter = default_filter().expect("compile").expect("supported arch");
        let p = &filter.program;
        assert_eq!(u32::from(p[2].code), libc::BPF_RET | libc::BPF_K);
        assert_eq!(p[2].k, libc::SECCOMP_RET_KILL_PROCESS, "seccompiler's arch check comes first");
        assert_eq!((u32::from(p[4].code), p[4].k), (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K, X32_SYSCALL_BIT));
        assert_eq!(p[5].k, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
    }
}
