//! `#[sandbox_test]`'s compile errors: each bad use fails with an error at the offending tokens (the
//! expected messages are the `.stderr` files beside the cases in `tests/ui/`).

#[test]
fn bad_uses_are_compile_errors_at_the_bad_token() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/*.rs");
}
