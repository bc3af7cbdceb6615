//! Every rejection a user can hit, pinned with its message, and the cases
//! that must compile. After changing a message:
//! `TRYBUILD=overwrite cargo test -p ui-tests`, then read the `.stderr` diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/*/pass/*.rs");
    t.compile_fail("tests/ui/*/fail/*.rs");
}
