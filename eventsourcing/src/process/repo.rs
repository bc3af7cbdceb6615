//! The repository a policy handler works through, and the cache of
//! aggregates that outlives it.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use uuid::Uuid;

use super::fifo::FifoMap;
use super::warm::WarmHistories;

use crate::{Aggregate, AnyRecorder, AppName, Error, NotificationSource, Recorder, Result, StoredEvent, Versions};

/// The aggregates a policy handler loads and adds, typed by the process
/// application `P` it works for.
///
/// The repository remembers every aggregate it hands out. After the
/// handler returns, the runtime collects their pending events and records
/// them, with the tracking position, in one transaction: a handler never
/// saves anything itself.
///
/// It hands out only the aggregates `P` declares in
/// `#[policy(aggregates(...))]`: [`get`](Repo::get), [`find`](Repo::find),
/// [`add`](Repo::add) and [`aggregates`](Repo::aggregates) of any other
/// aggregate are compile errors, so that the declaration `system!` checks
/// the wiring with is the truth. Handlers take it as `&mut Repo<Self>`.
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
/// #[derive(Default)]
/// struct Kennel;
///
/// #[policy(aggregates(Dog))]
/// impl Kennel {}
///
/// let mut repo = Repo::<Kennel>::new();
/// let id = repo.add(Dog::register()).id();
/// repo.get::<Dog>(id).await?.add_trick("roll over".into());
/// assert_eq!(repo.get::<Dog>(id).await?.tricks, ["roll over"]);
/// assert!(repo.get::<Dog>(Uuid::new_v4()).await.is_err());
/// # Ok::<(), eventsourcing::Error>(())
/// # }).unwrap();
/// ```
// `repr(transparent)` over the untyped core: the worker, which holds
// policies without their types, lends a `&mut RepoCore` as a `&mut Repo<P>`
// (see `Repo::from_core`).
#[repr(transparent)]
pub struct Repo<P> {
    core: RepoCore,
    /// `fn() -> P`: the repository owns no `P`, and is `Send` and `Sync`
    /// whatever `P` is.
    policy: PhantomData<fn() -> P>,
}

/// A process application declares the aggregate `A`: implemented by
/// `#[policy]` for each aggregate in its `aggregates(...)`. The [`Repo`]
/// methods that hand out an `A` require it (through [`DeclaredBy`]).
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not declare the aggregate `{A}`, so its repository cannot hand one out",
    label = "`{A}` is not in `{Self}`'s `#[policy(aggregates(...))]`",
    note = "add `{A}` to `#[policy(aggregates(...))]` on `impl {Self}`: an application records only the aggregates it declares, which is what `system!` checks the wiring with"
)]
pub trait Declares<A> {}

/// The aggregate `Self` is declared by the process application `P`:
/// [`Declares`], the other way round. The [`Repo`] methods are bound by this
/// one, with the aggregate first, so that an aggregate inferred from an
/// argument (`repo.add(Order::create())`) is known before the check, and
/// the error names it.
pub trait DeclaredBy<P> {}

impl<A, P: Declares<A>> DeclaredBy<P> for A {}

/// What `#[policy(aggregates())]` declares: nothing, so that an error about
/// an undeclared aggregate says so.
#[doc(hidden)]
pub enum NoAggregates {}

/// The repository without its application's type, as the worker holds it.
pub(crate) struct RepoCore {
    app: AppName,
    recorder: Option<AnyRecorder>,
    entries: Vec<Entry>,
    index: HashMap<Uuid, usize>,
    /// Entries handed out since the last collection of new events.
    touched: Vec<usize>,
    cache: Cache,
    warm: Option<Arc<WarmHistories>>,
    /// Where to look for new aggregates' histories before reading one
    /// from the store, for a worker whose commands run elsewhere.
    own_log: Option<OwnLog>,
}

/// The part of an application's own log partition a worker has read into
/// its warm histories (see [`OwnLog::catch_up`]).
#[derive(Clone, Debug)]
pub(crate) struct OwnLog {
    partition: u32,
    /// The last notification read; `u64::MAX` before the first read.
    position: Arc<std::sync::atomic::AtomicU64>,
    /// How far back from the head the first read starts.
    window: u64,
}

/// Notifications read from the own log at a time.
const OWN_LOG_PAGE: usize = 1000;

impl OwnLog {
    pub(crate) fn new(partition: u32, window: usize) -> Self {
        Self {
            partition,
            position: Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)),
            window: window as u64,
        }
    }

    /// Reads the own log from where it was read up to its head, keeping
    /// the histories of the aggregates created there: commands in other
    /// processes create the aggregates that this worker's handlers load
    /// next, and a page of the log is one read where loading them one by
    /// one is a read each. The first read starts a cache's worth back.
    async fn catch_up(&self, recorder: &AnyRecorder, warm: &WarmHistories) -> Result<()> {
        use std::sync::atomic::Ordering;
        let mut position = self.position.load(Ordering::Relaxed);
        if position == u64::MAX {
            position = recorder
                .max_notification_id(self.partition)
                .await?
                .saturating_sub(self.window);
        }
        loop {
            let page = recorder
                .select_notifications(self.partition, position + 1, OWN_LOG_PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            position = last.id;
            let full = page.len() == OWN_LOG_PAGE;
            warm.put_from_log(page.into_iter().map(|n| n.event));
            if !full {
                break;
            }
        }
        self.position.store(position, Ordering::Relaxed);
        Ok(())
    }
}

struct Entry {
    aggregate: Box<dyn Cached>,
    /// How many of its pending events are already collected.
    collected: usize,
}

impl<P> Default for Repo<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> std::fmt::Debug for Repo<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("app", &self.core.app)
            .field("aggregates", &self.core.entries.len())
            .field("cached", &self.core.cache.0.len())
            .finish()
    }
}

impl<P> Repo<P> {
    /// A repository with no store behind it, for testing policies: it holds
    /// only the aggregates [`add`](Repo::add)ed to it.
    pub fn new() -> Self {
        let app = AppName::new("test").expect("`test` is a valid application name");
        Self {
            core: RepoCore::with_cache(app, None, Cache::new(0), None, None),
            policy: PhantomData,
        }
    }

    /// The core the worker holds, as the repository of `P`.
    pub(crate) fn from_core(core: &mut RepoCore) -> &mut Self {
        // SAFETY: `Repo<P>` is `repr(transparent)` over `RepoCore` (its
        // other field is a zero-sized `PhantomData`), so a `RepoCore` is a
        // valid `Repo<P>`, and the result borrows `core` for as long.
        unsafe { &mut *(core as *mut RepoCore).cast::<Self>() }
    }

    /// The aggregate `id`, from this repository, the application's cache,
    /// or its store.
    ///
    /// Fails with [`Error::AggregateNotFound`] if the application has no
    /// such aggregate, and [`Error::AggregateType`] if `id` is another type.
    pub fn get<A>(&mut self, id: Uuid) -> Loading<'_, &mut A>
    where
        A: Aggregate + DeclaredBy<P>,
    {
        self.core.get(id)
    }

    /// Like [`get`](Repo::get), but `None` when the aggregate does not exist.
    pub fn find<A>(&mut self, id: Uuid) -> Loading<'_, Option<&mut A>>
    where
        A: Aggregate + DeclaredBy<P>,
    {
        self.core.find(id)
    }

    /// Adds a new aggregate (made by its creation event), whose events are
    /// recorded with the rest.
    pub fn add<A>(&mut self, aggregate: A) -> &mut A
    where
        A: Aggregate + DeclaredBy<P>,
    {
        self.core.add(aggregate)
    }

    /// The aggregates of type `A` this repository holds, in the order they
    /// were first loaded or added.
    pub fn aggregates<A>(&self) -> RepoIter<'_, A>
    where
        A: Aggregate + DeclaredBy<P>,
    {
        RepoIter {
            entries: self.core.entries.iter(),
            aggregate: PhantomData,
        }
    }
}

/// The iterator of [`Repo::aggregates`]. (A named type, like [`Loading`],
/// so that a mistake is reported once.)
pub struct RepoIter<'a, A> {
    entries: std::slice::Iter<'a, Entry>,
    aggregate: PhantomData<fn() -> A>,
}

impl<'a, A: Aggregate> Iterator for RepoIter<'a, A> {
    type Item = &'a A;

    fn next(&mut self) -> Option<&'a A> {
        self.entries
            .find_map(|entry| entry.aggregate.as_any().downcast_ref::<A>())
    }
}

impl<A> std::fmt::Debug for RepoIter<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoIter").finish_non_exhaustive()
    }
}

/// The future of [`Repo::get`] and [`Repo::find`]: ready at once when the
/// aggregate is in the repository or the application's memory, a read from
/// the store otherwise.
///
/// A named type rather than an `async fn`'s, so that the future does not
/// depend on the application type: a handler that gets an undeclared
/// aggregate sees one error, on the call, not a second one on `.await`.
#[must_use = "a future does nothing unless awaited"]
pub struct Loading<'a, T>(LoadingState<'a, T>);

enum LoadingState<'a, T> {
    Ready(Option<Result<T>>),
    Store(Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>),
}

impl<'a, T> Loading<'a, T> {
    fn ready(result: Result<T>) -> Self {
        Self(LoadingState::Ready(Some(result)))
    }

    fn store(future: impl Future<Output = Result<T>> + Send + 'a) -> Self {
        Self(LoadingState::Store(Box::pin(future)))
    }
}

impl<T: Unpin> Future for Loading<'_, T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        // Unpin: a result of references, or a boxed future.
        match &mut self.get_mut().0 {
            LoadingState::Ready(result) => Poll::Ready(result.take().expect("`Loading` polled after it completed")),
            LoadingState::Store(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> std::fmt::Debug for Loading<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.0 {
            LoadingState::Ready(_) => "ready",
            LoadingState::Store(_) => "reading the store",
        };
        f.debug_tuple("Loading").field(&state).finish()
    }
}

/// Where [`RepoCore::locate_now`] found an aggregate.
enum Located {
    /// In the repository, at this index.
    Entry(usize),
    /// Nowhere: the application has no such aggregate.
    Missing,
    /// Not in memory: read the store.
    InStore,
}

impl RepoCore {
    pub(crate) fn with_cache(
        app: AppName,
        recorder: Option<AnyRecorder>,
        mut cache: Cache,
        warm: Option<Arc<WarmHistories>>,
        own_log: Option<OwnLog>,
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
            own_log,
        }
    }

    /// See [`Repo::get`].
    fn get<A: Aggregate>(&mut self, id: Uuid) -> Loading<'_, &mut A> {
        match self.locate_now::<A>(id) {
            Err(error) => Loading::ready(Err(error)),
            Ok(Located::Entry(index)) => Loading::ready(self.entry_as(index, id)),
            Ok(Located::Missing) => Loading::ready(Err(self.not_found::<A>(id))),
            Ok(Located::InStore) => Loading::store(async move {
                match self.locate_in_store::<A>(id).await? {
                    Some(index) => self.entry_as(index, id),
                    None => Err(self.not_found::<A>(id)),
                }
            }),
        }
    }

    /// See [`Repo::find`].
    fn find<A: Aggregate>(&mut self, id: Uuid) -> Loading<'_, Option<&mut A>> {
        match self.locate_now::<A>(id) {
            Err(error) => Loading::ready(Err(error)),
            Ok(Located::Entry(index)) => Loading::ready(self.entry_as(index, id).map(Some)),
            Ok(Located::Missing) => Loading::ready(Ok(None)),
            Ok(Located::InStore) => Loading::store(async move {
                match self.locate_in_store::<A>(id).await? {
                    Some(index) => self.entry_as(index, id).map(Some),
                    None => Ok(None),
                }
            }),
        }
    }

    fn not_found<A: Aggregate>(&self, id: Uuid) -> Error {
        Error::AggregateNotFound {
            app: self.app.to_string(),
            aggregate: A::NAME,
            originator_id: id,
        }
    }

    /// The entry for `id` if it is in this repository, the cache, or the
    /// application's warm histories (made an entry, and marked as handed
    /// out); otherwise whether to read the store.
    fn locate_now<A: Aggregate>(&mut self, id: Uuid) -> Result<Located> {
        if let Some(&index) = self.index.get(&id) {
            self.touched.push(index);
            return Ok(Located::Entry(index));
        }
        let cached = self.cache.take(id);
        let stale = self.warm.as_ref().is_some_and(|warm| warm.take_stale(id));
        let aggregate: Box<dyn Cached> = match cached.filter(|_| !stale) {
            Some(aggregate) => aggregate,
            None => match self.warm.as_ref().and_then(|warm| warm.take(id)) {
                Some(history) => match A::replay(&history)? {
                    Some(aggregate) => Box::new(aggregate),
                    None => return Ok(Located::Missing),
                },
                None if self.recorder.is_none() => return Ok(Located::Missing),
                None => return Ok(Located::InStore),
            },
        };
        Ok(Located::Entry(self.insert_touched(id, aggregate)))
    }

    /// Reads the aggregate `id` from the store into a new entry (marked as
    /// handed out); `None` if the store has no such aggregate.
    async fn locate_in_store<A: Aggregate>(&mut self, id: Uuid) -> Result<Option<usize>> {
        let Some(recorder) = &self.recorder else {
            return Ok(None);
        };
        if let (Some(own_log), Some(warm)) = (&self.own_log, &self.warm) {
            own_log.catch_up(recorder, warm).await?;
            if let Some(history) = warm.take(id) {
                return Ok(A::replay(&history)?.map(|aggregate| self.insert_touched(id, Box::new(aggregate))));
            }
        }
        let events = recorder.select_events(id, Versions::ALL).await?;
        Ok(A::replay(&events)?.map(|aggregate| self.insert_touched(id, Box::new(aggregate))))
    }

    fn insert_touched(&mut self, id: Uuid, aggregate: Box<dyn Cached>) -> usize {
        let index = self.insert(id, aggregate);
        self.touched.push(index);
        index
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

    /// See [`Repo::add`].
    fn add<A: Aggregate>(&mut self, aggregate: A) -> &mut A {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Application, Store, aggregate};

    #[aggregate]
    #[derive(Debug, Default)]
    struct Dog {
        tricks: u32,
    }

    #[aggregate]
    impl Dog {
        #[event(Registered)]
        fn register() -> Self {
            Self::default()
        }

        #[event(TrickLearned)]
        fn learn(&mut self) {
            self.tricks += 1;
        }
    }

    #[aggregate]
    #[derive(Debug, Default)]
    struct Cat {}

    #[aggregate]
    impl Cat {
        #[event(Adopted)]
        fn adopt() -> Self {
            Self {}
        }
    }

    /// `get` and `find` from the store (the boxed path of `Loading`), then
    /// from the repository (the ready path), and their errors.
    #[tokio::test(flavor = "current_thread")]
    async fn get_and_find_read_the_store_then_memory() -> Result<()> {
        let store = Store::open("memory:").await?;
        let app = Application::open(&store, "kennel").await?;
        let (mut dog, mut cat) = (Dog::register(), Cat::adopt());
        dog.learn();
        app.save((&mut dog, &mut cat)).await?;

        let mut repo = RepoCore::with_cache(
            app.name().clone(),
            Some(app.recorder().clone()),
            Cache::new(0),
            None,
            None,
        );
        let missing = Uuid::now_v7();
        assert!(matches!(repo.find::<Dog>(missing).await, Ok(None)));
        assert!(matches!(
            repo.get::<Dog>(missing).await,
            Err(Error::AggregateNotFound { aggregate: "Dog", .. })
        ));

        let loaded = repo.get::<Dog>(dog.id()).await?;
        assert_eq!((loaded.tricks, loaded.version()), (1, 2));
        loaded.learn();
        // From the repository now: the change made above is there.
        let found = repo.find::<Dog>(dog.id()).await?.expect("loaded before");
        assert_eq!((found.tricks, found.version()), (2, 3));

        // An aggregate the repository holds as another type.
        repo.get::<Cat>(cat.id()).await?;
        assert!(matches!(
            repo.find::<Dog>(cat.id()).await,
            Err(Error::AggregateType {
                expected: "Dog",
                found: "Cat",
                ..
            })
        ));
        let mut events = Vec::new();
        repo.collect_new_events(&mut events)?;
        assert_eq!(events.iter().map(|e| e.originator_version).collect::<Vec<_>>(), [3]);
        Ok(())
    }
}
