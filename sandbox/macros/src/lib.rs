//! `#[sandbox_test]`, filled by issue "#[sandbox_test]".
#![forbid(unsafe_code)]
