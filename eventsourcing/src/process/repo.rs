//! The repository a policy handler works through, and the cache of
//! aggregates that outlives it.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use super::fifo::FifoMap;
use super::warm::WarmHistories;

use crate::{Aggregate, AnyRecorder, AppName, Error, Recorder, Result, StoredEvent, Versions};

/// The aggregates a policy handler loads and adds.
///
/// The repository remembers every aggregate it hands out. After the
/// handler returns, the runtime collects their pending events and records
/// them, with the tracking position, in one transaction: a handler never
/// saves anything itself.
///
/// In unit tests, [`Repo::new`] makes one with no store: [`add`](Repo::add)
/// the aggregates a handler expects, call it, then look at them.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use eventsourcing::prelude::*;
/// use uuid::Uuid;
///
/// #[aggregate]
/// #[derive(Debug, Default)]
/// struct Dog { tricks: Vec<String> }
///
/// #[aggregate]
/// impl Dog {
///     #[event(Registered)]
///     fn register() -> Self { Self::default() }
///
///     #[event(TrickAdded)]
///     fn add_trick(&mut self, trick: String) { self.tricks.push(trick); }
/// }
///
/// let mut repo = Repo::new();
/// let id = repo.add(Dog::register()).id();
/// repo.get::<Dog>(id).await?.add_trick("roll over".into());
/// assert_eq!(repo.get::<Dog>(id).await?.tricks, ["roll over"]);
/// assert!(repo.get::<Dog>(Uuid::new_v4()).await.is_err());
/// # Ok::<(), eventsourcing::Error>(())
/// # }).unwrap();
/// ```
pub struct Repo {
    app: AppName,
    recorder: Option<AnyRecorder>,
    entries: Vec<Entry>,
    index: HashMap<Uuid, usize>,
    /// Entries handed out since the last collection of new events.
    touched: Vec<usize>,
    cache: Cache,
    warm: Option<Arc<WarmHistories>>,
}

struct Entry {
    aggregate: Box<dyn Cached>,
    /// How many of its pending events are already collected.
    collected: usize,
}

impl Default for Repo {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("app", &self.app)
            .field("aggregates", &self.entries.len())
            .field("cached", &self.cache.0.len())
            .finish()
    }
}

impl Repo {
    /// A repository with no store behind it, for testing policies: it holds
    /// only the aggregates [`add`](Repo::add)ed to it.
    pub fn new() -> Self {
        let app = AppName::new("test").expect("`test` is a valid application name");
        Self::with_cache(app, None, Cache::new(0), None)
    }

    pub(crate) fn with_cache(
        app: AppName,
        recorder: Option<AnyRecorder>,
        mut cache: Cache,
        warm: Option<Arc<WarmHistories>>,
    ) -> Self {
        if warm.as_ref().is_some_and(|warm| warm.take_all_stale()) {
            cache.clear();
        }
        Self {
            app,
            recorder,
            entries: Vec::new(),
            index: HashMap::new(),
            touched: Vec::new(),
            cache,
            warm,
        }
    }

    /// The aggregate `id`, from this repository, the application's cache,
    /// or its store.
    ///
    /// Fails with [`Error::AggregateNotFound`] if the application has no
    /// such aggregate, and [`Error::AggregateType`] if `id` is another type.
    pub async fn get<A: Aggregate>(&mut self, id: Uuid) -> Result<&mut A> {
        match self.locate::<A>(id).await? {
            Some(index) => self.entry_as(index, id),
            None => Err(Error::AggregateNotFound {
                app: self.app.to_string(),
                aggregate: A::NAME,
                originator_id: id,
            }),
        }
    }

    /// Like [`get`](Repo::get), but `None` when the aggregate does not exist.
    pub async fn find<A: Aggregate>(&mut self, id: Uuid) -> Result<Option<&mut A>> {
        match self.locate::<A>(id).await? {
            Some(index) => self.entry_as(index, id).map(Some),
            None => Ok(None),
        }
    }

    /// The index of the entry for `id`, taking it from the cache or the
    /// store if needed.
    async fn locate<A: Aggregate>(&mut self, id: Uuid) -> Result<Option<usize>> {
        let index = match self.index.get(&id) {
            Some(&index) => index,
            None => {
                let cached = self.cache.take(id);
                let stale = self.warm.as_ref().is_some_and(|warm| warm.take_stale(id));
                let aggregate = match cached.filter(|_| !stale) {
                    Some(aggregate) => aggregate,
                    None => match self.load::<A>(id).await? {
                        Some(aggregate) => Box::new(aggregate),
                        None => return Ok(None),
                    },
                };
                self.insert(id, aggregate)
            }
        };
        self.touched.push(index);
        Ok(Some(index))
    }

    fn entry_as<A: Aggregate>(&mut self, index: usize, id: Uuid) -> Result<&mut A> {
        let entry = &mut self.entries[index];
        let found = entry.aggregate.aggregate_name();
        match entry.aggregate.as_any_mut().downcast_mut::<A>() {
            Some(aggregate) => Ok(aggregate),
            None => Err(Error::AggregateType {
                app: self.app.to_string(),
                originator_id: id,
                expected: A::NAME,
                found,
            }),
        }
    }

    /// Adds a new aggregate (made by its creation event), whose events are
    /// recorded with the rest.
    pub fn add<A: Aggregate>(&mut self, aggregate: A) -> &mut A {
        let id = aggregate.id();
        let index = match self.index.get(&id) {
            Some(&index) => {
                self.entries[index] = Entry {
                    aggregate: Box::new(aggregate),
                    collected: 0,
                };
                index
            }
            None => self.insert(id, Box::new(aggregate)),
        };
        self.touched.push(index);
        self.entries[index]
            .aggregate
            .as_any_mut()
            .downcast_mut::<A>()
            .expect("the entry was just made from an `A`")
    }

    /// The aggregates of type `A` this repository holds, in the order they
    /// were first loaded or added.
    pub fn aggregates<A: Aggregate>(&self) -> impl Iterator<Item = &A> {
        self.entries
            .iter()
            .filter_map(|entry| entry.aggregate.as_any().downcast_ref::<A>())
    }

    async fn load<A: Aggregate>(&self, id: Uuid) -> Result<Option<A>> {
        if let Some(history) = self.warm.as_ref().and_then(|warm| warm.take(id)) {
            return A::replay(&history);
        }
        let Some(recorder) = &self.recorder else {
            return Ok(None);
        };
        let events = recorder.select_events(id, Versions::ALL).await?;
        A::replay(&events)
    }

    fn insert(&mut self, id: Uuid, aggregate: Box<dyn Cached>) -> usize {
        let index = self.entries.len();
        self.entries.push(Entry {
            aggregate,
            collected: 0,
        });
        self.index.insert(id, index);
        index
    }

    /// Appends the events triggered since the last call, aggregate by
    /// aggregate in the order the handler touched them.
    pub(crate) fn collect_new_events(&mut self, out: &mut Vec<StoredEvent>) -> Result<()> {
        for index in self.touched.drain(..) {
            let entry = &mut self.entries[index];
            entry.collected = entry.aggregate.encode_pending_from(entry.collected, out)?;
        }
        Ok(())
    }

    /// After a commit: the aggregates, their events recorded, join the cache.
    pub(crate) fn committed(self) -> Cache {
        let mut cache = self.cache;
        for mut entry in self.entries {
            entry.aggregate.clear_pending();
            cache.put(entry.aggregate);
        }
        cache
    }

    /// After a failure: the aggregates this repository changed are dropped
    /// (the store has their truth); the cache keeps the rest.
    pub(crate) fn abandoned(self) -> Cache {
        self.cache
    }
}

/// Aggregates kept between transactions, so that a process does not replay
/// an aggregate from the store at every step. The oldest go first when it
/// is full.
pub(crate) struct Cache(FifoMap<Box<dyn Cached>>);

impl Cache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self(FifoMap::new(capacity))
    }

    fn take(&mut self, id: Uuid) -> Option<Box<dyn Cached>> {
        self.0.take(id)
    }

    fn put(&mut self, aggregate: Box<dyn Cached>) {
        self.0.put(aggregate.aggregate_id(), aggregate);
    }

    /// Forgets everything: after a conflict, the store has the truth.
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

/// An aggregate of any type, as the repository and cache hold it.
trait Cached: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn aggregate_id(&self) -> Uuid;
    fn aggregate_name(&self) -> &'static str;
    /// Encodes the pending events from index `from` into `out`; returns the
    /// number of pending events.
    fn encode_pending_from(&self, from: usize, out: &mut Vec<StoredEvent>) -> Result<usize>;
    fn clear_pending(&mut self);
}

impl<A: Aggregate> Cached for A {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn aggregate_id(&self) -> Uuid {
        self.id()
    }

    fn aggregate_name(&self) -> &'static str {
        A::NAME
    }

    fn encode_pending_from(&self, from: usize, out: &mut Vec<StoredEvent>) -> Result<usize> {
        let pending = self.pending_events();
        for envelope in pending.get(from..).unwrap_or_default() {
            out.push(envelope.to_stored()?);
        }
        Ok(pending.len())
    }

    fn clear_pending(&mut self) {
        Aggregate::clear_pending(self);
    }
}
