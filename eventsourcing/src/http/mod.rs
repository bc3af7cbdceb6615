//! Notification logs over HTTP (the `http` feature): a server that presents
//! applications' logs as linked JSON sections, and a reader that follows
//! such a log from another process, so that a system can span databases.
//!
//! The routes a [`LogServer`] serves:
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | `{"apps": [...]}`: the applications this client may read |
//! | `GET /{app}` | `{"app", "partitions", "section_size", "heads"}` |
//! | `GET /{app}/sections/{id}` | a section of partition 0: `"current"` or `"first,last"` |
//! | `GET /{app}/partitions/{p}/sections/{id}` | a section of partition `p` |
//! | `GET /{app}/notifications?after=N&partition=P&limit=L&wait=MS` | the notifications after `N`, waiting up to `MS` ms for one |
//!
//! Sections are in the Python `eventsourcing` library's JSON format
//! (`wire.rs` says which keys). A full section with a next one never
//! changes, and is served as immutable for HTTP caches; the current
//! section has an `ETag` and answers `If-None-Match` with 304.

mod client;
mod server;
mod upstream;
mod wire;

pub use client::{DEFAULT_READ_AHEAD, DEFAULT_RETRY_BUDGET, HttpLog};
pub use server::LogServer;
pub use upstream::Upstream;
