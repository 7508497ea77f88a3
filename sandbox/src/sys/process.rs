//! Processes: fork, exec, inherited descriptors, signals, and the constructor that diverts a
//! re-executed binary before `main`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag};

/// Opens `/dev/null` on each of descriptors 0, 1 and 2 that is closed, as Rust's runtime does before
/// `main`: a caller that closed its stdin or stdout later would otherwise have the next descriptor
/// this crate opens (the configuration memfd, a pipe) take its place, and a program inheriting that
/// stream got the configuration, environment values and files included (an outside review).
pub(crate) fn fill_closed_stdio() {
    for fd in 0..3 {
        // SAFETY: F_GETFD reads a descriptor's flags and changes nothing; a number that names no
        // open descriptor gets EBADF (a BorrowedFd may not name a closed one, hence the raw call).
        let open = unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } != -1 || Errno::last() != Errno::EBADF;
        if open {
            continue;
        }
        let Ok(null) = nix::fcntl::open(c"/dev/null", nix::fcntl::OFlag::O_RDWR, nix::sys::stat::Mode::empty()) else {
            return;
        };
        // The lowest free descriptor: `fd`, unless another thread took it meanwhile.
        if null.as_raw_fd() == fd {
            let _kept_open_for_good = std::os::fd::IntoRawFd::into_raw_fd(null);
        }
    }
}

/// Proof that the process is single-threaded: only the constructor that [`run_before_main!`]
/// registers makes one, before `main`, and it cannot leave its thread (it is neither `Send` nor
/// `Sync`). The code that receives it (fork server, helper, init, the program's process before exec)
/// never starts a thread. Operations that are sound only without other threads take it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SingleThreaded {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl SingleThreaded {
    /// # Safety
    /// Only for a constructor that runs before `main` (an `.init_array` entry), when no thread but
    /// the main thread exists; [`run_before_main!`] is the one caller.
    pub(crate) const unsafe fn assume() -> SingleThreaded {
        SingleThreaded { _not_send: std::marker::PhantomData }
    }

    /// A proof made at run time: `Some` when the kernel counts one thread in this process: the
    /// link count of `/proc/self/task` is two plus its threads (one `stat`, where reading
    /// `/proc/self/status` had the kernel format fifty lines: a closure asks at each end). Only this
    /// thread could start another, so the answer holds until it does; use the token at once (it is
    /// neither `Send` nor `Sync`).
    pub(crate) fn if_alone() -> Option<SingleThreaded> {
        use std::os::unix::fs::MetadataExt;
        let links = std::fs::metadata("/proc/self/task").ok()?.nlink();
        // SAFETY: one thread: this one, which holds no lock across this call.
        (links == 3).then(|| unsafe { SingleThreaded::assume() })
    }
}

/// Registers `$entry`, a `fn(SingleThreaded)`, as a constructor (an `.init_array` entry) that runs
/// before `main` in every process of a binary linking this crate; the static `$name` must be
/// referenced from code that always runs, so that the linker keeps it.
macro_rules! run_before_main {
    ($name:ident, $entry:path) => {
        #[used]
        #[allow(unsafe_code)]
        // SAFETY: the kernel's loader runs .init_array entries before `main`, in the main and only
        // thread, with no arguments: what `hook` expects.
        #[unsafe(link_section = ".init_array")]
        pub(crate) static $name: extern "C" fn() = {
            #[allow(unsafe_code)]
            extern "C" fn hook() {
                // SAFETY: this runs as a constructor, before main: one thread only.
                $entry(unsafe { $crate::sys::process::SingleThreaded::assume() })
            }
            hook
        };
    };
}
pub(crate) use run_before_main;

/// `fork(2)`; the child may do anything the parent could, since no lock can be held by a thread that
/// does not exist in it.
pub(crate) fn fork(_: SingleThreaded) -> Result<nix::unistd::ForkResult, Errno> {
    // SAFETY: the process is single-threaded (the token proves it), so fork(2) copies its whole state.
    unsafe { nix::unistd::fork() }
}

/// Makes `env` the whole environment: what this process inherited (the caller's, under a forked
/// helper; the fork server's variable, under a served one) goes.
pub(crate) fn set_env(_: SingleThreaded, env: &[(String, String)]) {
    for (name, _) in std::env::vars_os() {
        // SAFETY: the process is single-threaded (the token proves it): no other thread can read
        // the environment concurrently.
        unsafe { std::env::remove_var(name) };
    }
    for (k, v) in env {
        // SAFETY: as above.
        unsafe { std::env::set_var(k, v) };
    }
}

/// Makes `fds` survive the `exec` of `cmd` (they are close-on-exec in the parent, so that no other
/// thread's child inherits them).
pub(crate) fn keep_fds_on_exec(cmd: &mut std::process::Command, fds: Vec<RawFd>) {
    use std::os::unix::process::CommandExt;
    let hook = move || {
        for &fd in &fds {
            // SAFETY: `fd` is open in the parent (the caller keeps it alive across spawn), and so in
            // this forked child; fcntl is async-signal-safe.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            nix::fcntl::fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
        }
        Ok(())
    };
    // SAFETY: the hook only calls fcntl(2), which is async-signal-safe, and allocates nothing.
    unsafe { cmd.pre_exec(hook) };
}

/// Points this process's stdin, stdout and stderr at `null` (`/dev/null`), letting go of the
/// program's: whoever reads the program's output sees its end when the program's processes have
/// closed theirs, not when the helper or init exits.
pub(crate) fn let_go_of_stdio(null: &std::os::fd::OwnedFd) {
    let _ = nix::unistd::dup2_stdin(null);
    let _ = nix::unistd::dup2_stdout(null);
    let _ = nix::unistd::dup2_stderr(null);
}

/// Whether nobody reads `pipe` (a write end) any more: its reader, a parent that holds the only read
/// end, is gone. For init, PID 1 of its namespace, to which getppid(2) says nothing about its parent.
pub(crate) fn reader_gone(pipe: &std::os::fd::OwnedFd) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLOUT)];
    // pipe(7): a write end whose read ends are all closed polls as POLLERR.
    poll(&mut fds, PollTimeout::ZERO).is_ok()
        && fds[0].revents().is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
}

/// The fields of proc(5)'s `/proc/<pid>/stat` after the command's name (which may hold spaces and
/// parentheses: split at the last `)`): element 0 is field 3 (the state), element `n - 3` field `n`.
pub(crate) fn stat_fields(pid: &str) -> Option<Vec<String>> {
    stat_fields_at(None, &format!("/proc/{pid}/stat"))
}

/// [`stat_fields`] of the stat file at `path` (relative to `dir`, else as it is), read as
/// [`read_proc_file`] reads: a `/proc` the sandbox's programs may have mounted over.
pub(crate) fn stat_fields_at(dir: Option<BorrowedFd<'_>>, path: &str) -> Option<Vec<String>> {
    let stat = read_proc_file(dir, path, 4096)?;
    let stat = String::from_utf8_lossy(&stat);
    Some(stat.rsplit_once(')')?.1.split_whitespace().map(str::to_owned).collect())
}

/// At most `limit` bytes of the `/proc` file `path` (relative to `dir`, else as it is), which the
/// sandbox's programs may have mounted something over: never through a symlink, never waiting on a
/// FIFO (nor a terminal), never more than asked (`/dev/zero` bound over a command line). `None` if
/// it cannot be opened or read.
pub(crate) fn read_proc_file(dir: Option<BorrowedFd<'_>>, path: &str, limit: u64) -> Option<Vec<u8>> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let dir = dir.unwrap_or(nix::fcntl::AT_FDCWD);
    let fd = nix::fcntl::openat(dir, path, flags, nix::sys::stat::Mode::empty()).ok()?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(std::fs::File::from(fd), limit), &mut bytes).ok()?;
    Some(bytes)
}

/// Shows this process as `name` in `ps` and `/proc/PID/cmdline`: writes `name` over its argument
/// strings (the area between `arg_start` and `arg_end` of proc(5)'s `/proc/self/stat`), the rest of
/// the area zeroed, and sets its command name. For init, a fork of the caller, whose command line
/// (a test binary's path and filters, a tool's arguments) is no business of the sandbox's.
pub(crate) fn show_as(_: SingleThreaded, name: &str) {
    let _ = nix::sys::prctl::set_name(&std::ffi::CString::new(name).unwrap_or_default());
    let Some(fields) = stat_fields("self") else { return };
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<usize>().ok()).unwrap_or(0);
    let (start, end) = (field(48), field(49));
    if start == 0 || end <= start {
        return;
    }
    let len = end - start;
    let n = name.len().min(len - 1);
    // SAFETY: [start, end) is this process's own argument area, as the kernel reports it: on the
    // initial stack, mapped writable for the whole life of the process, written only here and by
    // nothing else (std keeps raw pointers to it and reads it only when asked, and this process is
    // single-threaded, the token proves it). The writes stay inside it, and leave a NUL at its end.
    unsafe {
        std::ptr::copy_nonoverlapping(name.as_ptr(), start as *mut u8, n);
        std::ptr::write_bytes((start + n) as *mut u8, 0, len - n);
    }
}

/// A null-terminated list of C strings for execve(2) (arguments or environment), built where
/// allocating is fine, so that the exec itself allocates nothing.
#[derive(Debug)]
pub(crate) struct ExecList {
    _strings: Vec<CString>,
    pointers: Vec<*const libc::c_char>,
}

impl ExecList {
    pub(crate) fn new(strings: Vec<CString>) -> ExecList {
        let pointers = strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        ExecList { _strings: strings, pointers }
    }
}

/// `execve(2)` of `program` with `args` and `env`; returns only on failure. Allocates nothing.
pub(crate) fn execve(program: &std::ffi::CStr, args: &ExecList, env: &ExecList) -> Errno {
    // SAFETY: `program` is a NUL-terminated string, and both lists are null-terminated arrays of
    // pointers to NUL-terminated strings that they own, alive for the call.
    unsafe { libc::execve(program.as_ptr(), args.pointers.as_ptr(), env.pointers.as_ptr()) };
    Errno::last()
}

/// Ends this process at once with `code` (_exit(2)): no exit handler runs and no buffer of the
/// process it was forked from (its stdout's) is flushed a second time.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) ends the process; it reads no memory of ours.
    unsafe { libc::_exit(code) }
}

/// Memory for the stack of a process started by clone(2) on this process's memory, 16-byte aligned,
/// and its top (the stack grows down on every architecture Linux runs this crate on). Left unwritten:
/// zeroing it cost a page fault per page on every start, while the process touches only the top.
fn clone_stack(bytes: usize) -> (Vec<u128>, *mut libc::c_void) {
    let mut stack = Vec::<u128>::with_capacity(bytes / std::mem::size_of::<u128>());
    let top = stack.spare_capacity_mut().as_mut_ptr_range().end.cast::<libc::c_void>();
    (stack, top)
}

/// The stack of a process started by [`spawn_sharing_memory`]: its work is a few system calls.
const SHARED_MEMORY_STACK: usize = 64 * 1024;

/// Runs `body` in a new process that shares this process's memory until it execs or ends, on a stack
/// of its own; this process is suspended meanwhile (clone(2) with `CLONE_VM | CLONE_VFORK`, as
/// posix_spawn(3) does), so no page table is copied. `body`'s value is the process's exit code.
///
/// `body` runs on this process's memory, errno included: it may only make system calls that
/// allocate nothing and take no lock, must not panic, and must not exit through `std::process::exit`
/// (which would run this process's exit handlers); returning ends it with `_exit`.
pub(crate) fn spawn_sharing_memory(body: &dyn Fn() -> i32) -> Result<nix::unistd::Pid, Errno> {
    extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` points to the `&dyn Fn` below, which lives until the clone returns, and the
        // clone only returns once this process has exec'd or ended (CLONE_VFORK).
        let body = unsafe { &*arg.cast::<&dyn Fn() -> i32>() };
        body()
    }
    let (stack, top) = clone_stack(SHARED_MEMORY_STACK);
    let arg = std::ptr::from_ref(&body).cast_mut().cast::<libc::c_void>();
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    // SAFETY: the new process runs `trampoline` on `stack`, a 16-byte aligned buffer that outlives
    // it as the memory's user: CLONE_VFORK suspends this process until the new one has exec'd (its
    // memory is then its own) or ended. Meanwhile nothing else runs on this memory: the caller is
    // single-threaded (init), and `body` keeps to system calls (see above).
    let pid = unsafe { libc::clone(trampoline, top, flags, arg) };
    drop(stack);
    Errno::result(pid).map(nix::unistd::Pid::from_raw)
}

/// Makes stdin's terminal the controlling terminal of this process, a session leader. Allocates
/// nothing.
pub(crate) fn take_stdin_as_controlling_terminal() -> Result<(), Errno> {
    // SAFETY: descriptor 0 is only borrowed for the call; if it is not open, ioctl fails with EBADF.
    set_controlling_terminal(unsafe { BorrowedFd::borrow_raw(0) })
}

/// Takes ownership of an fd number inherited from the parent, if it is open. Before `main` (the
/// token), nothing in this process owns a descriptor but the standard streams.
pub(crate) fn adopt_fd(_: SingleThreaded, raw: RawFd) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: the borrow only lives for the F_GETFD probe, which works on any number.
    let probe = unsafe { BorrowedFd::borrow_raw(raw) };
    nix::fcntl::fcntl(probe, FcntlArg::F_GETFD).ok()?;
    // SAFETY: the fd is open (probed above) and was handed to this process for it alone to own: the
    // parent's spawn cleared close-on-exec on it for this exec only.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) })
}

/// Puts SIGPIPE back to its default action before an exec, as `std::process::Command` does for its
/// children: the caller's Rust runtime ignores it, helpers and init forked from the caller inherit
/// that, and an ignored signal stays ignored across execve(2) (signal(7)); a program would then
/// get EPIPE where it expects to die (`yes | head` printing "Broken pipe", a writing loop never
/// ending). Only the calling process's own handler table changes (the program's process shares
/// init's memory, not its handlers: no CLONE_SIGHAND).
pub(crate) fn default_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal};
    // SAFETY: the default disposition installs no handler; sigaction(2) is async-signal-safe.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Ends this process with the signal `sig`, so that its parent's `ExitStatus` shows it, without a
/// core dump; falls back to exit code 128 + sig.
pub(crate) fn die_by_signal(sig: i32) -> ! {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
    if let Ok(signal) = Signal::try_from(sig) {
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
        // SAFETY: restoring the default disposition installs no handler; no other thread exists here.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
        let mut set = SigSet::empty();
        set.add(signal);
        let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
        let _ = nix::sys::signal::raise(signal);
    }
    exit_now(128 + sig)
}

/// Makes the terminal open on `fd` the controlling terminal of this process, a session leader.
fn set_controlling_terminal(fd: impl std::os::fd::AsFd) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal the terminal from another
    // session); `fd` is open for the duration of the call.
    Errno::result(unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSCTTY, 0) }).map(drop)
}

/// The user namespace of the process `pidfd` refers to, as a new close-on-exec descriptor, without a
/// `/proc` lookup (ioctl(2) `PIDFD_GET_USER_NAMESPACE`, Linux 6.11; ENOTTY before). A lookup of
/// `/proc/<pid>/ns/user` in a process just born allocates its `/proc` entries: about 15 µs here.
pub(crate) fn user_namespace_of(pidfd: BorrowedFd<'_>) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    // _IO(PIDFS_IOCTL_MAGIC, 9) with PIDFS_IOCTL_MAGIC 0xFF: include/uapi/linux/pidfd.h.
    const PIDFD_GET_USER_NAMESPACE: libc::c_ulong = 0xFF09;
    // SAFETY: this ioctl takes no argument and returns a new descriptor (or -1 and errno); `pidfd`
    // is open for the duration of the call.
    let fd = Errno::result(unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_USER_NAMESPACE as _, 0) })?;
    // SAFETY: the descriptor was just made for this process, and nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// A process that only holds namespaces: born in them (`clone(2)` with `CLONE_NEWUSER` and the other
/// `CLONE_NEW*` flags asked for, the user namespace first, which then owns the others), sharing this
/// process's memory (`CLONE_VM`: no page tables to copy, nothing to tear down), and waiting until it
/// is killed. Meanwhile the caller writes its id maps and joins its namespaces (through a pidfd of it). Dropping
/// it kills and reaps it.
///
/// [`NamespaceHolder::spawn_making_network`] makes one that also creates a network namespace, after
/// its birth, while its creator goes on: the kernel takes most of a millisecond to make one (each
/// protocol registers its sysctls and per-namespace state), which then overlaps with init's mounts.
/// That one holds the namespace until the last write end of a release pipe is closed.
pub(crate) struct NamespaceHolder {
    pid: nix::unistd::Pid,
    /// The holder's stack: it must outlive the holder.
    _stack: Vec<u128>,
    /// What the holder reads at its start: it must outlive the holder too.
    _args: Box<HoldArgs>,
}

/// A holder's instructions, read once at its start from the memory it shares with its creator.
#[derive(Debug)]
struct HoldArgs {
    /// The creator's pid: the holder dies with it.
    parent: usize,
    /// Namespaces to create once born (`CLONE_NEWNET`), or none.
    then: rustix::thread::UnshareFlags,
    /// Where to say how that went: one byte, 0 once made, else the errno.
    ready: RawFd,
    /// The release pipe's read end: end-of-file there ends the holder.
    release: RawFd,
    /// The holder's copy of the release pipe's write end, closed at its start.
    release_copy: RawFd,
}

/// A network namespace's holder's pipes (see [`NamespaceHolder::spawn_making_network`]).
#[derive(Debug)]
pub(crate) struct HolderPipes<'a> {
    pub ready: BorrowedFd<'a>,
    pub release: BorrowedFd<'a>,
    pub release_copy: BorrowedFd<'a>,
}

/// Enough for `hold`, which makes a few system calls and nothing else.
const HOLDER_STACK: usize = 16 * 1024;

/// The holder's whole life. `args` points to its [`HoldArgs`]; it dies with its creator
/// (`PR_SET_PDEATHSIG`), also if that died before the holder could ask for that.
extern "C" fn hold(args: *mut libc::c_void) -> libc::c_int {
    // Shares the caller's memory, thread-local storage included: only system calls that neither
    // allocate nor take a lock, and none that writes errno, shared too (libc's calls here cannot
    // fail; rustix's raw calls return their error and write no errno); SIGKILL ends it (no handler
    // runs).
    // SAFETY: `args` is the `HoldArgs` of the `NamespaceHolder` that started this process, which
    // lives (never moved: it is boxed) until this process is dead; it is only read.
    let HoldArgs { parent, then, ready, release, release_copy } = unsafe { &*args.cast::<HoldArgs>() };
    let (parent, then, ready, release, release_copy) = (*parent, *then, *ready, *release, *release_copy);
    // SAFETY: prctl(2) with PR_SET_PDEATHSIG takes a signal number and reads no memory.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    // SAFETY: getppid(2) has no arguments.
    if unsafe { libc::getppid() } as usize != parent {
        // SAFETY: _exit(2) ends this process (exit_group: this holder only, not a thread of ours).
        unsafe { libc::_exit(0) };
    }
    if !then.is_empty() {
        // The descriptors below are this process's copies of its creator's (no CLONE_FILES: the
        // table was copied at clone), which nothing but this process can close.
        // SAFETY: `release_copy` is open (see above), and closed once, here, and never used again.
        unsafe { rustix::io::close(release_copy) };
        // SAFETY: unshare(2) of namespaces only (no CLONE_FILES, CLONE_FS or CLONE_SYSVSEM, whose
        // sharing with threads rustix's warning is about): it changes this process's namespaces.
        let made = unsafe { rustix::thread::unshare_unsafe(then) };
        let byte = [made.err().map_or(0, |e| e.raw_os_error().clamp(1, 255) as u8)];
        // SAFETY: `ready` is open (see above); it is only borrowed for the call.
        let _ = rustix::io::write(unsafe { BorrowedFd::borrow_raw(ready) }, &byte);
        // Until the last write end of the release pipe is closed (or the creator dies): the process
        // that joins the namespace holds one until it has.
        let mut buf = [0u8; 1];
        // SAFETY: `release` is open (see above); it is only borrowed for the call.
        let _ = rustix::io::read(unsafe { BorrowedFd::borrow_raw(release) }, &mut buf);
        // SAFETY: _exit(2) ends this process (exit_group: this holder only).
        unsafe { libc::_exit(0) };
    }
    loop {
        // SAFETY: pause(2) has no arguments and no effect but waiting.
        unsafe { libc::pause() };
    }
}

impl NamespaceHolder {
    /// Starts a holder born in new namespaces `flags` (which must include `CLONE_NEWUSER`).
    pub(crate) fn spawn(flags: nix::sched::CloneFlags) -> Result<NamespaceHolder, Errno> {
        Self::start(flags, rustix::thread::UnshareFlags::empty(), None)
    }

    /// Starts a holder born in new namespaces `flags` (none, or with `CLONE_NEWUSER`), which then
    /// creates a network namespace (owned by its user namespace), writes one byte on `pipes.ready`
    /// (0 once it exists, else the errno), and holds it until `pipes.release` reads end-of-file: its
    /// own copy of `pipes.release_copy` (that pipe's write end) it closes first.
    /// [`NamespaceHolder::leave_running`] lets it run on.
    pub(crate) fn spawn_making_network(
        flags: nix::sched::CloneFlags,
        pipes: &HolderPipes<'_>,
    ) -> Result<NamespaceHolder, Errno> {
        let fds = (pipes.ready.as_raw_fd(), pipes.release.as_raw_fd(), pipes.release_copy.as_raw_fd());
        Self::start(flags, rustix::thread::UnshareFlags::NEWNET, Some(fds))
    }

    fn start(
        flags: nix::sched::CloneFlags,
        then: rustix::thread::UnshareFlags,
        fds: Option<(RawFd, RawFd, RawFd)>,
    ) -> Result<NamespaceHolder, Errno> {
        let (stack, top) = clone_stack(HOLDER_STACK);
        let (ready, release, release_copy) = fds.unwrap_or((-1, -1, -1));
        let parent = std::process::id() as usize;
        let args = Box::new(HoldArgs { parent, then, ready, release, release_copy });
        let arg = std::ptr::from_ref::<HoldArgs>(&args).cast_mut().cast::<libc::c_void>();
        let flags = flags.bits() | libc::CLONE_VM | libc::SIGCHLD;
        // SAFETY: `hold` runs on `stack`, a 16-byte aligned buffer that lives as long as the holder
        // (kept in the returned value, which kills and reaps the holder before freeing it, or leaks
        // it), and reads `args`, kept the same way; it touches no other memory of ours. CLONE_VM
        // without CLONE_VFORK: we go on at once.
        let pid = unsafe { libc::clone(hold, top, flags, arg) };
        let pid = Errno::result(pid)?;
        Ok(NamespaceHolder { pid: nix::unistd::Pid::from_raw(pid), _stack: stack, _args: args })
    }

    /// The holder's process id, for its `/proc/<pid>` files.
    pub(crate) fn pid(&self) -> nix::unistd::Pid {
        self.pid
    }

    /// Lets the holder run on, unwaited: it ends when its release pipe is closed (by the process that
    /// joins its network namespace) or with its creator, which reaps it or leaves it to be reaped.
    /// Its stack and instructions are never freed: this is for a helper, whose life is one sandbox.
    pub(crate) fn leave_running(self) {
        std::mem::forget(self);
    }
}

impl Drop for NamespaceHolder {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

/// For tests: makes `cmd`'s exec look slow from outside, as it does under emulation. Between its
/// fork and its exec the child writes its pid to `pid_to` and waits `hold` before it execs. With
/// `empty_command_line` it first empties its command line (`PR_SET_MM_MAP` with `arg_end` at
/// `arg_start`): `/proc/<pid>/cmdline` then reads empty while the process lives, as it does in an
/// exec's last steps (though the child, not having exec'd, still shows `PF_FORKNOEXEC`). Without,
/// it reads the forking process's, as in an exec's first steps on a kernel that closes the
/// close-on-exec descriptors early (see `spawn::child::await_command_line`).
#[cfg(test)]
pub(crate) fn with_a_slow_exec(
    cmd: &mut std::process::Command,
    pid_to: std::os::fd::OwnedFd,
    hold: std::time::Duration,
    empty_command_line: bool,
) -> Option<()> {
    use std::os::unix::process::CommandExt;
    /// linux/prctl.h's `struct prctl_mm_map` (the libc crate has none).
    #[repr(C)]
    struct MmMap {
        fields: [u64; 11],
        auxv: u64,
        auxv_size: u32,
        exe_fd: u32,
    }
    let stat = stat_fields("self")?;
    let field = |n: usize| stat.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    // start_code end_code start_data end_data start_brk brk start_stack arg_start arg_end env_start
    // env_end, as proc(5) numbers them (brk is read in the child; arg_end is arg_start).
    let mut fields = [26, 27, 45, 46, 47, 0, 28, 48, 48, 50, 51].map(|n| if n == 0 { Some(0) } else { field(n) });
    let fields = fields.iter_mut().map(|f| f.take()).collect::<Option<Vec<u64>>>()?;
    let mut map = MmMap { fields: fields.try_into().ok()?, auxv: 0, auxv_size: 0, exe_fd: u32::MAX };
    let pause = libc::timespec { tv_sec: hold.as_secs() as libc::time_t, tv_nsec: hold.subsec_nanos().into() };
    let pipe = pid_to.as_raw_fd();
    // SAFETY: the hook runs in the forked child before its exec and makes only async-signal-safe
    // system calls (brk, getpid, prctl, write, nanosleep) on memory it owns, prepared before the
    // fork; `pid_to` is moved into the hook, so the descriptor stays open until it runs.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &pid_to;
            map.fields[5] = libc::syscall(libc::SYS_brk, 0) as u64;
            let size = std::mem::size_of::<MmMap>() as libc::c_ulong;
            let map_at = std::ptr::addr_of_mut!(map) as libc::c_ulong;
            if empty_command_line
                && libc::prctl(libc::PR_SET_MM, libc::PR_SET_MM_MAP as libc::c_ulong, map_at, size, 0 as libc::c_ulong)
                    != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            let pid = libc::getpid().to_ne_bytes();
            libc::write(pipe, pid.as_ptr().cast(), pid.len());
            libc::nanosleep(&pause, std::ptr::null_mut());
            Ok(())
        });
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_thread_is_not_alone() {
        // libtest's main thread waits for this one.
        assert!(SingleThreaded::if_alone().is_none());
        let links = |p| std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(p).expect("stat"));
        let before = links("/proc/self/task");
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || stopped.recv());
        assert_eq!(links("/proc/self/task"), before + 1, "two plus the threads");
        drop(stop);
        let _ = other.join();
    }
}
