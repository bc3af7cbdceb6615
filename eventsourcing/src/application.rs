//! Applications: a name, a recorder, and the aggregates recorded through it.

use uuid::Uuid;

use crate::{
    Aggregate, AnyRecorder, AppName, Error, NotificationLog, Recorder, Result, Store, StoredEvent, Versions, topics,
};

/// An event-sourced application: it loads aggregates by replaying their
/// events, saves their pending events atomically, and presents everything
/// it recorded as its notification log.
///
/// Opening an application checks that no two event types in the program
/// claim one topic.
///
/// ```standalone_crate
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use eventsourcing::{Application, Store};
///
/// let store = Store::open("memory:").await?;
/// let dogs = Application::open(&store, "dogs").await?;
/// assert_eq!(dogs.name().as_str(), "dogs");
/// # Ok::<(), eventsourcing::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Application<R = AnyRecorder> {
    recorder: R,
}

impl Application {
    /// Opens the application `name` in `store`: checks the name and the
    /// program's topics, and creates the application's tables if needed.
    pub async fn open(store: &Store, name: &str) -> Result<Self> {
        let name = AppName::new(name)?;
        // Fail before creating tables if the program's topics clash.
        topics::check()?;
        Ok(Self {
            recorder: store.recorder(&name).await?,
        })
    }
}

impl<R: Recorder> Application<R> {
    /// The application whose events `recorder` keeps.
    pub fn new(recorder: R) -> Result<Self> {
        topics::check()?;
        Ok(Self { recorder })
    }

    /// The application's name.
    pub fn name(&self) -> &AppName {
        self.recorder.app()
    }

    /// The recorder that keeps this application's events.
    pub fn recorder(&self) -> &R {
        &self.recorder
    }

    /// The aggregate `id`, rebuilt from all its events.
    ///
    /// Fails with [`Error::AggregateNotFound`] if it has none here.
    pub async fn load<A: Aggregate>(&self, id: Uuid) -> Result<A> {
        let events = self.recorder.select_events(id, Versions::ALL).await?;
        A::replay(&events)?.ok_or_else(|| self.not_found::<A>(id))
    }

    /// The aggregate `id` as it was at `version`.
    ///
    /// Fails with [`Error::AggregateNotFound`] if it has no events here, and
    /// [`Error::VersionNotFound`] if it has not reached `version`.
    pub async fn load_at<A: Aggregate>(&self, id: Uuid, version: u64) -> Result<A> {
        let events = self
            .recorder
            .select_events(id, Versions::from_range(..=version))
            .await?;
        let aggregate: A = A::replay(&events)?.ok_or_else(|| self.not_found::<A>(id))?;
        if aggregate.version() < version {
            return Err(Error::VersionNotFound {
                app: self.name().to_string(),
                aggregate: A::NAME,
                originator_id: id,
                version,
                latest: aggregate.version(),
            });
        }
        Ok(aggregate)
    }

    fn not_found<A: Aggregate>(&self, id: Uuid) -> Error {
        Error::AggregateNotFound {
            app: self.name().to_string(),
            aggregate: A::NAME,
            originator_id: id,
        }
    }

    /// Records the pending events of one aggregate (`&mut order`), several
    /// (`(&mut order, &mut payment)`), or a slice of them, in one
    /// transaction, and returns their notification ids.
    ///
    /// The events go to the partition of the first aggregate's id
    /// ([`partition_of`](crate::partition_of)); the ids are that
    /// partition's. A log of one partition has only partition 0.
    ///
    /// On success the events are no longer pending. On failure nothing is
    /// recorded and the events stay pending; a
    /// [`Error::Concurrency`] means another writer got there first: load
    /// the aggregate again and retry the command.
    pub async fn save(&self, aggregates: impl Unsaved) -> Result<Vec<u64>> {
        Ok(self.save_observed(None, aggregates, None).await?.1)
    }

    /// Records the pending events like [`save`](Self::save), in `partition`
    /// rather than the first aggregate's.
    pub async fn save_in(&self, partition: u32, aggregates: impl Unsaved) -> Result<Vec<u64>> {
        Ok(self.save_observed(Some(partition), aggregates, None).await?.1)
    }

    /// Saves in `partition`, or the first aggregate's, hands a copy of the
    /// events recorded to `observe` (a runner's processes), and returns the
    /// partition with the ids.
    pub(crate) async fn save_observed(
        &self,
        partition: Option<u32>,
        mut aggregates: impl Unsaved,
        observe: Option<&(dyn Fn(u32, Vec<StoredEvent>) + Sync)>,
    ) -> Result<(u32, Vec<u64>)> {
        let mut events = Vec::new();
        aggregates.encode_pending_into(&mut events)?;
        let Some(first) = events.first() else {
            return Ok((partition.unwrap_or(crate::store::DEFAULT_PARTITION), Vec::new()));
        };
        let partition =
            partition.unwrap_or_else(|| crate::store::partition_of(first.originator_id, self.recorder.partitions()));
        // The recorder takes the events; an observer gets its own copy.
        let observed = observe.map(|observe| (observe, events.clone()));
        let ids = self.recorder.insert(partition, events, None).await?;
        aggregates.clear_pending();
        if let Some((observe, events)) = observed {
            observe(partition, events);
        }
        Ok((partition, ids))
    }

    /// This application's notification log.
    pub fn log(&self) -> NotificationLog<R> {
        NotificationLog::new(self.recorder.clone())
    }
}

/// Aggregates whose pending events [`Application::save`] records together.
///
/// Implemented for `&mut A`, slices and vectors of aggregates, and tuples of
/// up to six of these.
pub trait Unsaved {
    /// Appends the pending events in stored form.
    fn encode_pending_into(&self, events: &mut Vec<StoredEvent>) -> Result<()>;

    /// Forgets the pending events, once recorded.
    fn clear_pending(&mut self);
}

fn encode_pending_of<A: Aggregate>(aggregate: &A, events: &mut Vec<StoredEvent>) -> Result<()> {
    for envelope in aggregate.pending_events() {
        events.push(envelope.to_stored()?);
    }
    Ok(())
}

impl<A: Aggregate> Unsaved for &mut A {
    fn encode_pending_into(&self, events: &mut Vec<StoredEvent>) -> Result<()> {
        encode_pending_of(&**self, events)
    }

    fn clear_pending(&mut self) {
        Aggregate::clear_pending(&mut **self);
    }
}

impl<A: Aggregate> Unsaved for &mut [A] {
    fn encode_pending_into(&self, events: &mut Vec<StoredEvent>) -> Result<()> {
        self.iter().try_for_each(|a| encode_pending_of(a, events))
    }

    fn clear_pending(&mut self) {
        self.iter_mut().for_each(Aggregate::clear_pending);
    }
}

impl<A: Aggregate> Unsaved for &mut Vec<A> {
    fn encode_pending_into(&self, events: &mut Vec<StoredEvent>) -> Result<()> {
        self.iter().try_for_each(|a| encode_pending_of(a, events))
    }

    fn clear_pending(&mut self) {
        self.iter_mut().for_each(Aggregate::clear_pending);
    }
}

macro_rules! unsaved_tuple {
    ($($name:ident $index:tt),+) => {
        impl<$($name: Unsaved),+> Unsaved for ($($name,)+) {
            fn encode_pending_into(&self, events: &mut Vec<StoredEvent>) -> Result<()> {
                $(self.$index.encode_pending_into(events)?;)+
                Ok(())
            }

            fn clear_pending(&mut self) {
                $(self.$index.clear_pending();)+
            }
        }
    };
}

unsaved_tuple!(T0 0);
unsaved_tuple!(T0 0, T1 1);
unsaved_tuple!(T0 0, T1 1, T2 2);
unsaved_tuple!(T0 0, T1 1, T2 2, T3 3);
unsaved_tuple!(T0 0, T1 1, T2 2, T3 3, T4 4);
unsaved_tuple!(T0 0, T1 1, T2 2, T3 3, T4 4, T5 5);
