//! The outbox: effects recorded in the transaction of the events of the
//! command that asked for them, kept until a dispatcher has delivered them.
//!
//! An effect is recorded only if its events are (all or nothing), so no
//! effect exists for a command whose commit lost. A dispatcher reads the
//! effects that are due, delivers each (at least once: it may deliver one
//! again after a crash), and completes it by removing it, which happens
//! once: of two completions of one effect, one finds it gone. A delivery
//! that fails is tried again later, with its attempts and error recorded,
//! or parked, where it waits to be listed, retried or discarded.

use uuid::Uuid;

use crate::Timestamp;

/// An effect in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The effect's id: the idempotency key its handler is given.
    pub id: Uuid,
    /// The name of the handler that delivers it.
    pub handler: String,
    /// The effect's data, as the handler encoded it.
    pub payload: Vec<u8>,
    /// The aggregate whose command asked for it.
    pub originator_id: Uuid,
    /// That aggregate's version after the command.
    pub originator_version: u64,
    /// When it was recorded.
    pub created_at: Timestamp,
    /// Deliveries tried and failed.
    pub attempts: u32,
    /// When it is next due.
    pub due_at: Timestamp,
    /// Why the last delivery failed.
    pub last_error: Option<String>,
    /// Whether it waits to be retried or discarded by hand.
    pub parked: bool,
}

impl Outgoing {
    /// A new effect for `handler`, due at once, asked for by the command
    /// that brought `originator_id` to `originator_version`.
    pub fn new(handler: impl Into<String>, payload: Vec<u8>, originator_id: Uuid, originator_version: u64) -> Self {
        let now = Timestamp::now();
        Self {
            id: crate::ids::new_id(),
            handler: handler.into(),
            payload,
            originator_id,
            originator_version,
            created_at: now,
            attempts: 0,
            due_at: now,
            last_error: None,
            parked: false,
        }
    }
}

/// What a write does to the outbox besides recording its events: effects
/// to add, and one to consume (a message the write is the delivery of).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxWrite {
    /// Effects recorded with the events.
    pub add: Vec<Outgoing>,
    /// An effect removed in the same transaction; if it is not there (it
    /// was delivered already), the write fails with
    /// [`Error::EffectGone`](crate::Error::EffectGone) and writes nothing.
    pub consume: Option<Uuid>,
}

impl OutboxWrite {
    /// Adds `effects`.
    pub fn add(effects: Vec<Outgoing>) -> Self {
        Self {
            add: effects,
            consume: None,
        }
    }

    /// Also consumes the effect `id`.
    pub fn consuming(mut self, id: Uuid) -> Self {
        self.consume = Some(id);
        self
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.consume.is_none()
    }
}

/// A change to one effect in the outbox, by a dispatcher or by hand.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutgoingChange {
    /// Delivered (or discarded): removed.
    Complete(Uuid),
    /// A delivery failed: `attempts` in all now, and why; due again at
    /// `due_at`, or parked if `None`.
    Fail {
        /// The effect.
        id: Uuid,
        /// Failed deliveries, this one included.
        attempts: u32,
        /// Why this one failed.
        error: String,
        /// When to try again; `None` parks it.
        due_at: Option<Timestamp>,
    },
    /// A parked effect made due again at `due_at`.
    Unpark {
        /// The effect.
        id: Uuid,
        /// When it is due.
        due_at: Timestamp,
    },
    /// A due effect taken for one delivery: its due time moves from
    /// `seen` (as [`due_outgoing`](crate::Recorder::due_outgoing) listed
    /// it) to `until`, so that other dispatchers pass it over while this
    /// one delivers it, and deliver it after `until` if this one never
    /// says how the delivery went. `false` if another took it first (its
    /// due time moved), or it is parked or gone.
    Claim {
        /// The effect.
        id: Uuid,
        /// Its due time when listed.
        seen: Timestamp,
        /// When it is due again if the delivery is never recorded.
        until: Timestamp,
    },
}
