//! Process applications: applications that follow other applications' logs
//! and respond to their events, exactly once.
//!
//! `#[policy]` implements [`Process`] from handler methods; a [`System`]
//! (declared with `system!`) says who follows whom; a
//! [`Runner`](crate::Runner) runs the loops. The loop for one application
//! lives in `worker.rs` (which also parks a notification whose handler
//! keeps failing, if the options say so); the repository a handler works
//! through in `repo.rs`; retrying a parked notification in
//! `dead_letters.rs`.
//!
//! [`System`]: crate::System

pub(crate) mod dead_letters;
mod defaults;
mod fifo;
pub(crate) mod instances;
mod notified;
mod options;
pub(crate) mod outage;
mod repo;
pub(crate) mod upstream_log;
pub(crate) mod warm;
pub(crate) mod worker;

use std::future::Future;
use std::pin::Pin;

pub use defaults::{DefaultProbe, ViaDefault, WithoutDefault};
pub use notified::Notified;
pub use options::{OnFailure, ProcessOptions, UnknownTopics};
pub use repo::{DeclaredBy, Declares, Loading, NoAggregates, Repo, RepoIter};

use crate::Notification;

/// What a handler's error becomes: any error type, boxed.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// The future a generated dispatch returns for a handled notification.
pub type Handling<'a> = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'a>>;

/// A process application: an application with a policy that responds to the
/// events of the applications it follows.
///
/// `#[policy]` implements this from an `impl` block of handler methods; the
/// constants describe the policy so that `system!` can check the wiring
/// while compiling.
///
/// A runner makes an application that implements `Default` itself. One
/// that holds dependencies (an HTTP client, a configuration, a connection
/// pool) is made by the caller and given to the runner with
/// [`ProcessOptions::instance`]; a runner refuses to start without one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a process application",
    label = "not a process application",
    note = "put `#[policy(aggregates(...))]` on an `impl {Self}` block, naming the aggregates it records, with a handler method for each event type it responds to"
)]
pub trait Process: Sized + Send + Sync + 'static {
    /// The application's name, which names its tables: the type's name
    /// unless `#[policy(name = "…")]` says otherwise.
    const NAME: &'static str;

    /// The aggregates this application records, with their topics.
    const RECORDS: &'static [Records];

    /// The policy's handlers, one per event type.
    const HANDLERS: &'static [Handler];

    /// The type's identity, for `system!` to tell two applications of one
    /// name apart while compiling: its path where `#[policy]` implemented
    /// this, and the place (a type has one `Process` impl).
    #[doc(hidden)]
    const __TYPE: &'static str;

    /// The type's path (module and name): what a store records as running
    /// this application, to tell two systems' applications of one name
    /// apart.
    #[doc(hidden)]
    const __PATH: &'static str;

    /// Calls the handler for `notification`'s topic, or returns `None` if
    /// the policy handles no event of that topic.
    fn handle<'a>(
        &'a self,
        upstream: &'static str,
        notification: &'a Notification,
        repo: &'a mut Repo<Self>,
    ) -> Option<Handling<'a>>;

    /// How to make this application without its dependencies: `Some`
    /// where it implements `Default` (`#[policy]` finds out).
    #[doc(hidden)]
    fn __default_maker() -> Option<fn() -> Self> {
        None
    }

    /// This application as a part of a [`System`](crate::System).
    #[doc(hidden)]
    fn __system_app() -> crate::system::SystemApp {
        crate::system::SystemApp::of::<Self>()
    }
}

/// An aggregate type a process application records.
#[derive(Clone, Copy, Debug)]
pub struct Records {
    /// The aggregate's name.
    pub aggregate: &'static str,
    /// The aggregate type's path, which tells two aggregates of one name
    /// apart ([`Aggregate::PATH`](crate::Aggregate::PATH)).
    pub path: &'static str,
    /// The topics of its events.
    pub topics: &'static [&'static str],
}

/// One handler of a policy.
#[derive(Clone, Copy, Debug)]
pub struct Handler {
    /// The method's name.
    pub method: &'static str,
    /// The event type it takes, as written.
    pub event_type: &'static str,
    /// The event's topic.
    pub topic: &'static str,
    /// The aggregate whose event it is.
    pub aggregate: &'static str,
}

/// What a handler returns: `Result<(), E>` for any error `E` that boxes
/// into a [`HandlerError`] (this crate's [`Error`](crate::Error), any
/// `std::error::Error`, a `String`).
#[diagnostic::on_unimplemented(
    message = "a policy handler returns `Result<(), E>`, not `{Self}`",
    label = "return `Result<()>` here",
    note = "the error type may be `eventsourcing::Error`, any `std::error::Error + Send + Sync`, or `String`; an error rolls back the notification"
)]
pub trait HandlerOutput {
    /// The result with its error boxed.
    fn into_handler_result(self) -> Result<(), HandlerError>;
}

impl<E: Into<HandlerError>> HandlerOutput for Result<(), E> {
    fn into_handler_result(self) -> Result<(), HandlerError> {
        self.map_err(Into::into)
    }
}

/// Converts what a handler returned, for generated code.
#[doc(hidden)]
pub fn handler_result<T: HandlerOutput>(output: T) -> Result<(), HandlerError> {
    output.into_handler_result()
}
