//! Aggregates: state changed only by events, with identity and version.

use uuid::Uuid;

use crate::{DomainEvent, Envelope, Error, Result, StoredEvent, Timestamp};

/// What every aggregate carries besides its own state: identity, version,
/// timestamps, and the events triggered since it was loaded.
///
/// `#[aggregate]` adds this to your struct; by hand, keep one in a field and
/// return it from [`Aggregate::meta`] and [`Aggregate::meta_mut`].
///
/// Two metas are equal when they describe the same aggregate at the same
/// version with the same timestamps; pending events are not compared, so an
/// aggregate rebuilt from its recorded events equals the one that recorded
/// them.
#[derive(Clone)]
pub struct AggregateMeta<E> {
    id: Uuid,
    version: u64,
    created_on: Timestamp,
    modified_on: Timestamp,
    pending: Vec<Envelope<E>>,
}

impl<E> Default for AggregateMeta<E> {
    fn default() -> Self {
        Self {
            id: Uuid::nil(),
            version: 0,
            created_on: Timestamp::default(),
            modified_on: Timestamp::default(),
            pending: Vec::new(),
        }
    }
}

impl<E> PartialEq for AggregateMeta<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.id, self.version, self.created_on, self.modified_on)
            == (other.id, other.version, other.created_on, other.modified_on)
    }
}

impl<E: DomainEvent> std::fmt::Debug for AggregateMeta<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateMeta")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("created_on", &self.created_on)
            .field("modified_on", &self.modified_on)
            .field("pending", &self.pending.iter().map(Envelope::topic).collect::<Vec<_>>())
            .finish()
    }
}

impl<E> AggregateMeta<E> {
    /// The aggregate's identity.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The version of the last event applied: 1 after creation.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the creation event was triggered.
    pub fn created_on(&self) -> Timestamp {
        self.created_on
    }

    /// When the last event was triggered.
    pub fn modified_on(&self) -> Timestamp {
        self.modified_on
    }

    /// Events triggered and not yet recorded, oldest first.
    pub fn pending(&self) -> &[Envelope<E>] {
        &self.pending
    }

    /// Keeps `event` as pending at the next version, for an aggregate whose
    /// state the event has already changed.
    fn record(&mut self, event: E) {
        let envelope = Envelope {
            originator_id: self.id,
            originator_version: self.version + 1,
            // Never earlier than the last event, whatever the clock does.
            timestamp: Timestamp::now().max(self.modified_on),
            event,
        };
        self.advance(&envelope);
        self.pending.push(envelope);
    }

    fn advance(&mut self, envelope: &Envelope<E>) {
        self.advance_to(envelope.originator_id, envelope.originator_version, envelope.timestamp);
    }

    fn advance_to(&mut self, id: Uuid, version: u64, timestamp: Timestamp) {
        if version == 1 {
            self.id = id;
            self.created_on = timestamp;
        }
        self.version = version;
        self.modified_on = timestamp;
    }
}

/// A consistency boundary whose state is the result of its events.
///
/// `#[aggregate]` implements this from your event methods. By hand,
/// implement [`create`](Aggregate::create) (the creation event makes the
/// aggregate) and [`mutate`](Aggregate::mutate) (every other event changes
/// it); the provided methods trigger, replay and collect events:
///
/// ```
/// use eventsourcing::{Aggregate, AggregateMeta, DomainEvent, NotApplicable, codec};
/// use uuid::Uuid;
///
/// #[derive(Clone, Debug)]
/// enum CounterEvent { Started, Incremented }
///
/// impl DomainEvent for CounterEvent {
///     const TOPICS: &'static [&'static str] = &["Counter.Started", "Counter.Incremented"];
///     fn topic(&self) -> &'static str {
///         match self { Self::Started => Self::TOPICS[0], Self::Incremented => Self::TOPICS[1] }
///     }
///     fn encode(&self) -> Result<Vec<u8>, codec::CodecError> { codec::encode(&()) }
///     fn decode(topic: &str, _version: u32, state: &[u8]) -> Option<Result<Self, codec::CodecError>> {
///         let event = match topic {
///             "Counter.Started" => Self::Started,
///             "Counter.Incremented" => Self::Incremented,
///             _ => return None,
///         };
///         Some(codec::decode::<()>(state).map(|()| event))
///     }
/// }
///
/// #[derive(Debug, Default)]
/// struct Counter { count: u32, meta: AggregateMeta<CounterEvent> }
///
/// impl Aggregate for Counter {
///     type Event = CounterEvent;
///     const NAME: &'static str = "Counter";
///     fn meta(&self) -> &AggregateMeta<CounterEvent> { &self.meta }
///     fn meta_mut(&mut self) -> &mut AggregateMeta<CounterEvent> { &mut self.meta }
///     fn create(_id: Uuid, event: CounterEvent) -> Option<Self> {
///         matches!(event, CounterEvent::Started).then(Counter::default)
///     }
///     fn mutate(&mut self, event: CounterEvent) -> Result<(), NotApplicable> {
///         match event {
///             CounterEvent::Started => Err(NotApplicable),
///             CounterEvent::Incremented => { self.count += 1; Ok(()) }
///         }
///     }
/// }
///
/// let mut counter = Counter::start(Uuid::new_v4(), CounterEvent::Started)?;
/// counter.trigger(CounterEvent::Incremented)?;
/// assert_eq!((counter.count, counter.version()), (1, 2));
///
/// // Replaying the pending events rebuilds an equal state.
/// let stored = counter.encode_pending()?;
/// let replayed = Counter::replay(&stored)?.expect("has events");
/// assert_eq!((replayed.count, replayed.version(), replayed.id()), (1, 2, counter.id()));
/// # Ok::<(), eventsourcing::Error>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an aggregate",
    label = "not an aggregate",
    note = "put `#[aggregate]` on its `impl` block, the one with its `#[event]` methods"
)]
pub trait Aggregate: Sized + Send + Sync + 'static {
    /// The aggregate's events.
    type Event: DomainEvent;

    /// The aggregate type's name, for topics and messages.
    const NAME: &'static str;

    /// The aggregate type's path, such as `shop::Order`, which tells two
    /// aggregates of one name apart in messages and in the checks of
    /// `system!`. `#[aggregate]` sets it from the module path; by hand it
    /// is [`NAME`](Aggregate::NAME) unless you set it.
    const PATH: &'static str = Self::NAME;

    /// The identity, version, timestamps and pending events.
    fn meta(&self) -> &AggregateMeta<Self::Event>;

    /// Mutable access to [`meta`](Aggregate::meta), for the provided methods.
    fn meta_mut(&mut self) -> &mut AggregateMeta<Self::Event>;

    /// Makes the aggregate `id` from its creation event, or returns `None`
    /// if `event` does not create one.
    fn create(id: Uuid, event: Self::Event) -> Option<Self>;

    /// Applies an event that is not a creation event.
    fn mutate(&mut self, event: Self::Event) -> Result<(), NotApplicable>;

    /// The aggregate's identity.
    fn id(&self) -> Uuid {
        self.meta().id
    }

    /// The version of the last event applied: 1 after creation.
    fn version(&self) -> u64 {
        self.meta().version
    }

    /// When the aggregate was created.
    fn created_on(&self) -> Timestamp {
        self.meta().created_on
    }

    /// When the aggregate last changed.
    fn modified_on(&self) -> Timestamp {
        self.meta().modified_on
    }

    /// Events triggered and not yet recorded, oldest first.
    fn pending_events(&self) -> &[Envelope<Self::Event>] {
        &self.meta().pending
    }

    /// Creates a new aggregate with identity `id` by triggering its
    /// creation event at version 1; the event is pending.
    fn start(id: Uuid, event: Self::Event) -> Result<Self>
    where
        Self::Event: Clone,
    {
        let topic = event.topic();
        let aggregate = Self::create(id, event.clone()).ok_or_else(|| Error::NotApplicable {
            topic: topic.to_owned(),
            originator_id: id,
            version: 1,
            reason: "it is not a creation event",
        })?;
        Ok(created(aggregate, id, event))
    }

    /// Applies `event` as the next version and keeps it as pending.
    fn trigger(&mut self, event: Self::Event) -> Result<()>
    where
        Self::Event: Clone,
    {
        let topic = event.topic();
        self.mutate(event.clone())
            .map_err(|NotApplicable| Error::NotApplicable {
                topic: topic.to_owned(),
                originator_id: self.id(),
                version: self.version() + 1,
                reason: "the aggregate does not accept this event in its current state",
            })?;
        self.meta_mut().record(event);
        Ok(())
    }

    /// Applies an event that was recorded before (replay): the same change
    /// as when it was triggered, without making it pending.
    fn apply_recorded(state: Option<Self>, envelope: Envelope<Self::Event>) -> Result<Self> {
        let topic = envelope.topic();
        let Envelope {
            originator_id,
            originator_version,
            timestamp,
            event,
        } = envelope;
        let not_applicable = |reason| Error::NotApplicable {
            topic: topic.to_owned(),
            originator_id,
            version: originator_version,
            reason,
        };
        let mut aggregate = match state {
            None if originator_version != 1 => {
                return Err(not_applicable("the aggregate's earlier events are missing"));
            }
            None => {
                let error = not_applicable("it is not a creation event");
                Self::create(originator_id, event).ok_or(error)?
            }
            Some(mut aggregate) => {
                if originator_version != aggregate.version() + 1 {
                    return Err(not_applicable("it does not follow the aggregate's version"));
                }
                let error = not_applicable("the aggregate does not accept it");
                aggregate.mutate(event).map_err(|NotApplicable| error)?;
                aggregate
            }
        };
        aggregate
            .meta_mut()
            .advance_to(originator_id, originator_version, timestamp);
        Ok(aggregate)
    }

    /// Rebuilds an aggregate from its stored events, oldest first; `None`
    /// if there are none.
    fn replay<'a>(events: impl IntoIterator<Item = &'a StoredEvent>) -> Result<Option<Self>> {
        let mut state = None;
        for stored in events {
            state = Some(Self::apply_recorded(state, stored.decode()?)?);
        }
        Ok(state)
    }

    /// The pending events in stored form, ready for
    /// [`Recorder::insert`](crate::Recorder::insert). They stay pending until
    /// [`clear_pending`](Aggregate::clear_pending), so a failed write loses
    /// nothing.
    fn encode_pending(&self) -> Result<Vec<StoredEvent>> {
        self.pending_events().iter().map(Envelope::to_stored).collect()
    }

    /// Forgets the pending events, once they are recorded.
    fn clear_pending(&mut self) {
        self.meta_mut().pending.clear();
    }
}

/// Access to the hidden field `#[aggregate]` adds to a struct.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` needs `#[aggregate]` on its struct definition too",
    label = "its struct lacks `#[aggregate]`",
    note = "put `#[aggregate]` on both the struct and its `impl` block with the `#[event]` methods"
)]
pub trait HasMeta: Aggregate {
    /// The aggregate's meta.
    fn __es_meta(&self) -> &AggregateMeta<Self::Event>;
    /// The aggregate's meta, mutably.
    fn __es_meta_mut(&mut self) -> &mut AggregateMeta<Self::Event>;
}

/// Checks, at compile time, that the struct of an `#[aggregate]` impl has
/// `#[aggregate]` too.
#[doc(hidden)]
pub const fn assert_has_meta<T: HasMeta>() {}

/// Records the creation event of an aggregate that `event` has just made.
///
/// For generated code, which applies the event itself; by hand, use
/// [`Aggregate::start`].
#[doc(hidden)]
pub fn created<A: Aggregate>(mut aggregate: A, id: Uuid, event: A::Event) -> A {
    let meta = aggregate.meta_mut();
    meta.id = id;
    meta.version = 0;
    meta.pending.clear();
    meta.record(event);
    aggregate
}

/// An aggregate with no events yet: its default state, with identity `id`,
/// at version 0. An entity "always exists": a command may record its first
/// event on this, creation event or not.
pub(crate) fn blank<A: Aggregate + Default>(id: Uuid) -> A {
    let mut aggregate = A::default();
    aggregate.meta_mut().id = id;
    aggregate
}

/// Applies a recorded event to an entity that may have started [`blank`]:
/// at version 1 a creation event makes the aggregate, and any other event
/// changes the default state.
pub(crate) fn apply_to_entity<A: Aggregate>(aggregate: A, envelope: Envelope<A::Event>) -> Result<A>
where
    A::Event: Clone,
{
    if aggregate.version() == 0 && envelope.originator_version == 1 {
        if let Some(mut created) = A::create(envelope.originator_id, envelope.event.clone()) {
            created
                .meta_mut()
                .advance_to(envelope.originator_id, 1, envelope.timestamp);
            return Ok(created);
        }
    } else if aggregate.version() == 0 {
        // Refused as a replay from nothing is: events are missing.
        return A::apply_recorded(None, envelope);
    }
    // Any other event, on the default state or later: as on any aggregate.
    A::apply_recorded(Some(aggregate), envelope)
}

/// Records `event`, which has just changed `aggregate`, as pending.
#[doc(hidden)]
pub fn triggered<A: Aggregate>(aggregate: &mut A, event: A::Event) {
    aggregate.meta_mut().record(event);
}

/// Returned by [`Aggregate::mutate`] for an event that cannot change the
/// aggregate as it is (such as a second creation event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotApplicable;
