//! Host names resolved by the system's `getent ahosts`, for a binary with glibc linked in.
//!
//! A static glibc still reads `/etc/nsswitch.conf`, and loads the modules it names other than
//! `files` and `dns` (`myhostname`, `resolve`, `mdns4_minimal`, `sss`, ...) with `dlopen`. Those
//! modules are linked against the shared glibc, which cannot run inside a static process: the lookup
//! crashes it (`libnss_systemd` does so with SIGSEGV on Debian 12). So a static build (`cargo xtask
//! install-cli`, `target-feature=+crt-static`) asks `getent`, a dynamic program of the same glibc,
//! which resolves exactly as every other program of the machine does.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// reqwest's resolver by `getent ahosts` (see the module's documentation); a lookup that takes longer
/// than `timeout` fails (reqwest's own timeouts cannot stop it: it runs inside the future).
#[cfg(feature = "download")]
pub(crate) struct Getent {
    pub timeout: std::time::Duration,
}

#[cfg(feature = "download")]
impl reqwest::dns::Resolve for Getent {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let deadline = Instant::now() + self.timeout;
        Box::pin(async move {
            // Blocks the client's runtime thread for the lookup: the blocking client makes one
            // request at a time.
            let addrs = ahosts(&host, deadline)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether the `database` line of `/etc/nsswitch.conf` names only services built into glibc
/// (`files`, `dns`), which a static glibc runs in-process without loading a module. A missing file
/// or line counts as no (glibc's defaults vary by version).
pub fn builtin_only(database: &str) -> bool {
    std::fs::read_to_string("/etc/nsswitch.conf").is_ok_and(|conf| services_builtin(&conf, database))
}

/// Read as glibc 2.36 reads the file (nss/nss_database.c, nss/nss_action_parse.c), and where in doubt,
/// "no": a line that starts with `#` is a comment (elsewhere glibc takes `#` for a service's name);
/// every line of the database must pass (glibc takes its last); a line is service names, each with
/// action items (`[NOTFOUND=return]`, which load nothing) after it; a name ends at white space or at
/// `[` (`[UNAVAIL=continue]systemd` names `systemd`), an item at its `]`.
fn services_builtin(conf: &str, database: &str) -> bool {
    let mut lines = conf
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let (db, services) = l.split_once(':')?;
            (db.trim() == database).then_some(services)
        })
        .peekable();
    lines.peek().is_some() && lines.all(names_only_builtin)
}

/// Whether a line's services (see [`services_builtin`]) are `files` and `dns` only.
fn names_only_builtin(services: &str) -> bool {
    let mut rest = services;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return true;
        }
        if let Some(item) = rest.strip_prefix('[') {
            let Some(end) = item.find(']') else { return false };
            rest = &item[end + 1..];
            continue;
        }
        let end = rest.find(|c: char| c.is_whitespace() || c == '[').unwrap_or(rest.len());
        if !matches!(&rest[..end], "files" | "dns") {
            return false;
        }
        rest = &rest[end..];
    }
}

/// `getent DATABASE -- KEY`'s output: `None` when the key is not found (exit code 2). Asks without
/// `AI_ADDRCONFIG` (`-A`, glibc 2.31 and later) as getaddrinfo(3) without hints does.
///
/// # Errors
/// When getent cannot be run, fails, or has not answered by `deadline` (it is then killed).
pub fn getent(database: &str, key: &str, deadline: Instant) -> std::io::Result<Option<String>> {
    match run("getent", &["-A", database, "--", key], deadline)? {
        // EX_USAGE: a getent without -A.
        (Some(64), _) => {
            run("getent", &[database, "--", key], deadline).and_then(|(code, out)| answer(database, code, out))
        }
        (code, out) => answer(database, code, out),
    }
}

fn answer(database: &str, code: Option<i32>, out: String) -> std::io::Result<Option<String>> {
    match code {
        Some(0) => Ok(Some(out)),
        // getent(1): "One or more supplied key could not be found in the database."
        Some(2) => Ok(None),
        _ => Err(std::io::Error::other(format!("getent {database} failed (exit code {code:?})"))),
    }
}

/// Runs `program` (getent) with `args`, reading its output until `deadline`; its exit code and output.
fn run(program: &str, args: &[&str], deadline: Instant) -> std::io::Result<(Option<i32>, String)> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot run {program} (glibc's libc-bin): {e}")))?;
    let mut out = Vec::new();
    let mut timed_out = false;
    if let Some(mut stdout) = child.stdout.take() {
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
            match poll(&mut [PollFd::new(stdout.as_fd(), PollFlags::POLLIN)], ms) {
                Ok(0) => {
                    timed_out = true;
                    break;
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
            match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    if timed_out {
        let _ = child.kill();
        let _ = child.wait();
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{program} {} did not answer in time", args.join(" ")),
        ));
    }
    let status = child.wait()?;
    Ok((status.code(), String::from_utf8_lossy(&out).into_owned()))
}

/// The addresses of `host` (port 0: the client sets the URL's), in `getent`'s order.
fn ahosts(host: &str, deadline: Instant) -> Result<Vec<SocketAddr>, BoxError> {
    let text = getent("ahosts", host, deadline).map_err(|e| format!("resolve {host}: {e}"))?.ok_or_else(|| {
        format!("resolve {host}: no address (getent ahosts: unknown name, or no answer from the name servers)")
    })?;
    let addrs = parse(&text);
    if addrs.is_empty() {
        return Err(format!("resolve {host}: getent ahosts printed no address").into());
    }
    Ok(addrs)
}

/// The distinct addresses of `getent ahosts`'s output (`ADDRESS SOCKTYPE [NAME]` lines, one per
/// address and socket type), in order.
fn parse(text: &str) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in text.lines().filter_map(|l| address(l.split_whitespace().next()?)) {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    addrs
}

/// An address as getent prints it, port 0: IPv4, IPv6, or a link-local IPv6 with its numeric scope
/// (`fe80::1%2`, the interface's index).
fn address(text: &str) -> Option<SocketAddr> {
    match text.split_once('%') {
        None => text.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0)),
        Some((ip, scope)) => {
            let (ip, scope) = (ip.parse::<std::net::Ipv6Addr>().ok()?, scope.parse::<u32>().ok()?);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(ip, 0, 0, scope)))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn getents_lines_give_each_address_once_in_order() {
        let text = "2a04:4e42::644  STREAM dl-cdn.alpinelinux.org\n2a04:4e42::644  DGRAM  \n\
                    2a04:4e42::644  RAW    \n151.101.2.132   STREAM \n151.101.2.132   DGRAM  \nnot-an-address RAW\n";
        let want: Vec<SocketAddr> =
            vec!["[2a04:4e42::644]:0".parse().expect("v6"), "151.101.2.132:0".parse().expect("v4")];
        assert_eq!(parse(text), want);
        // The third outside review: a link-local address with its scope was dropped.
        let scoped: SocketAddr = "[fe80::fc:ff:fe00:1%4]:0".parse().expect("scoped v6");
        assert_eq!(parse("fe80::fc:ff:fe00:1%4 STREAM host\n"), [scoped]);
    }

    #[test]
    fn only_files_and_dns_are_built_in() {
        let conf = "# comment\npasswd:         files systemd\nhosts: files [NOTFOUND=return] dns\n\
                    group: files\nnetgroup: nis\nservices: files [ SUCCESS=return ] dns\n  # passwd: nis\n";
        assert!(!services_builtin(conf, "passwd"));
        assert!(services_builtin(conf, "hosts"));
        assert!(services_builtin(conf, "group"));
        assert!(!services_builtin(conf, "netgroup"));
        assert!(services_builtin(conf, "services"), "an action item split by spaces");
        assert!(!services_builtin(conf, "shadow"), "no line: glibc's default, which may load a module");
        assert!(!services_builtin("hosts: files myhostname resolve [!UNAVAIL=return] dns\n", "hosts"));
        // The third outside review: each of these made glibc 2.36 load libnss_systemd (strace), and a
        // static build then crashed in it.
        assert!(!services_builtin("passwd: files\npasswd: systemd files\n", "passwd"), "glibc takes the last line");
        assert!(!services_builtin("passwd: dns [UNAVAIL=continue]systemd files\n", "passwd"), "a name right after `]`");
        assert!(!services_builtin("passwd: dns # systemd files\n", "passwd"), "`#` in a line is a name to glibc");
        assert!(!services_builtin("passwd: files [NOTFOUND=return\n", "passwd"), "an item without its end");
        assert!(services_builtin("passwd:files[NOTFOUND=return]dns\n", "passwd"), "glued, as glibc reads it");
    }

    #[test]
    fn getent_answers_not_found_and_runs_out_of_time() {
        let soon = Instant::now() + Duration::from_secs(30);
        assert!(getent("passwd", "0", soon).expect("getent").is_some_and(|l| l.starts_with("root:")));
        assert_eq!(getent("passwd", "3999999999", soon).expect("getent"), None);
        // A key that starts like an option stays a key.
        assert_eq!(getent("passwd", "--help", soon).expect("getent"), None);
        let t = Instant::now();
        let err = run("sleep", &["30"], t + Duration::from_millis(200)).expect_err("a lookup that hangs");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert!(t.elapsed() < Duration::from_secs(10), "it was killed at its deadline");
    }

    #[test]
    fn localhost_resolves_and_an_unknown_name_is_an_error_that_names_it() {
        let soon = || Instant::now() + Duration::from_secs(30);
        let addrs = ahosts("localhost", soon()).expect("localhost");
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        let err = ahosts("no-such-host.invalid", soon()).expect_err("RFC 6761: .invalid never resolves");
        assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
    }

    #[cfg(feature = "download")]
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
            .dns_resolver(std::sync::Arc::new(Getent { timeout: Duration::from_secs(30) }))
            .no_proxy()
            .build()
            .expect("client");
        let body = client.get(format!("http://localhost:{port}/")).send().and_then(|r| r.text()).expect("get");
        assert_eq!(body, "ok");
        server.join().expect("server");
    }
}
