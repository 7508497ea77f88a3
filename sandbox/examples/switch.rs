//! Two sandboxes on a virtual switch: one serves a line over TCP, the other fetches it by hostname.
//! Exits non-zero unless the line arrives. Needs root.
//!
//! `SANDBOX_ROOTFS=/tmp/rootfs.tar.gz cargo run -p sandbox --example switch`

use sandbox::{Net, Network, Sandbox};

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    if text != "hello from db\n" {
        return Err(format!("unexpected: {} ({})", out.status, String::from_utf8_lossy(&out.stderr).trim()).into());
    }
    Ok(())
}
