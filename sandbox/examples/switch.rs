//! Two sandboxes on a virtual switch: one serves HTTP (busybox `nc` in a loop, as Alpine has no
//! `httpd`), the other fetches it by hostname; exits non-zero unless the page arrives. Needs root.
//!
//! `SANDBOX_ROOTFS=/tmp/rootfs.tar.gz cargo run -p sandbox --example switch`

use sandbox::{Net, Network, Sandbox};

/// Serves the page on port 8080, one connection at a time, in the background; returns once the
/// port listens.
const SERVE: &str = "echo 'hello from db' > /tmp/index.html
(while :; do { printf 'HTTP/1.0 200 OK\\r\\n\\r\\n'; cat /tmp/index.html; } | nc -l -p 8080 >/dev/null; done) </dev/null >/dev/null 2>&1 &
while ! netstat -ltn | grep -q ':8080 '; do :; done";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let net = Net::new()?;
    let db = Sandbox::builder().network(Network::Switch(net.clone())).hostname("db").build()?;
    let app = Sandbox::builder().network(Network::Switch(net.clone())).hostname("app").build()?;
    let server = db.session()?;
    server.command("/bin/sh").args(["-c", SERVE]).status()?;
    let out = app.command("/bin/sh").args(["-c", "wget -q -O- http://db:8080/"]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    if text != "hello from db\n" {
        return Err(format!("unexpected: {} ({})", out.status, String::from_utf8_lossy(&out.stderr).trim()).into());
    }
    Ok(())
}
