//! What the parent hands the helper process: everything needed to build the sandbox, as plain data.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The `PATH` inside a sandbox unless the environment says otherwise.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A switch member's part of the configuration: where to plug in, and who else is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SwitchMember {
    /// Host pid of the process holding the switch's network namespace.
    pub holder: i32,
    pub address: std::net::Ipv4Addr,
    /// The name of this start's veth end in the switch.
    pub peer: String,
    /// Every member's hostname and address, for /etc/hosts.
    pub hosts: Vec<(String, std::net::Ipv4Addr)>,
}

/// The network, as the helper and init need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum NetMode {
    Loopback,
    None,
    Host,
    Switch(SwitchMember),
}

impl NetMode {
    /// A network namespace of the sandbox's own (every mode but Host).
    pub(crate) fn own_namespace(&self) -> bool {
        !matches!(self, NetMode::Host)
    }

    /// `lo` is brought up.
    pub(crate) fn loopback_up(&self) -> bool {
        matches!(self, NetMode::Loopback | NetMode::Switch(_))
    }
}

/// A network namespace a holder makes while init builds the mounts (crate::spawn::netns): the
/// descriptors init inherits, set by the helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NetworkInBackground {
    /// A pidfd of the holder, to join its network namespace through.
    pub holder: i32,
    /// Where the holder writes one byte: 0 once the namespace exists, else the errno.
    pub ready: i32,
    /// The release pipe's write end: closing it ends the holder.
    pub release: i32,
}

/// How the writable root is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RootMode {
    /// overlayfs: lower = the shared tree, upper = a tmpfs private to the sandbox.
    Overlay { lower: PathBuf },
    /// A private copy of the tree, made in the staging tmpfs (where overlayfs is not permitted).
    Copy { lower: PathBuf },
    /// The host's own `/`: a tmpfs root holding one overlay per top-level folder of the host's (upper
    /// layers in the staging tmpfs), its symlinks, and its files bound read-only. Not one overlay on
    /// `/`: overlayfs refuses a lower layer with locked mounts below it (clone_private_mount), which
    /// `/` always has inside a user namespace (`/proc`, `/sys`, ...).
    Host { entries: Vec<HostEntry> },
}

/// A top-level entry of the host's `/`, as `Builder::build` found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HostEntry {
    pub name: String,
    pub kind: HostEntryKind,
    /// A folder shown as it is, without an id mapping: set by the helper, as root, where the kernel
    /// cannot id-map its file system (crate::spawn::idmap).
    #[serde(default)]
    pub as_is: bool,
}

/// What a [`HostEntry`] is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum HostEntryKind {
    /// A folder; `layers`: the caller's extra read-only layers' copies of it, topmost first.
    Dir {
        layers: Vec<PathBuf>,
    },
    Symlink {
        target: PathBuf,
    },
    File,
}

/// Where the writable layer lives, and read-only layers between it and the rootfs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Layers {
    /// A fresh host folder for the writable layer (`upper/` and `work/` inside), kept after the
    /// sandbox ends; `None`: the sandbox's memory, gone with it.
    pub upper_in: Option<PathBuf>,
    /// `upper_in`'s device and inode when the sandbox was built: init holds that folder only, never
    /// one put in its place since.
    pub upper_id: Option<(u64, u64)>,
    /// Read-only layers over the rootfs (a kept writable layer, to resume from), topmost first.
    pub above: Vec<PathBuf>,
    /// Each of `above`'s device and inode when the sandbox was built: init holds those folders only.
    pub above_ids: Vec<(u64, u64)>,
}

/// What the process inside does once the sandbox is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Job {
    /// exec a program.
    Exec {
        #[serde(with = "bytes_or_text")]
        program: OsString,
        /// The program's `argv[0]`: `program` unless `Command::arg0` set it.
        #[serde(with = "bytes_or_text")]
        arg0: OsString,
        #[serde(with = "bytes_or_text::list")]
        args: Vec<OsString>,
    },
    /// Run a closure of this binary: its entry's offset (`sys::code`), the build it belongs to, its
    /// input as JSON, and the calling thread's name (a test's name under libtest), which a panic's
    /// report inside names (spawn::closure::named_report).
    Closure { entry: usize, build: String, input: String, thread: Option<String> },
    /// Keep the sandbox up, with no program, until the parent drops it.
    Session,
    /// Hold a switch network: a network namespace with a bridge, nothing else.
    Switch,
    /// exec a program inside the running sandbox whose init has this host pid.
    Join {
        session: Joined,
        #[serde(with = "bytes_or_text")]
        program: OsString,
        /// As `Exec`'s.
        #[serde(with = "bytes_or_text")]
        arg0: OsString,
        #[serde(with = "bytes_or_text::list")]
        args: Vec<OsString>,
    },
}

/// The running session a command joins: its init's host pid, and the namespaces its helper holds
/// (`Record::Held`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Joined {
    pub init_pid: i32,
    pub held: Vec<(String, i32)>,
    /// The session's deadline on CLOCK_MONOTONIC (the clock `Instant` reads, one for every
    /// process), as its caller reckons it (no later than its helper's): a command that would start
    /// after it has timed out; a command's helper that sees its command die of SIGKILL at or after
    /// it reports a timeout (the session's end shows to it only as that SIGKILL); before it, a kill
    /// from elsewhere.
    #[serde(default)]
    pub deadline_monotonic: Option<std::time::Duration>,
}

/// The whole description of one sandbox start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Config {
    pub root: RootMode,
    pub layers: Layers,
    pub hostname: String,
    pub network: NetMode,
    pub env: Vec<(String, String)>,
    pub current_dir: String,
    pub timeout: Option<Duration>,
    /// Whether to create a user namespace (always when not root).
    pub user_namespace: bool,
    /// The uid and gid outside, mapped to root inside.
    pub outer_uid: u32,
    pub outer_gid: u32,
    /// The host's resolv.conf, for `Network::Host`.
    pub resolv_conf: Option<String>,
    /// Mount a read-only /sys.
    #[serde(default)]
    pub sys: bool,
    /// Volumes, in order (bind sources are absolute host paths).
    #[serde(default)]
    pub mounts: Vec<crate::volume::Mount>,
    /// Files written into the sandbox's private layer: (absolute path, contents).
    #[serde(default)]
    pub files: Vec<(String, Vec<u8>)>,
    /// cgroup limits (none: cgroups are not touched).
    #[serde(default)]
    pub limits: crate::cgroups::Limits,
    /// setrlimit(2) values for the program, soft = hard.
    #[serde(default)]
    pub rlimits: Vec<(crate::Rlimit, u64)>,
    /// Make the program's stdin (a terminal) its controlling terminal.
    #[serde(default)]
    pub controlling_terminal: bool,
    /// A pseudo-terminal of the sandbox's own, rows x columns, in place of the program's stdio
    /// (which then carries the console socket on stdin: see `sys::pty`).
    #[serde(default)]
    pub pty: Option<(u16, u16)>,
    /// What the sandbox keeps from the program (issue 9), and the opt-out.
    #[serde(default)]
    pub security: crate::hardening::Security,
    /// The network namespace, when a holder makes it while init builds the mounts.
    #[serde(default)]
    pub network_in_background: Option<NetworkInBackground>,
    pub job: Job,
}

/// An `OsString` in the configuration's JSON: a string where it is UTF-8 (almost always), its bytes
/// otherwise. serde's own form is always the bytes, a number each: a 1 MB argument list took 0.4 s
/// to go to the helper, against 0.07 s as a string (an outside review).
mod bytes_or_text {
    use std::ffi::{OsStr, OsString};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize)]
    #[serde(untagged)]
    enum Shown<'a> {
        Text(&'a str),
        Bytes(&'a [u8]),
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Read {
        Text(String),
        Bytes(Vec<u8>),
    }

    fn shown(s: &OsStr) -> Shown<'_> {
        s.to_str().map_or(Shown::Bytes(s.as_bytes()), Shown::Text)
    }

    fn read(r: Read) -> OsString {
        match r {
            Read::Text(t) => t.into(),
            Read::Bytes(b) => OsString::from_vec(b),
        }
    }

    pub(super) fn serialize<S: Serializer>(value: &OsString, s: S) -> Result<S::Ok, S::Error> {
        shown(value).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OsString, D::Error> {
        Read::deserialize(d).map(read)
    }

    /// The same, for a list.
    pub(super) mod list {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(value: &[OsString], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(value.iter().map(|v| shown(v)))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OsString>, D::Error> {
            Vec::<Read>::deserialize(d).map(|v| v.into_iter().map(read).collect())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn text_and_bytes_travel_as_given() {
            #[derive(Serialize, Deserialize, PartialEq, Debug)]
            struct T {
                #[serde(with = "super")]
                one: OsString,
                #[serde(with = "super::list")]
                many: Vec<OsString>,
            }
            let t =
                T { one: "/bin/é".into(), many: vec!["a".into(), OsString::from_vec(b"caf\xe9".to_vec()), "".into()] };
            let json = serde_json::to_string(&t).expect("encode");
            assert_eq!(json, r#"{"one":"/bin/é","many":["a",[99,97,102,233],""]}"#);
            assert_eq!(serde_json::from_str::<T>(&json).expect("decode"), t);
        }
    }
}
