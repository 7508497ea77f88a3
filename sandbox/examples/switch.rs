//! Two sandboxes on a virtual switch: one serves a line over TCP, the other fetches it by hostname.
//! Needs root.
//!
//! `SANDBOX_ROOTFS=/tmp/rootfs.tar.gz cargo run -p sandbox --example switch`

use sandbox::{Net, Network, Sandbox};

fn main() -> Result<(), sandbox::Error> {
    let net = Net::new()?;
    let db = Sandbox::builder().network(Network::Switch(net.clone())).hostname("db").build()?;
    let app = Sandbox::builder().network(Network::Switch(net.clone())).hostname("app").build()?;
    let server = db.session()?;
    server
        .command("/bin/sh")
        .args([
            "-c",
            "nc -ll -p 8080 -e echo hello from db & until grep -q ':1F90 ' /proc/net/tcp /proc/net/tcp6; do :; done",
        ])
        .status()?;
    let out = app.command("/bin/sh").args(["-c", "nc db 8080 </dev/null"]).output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}
