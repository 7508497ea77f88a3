//! A fresh, writable Alpine Linux in its own namespaces, per test or per command: a private overlay
//! copy of a real root filesystem, its own hostname, pids, mounts, IPC and network, torn down without
//! a trace. No daemon; milliseconds per sandbox.
//!
//! ```no_run
//! use sandbox::{Network, Sandbox};
//! let rootfs = sandbox::fetch::Alpine::new("3.20.3").fetch()?;
//! let sb = Sandbox::builder()
//!     .rootfs(&rootfs)
//!     .hostname("box")
//!     .network(Network::Loopback)
//!     .build()?;
//! let out = sb.command("/bin/sh").args(["-c", "hostname; cat /etc/alpine-release"]).output()?;
//! assert!(String::from_utf8_lossy(&out.stdout).starts_with("box\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Beyond that: resource limits ([`Builder::memory_limit`], [`Builder::pids_limit`],
//! [`Builder::cpu_limit`], [`Builder::rlimit`]; cgroup v2 or v1, with [`Child::usage`]), volumes and
//! files ([`Mount`], [`Builder::file`]), several sandboxes on one virtual switch ([`Net`],
//! [`Network::Switch`]), sessions ([`Sandbox::session`]), closures ([`Sandbox::run`]) and the test
//! attribute [`sandbox_test`].
//!
//! # How it works
//! The calling process, often the multi-threaded test harness, never forks by hand: it spawns its own
//! executable (`/proc/self/exe`) with `std::process::Command`, and a constructor in this crate diverts
//! that new process, the helper, before `main`, while it is still single-threaded. There it creates
//! the cgroup (with limits) and the user (when not root), UTS, IPC, network and pid namespaces, and
//! forks the sandbox's init, PID 1 of the new pid namespace. Init creates the cgroup and mount
//! namespaces (so that the helper keeps the host's view, and stays outside the sandbox's cgroup),
//! makes the host's mounts a one-way slave, pivots into a staging tmpfs, mounts an overlay whose lower layer is the shared, read-only rootfs and whose upper layer lives
//! in that tmpfs, adds `/proc`, a minimal `/dev`, a tmpfs `/tmp`, a read-only `/sys`, `/etc/hostname` and
//! `/etc/hosts`, sets the hostname, brings up `lo`, pivots into the new root and detaches the host's.
//! It then forks the program, reaps zombies, forwards signals and enforces the deadline. The test
//! binary never has to exist inside the rootfs: it is already loaded when the root is switched.
//!
//! [`Sandbox::run`] and [`Sandbox::run_with`] run a closure that captures nothing: the sandbox's
//! process (forked from the fork server, so running this same binary) finds the closure's code at the
//! same offset from a known function as the caller, after checking the binary's build id, runs it
//! with the input sent as JSON and sends the value back as JSON. The caller's code runs once; only the
//! closure runs in the sandbox. `#[sandbox_test]` runs the test's body this way.
//!
//! # Security
//! A program in a sandbox has root's powers over the sandbox's own namespaces and none over the host,
//! also when the caller is root: it runs in a user namespace of its own (as root, mapped to 65536
//! unprivileged host ids from [`Builder::id_base`]), its mounts are locked, setup resolves every path
//! inside the new root, only stdin, stdout and stderr reach it, and it runs with no_new_privs, a seccomp
//! filter refusing (EPERM) what Docker's default profile refuses that no test needs, crun's masked
//! `/proc` paths, sized tmpfs mounts and a deadline enforced from outside. [`Builder::privileged`]
//! gives all that up: as root, the program is then the host's root. It still shares the kernel, and
//! the host's devices `null`, `zero`, `full`, `random`, `urandom` and `tty` (as root, nodes made in
//! the sandbox's `/dev`; rootless and privileged, the host's bound there). See
//! `docs/design/security.md`.
//!
//! # Resource leaking
//! Nothing a sandbox creates exists outside its own mount namespace: the writable layer is a tmpfs
//! there, so it disappears with the last process. Every process is in the sandbox's pid namespace and
//! dies with its init; init dies with the helper (`PR_SET_PDEATHSIG`), and the helper with the thread
//! that spawned it, a thread that lives as long as the calling process. A sandbox therefore ends on
//! drop, on timeout, on panic and on SIGKILL of the test process alike, and leaves nothing to sweep.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod cgroups;
mod closure;
mod command;
mod config;
mod error;
mod hardening;
#[doc(hidden)]
pub mod harness;
mod hints;
mod inroot;
mod network;
mod plan;
mod pty;
mod report;
mod rlimit;
mod sandbox;
mod seccomp;
mod session;
mod spawn;
mod stdio;
mod sys;
mod volume;

pub use cgroups::Usage;
pub use closure::in_sandbox_child;
pub use command::{Child, Command};
pub use config::DEFAULT_PATH;
pub use error::{Error, Result, error_chain};
/// The rootfs library (crate `sandbox-fetch`). With this crate's `download` feature (on by
/// default) it downloads what the cache lacks; with `default-features = false` it builds without
/// HTTP, TLS or OpenPGP crates and serves only what the cache, `$SANDBOX_ROOTFS` or a local tarball
/// or tree holds (see its "Features").
pub use fetch;
pub use network::{Net, Network};
pub use pty::Pty;
pub use rlimit::{DEFAULT_PROCESSES, Rlimit};
pub use sandbox::{Builder, Sandbox, kept_layer_owner, namespace_owners};
pub use session::Session;
pub use stdio::Stdio;
pub use volume::Mount;

/// Runs a test's body inside a fresh sandbox: a private writable Alpine root, its own hostname,
/// pids and network (`lo` up), torn down when the test ends, pass or fail.
///
/// ```no_run
/// use sandbox::sandbox_test;
///
/// #[sandbox_test]
/// fn binds_port_80() {
///     let _l = std::net::TcpListener::bind("0.0.0.0:80").unwrap();
///     std::fs::write("/etc/motd", "mine").unwrap();
/// }
///
/// #[sandbox_test(hostname = "db1", network = "none", timeout = "20s", env(RUST_LOG = "debug"))]
/// fn configured() -> Result<(), Box<dyn std::error::Error>> {
///     assert_eq!(std::fs::read_to_string("/etc/hostname")?, "db1\n");
///     Ok(())
/// }
/// ```
///
/// Options: `hostname = "…"`; `network = "loopback" | "none" | "host"`; `timeout = "500ms" | "20s" |
/// "2m"` (default: `$SANDBOX_TEST_TIMEOUT`, else 5 minutes); `env(KEY = "value", …)`; `rootfs = "alpine:3.20"` (any version `fetch` takes) or
/// `rootfs_dir = "path"` (relative to the crate, or any `&'static str` expression); `sys` (a
/// read-only `/sys`); `privileged` (as root, the body is the host's root: see
/// [`Builder::privileged`]); `mount(bind = "host path", at = "/path"[, read_only])` and
/// `mount(tmpfs = "/path"[, size = "16M"])`, in order; `memory = "64M"`, `pids = 64` and
/// `cpus = 0.5` (limits, see [`Builder::memory_limit`]); `writable_size = "2G"` (the writable layer,
/// `/tmp` and tmpfs volumes without a size, see [`Builder::writable_size`]); sizes are bytes or `K`,
/// `M`, `G`, `T`, `P` (binary); `requires = "limits, switch, userns"`
/// (what the test needs of the machine: without it, the test prints a `SKIP:` line and passes, or
/// fails in strict mode, `CI=true` or `SANDBOX_TEST_STRICT=1`). Without `rootfs`, the
/// rootfs is `$SANDBOX_ROOTFS`, else the pinned Alpine release from the cache, fetched on first use.
/// `#[should_panic]`, `#[ignore]` and `-> Result<(), E>` work as with `#[test]`; an `async fn` runs on a
/// current-thread tokio runtime built inside (the crate needs tokio with feature `rt`). A
/// `#[should_panic]` test passes when its body panics, or, with `expected = "…"`, when the body ends
/// otherwise with a failure holding that text (`"timed out"`, `"SIGKILL"`, `"memory limit"`); a
/// sandbox that cannot be set up never passes it.
///
/// How: the body is a function, run in the new sandbox as a closure with [`Sandbox::run`] (the test
/// binary is not re-executed). The body's output shows in the test's captured output; a timeout, a crash and a
/// setup failure each fail the test with a message of their own.
pub use sandbox_macros::sandbox_test;
