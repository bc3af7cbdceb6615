//! Runnable programs live beside this crate as examples: `cargo run --release --example NAME`.
