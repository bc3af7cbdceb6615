//! Dead letters: notifications a process application parked because their
//! handler kept failing, kept in the application's `{app}_dead_letters`
//! table until they are retried or discarded.

use crate::{AppName, Error, Timestamp};

/// A notification that a process application could not process and parked
/// (see [`OnFailure::Park`](crate::OnFailure::Park)), with why and how often
/// it failed.
///
/// The notification itself stays in the upstream log; the dead letter says
/// where it is. List them with [`Runner::dead_letters`](crate::Runner::dead_letters),
/// process one again with [`Runner::retry_dead_letter`](crate::Runner::retry_dead_letter)
/// or drop it with [`Runner::discard_dead_letter`](crate::Runner::discard_dead_letter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The process application that parked it.
    pub app: AppName,
    /// The upstream application whose notification it is.
    pub upstream: AppName,
    /// The upstream partition.
    pub partition: u32,
    /// The notification's id in the upstream log.
    pub notification_id: u64,
    /// The notification's topic.
    pub topic: String,
    /// The last failure: the error and its causes, as one line.
    pub error: String,
    /// How many times its handler failed, retries of the dead letter included.
    pub attempts: u32,
    /// When it was parked.
    pub parked_at: Timestamp,
    /// When its handler last failed.
    pub last_failed_at: Timestamp,
}

impl DeadLetter {
    /// The error that says this dead letter is no longer parked.
    pub(crate) fn not_found(&self) -> Error {
        Error::DeadLetterNotFound {
            app: self.app.to_string(),
            upstream: self.upstream.to_string(),
            partition: self.partition,
            notification_id: self.notification_id,
            topic: self.topic.clone(),
        }
    }
}

/// What a write does to a dead letter, in the transaction of its events
/// and tracking position.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Clone, Debug)]
pub(crate) enum DeadLetterWrite {
    /// Records it (with the tracking move past its notification).
    Park(DeadLetter),
    /// Removes it, failing with [`Error::DeadLetterNotFound`] (and writing
    /// nothing) if it is not there: a retry's events, or a discard.
    Resolve(DeadLetter),
    /// Records a failed retry: its error, one more attempt, and when.
    /// Fails with [`Error::DeadLetterNotFound`] if it is not there.
    Failed(DeadLetter),
}
