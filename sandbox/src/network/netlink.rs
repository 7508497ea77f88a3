//! The few rtnetlink(7) requests a switch network needs: create a bridge, create a veth pair whose peer
//! lands in another network namespace, plug an interface into the bridge and bring it up. Messages are
//! built by hand (a few dozen bytes each) and sent on a `NETLINK_ROUTE` socket, which acts in the
//! network namespace it was created in.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, send, socket};

const RTM_NEWLINK: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFF_UP: u32 = 0x1;

/// A `NETLINK_ROUTE` socket in the calling thread's network namespace.
pub(crate) fn socket_here() -> Result<OwnedFd, Errno> {
    socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// One rtattr: length, type, payload, padded to 4 bytes.
fn attr(ty: u16, data: &[u8]) -> Vec<u8> {
    let len = 4 + data.len();
    let mut out = Vec::with_capacity(align(len));
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(data);
    out.resize(align(len), 0);
    out
}

fn name_attr(name: &str) -> Vec<u8> {
    let mut z = name.as_bytes().to_vec();
    z.push(0);
    attr(IFLA_IFNAME, &z)
}

/// `struct ifinfomsg`: family, pad, type, index, flags, change.
fn ifinfomsg(flags: u32, change: u32) -> Vec<u8> {
    let mut m = vec![0u8; 16];
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

fn message(flags: u16, body: &[u8]) -> Vec<u8> {
    let len = 16 + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | flags).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    m.extend_from_slice(body);
    m
}

/// A bridge named `name`, up.
pub(crate) fn bridge_msg(name: &str) -> Vec<u8> {
    let mut body = ifinfomsg(IFF_UP, IFF_UP);
    body.extend(name_attr(name));
    body.extend(attr(IFLA_LINKINFO, &attr(IFLA_INFO_KIND, b"bridge\0")));
    message(NLM_F_CREATE | NLM_F_EXCL, &body)
}

/// A veth pair: `name` here, `peer` created directly in the namespace of `peer_netns`.
pub(crate) fn veth_msg(name: &str, peer: &str, peer_netns: i32) -> Vec<u8> {
    let mut peer_info = ifinfomsg(0, 0);
    peer_info.extend(name_attr(peer));
    peer_info.extend(attr(IFLA_NET_NS_FD, &(peer_netns as u32).to_ne_bytes()));
    let mut info = attr(IFLA_INFO_KIND, b"veth\0");
    info.extend(attr(IFLA_INFO_DATA, &attr(VETH_INFO_PEER, &peer_info)));
    let mut body = ifinfomsg(0, 0);
    body.extend(name_attr(name));
    body.extend(attr(IFLA_LINKINFO, &info));
    message(NLM_F_CREATE | NLM_F_EXCL, &body)
}

/// Puts the interface `name` into the bridge whose index is `master`, and brings it up.
pub(crate) fn enslave_msg(name: &str, master: u32) -> Vec<u8> {
    let mut body = ifinfomsg(IFF_UP, IFF_UP);
    body.extend(name_attr(name));
    body.extend(attr(IFLA_MASTER, &master.to_ne_bytes()));
    message(0, &body)
}

/// Sends one request and waits for the kernel's acknowledgement.
pub(crate) fn request(sock: &OwnedFd, msg: &[u8]) -> Result<(), Errno> {
    send(sock.as_raw_fd(), msg, MsgFlags::empty())?;
    let mut buf = [0u8; 1024];
    let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    if n < 20 || u16::from_ne_bytes([buf[4], buf[5]]) != NLMSG_ERROR {
        return Err(Errno::EPROTO);
    }
    match i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]) {
        0 => Ok(()),
        e => Err(Errno::from_raw(-e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([b[at], b[at + 1]])
    }

    #[test]
    fn attributes_are_padded_to_four_bytes() {
        let a = attr(IFLA_IFNAME, b"br0\0");
        assert_eq!(a.len(), 8);
        assert_eq!((u16_at(&a, 0), u16_at(&a, 2)), (8, IFLA_IFNAME));
        let b = attr(IFLA_IFNAME, b"eth0\0");
        assert_eq!((b.len(), u16_at(&b, 0)), (12, 9));
    }

    #[test]
    fn veth_message_layout() {
        let m = veth_msg("eth0", "sbv7", 5);
        assert_eq!(u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as usize, m.len());
        assert_eq!(u16_at(&m, 4), RTM_NEWLINK);
        assert_eq!(u16_at(&m, 6), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        // header 16 + ifinfomsg 16, then IFLA_IFNAME "eth0"
        assert_eq!(u16_at(&m, 34), IFLA_IFNAME);
        assert_eq!(&m[36..41], b"eth0\0");
        // then IFLA_LINKINFO holding kind "veth" and the peer's ifinfomsg, name and netns fd
        assert_eq!(u16_at(&m, 46), IFLA_LINKINFO);
        let linkinfo = &m[44..44 + u16_at(&m, 44) as usize];
        assert!(linkinfo.windows(5).any(|w| w == b"veth\0"));
        assert!(linkinfo.windows(5).any(|w| w == b"sbv7\0"));
        assert!(linkinfo.windows(8).any(|w| w == [8, 0, 28, 0, 5, 0, 0, 0]), "IFLA_NET_NS_FD = 5");
    }

    #[test]
    fn enslave_names_the_master() {
        let m = enslave_msg("sbv7", 42);
        assert!(m.windows(8).any(|w| w == [8, 0, 10, 0, 42, 0, 0, 0]), "IFLA_MASTER = 42");
        assert_eq!(u32::from_ne_bytes([m[24], m[25], m[26], m[27]]), IFF_UP, "flags: up");
    }
}
