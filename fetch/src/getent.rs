//! Host names resolved by the system's `getent ahosts`, for a binary with glibc linked in.
//!
//! A static glibc still reads `/etc/nsswitch.conf`, and loads the modules it names other than
//! `files` and `dns` (`myhostname`, `resolve`, `mdns4_minimal`, `sss`, ...) with `dlopen`. Those
//! modules are linked against the shared glibc, which cannot run inside a static process: the lookup
//! crashes it (`libnss_systemd` does so with SIGSEGV on Debian 12). So a static build (`cargo xtask
//! install-cli`, `target-feature=+crt-static`) asks `getent`, a dynamic program of the same glibc,
//! which resolves exactly as every other program of the machine does.

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// reqwest's resolver by `getent ahosts` (see the module's documentation).
pub(crate) struct Getent;

impl reqwest::dns::Resolve for Getent {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Blocks the client's runtime thread for the lookup: the blocking client makes one
            // request at a time.
            let addrs = ahosts(&host)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The addresses of `host` (port 0: the client sets the URL's), in `getent`'s order.
fn ahosts(host: &str) -> Result<Vec<SocketAddr>, BoxError> {
    let out = Command::new("getent")
        .args(["ahosts", "--", host])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| {
        format!("resolve {host}: cannot run getent (glibc's libc-bin), which a static build uses: {e}")
    })?;
    match out.status.code() {
        Some(0) => {}
        // getent(1): "One or more supplied key could not be found in the database."
        Some(2) => return Err(format!("resolve {host}: no such host (getent ahosts)").into()),
        _ => return Err(format!("resolve {host}: getent ahosts failed: {}", out.status).into()),
    }
    let addrs = parse(&String::from_utf8_lossy(&out.stdout));
    if addrs.is_empty() {
        return Err(format!("resolve {host}: getent ahosts printed no address").into());
    }
    Ok(addrs)
}

/// The distinct addresses of `getent ahosts`'s output (`ADDRESS SOCKTYPE [NAME]` lines, one per
/// address and socket type), in order.
fn parse(text: &str) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for ip in text.lines().filter_map(|l| l.split_whitespace().next()?.parse::<IpAddr>().ok()) {
        let addr = SocketAddr::new(ip, 0);
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    addrs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getents_lines_give_each_address_once_in_order() {
        let text = "2a04:4e42::644  STREAM dl-cdn.alpinelinux.org\n2a04:4e42::644  DGRAM  \n\
                    2a04:4e42::644  RAW    \n151.101.2.132   STREAM \n151.101.2.132   DGRAM  \nnot-an-address RAW\n";
        let want: Vec<SocketAddr> =
            vec!["[2a04:4e42::644]:0".parse().expect("v6"), "151.101.2.132:0".parse().expect("v4")];
        assert_eq!(parse(text), want);
    }

    #[test]
    fn localhost_resolves_and_an_unknown_name_is_an_error_that_names_it() {
        let addrs = ahosts("localhost").expect("localhost");
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        let err = ahosts("no-such-host.invalid").expect_err("RFC 6761: .invalid never resolves");
        assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
    }

    #[test]
    fn a_client_with_this_resolver_reaches_a_server_by_name() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).expect("request");
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").expect("reply");
        });
        let client = reqwest::blocking::Client::builder()
            .dns_resolver(std::sync::Arc::new(Getent))
            .no_proxy()
            .build()
            .expect("client");
        let body = client.get(format!("http://localhost:{port}/")).send().and_then(|r| r.text()).expect("get");
        assert_eq!(body, "ok");
        server.join().expect("server");
    }
}
