//! Domain events, their envelopes, and the stored form the recorder keeps.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::CodecError;
use crate::topics::Topic;
use crate::{Error, Result, Timestamp};

/// The events of one aggregate type, usually an enum with a variant per
/// kind of event.
///
/// `#[aggregate]` implements this for you. By hand, map each variant to a
/// stable topic and encode its data with [`codec`]:
///
/// ```
/// use eventsourcing::{DomainEvent, codec};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Registered { name: String }
///
/// #[derive(Debug)]
/// enum DogEvent { Registered(Registered) }
///
/// impl DomainEvent for DogEvent {
///     const TOPICS: &'static [&'static str] = &["Dog.Registered"];
///
///     fn topic(&self) -> &'static str {
///         match self { DogEvent::Registered(_) => "Dog.Registered" }
///     }
///     fn encode(&self) -> Result<Vec<u8>, codec::CodecError> {
///         match self { DogEvent::Registered(e) => codec::encode(e) }
///     }
///     fn decode(topic: &str, _version: u32, state: &[u8]) -> Option<Result<Self, codec::CodecError>> {
///         match topic {
///             "Dog.Registered" => Some(codec::decode(state).map(DogEvent::Registered)),
///             _ => None,
///         }
///     }
/// }
/// ```
pub trait DomainEvent: Sized + Send + Sync + 'static {
    /// Every topic this type decodes, for registration and checks.
    const TOPICS: &'static [&'static str];

    /// The stable topic under which this event is stored.
    fn topic(&self) -> &'static str;

    /// The version of this event's data, stored with it so that data
    /// written by older code can be upcast when read (1 unless the type
    /// moved on).
    fn version(&self) -> u32 {
        1
    }

    /// The event's data as bytes.
    fn encode(&self) -> Result<Vec<u8>, CodecError>;

    /// The event stored under `topic` with data at `version`, or `None` if
    /// the topic is not one of this type's. Data at an older version is
    /// upcast first ([`codec::decode_upcast`](crate::codec::decode_upcast)).
    fn decode(topic: &str, version: u32, state: &[u8]) -> Option<Result<Self, CodecError>>;
}

/// A domain event with the facts every event carries: which aggregate
/// triggered it, at which version, and when.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope<E> {
    /// The aggregate that triggered the event.
    pub originator_id: Uuid,
    /// The aggregate's version after the event: 1 for the creation event.
    pub originator_version: u64,
    /// When the event was triggered.
    pub timestamp: Timestamp,
    /// The event itself.
    pub event: E,
}

impl<E: DomainEvent> Envelope<E> {
    /// The event's topic.
    pub fn topic(&self) -> &'static str {
        self.event.topic()
    }

    /// The stored form of this event.
    pub fn to_stored(&self) -> Result<StoredEvent> {
        let state = self.event.encode().map_err(|source| Error::Encode {
            topic: self.event.topic(),
            originator_id: self.originator_id,
            version: self.originator_version,
            source,
        })?;
        Ok(StoredEvent {
            originator_id: self.originator_id,
            originator_version: self.originator_version,
            timestamp: self.timestamp,
            topic: Topic::new(self.event.topic()),
            state_version: self.event.version(),
            state,
        })
    }
}

/// An event as the recorder stores it: the envelope with the event's topic
/// and encoded state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The aggregate that triggered the event.
    pub originator_id: Uuid,
    /// The aggregate's version after the event.
    pub originator_version: u64,
    /// When the event was triggered.
    pub timestamp: Timestamp,
    /// The stable name of the event's type.
    pub topic: Topic,
    /// The version of the event type that encoded `state` (1 for the
    /// first), so that data written by older code can be upcast.
    #[serde(default = "first_version")]
    pub state_version: u32,
    /// The event's encoded data.
    pub state: Vec<u8>,
}

fn first_version() -> u32 {
    1
}

impl StoredEvent {
    /// Decodes this stored event into the domain event type `E`.
    ///
    /// Fails with [`Error::UnknownTopic`] when `E` has no type for the
    /// topic, and [`Error::Decode`] when the state does not fit it.
    pub fn decode<E: DomainEvent>(&self) -> Result<Envelope<E>> {
        let event = match E::decode(&self.topic, self.state_version, &self.state) {
            None => {
                return Err(Error::UnknownTopic {
                    topic: self.topic.to_string(),
                    originator_id: self.originator_id,
                    version: self.originator_version,
                });
            }
            Some(decoded) => decoded.map_err(|source| Error::Decode {
                topic: self.topic.to_string(),
                originator_id: self.originator_id,
                version: self.originator_version,
                source,
            })?,
        };
        Ok(Envelope {
            originator_id: self.originator_id,
            originator_version: self.originator_version,
            timestamp: self.timestamp,
            event,
        })
    }
}

/// An event in an application's notification log: the stored event and its
/// position in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The position in the log: 1, 2, 3, … with no gaps, per partition.
    pub id: u64,
    /// The log partition (0 until logs are partitioned).
    pub partition: u32,
    /// The event.
    #[serde(flatten)]
    pub event: StoredEvent,
}

/// One kind of event of an aggregate: a named type with a stable topic,
/// such as `OrderCreated`, that policies take as a parameter.
///
/// `#[aggregate]` implements this for each `#[event]` method.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event type",
    label = "not an event type",
    note = "event types are generated by `#[event(Name)]` methods in an `#[aggregate]` impl, and named `AggregateName`"
)]
pub trait EventType: Clone + std::fmt::Debug + Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    /// The aggregate whose event this is.
    type Aggregate: crate::Aggregate;

    /// The stable topic under which this event is stored.
    const TOPIC: &'static str;

    /// The version of this event's data, stored with each event.
    const VERSION: u32;

    /// The functions that bring data stored at older versions up to
    /// [`VERSION`](Self::VERSION): the one at index `n - 1` goes from
    /// version `n` to `n + 1`.
    const UPCASTERS: &'static [crate::codec::Upcaster];

    /// Decodes this event's data stored at `version`, upcasting it if older.
    #[doc(hidden)]
    fn __decode_state(version: u32, state: &[u8]) -> crate::codec::CodecResult<Self> {
        crate::codec::decode_upcast(state, version, Self::VERSION, Self::UPCASTERS)
    }

    /// This event as a value of its aggregate's event enum.
    fn into_event(self) -> <Self::Aggregate as crate::Aggregate>::Event;

    /// Decodes a notification of this event's topic for a policy handler.
    #[doc(hidden)]
    fn __notified(upstream: &'static str, notification: &Notification) -> Result<crate::Notified<Self>> {
        crate::Notified::decode(upstream, notification)
    }
}

/// What every field of an event must be: stored as data and read back.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be event data: it does not implement serde's `Serialize` and `Deserialize`",
    label = "this argument becomes a stored field of the event",
    note = "derive them on the type (`#[derive(serde::Serialize, serde::Deserialize)]`), or pass a type that has them"
)]
pub trait EventData: Serialize + serde::de::DeserializeOwned {}

impl<T: Serialize + serde::de::DeserializeOwned> EventData for T {}

/// Checks, at compile time, that `T` can be event data.
#[doc(hidden)]
pub const fn assert_event_data<T: EventData>() {}
