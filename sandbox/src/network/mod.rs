//! Networks beyond loopback: a virtual switch ([`Net`]) that sandboxes join. `net`: the switch as the
//! caller holds it; `switch`: the helper's side (the holder, plugging a sandbox in); `netlink`: the
//! rtnetlink(7) messages both need.

mod net;
pub(crate) mod netlink;
pub(crate) mod switch;

pub(crate) use net::{Lease, ROOTLESS_REASON};
pub use net::{Net, Network};
