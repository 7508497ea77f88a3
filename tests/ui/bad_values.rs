use sandbox::sandbox_test;

#[sandbox_test(timeout = "20 seconds")]
fn bad_timeout() {}

#[sandbox_test(network = "bridge")]
fn bad_network() {}

#[sandbox_test(hostname = "not a hostname")]
fn bad_hostname() {}

#[sandbox_test(rootfs = "ubuntu:24.04")]
fn bad_rootfs() {}

#[sandbox_test(hostname = "a", hostname = "b")]
fn twice() {}

fn main() {}
