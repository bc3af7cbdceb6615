//! The event a handler receives, with where it came from.

use std::ops::Deref;

use uuid::Uuid;

use crate::{EventType, Notification, Result, Timestamp};

/// An upstream event delivered to a policy handler: the event itself
/// (`Deref` gives its fields) and the notification's metadata.
///
/// In unit tests, make one with [`Notified::new`].
#[derive(Clone, Debug, PartialEq)]
pub struct Notified<E> {
    /// The upstream application whose log held the notification.
    pub upstream: &'static str,
    /// The upstream log partition.
    pub partition: u32,
    /// The notification's id in the upstream log.
    pub id: u64,
    /// The aggregate that triggered the event.
    pub originator_id: Uuid,
    /// The aggregate's version after the event.
    pub originator_version: u64,
    /// When the event was triggered.
    pub timestamp: Timestamp,
    /// The event.
    pub event: E,
}

impl<E: EventType> Notified<E> {
    /// An event as if notification 1 of a log named `test` delivered it,
    /// for testing handlers without a store.
    pub fn new(originator_id: Uuid, originator_version: u64, event: E) -> Self {
        Self {
            upstream: "test",
            partition: crate::store::DEFAULT_PARTITION,
            id: 1,
            originator_id,
            originator_version,
            timestamp: Timestamp::now(),
            event,
        }
    }

    /// Decodes a notification whose topic is `E::TOPIC`.
    #[doc(hidden)]
    pub fn decode(upstream: &'static str, notification: &Notification) -> Result<Self> {
        let stored = &notification.event;
        let event = E::__decode_state(stored.state_version, &stored.state).map_err(|source| crate::Error::Decode {
            topic: stored.topic.to_string(),
            originator_id: stored.originator_id,
            version: stored.originator_version,
            source,
        })?;
        Ok(Self {
            upstream,
            partition: notification.partition,
            id: notification.id,
            originator_id: stored.originator_id,
            originator_version: stored.originator_version,
            timestamp: stored.timestamp,
            event,
        })
    }
}

impl<E> Deref for Notified<E> {
    type Target = E;

    fn deref(&self) -> &E {
        &self.event
    }
}
