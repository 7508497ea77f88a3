//! Two sandboxes on a virtual switch: one serves HTTP, the other fetches it by hostname. Needs root.
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
        .args(["-c", "mkdir /www && echo 'hello from db' > /www/index.html && httpd -p 8080 -h /www"])
        .status()?;
    let out = app.command("/bin/sh").args(["-c", "wget -q -O- http://db:8080/"]).output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}
