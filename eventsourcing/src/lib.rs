//! Event-sourced applications that react to each other reliably.
//!
//! An application's state is the sequence of events its aggregates
//! recorded. The runtime stores those events ([`Store`], [`Recorder`]),
//! presents each application's events as a gapless, ordered notification log
//! ([`NotificationLog`], [`LogReader`]), and (in later releases) runs the
//! process loops through which applications follow each other's logs exactly
//! once.
//!
//! See the README for a tour.
#![warn(missing_docs)]

extern crate self as eventsourcing;

mod aggregate;
mod app_name;
pub mod codec;
mod error;
mod event;
pub mod log;
pub mod store;
mod timestamp;

pub use aggregate::{Aggregate, AggregateMeta, NotApplicable};
pub use app_name::{AppName, MAX_APP_NAME_LEN};
pub use error::{Error, Result};
pub use event::{DomainEvent, Envelope, Notification, StoredEvent};
pub use log::{LogReader, NotificationLog, Section};
pub use store::{AnyRecorder, Recorder, Store, Tracking, Versions};
pub use timestamp::Timestamp;

/// Items the macros' generated code names; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use ::serde;
    pub use ::uuid;
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
