//! Nothing but a test: `#[sandbox_test]` used through a dependency renamed to `sb`.

#![forbid(unsafe_code)]

#[cfg(test)]
mod tests {
    #[sb::sandbox_test(hostname = "renamed", network = "none")]
    fn the_attribute_works_under_another_name() {
        assert_eq!(std::fs::read_to_string("/etc/hostname").expect("read"), "renamed\n");
    }
}
