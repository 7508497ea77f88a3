//! A virtual switch that several sandboxes join, for tests of things that talk over a network.
//!
//! The switch is a bridge in a network namespace of its own, held by a helper process; the host's
//! network namespace is never touched. Each member sandbox gets an `eth0` (one end of a veth pair whose
//! other end is plugged into the bridge), an address in 10.89.0.0/24, and `/etc/hosts` entries for every
//! member by hostname.

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::Error;
use crate::config::{Config, Job, NetMode, RootMode, SwitchMember};
use crate::report::{Reader, Record};
use crate::spawn::parent::{Known, Stdio3, launch};

/// Why a rootless process cannot have a switch.
pub(crate) const ROOTLESS_REASON: &str = "a switch network needs root: plugging a sandbox into it moves a veth \
    between two network namespaces, which needs CAP_NET_ADMIN over both, and an unprivileged sandbox has it over \
    its own only. Rootless, run the cooperating programs in one Session (they share its loopback)";

/// A virtual switch. Cheap to clone (a handle); the switch goes away when the last handle and the
/// last sandbox on it are gone.
///
/// # Examples
/// ```no_run
/// use sandbox::{Net, Network, Sandbox};
/// let net = Net::new()?;
/// let db = Sandbox::builder().network(Network::Switch(net.clone())).hostname("db").build()?;
/// let app = Sandbox::builder().network(Network::Switch(net.clone())).hostname("app").build()?;
/// let db_session = db.session()?;
/// db_session.command("/bin/sh").args(["-c", "mkdir /www && echo hi > /www/x && httpd -p 8080 -h /www"]).status()?;
/// let out = app.command("/bin/sh").args(["-c", "wget -q -O- http://db:8080/x"]).output()?;
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
    kill: Mutex<Option<OwnedFd>>,
    reports: Mutex<Reader>,
    members: Mutex<Vec<(String, Ipv4Addr)>>,
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
            sys: false,
            mounts: Vec::new(),
            files: Vec::new(),
            limits: Default::default(),
            rlimits: Vec::new(),
            security: Default::default(),
            job: Job::Switch,
        };
        let launched = launch(&config, Stdio3::Known([Known::Null, Known::Null, Known::Inherit]), &[])?;
        let mut reports = launched.reports;
        let mut holder = None;
        loop {
            match reports.next() {
                Some(Record::Init { pid }) => holder = Some(pid),
                Some(Record::Ready) => break,
                Some(Record::SetupFailed { kind, what, path, errno }) => {
                    let errno = nix::errno::Errno::from_raw(errno);
                    return Err(Error::Setup {
                        step: what,
                        path,
                        source: std::io::Error::from(errno),
                        hint: crate::hints::for_step(kind, errno, false),
                    });
                }
                Some(_) => {}
                None => return Err(Error::HelperDied { status: None }),
            }
        }
        let holder = holder.ok_or(Error::HelperDied { status: None })?;
        Ok(Net {
            inner: Arc::new(Inner {
                holder,
                kill: Mutex::new(Some(launched.kill)),
                reports: Mutex::new(reports),
                members: Mutex::new(Vec::new()),
                starts: AtomicU32::new(0),
            }),
        })
    }

    /// Gives `hostname` an address on this switch (once per hostname).
    pub(crate) fn register(&self, hostname: &str) -> Result<Ipv4Addr, Error> {
        let mut members = self.inner.members.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, a)) = members.iter().find(|(h, _)| h == hostname) {
            return Ok(*a);
        }
        let n = members.len() + 2;
        if n > 254 {
            return Err(Error::InvalidConfig {
                what: "network",
                value: hostname.to_owned(),
                reason: "a switch holds 253 members at most".to_owned(),
            });
        }
        let address = Ipv4Addr::new(10, 89, 0, n as u8);
        members.push((hostname.to_owned(), address));
        Ok(address)
    }

    /// What a member needs to plug in, for one start.
    pub(crate) fn member(&self, address: Ipv4Addr) -> SwitchMember {
        let start = self.inner.starts.fetch_add(1, Ordering::Relaxed);
        SwitchMember {
            holder: self.inner.holder,
            address,
            peer: format!("v{start}"),
            hosts: self.inner.members.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the kill pipe ends the holder; its namespace, bridge and veth ends go with it.
        drop(self.kill.lock().unwrap_or_else(|p| p.into_inner()).take());
        let mut reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        while reports.next().is_some() {}
    }
}
