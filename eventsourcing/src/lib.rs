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
mod application;
mod catch_unwind;
pub mod codec;
pub mod entities;
mod error;
mod event;
#[cfg(feature = "http")]
pub mod http;
mod ids;
pub mod log;
mod process;
mod runner;
pub mod simulation;
pub mod store;
pub mod system;
mod timestamp;
pub mod topics;

pub use aggregate::{Aggregate, AggregateMeta, NotApplicable};
pub use app_name::{AppName, MAX_APP_NAME_LEN, MAX_NAMESPACE_LEN, Namespace};
pub use application::{Application, Unsaved};
pub use error::{Error, Result};
pub use event::{DomainEvent, Envelope, EventType, Notification, StoredEvent};
pub use log::{LogReader, NotificationLog, NotificationSource, Section};
pub use process::{
    DeclaredBy, Declares, Handler, HandlerError, Handling, Loading, Notified, OnFailure, Process, ProcessOptions,
    Records, Repo, RepoIter, UnknownTopics,
};
pub use runner::{Lag, Lease, Runner, RunnerKind, RunningApp, Saved};
pub use store::{AnyRecorder, DeadLetter, Recorder, Store, Tracking, Versions, partition_of};
pub use system::System;
pub use timestamp::Timestamp;

pub use eventsourcing_macros::{aggregate, event, policy, system};

/// What most programs need: `use eventsourcing::prelude::*;`.
pub mod prelude {
    pub use crate::entities::{Entities, Entity};
    pub use crate::{
        Aggregate, Application, EventType, Notified, ProcessOptions, Repo, Result, Runner, Store, System, aggregate,
        event, policy, system,
    };
    pub use uuid::Uuid;
}

/// Items the macros' generated code names; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::aggregate::{HasMeta, assert_has_meta, created, triggered};
    pub use crate::codec;
    pub use crate::event::assert_event_data;
    pub use crate::process::NoAggregates;
    pub use crate::process::{DefaultProbe, ViaDefault, WithoutDefault, handler_result};
    pub use crate::system::checks::{dead_handler_error, follow_error, name_clash_error, topic_clash_error};
    pub use crate::topics::TopicRegistration;
    pub use crate::{Aggregate, AggregateMeta, DomainEvent, EventType, NotApplicable};
    pub use crate::{
        Declares, Handler, HandlerError, Handling, Notification, Notified, Process, Records, Repo, System,
    };
    pub use ::core;
    pub use ::inventory;
    pub use ::serde;
    pub use ::std::boxed::Box;
    pub use ::std::vec::Vec;
    pub use ::uuid::Uuid;

    pub use crate::ids::new_id;

    /// The result type of generated `DomainEvent` methods.
    pub use crate::codec::CodecResult;
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
