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

// The builder refuses an empty label; the attribute used to let it compile and panic at run time.
#[sandbox_test(hostname = "a..b")]
fn empty_label() {}

// The sandbox's init counts: one pid cannot start it; nor can 64 KiB of memory.
#[sandbox_test(pids = 1)]
fn one_pid() {}

#[sandbox_test(memory = "64K")]
fn too_little_memory() {}

// The writable layer needs room for the files setup writes; 1 PiB is the most a tmpfs may be given.
#[sandbox_test(writable_size = "64K")]
fn too_small_a_layer() {}

#[sandbox_test(writable_size = "2P")]
fn too_large_a_layer() {}

fn main() {}
