use sandbox::sandbox_test;

#[sandbox_test(mount(bind = "data", at = "relative"))]
fn relative_target() {}

#[sandbox_test(mount(bind = "data"))]
fn no_target() {}

#[sandbox_test(mount(tmpfs = "/scratch", size = "lots"))]
fn bad_size() {}

fn main() {}
