use sandbox::sandbox_test;

#[sandbox_test]
#[test]
fn already_a_test() {}

fn main() {}
