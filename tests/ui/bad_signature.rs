use sandbox::sandbox_test;

#[sandbox_test]
fn takes_arguments(x: u32) {
    let _ = x;
}

fn main() {}
