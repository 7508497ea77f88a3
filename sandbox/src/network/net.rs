//! A virtual switch that several sandboxes join, for tests of things that talk over a network.
//!
//! The switch is a bridge in a network namespace of its own, held by a helper process; the host's
//! network namespace is never touched. Each member sandbox gets an `eth0` (one end of a veth pair whose
//! other end is plugged into the bridge), an address in 10.89.0.0/24, and `/etc/hosts` entries for every
//! member by hostname.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::Error;
use crate::config::{Config, Job, NetMode, RootMode, SwitchMember};
use crate::spawn::handle::{HelperHandle, Stage};
use crate::stdio::Stdio;

/// The network a sandbox gets.
///
/// # Examples
/// ```
/// assert_eq!(sandbox::Network::default(), sandbox::Network::Loopback);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Network {
    /// A new network namespace with only `lo`, up: 127.0.0.1 and ::1 work, nothing else is reachable.
    #[default]
    Loopback,
    /// A new network namespace with `lo` down: no network at all.
    None,
    /// The host's network namespace, shared: explicitly opted into, no isolation.
    Host,
    /// A new network namespace with `lo` and an `eth0` on a virtual switch that other sandboxes join:
    /// see [`Net`]. Needs root.
    Switch(Net),
}

/// Why a rootless process cannot have a switch.
pub(crate) const ROOTLESS_REASON: &str = "a switch network needs root: plugging a sandbox into it moves a veth \
    between two network namespaces, which needs CAP_NET_ADMIN over both, and an unprivileged sandbox has it over \
    its own only. Rootless, run the cooperating programs in one Session (they share its loopback)";

/// A virtual switch. Cheap to clone (a handle); the switch goes away when the last handle and the
/// last sandbox on it are gone.
///
/// A hostname names one member: its address, given when the first sandbox with that hostname is
/// built on this switch, is in every member's `/etc/hosts`. Sandboxes built later with the same
/// hostname are that member again and share its address; starts of theirs that run at the same
/// time as another (two spawned commands, two sandboxes of one name) each get an address of their
/// own, listed under the name too, after the first: the name reaches the member's own address.
/// Give each sandbox that others must reach by name a name of its own.
///
/// # Examples
/// ```no_run
/// use sandbox::{Net, Network, Sandbox};
/// let net = Net::new()?;
/// let db = Sandbox::builder().network(Network::Switch(net.clone())).hostname("db").build()?;
/// let app = Sandbox::builder().network(Network::Switch(net.clone())).hostname("app").build()?;
/// let db_session = db.session()?;
/// db_session.command("/bin/sh").args(["-c", "nc -ll -p 8080 -e echo hi & until grep -q ':1F90 ' /proc/net/tcp /proc/net/tcp6; do :; done"]).status()?;
/// let out = app.command("/bin/sh").args(["-c", "nc db 8080 </dev/null"]).output()?;
/// assert_eq!(out.stdout, b"hi\n");
/// # Ok::<(), sandbox::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Net {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    holder: i32,
    /// The holder; dropping it ends the switch and reaps the holder (bug 8: an executed holder used to
    /// stay a zombie).
    _handle: HelperHandle,
    members: Mutex<Members>,
    starts: AtomicU32,
}

impl PartialEq for Net {
    fn eq(&self, other: &Net) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Net {}

impl Net {
    /// Creates a switch: a bridge in a new network namespace.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when not root; [`Error::Setup`] if the kernel refuses the bridge.
    pub fn new() -> Result<Net, Error> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::InvalidConfig {
                what: "network",
                value: "Switch".to_owned(),
                reason: ROOTLESS_REASON.to_owned(),
            });
        }
        let config = Config {
            layers: Default::default(),
            root: RootMode::Overlay { lower: "/".into() },
            hostname: "switch".to_owned(),
            network: NetMode::None,
            env: Vec::new(),
            current_dir: "/".to_owned(),
            timeout: None,
            user_namespace: false,
            outer_uid: 0,
            outer_gid: 0,
            resolv_conf: None,
            controlling_terminal: false,
            pty: None,
            sys: false,
            mounts: Vec::new(),
            files: Vec::new(),
            limits: Default::default(),
            rlimits: Vec::new(),
            security: Default::default(),
            network_in_background: None,
            job: Job::Switch,
        };
        let (null, inherit) = (Stdio::null(), Stdio::inherit());
        let handle = HelperHandle::start((config, None::<()>), [&null, &null, &inherit], Stage::Ready)
            .map_err(|r| r.into_error())?;
        let holder = handle.init_pid().ok_or(Error::HelperDied { status: None })?;
        Ok(Net {
            inner: Arc::new(Inner {
                holder,
                _handle: handle,
                members: Mutex::new(Members::default()),
                starts: AtomicU32::new(0),
            }),
        })
    }

    /// Gives `hostname` its address on this switch (once per hostname): the address its starts use
    /// when it is free, and that every member's `/etc/hosts` lists.
    pub(crate) fn register(&self, hostname: &str) -> Result<Ipv4Addr, Error> {
        let mut members = self.inner.members.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, a)) = members.registered.iter().find(|(h, _)| h == hostname) {
            return Ok(*a);
        }
        let address = members.free_address().ok_or_else(|| full(hostname))?;
        members.registered.push((hostname.to_owned(), address));
        Ok(address)
    }

    /// What a member needs to plug in, for one start, and the lease on its address. A start takes
    /// the hostname's own address, or, while another start of the same sandbox holds it, one of its
    /// own (bug 7: overlapping starts shared one IP).
    pub(crate) fn member(&self, hostname: &str, address: Ipv4Addr) -> Result<(SwitchMember, Lease), Error> {
        let start = self.inner.starts.fetch_add(1, Ordering::Relaxed);
        let mut members = self.inner.members.lock().unwrap_or_else(|p| p.into_inner());
        let address = if members.running.iter().any(|(_, a)| *a == address) {
            members.free_address().ok_or_else(|| full(hostname))?
        } else {
            address
        };
        members.running.push((hostname.to_owned(), address));
        let mut hosts = members.registered.clone();
        for r in &members.running {
            if !hosts.contains(r) {
                hosts.push(r.clone());
            }
        }
        let member = SwitchMember { holder: self.inner.holder, address, peer: format!("v{start}"), hosts };
        Ok((member, Lease { net: self.clone(), address }))
    }
}

fn full(hostname: &str) -> Error {
    Error::InvalidConfig {
        what: "network",
        value: hostname.to_owned(),
        reason: "a switch holds 253 members at most".to_owned(),
    }
}

/// The hostnames and addresses on a switch.
#[derive(Debug, Default)]
struct Members {
    /// Each hostname's own address (given at `build()`).
    registered: Vec<(String, Ipv4Addr)>,
    /// The addresses of the starts running now.
    running: Vec<(String, Ipv4Addr)>,
}

impl Members {
    /// An address in 10.89.0.2-254 that nobody has.
    fn free_address(&self) -> Option<Ipv4Addr> {
        (2..=254u8)
            .map(|n| Ipv4Addr::new(10, 89, 0, n))
            .find(|a| !self.registered.iter().chain(&self.running).any(|(_, b)| b == a))
    }
}

/// One start's hold on its address on a switch (and on the switch itself); released on drop.
#[derive(Debug)]
pub(crate) struct Lease {
    net: Net,
    address: Ipv4Addr,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut members = self.net.inner.members.lock().unwrap_or_else(|p| p.into_inner());
        members.running.retain(|(_, a)| *a != self.address);
    }
}
