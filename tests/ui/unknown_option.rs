use sandbox::sandbox_test;

#[sandbox_test(hostnme = "db1")]
fn typo_in_option() {}

fn main() {}
