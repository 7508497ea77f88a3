//! The helper's side of a switch: holding one, and plugging a new sandbox into it.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;

use super::netlink;
use crate::config::SwitchMember;

/// A failed step: what was done, and the kernel's answer.
pub(crate) type StepError = (&'static str, Errno);

/// Makes this process the switch's holder: a network namespace of its own with `lo` and a bridge
/// `br0`, up.
pub(crate) fn create_bridge() -> Result<(), StepError> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| ("create the switch's network namespace (unshare)", e))?;
    let bridge = netlink::socket_here().and_then(|s| netlink::request(&s, &netlink::bridge_msg("br0")));
    bridge.and_then(|()| crate::sys::net::interface_up("lo")).map_err(|e| ("create the switch's bridge (rtnetlink)", e))
}

/// Sockets in the switch's network namespace, opened while still in the host's: a netlink socket and
/// the bridge's index, and the namespace itself (where the veth's peer is created).
pub(crate) struct SwitchAccess {
    netns: OwnedFd,
    netlink: OwnedFd,
    bridge: u32,
}

/// Opens the switch `member` joins (in the host's network namespace, before the sandbox's exists).
pub(crate) fn open_switch(member: &SwitchMember) -> Result<SwitchAccess, StepError> {
    let open = |p: &str| nix::fcntl::open(p, OFlag::O_RDONLY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty());
    let netns = open(&format!("/proc/{}/ns/net", member.holder))
        .map_err(|e| ("open the switch's network namespace (is the Net dropped?)", e))?;
    let home = open("/proc/self/ns/net").map_err(|e| ("open the host's network namespace", e))?;
    // setns(2) here, single-threaded and before unshare: a netlink socket acts in the namespace it
    // was made in, whatever namespace its owner moves to.
    nix::sched::setns(&netns, CloneFlags::CLONE_NEWNET).map_err(|e| ("enter the switch's network namespace", e))?;
    let made = netlink::socket_here().and_then(|s| crate::sys::if_index("br0").map(|i| (s, i)));
    nix::sched::setns(&home, CloneFlags::CLONE_NEWNET).map_err(|e| ("return to the host's network namespace", e))?;
    let (netlink, bridge) = made.map_err(|e| ("find the switch's bridge", e))?;
    Ok(SwitchAccess { netns, netlink, bridge })
}

/// Plugs this (new) network namespace into the switch: `eth0` here, its peer in the bridge.
pub(crate) fn plug_in(member: &SwitchMember, switch: &SwitchAccess) -> Result<(), StepError> {
    let here = netlink::socket_here().map_err(|e| ("open a netlink socket in the sandbox", e))?;
    netlink::request(&here, &netlink::veth_msg("eth0", &member.peer, switch.netns.as_raw_fd()))
        .map_err(|e| ("create the sandbox's veth pair (rtnetlink)", e))?;
    netlink::request(&switch.netlink, &netlink::enslave_msg(&member.peer, switch.bridge))
        .map_err(|e| ("plug the veth into the switch's bridge (rtnetlink)", e))?;
    crate::sys::if_address_up("eth0", member.address, 24).map_err(|e| ("address eth0", e))
}
