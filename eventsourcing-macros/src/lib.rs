//! Procedural macros for [`eventsourcing`](https://docs.rs/eventsourcing).
//!
//! Use them through the `eventsourcing` crate, which re-exports them; the
//! code they generate names the runtime through `::eventsourcing::__private`.
//! The attribute macros `#[aggregate]`, `#[event]` and `#[policy]` and the
//! `system!` macro arrive with the issues that build on the runtime.
