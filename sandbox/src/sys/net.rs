//! Network interfaces, by ioctl(2) on a datagram socket of the calling thread's network namespace.

use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

fn inet_socket() -> Result<std::os::fd::OwnedFd, Errno> {
    socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
}

/// Brings the interface `name` up (netdevice(7): IFF_UP, keeping its other flags).
pub(crate) fn interface_up(name: &str) -> Result<(), Errno> {
    let sock = inet_socket()?;
    let mut req = ifreq(name);
    // SAFETY: SIOCGIFFLAGS reads the flags of the interface named in `req` into `req`, a valid,
    // writable ifreq that outlives the call; `sock` is an open socket.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: the kernel filled the flags member of the union just above.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) }).map(drop)
}

/// An `ifreq` naming `name` (at most 15 bytes).
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().take(libc::IFNAMSIZ - 1).zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

/// The index of the interface `name` in this thread's network namespace.
pub(crate) fn if_index(name: &str) -> Result<u32, Errno> {
    let sock = inet_socket()?;
    let mut req = ifreq(name);
    // SAFETY: SIOCGIFINDEX fills the index of the interface named in `req`, a valid ifreq that
    // outlives the call.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFINDEX, &mut req) })?;
    // SAFETY: the kernel filled the index member of the union just above.
    Ok(unsafe { req.ifr_ifru.ifru_ifindex } as u32)
}

/// Gives the interface `name` the IPv4 address `addr` with a `prefix`-bit netmask, and brings it up.
pub(crate) fn if_address_up(name: &str, addr: std::net::Ipv4Addr, prefix: u8) -> Result<(), Errno> {
    let sock = inet_socket()?;
    let sockaddr = |a: std::net::Ipv4Addr| {
        // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
        let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
        // SAFETY: sockaddr_in fits in sockaddr (both 16 bytes); the bytes are copied, not aliased.
        unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
    };
    let mask = std::net::Ipv4Addr::from(if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) });
    for (request, value) in [(libc::SIOCSIFADDR, addr), (libc::SIOCSIFNETMASK, mask)] {
        let mut req = ifreq(name);
        req.ifr_ifru.ifru_addr = sockaddr(value);
        // SAFETY: the set-address requests read the sockaddr in `req`, a valid ifreq alive for the call.
        Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), request, &req) })?;
    }
    interface_up(name)
}
