//! Plain `#[test]`s of the kind that collide on a shared CI runner: fixed ports, /etc/hosts, the
//! hostname, daemons found by name, fixed temporary files. Each holds its resource the way a real
//! test does while it exercises it (a server answers a request, a file is written then read back).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

/// Binds the fixed port 8080, as a server under test does, and serves one request to itself.
fn serve_on_8080(tag: &str) {
    let listener = TcpListener::bind("0.0.0.0:8080").expect("bind 0.0.0.0:8080");
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).expect("read");
        conn.write_all(&buf[..n]).expect("write");
        // The server keeps its port while the "test" does more work with it.
        std::thread::sleep(Duration::from_millis(150));
    });
    let mut c = TcpStream::connect("127.0.0.1:8080").expect("connect");
    c.write_all(tag.as_bytes()).expect("send");
    let mut back = vec![0u8; tag.len()];
    c.read_exact(&mut back).expect("receive");
    assert_eq!(back, tag.as_bytes());
    server.join().expect("server thread");
}

macro_rules! port_tests {
    ($($name:ident),*) => { $( #[test] fn $name() { serve_on_8080(stringify!($name)); } )* };
}
port_tests!(port_01, port_02, port_03, port_04, port_05, port_06, port_07, port_08, port_09, port_10, port_11, port_12);

/// Points a name at an address in /etc/hosts, checks it is there, and puts the file back.
fn edit_etc_hosts(name: &str) {
    let before = std::fs::read_to_string("/etc/hosts").expect("read /etc/hosts");
    std::fs::write("/etc/hosts", format!("127.0.0.1 localhost\n10.0.0.7 {name}\n")).expect("write /etc/hosts");
    std::thread::sleep(Duration::from_millis(100));
    let now = std::fs::read_to_string("/etc/hosts").expect("read /etc/hosts");
    std::fs::write("/etc/hosts", before).expect("restore /etc/hosts");
    assert!(now.contains(&format!("10.0.0.7 {name}")), "another test rewrote /etc/hosts: {now}");
}

#[test]
fn hosts_db() {
    edit_etc_hosts("db.test");
}
#[test]
fn hosts_cache() {
    edit_etc_hosts("cache.test");
}
#[test]
fn hosts_queue() {
    edit_etc_hosts("queue.test");
}
#[test]
fn hosts_search() {
    edit_etc_hosts("search.test");
}

/// Sets the hostname (needs root, as such tests do) and reads it back.
fn set_hostname(name: &str) {
    let ok = Command::new("hostname").arg(name).status().expect("run hostname").success();
    assert!(ok, "hostname {name} failed (this test needs root)");
    std::thread::sleep(Duration::from_millis(100));
    let now = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("read the hostname");
    assert_eq!(now.trim(), name, "another test changed the hostname");
}

#[test]
fn hostname_web() {
    set_hostname("web-under-test");
}
#[test]
fn hostname_worker() {
    set_hostname("worker-under-test");
}

/// Starts a "daemon" (`sleep`), finds it by name and stops it by name (`pgrep`/`pkill -x`), as
/// service tests do: on a shared host they see, count and kill each other's daemons.
fn daemon_by_name() {
    let mut daemon = Command::new("sleep").arg("30").spawn().expect("start the daemon");
    std::thread::sleep(Duration::from_millis(100));
    let found = Command::new("pgrep").args(["-c", "-x", "sleep"]).output().expect("pgrep");
    let count: u32 = String::from_utf8_lossy(&found.stdout).trim().parse().unwrap_or(0);
    let _ = Command::new("pkill").args(["-x", "sleep"]).status();
    let _ = daemon.wait();
    assert_eq!(count, 1, "expected exactly our daemon, found {count}");
}

#[test]
fn daemon_start_stop() {
    daemon_by_name();
}
#[test]
fn daemon_restart() {
    daemon_by_name();
}

/// Creates a fixed-name file and asserts that it made it (not found it).
fn fixed_tmp_file() {
    let path = std::path::Path::new("/tmp/fixed-name");
    let created = std::fs::OpenOptions::new().write(true).create_new(true).open(path);
    assert!(created.is_ok(), "/tmp/fixed-name already exists: another test (or run) holds it");
    std::thread::sleep(Duration::from_millis(100));
    std::fs::remove_file(path).expect("remove /tmp/fixed-name");
}

#[test]
fn tmp_first() {
    fixed_tmp_file();
}
#[test]
fn tmp_second() {
    fixed_tmp_file();
}
