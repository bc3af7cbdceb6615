//! Aggregates: state changed only by events, with identity and version.

use uuid::Uuid;

use crate::{DomainEvent, Envelope, Error, Result, StoredEvent, Timestamp};

/// What every aggregate carries besides its own state: identity, version,
/// timestamps, and the events triggered since it was loaded.
///
/// `#[aggregate]` adds this to your struct; by hand, keep one in a field and
/// return it from [`Aggregate::meta`] and [`Aggregate::meta_mut`].
#[derive(Clone, Debug, PartialEq)]
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

    fn advance(&mut self, envelope: &Envelope<E>) {
        if envelope.originator_version == 1 {
            self.id = envelope.originator_id;
            self.created_on = envelope.timestamp;
        }
        self.version = envelope.originator_version;
        self.modified_on = envelope.timestamp;
    }
}

/// A consistency boundary whose state is the result of its events.
///
/// Implement [`create`](Aggregate::create) (the creation event makes the
/// aggregate) and [`mutate`](Aggregate::mutate) (every other event changes
/// it); the provided methods trigger, replay and collect events. `#[aggregate]`
/// writes all of this from your event methods. By hand:
///
/// ```
/// use eventsourcing::{Aggregate, AggregateMeta, DomainEvent, NotApplicable, codec};
/// use uuid::Uuid;
///
/// #[derive(Debug)]
/// enum CounterEvent { Started, Incremented }
///
/// impl DomainEvent for CounterEvent {
///     const TOPICS: &'static [&'static str] = &["Counter.Started", "Counter.Incremented"];
///     fn topic(&self) -> &'static str {
///         match self { Self::Started => Self::TOPICS[0], Self::Incremented => Self::TOPICS[1] }
///     }
///     fn encode(&self) -> Result<Vec<u8>, codec::CodecError> { codec::encode(&()) }
///     fn decode(topic: &str, state: &[u8]) -> Option<Result<Self, codec::CodecError>> {
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
///     fn meta(&self) -> &AggregateMeta<CounterEvent> { &self.meta }
///     fn meta_mut(&mut self) -> &mut AggregateMeta<CounterEvent> { &mut self.meta }
///     fn create(event: &CounterEvent) -> Option<Self> {
///         matches!(event, CounterEvent::Started).then(Counter::default)
///     }
///     fn mutate(&mut self, event: &CounterEvent) -> Result<(), NotApplicable> {
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
/// let stored = counter.collect_pending()?;
/// let replayed = Counter::replay(&stored)?.expect("has events");
/// assert_eq!((replayed.count, replayed.version(), replayed.id()), (1, 2, counter.id()));
/// # Ok::<(), eventsourcing::Error>(())
/// ```
pub trait Aggregate: Sized + Send + 'static {
    /// The aggregate's events.
    type Event: DomainEvent;

    /// The identity, version, timestamps and pending events.
    fn meta(&self) -> &AggregateMeta<Self::Event>;

    /// Mutable access to [`meta`](Aggregate::meta), for the provided methods.
    fn meta_mut(&mut self) -> &mut AggregateMeta<Self::Event>;

    /// Makes the aggregate from its creation event, or returns `None` if
    /// `event` does not create one.
    fn create(event: &Self::Event) -> Option<Self>;

    /// Applies an event that is not a creation event.
    fn mutate(&mut self, event: &Self::Event) -> Result<(), NotApplicable>;

    /// The aggregate's identity.
    fn id(&self) -> Uuid {
        self.meta().id
    }

    /// The version of the last event applied.
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
    fn start(id: Uuid, event: Self::Event) -> Result<Self> {
        let envelope = Envelope {
            originator_id: id,
            originator_version: 1,
            timestamp: Timestamp::now(),
            event,
        };
        let mut aggregate = Self::create(&envelope.event).ok_or_else(|| Error::NotApplicable {
            topic: envelope.topic().to_owned(),
            originator_id: id,
            version: 1,
            reason: "it is not a creation event",
        })?;
        let meta = aggregate.meta_mut();
        meta.advance(&envelope);
        meta.pending.push(envelope);
        Ok(aggregate)
    }

    /// Applies `event` as the next version and keeps it as pending.
    fn trigger(&mut self, event: Self::Event) -> Result<()> {
        let envelope = Envelope {
            originator_id: self.id(),
            originator_version: self.version() + 1,
            // Never earlier than the last event, whatever the clock does.
            timestamp: Timestamp::now().max(self.modified_on()),
            event,
        };
        self.mutate(&envelope.event)
            .map_err(|NotApplicable| Error::NotApplicable {
                topic: envelope.topic().to_owned(),
                originator_id: envelope.originator_id,
                version: envelope.originator_version,
                reason: "the aggregate does not accept this event in its current state",
            })?;
        let meta = self.meta_mut();
        meta.advance(&envelope);
        meta.pending.push(envelope);
        Ok(())
    }

    /// Applies an event that was recorded before (replay): the same change
    /// as when it was triggered, without making it pending.
    fn apply_recorded(state: Option<Self>, envelope: &Envelope<Self::Event>) -> Result<Self> {
        let not_applicable = |reason| Error::NotApplicable {
            topic: envelope.topic().to_owned(),
            originator_id: envelope.originator_id,
            version: envelope.originator_version,
            reason,
        };
        let mut aggregate = match state {
            None if envelope.originator_version != 1 => {
                return Err(not_applicable("the aggregate's earlier events are missing"));
            }
            None => Self::create(&envelope.event).ok_or_else(|| not_applicable("it is not a creation event"))?,
            Some(mut aggregate) => {
                if envelope.originator_version != aggregate.version() + 1 {
                    return Err(not_applicable("it does not follow the aggregate's version"));
                }
                aggregate
                    .mutate(&envelope.event)
                    .map_err(|NotApplicable| not_applicable("the aggregate does not accept it"))?;
                aggregate
            }
        };
        aggregate.meta_mut().advance(envelope);
        Ok(aggregate)
    }

    /// Rebuilds an aggregate from its stored events, oldest first; `None`
    /// if there are none.
    fn replay<'a>(events: impl IntoIterator<Item = &'a StoredEvent>) -> Result<Option<Self>> {
        let mut state = None;
        for stored in events {
            state = Some(Self::apply_recorded(state, &stored.decode()?)?);
        }
        Ok(state)
    }

    /// Removes the pending events and returns them in stored form, ready for
    /// [`Recorder::insert`](crate::Recorder::insert). On an encoding error
    /// the pending events are kept.
    fn collect_pending(&mut self) -> Result<Vec<StoredEvent>> {
        let stored = self
            .pending_events()
            .iter()
            .map(Envelope::to_stored)
            .collect::<Result<Vec<_>>>()?;
        self.meta_mut().pending.clear();
        Ok(stored)
    }
}

/// Returned by [`Aggregate::mutate`] for an event that cannot change the
/// aggregate as it is (such as a second creation event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotApplicable;
