//! Nothing but tests: `#[sandbox_test]` used through a dependency renamed to `sb`, and on async tests.

#![forbid(unsafe_code)]

#[cfg(test)]
mod tests {
    #[sb::sandbox_test(hostname = "renamed", network = "none")]
    fn the_attribute_works_under_another_name() {
        assert_eq!(std::fs::read_to_string("/etc/hostname").expect("read"), "renamed\n");
    }

    async fn hostname_later() -> String {
        tokio::task::yield_now().await;
        std::fs::read_to_string("/etc/hostname").unwrap_or_default()
    }

    #[sb::sandbox_test(hostname = "async-box")]
    async fn an_async_test_runs_on_its_own_runtime() -> Result<(), String> {
        let name = tokio::spawn(hostname_later()).await.map_err(|e| e.to_string())?;
        if name == "async-box\n" { Ok(()) } else { Err(format!("hostname {name:?}")) }
    }
}
