//! trybuild cases live under `tests/ui/<macro>/{pass,fail}/`; run them with `cargo test -p ui-tests`.
