use sandbox::sandbox_test;

// With a bad option the function is still emitted as written, so the IDE (and the compiler) still
// see its body: both errors are reported.
#[sandbox_test(nework = "none")]
fn body_has_a_type_error() {
    let x: u32 = "not a number";
}

fn main() {}
