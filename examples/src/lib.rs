//! Runnable programs live beside this crate as examples: `cargo run --release --example NAME`.
//! What they share lives here.

pub mod plain_sqlite;
