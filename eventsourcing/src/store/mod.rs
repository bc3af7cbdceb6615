//! The recorder: one trait, what it promises, and its three backends.
//!
//! Every backend keeps these promises, and `tests/store_conformance.rs`
//! checks each of them against all three:
//!
//! - Events of one aggregate are keyed by (originator id, version). Writing a
//!   version that exists fails with [`Error::Concurrency`] and writes nothing.
//! - [`Recorder::insert`] writes all its events, their notification ids and
//!   the optional tracking position in one transaction: all or nothing.
//! - Notification ids are contiguous per partition (1, 2, 3, … with no gaps)
//!   and become visible in id order under any number of concurrent writers,
//!   so a follower reading "everything after N" never misses an event that
//!   commits later with a smaller id.
//! - The tracking position for an (upstream application, partition) moves
//!   forward only from the position the writer read: a second attempt at the
//!   same notifications fails with [`Error::TrackingConflict`] and leaves no
//!   trace.
//! - Each application has its own tables, named from its validated
//!   [`AppName`], created idempotently when its recorder is opened.
//! - A notification a process parks ([`Recorder::park`]) is recorded as a
//!   [`DeadLetter`] in the transaction that moves the tracking position past
//!   it; a retry's events and the dead letter's removal are one transaction
//!   too, and the removal happens once ([`Recorder::resolve_dead_letter`]).

mod claims;
mod commits;
mod dead_letter;
pub mod memory;
mod outbox;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod url;

use std::future::Future;
use std::ops::{Bound, RangeBounds};

use uuid::Uuid;

use crate::{AppName, Namespace, Notification, NotificationSource, Result, StoredEvent, Timestamp};

use claims::Claim;
pub(crate) use commits::CommitFeed;
pub use commits::{Commits, Committed, Prompt};
pub use dead_letter::DeadLetter;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use dead_letter::DeadLetterWrite;
pub use outbox::{OutboxWrite, Outgoing, OutgoingChange};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::migrations::SCHEMA_VERSION;
pub use url::{DEFAULT_STORE_URL, STORE_URL_ENV};

/// The highest version of an event's data a store keeps (a 32-bit signed
/// integer in SQL).
pub const MAX_STATE_VERSION: u32 = i32::MAX as u32;

/// The first partition of a log, and the only one of a log that is not
/// partitioned.
pub const DEFAULT_PARTITION: u32 = 0;

/// The most partitions a log may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// The partition of a log of `partitions` partitions that an aggregate's
/// id picks: where [`Application::save`](crate::Application::save) records
/// a command's events, by its first aggregate. Stable across versions and
/// machines (the id's number modulo `partitions`; 0 for 0 or 1 partitions).
pub fn partition_of(id: Uuid, partitions: u32) -> u32 {
    if partitions <= 1 {
        return DEFAULT_PARTITION;
    }
    (id.as_u128() % u128::from(partitions)) as u32
}

/// The position a process reached in an upstream log, written in the same
/// transaction as the events it produced from the notifications after
/// `previous` up to `position`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracking {
    /// The upstream application whose log was read.
    pub upstream: AppName,
    /// The upstream partition.
    pub partition: u32,
    /// The position read before these notifications (0 for none).
    pub previous: u64,
    /// The id of the last notification processed.
    pub position: u64,
    /// The lease epoch a worker holds on this partition of the writing
    /// application ([`Runner::worker`](crate::Runner::worker)), or `None`
    /// for a writer without leases. The move also fails, with
    /// [`Error::LeaseLost`](crate::Error::LeaseLost), if another worker has
    /// taken the partition since. Only SQL stores keep leases.
    pub lease_epoch: Option<u64>,
}

/// An inclusive range of aggregate versions to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Versions {
    /// The first version to read (1 for all).
    pub from: u64,
    /// The last version to read.
    pub to: u64,
}

impl Versions {
    /// Every version.
    pub const ALL: Versions = Versions {
        from: 1,
        to: i64::MAX as u64,
    };

    /// The versions in a Rust range: `..`, `3..`, `..=5`, `2..7`.
    pub fn from_range(range: impl RangeBounds<u64>) -> Self {
        let from = match range.start_bound() {
            Bound::Included(&v) => v,
            Bound::Excluded(&v) => v.saturating_add(1),
            Bound::Unbounded => 1,
        };
        let to = match range.end_bound() {
            Bound::Included(&v) => v,
            Bound::Excluded(&v) => v.saturating_sub(1),
            Bound::Unbounded => Self::ALL.to,
        };
        Self {
            from: from.max(1),
            to: to.min(Self::ALL.to),
        }
    }
}

/// Stores one application's events and presents them as a notification log.
///
/// Three implementations: [`memory::MemoryRecorder`],
/// [`sqlite::SqliteRecorder`] and [`postgres::PostgresRecorder`]; and
/// [`AnyRecorder`], which is whichever one a [`Store`] opened.
///
/// Reading the log is the read-only [`NotificationSource`] it extends,
/// which a remote log implements too.
pub trait Recorder: NotificationSource {
    /// Records `events` in the log's `partition` and, if given, moves the
    /// tracking position, in one transaction. Returns the notification id
    /// given to each event, in order. The events are handed over, so that a
    /// backend that keeps them or queues them for a writer needs no copy.
    ///
    /// Fails with [`Error::Concurrency`](crate::Error::Concurrency) if an
    /// (originator id, version) exists, and with
    /// [`Error::TrackingConflict`](crate::Error::TrackingConflict) if the
    /// tracking position is not at `tracking.previous`; either way nothing
    /// is written. A partition the log does not have is an
    /// [`Error::InvalidWrite`](crate::Error::InvalidWrite).
    fn insert(
        &self,
        partition: u32,
        events: Vec<StoredEvent>,
        tracking: Option<&Tracking>,
    ) -> impl Future<Output = Result<Vec<u64>>> + Send;

    /// An aggregate's events within `versions`, oldest first.
    fn select_events(
        &self,
        originator_id: Uuid,
        versions: Versions,
    ) -> impl Future<Output = Result<Vec<StoredEvent>>> + Send;

    /// The last notification id of `upstream`'s `partition` processed by
    /// this application (0 for none).
    fn tracking_position(&self, upstream: &AppName, partition: u32) -> impl Future<Output = Result<u64>> + Send;

    /// Moves the tracking position past a notification whose handler kept
    /// failing and records it as a dead letter, in one transaction.
    ///
    /// Fails with [`Error::TrackingConflict`](crate::Error::TrackingConflict)
    /// if the tracking position is not at `tracking.previous`; nothing is
    /// written then.
    fn park(&self, letter: &DeadLetter, tracking: &Tracking) -> impl Future<Output = Result<()>> + Send;

    /// This application's dead letters, by upstream, partition and
    /// notification id.
    fn dead_letters(&self) -> impl Future<Output = Result<Vec<DeadLetter>>> + Send;

    /// Records `events` and removes the dead letter `letter`, in one
    /// transaction: a retry that succeeded, or (with no events) a discard.
    /// The events go to the letter's partition. Returns their notification
    /// ids.
    ///
    /// Fails with [`Error::DeadLetterNotFound`](crate::Error::DeadLetterNotFound)
    /// if it is no longer there (another retry or discard removed it), and
    /// like [`insert`](Recorder::insert) if the events conflict; either way
    /// nothing is written.
    fn resolve_dead_letter(
        &self,
        letter: &DeadLetter,
        events: Vec<StoredEvent>,
    ) -> impl Future<Output = Result<Vec<u64>>> + Send;

    /// Records a failed retry of `letter`: its `error` and `last_failed_at`,
    /// and one more attempt. Returns the attempts now recorded.
    ///
    /// Fails with [`Error::DeadLetterNotFound`](crate::Error::DeadLetterNotFound)
    /// if it is no longer there.
    fn record_failed_retry(&self, letter: &DeadLetter) -> impl Future<Output = Result<u32>> + Send;

    /// Records `events` in `partition` and changes the outbox as `outbox`
    /// says, in one transaction: an effect is there only if its command's
    /// events are, and a consumed effect is gone only if the events of its
    /// delivery are recorded. Fails like [`insert`](Recorder::insert), and
    /// with [`Error::EffectGone`](crate::Error::EffectGone) if the effect to
    /// consume is not there, writing nothing.
    fn insert_with_outbox(
        &self,
        partition: u32,
        events: Vec<StoredEvent>,
        outbox: OutboxWrite,
    ) -> impl Future<Output = Result<Vec<u64>>> + Send;

    /// Up to `limit` effects of the outbox that are due by `due_by` and not
    /// parked, the earliest due first.
    fn due_outgoing(&self, due_by: Timestamp, limit: usize) -> impl Future<Output = Result<Vec<Outgoing>>> + Send;

    /// The parked effects of the outbox, oldest first.
    fn parked_outgoing(&self) -> impl Future<Output = Result<Vec<Outgoing>>> + Send;

    /// Completes, fails, unparks or claims one effect. Returns whether it
    /// was there (and, to unpark, parked; to claim, due at the time it was
    /// seen): of two completions, or two claims, of one effect, one
    /// returns `false`.
    fn change_outgoing(&self, change: OutgoingChange) -> impl Future<Output = Result<bool>> + Send;
}

/// A connection to where events are kept: in memory, a SQLite file, or a
/// PostgreSQL database. Open it from a URL, then open a recorder for each
/// application.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use eventsourcing::{AppName, NotificationSource, Store};
///
/// let store = Store::open("memory:").await?;
/// let recorder = store.recorder(&AppName::new("dogs")?).await?;
/// assert_eq!(recorder.max_notification_id(0).await?, 0);
/// # Ok::<(), eventsourcing::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Store {
    /// Events in this process's memory, gone when it ends.
    Memory(memory::MemoryStore),
    /// Events in a SQLite file: the embedded default.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::SqliteStore),
    /// Events in a PostgreSQL database, shared by processes and machines.
    #[cfg(feature = "postgres")]
    Postgres(postgres::PostgresStore),
}

impl Store {
    /// Opens the store a URL names: `memory:`, `sqlite://PATH` (the file is
    /// created if missing) or `postgres://…`.
    pub async fn open(url: &str) -> Result<Self> {
        url::open(url).await
    }

    /// Opens the store named by the `EVENTSOURCING_STORE_URL` environment
    /// variable, or the SQLite file `eventsourcing.db` when it is unset.
    pub async fn from_env() -> Result<Self> {
        let url = std::env::var(STORE_URL_ENV).unwrap_or_else(|_| DEFAULT_STORE_URL.to_owned());
        Self::open(&url).await
    }

    /// This store, with the applications opened from the returned handle
    /// in `namespace`: their tables are named `{namespace}__{app}_…`, apart
    /// from those of other namespaces, so that independent systems share
    /// one database without sharing an application. A handle sees the
    /// commits of its own namespace only.
    ///
    /// Fails with [`Error::InvalidNamespace`](crate::Error::InvalidNamespace)
    /// for a namespace that cannot name tables (see [`Namespace`]).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use eventsourcing::{AppName, NotificationSource, Store};
    ///
    /// let store = Store::open("memory:").await?;
    /// let shop = store.namespaced("shop")?;
    /// let orders = shop.recorder(&AppName::new("Orders")?).await?;
    /// assert_eq!(orders.app().table_prefix(), "shop__orders");
    /// # Ok::<(), eventsourcing::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn namespaced(&self, namespace: &str) -> Result<Self> {
        let namespace = Some(Namespace::new(namespace)?);
        let mut store = self.clone();
        match &mut store {
            Store::Memory(store) => store.namespace = namespace,
            #[cfg(feature = "sqlite")]
            Store::Sqlite(store) => store.namespace = namespace,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.namespace = namespace,
        }
        Ok(store)
    }

    /// The namespace of the applications opened from this handle, if any.
    pub fn namespace(&self) -> Option<&Namespace> {
        match self {
            Store::Memory(store) => store.namespace.as_ref(),
            #[cfg(feature = "sqlite")]
            Store::Sqlite(store) => store.namespace.as_ref(),
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.namespace.as_ref(),
        }
    }

    /// Opens the recorder of one application, creating its tables (with
    /// one partition) if they do not exist, or bringing them up to date.
    /// A log written with several partitions opens with them.
    pub async fn recorder(&self, app: &AppName) -> Result<AnyRecorder> {
        self.open_recorder(app, None, Claim::Leave).await
    }

    /// Opens the recorder of one application whose log has `partitions`
    /// partitions, creating its tables with them if they do not exist.
    ///
    /// A log written with another number of partitions is refused with
    /// [`Error::PartitionsChanged`](crate::Error::PartitionsChanged): a log
    /// is not re-partitioned in place.
    pub async fn partitioned_recorder(&self, app: &AppName, partitions: u32) -> Result<AnyRecorder> {
        self.open_recorder(app, Some(partitions), Claim::Leave).await
    }

    /// Opens the recorder of `app`, run by the process application at
    /// `process` (its module path), and records that it is: fails with
    /// [`Error::SystemClash`](crate::Error::SystemClash) if another process
    /// application runs `app` in this store and namespace.
    pub(crate) async fn claimed_recorder(
        &self,
        app: &AppName,
        partitions: u32,
        process: &'static str,
    ) -> Result<AnyRecorder> {
        self.open_recorder(app, Some(partitions), Claim::Take(process)).await
    }

    /// Fails like [`claimed_recorder`](Self::claimed_recorder) would, and
    /// claims nothing: so that a runner refused for one application has
    /// not claimed the others first.
    pub(crate) async fn check_claim(&self, app: &AppName, partitions: u32, process: &'static str) -> Result<()> {
        self.open_recorder(app, Some(partitions), Claim::Check(process))
            .await
            .map(drop)
    }

    /// Forgets which process application runs `app` in this store and
    /// namespace, so that another may: for an application whose type was
    /// moved or renamed, after its runners have stopped. (A runner records
    /// the process application that runs each of its applications, and
    /// refuses to run one that another runs; see
    /// [`Error::SystemClash`](crate::Error::SystemClash).)
    pub async fn release_claim(&self, app: &AppName) -> Result<()> {
        match self {
            Store::Memory(store) => {
                store.release_claim(&app.in_namespace(self.namespace())?);
                Ok(())
            }
            #[cfg(feature = "sqlite")]
            Store::Sqlite(_) => self.open_recorder(app, None, Claim::Release).await.map(drop),
            #[cfg(feature = "postgres")]
            Store::Postgres(_) => self.open_recorder(app, None, Claim::Release).await.map(drop),
        }
    }

    /// The recorder of `app` in this handle's namespace.
    async fn open_recorder(&self, app: &AppName, partitions: Option<u32>, claim: Claim) -> Result<AnyRecorder> {
        let app = &app.in_namespace(self.namespace())?;
        if let Some(asked) = partitions
            && (asked == 0 || asked > MAX_PARTITIONS)
        {
            return Err(crate::Error::InvalidPartitions {
                app: app.to_string(),
                asked,
            });
        }
        Ok(match self {
            Store::Memory(store) => AnyRecorder::Memory(store.claimed_recorder(app, partitions, claim)?),
            #[cfg(feature = "sqlite")]
            Store::Sqlite(store) => AnyRecorder::Sqlite(store.recorder_with(app, partitions, claim).await?),
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => AnyRecorder::Postgres(store.recorder_with(app, partitions, claim).await?),
        })
    }

    /// A subscription to the commits of events to this store's logs: by
    /// this process, and on PostgreSQL by every process that writes to the
    /// database (`LISTEN`/`NOTIFY`).
    pub async fn commits(&self) -> Result<Commits> {
        Ok(match self {
            Store::Memory(store) => store.commits(),
            #[cfg(feature = "sqlite")]
            Store::Sqlite(store) => store.commits(),
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.commits().await?,
        })
    }

    /// The backend's name: `memory`, `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            #[cfg(feature = "sqlite")]
            Store::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Store::Postgres(_) => "postgres",
        }
    }
}

/// The recorder of whichever backend a [`Store`] opened.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AnyRecorder {
    /// See [`memory::MemoryRecorder`].
    Memory(memory::MemoryRecorder),
    /// See [`sqlite::SqliteRecorder`].
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::SqliteRecorder),
    /// See [`postgres::PostgresRecorder`].
    #[cfg(feature = "postgres")]
    Postgres(postgres::PostgresRecorder),
    /// Another recorder with a simulation's faults injected.
    #[doc(hidden)]
    Faulty(crate::simulation::FaultyRecorder),
}

/// Calls the same method on whichever recorder is inside.
macro_rules! dispatch {
    ($self:ident, $r:ident => $call:expr) => {
        match $self {
            AnyRecorder::Memory($r) => $call,
            #[cfg(feature = "sqlite")]
            AnyRecorder::Sqlite($r) => $call,
            #[cfg(feature = "postgres")]
            AnyRecorder::Postgres($r) => $call,
            AnyRecorder::Faulty($r) => $call,
        }
    };
}

impl NotificationSource for AnyRecorder {
    fn app(&self) -> &AppName {
        dispatch!(self, r => r.app())
    }

    fn partitions(&self) -> u32 {
        dispatch!(self, r => r.partitions())
    }

    async fn select_notifications(&self, partition: u32, start: u64, limit: usize) -> Result<Vec<Notification>> {
        dispatch!(self, r => r.select_notifications(partition, start, limit).await)
    }

    async fn max_notification_id(&self, partition: u32) -> Result<u64> {
        dispatch!(self, r => r.max_notification_id(partition).await)
    }
}

impl Recorder for AnyRecorder {
    async fn insert(&self, partition: u32, events: Vec<StoredEvent>, tracking: Option<&Tracking>) -> Result<Vec<u64>> {
        dispatch!(self, r => r.insert(partition, events, tracking).await)
    }

    async fn select_events(&self, originator_id: Uuid, versions: Versions) -> Result<Vec<StoredEvent>> {
        dispatch!(self, r => r.select_events(originator_id, versions).await)
    }

    async fn tracking_position(&self, upstream: &AppName, partition: u32) -> Result<u64> {
        dispatch!(self, r => r.tracking_position(upstream, partition).await)
    }

    async fn park(&self, letter: &DeadLetter, tracking: &Tracking) -> Result<()> {
        dispatch!(self, r => r.park(letter, tracking).await)
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        dispatch!(self, r => r.dead_letters().await)
    }

    async fn resolve_dead_letter(&self, letter: &DeadLetter, events: Vec<StoredEvent>) -> Result<Vec<u64>> {
        dispatch!(self, r => r.resolve_dead_letter(letter, events).await)
    }

    async fn record_failed_retry(&self, letter: &DeadLetter) -> Result<u32> {
        dispatch!(self, r => r.record_failed_retry(letter).await)
    }

    async fn insert_with_outbox(
        &self,
        partition: u32,
        events: Vec<StoredEvent>,
        outbox: OutboxWrite,
    ) -> Result<Vec<u64>> {
        dispatch!(self, r => r.insert_with_outbox(partition, events, outbox).await)
    }

    async fn due_outgoing(&self, due_by: Timestamp, limit: usize) -> Result<Vec<Outgoing>> {
        dispatch!(self, r => r.due_outgoing(due_by, limit).await)
    }

    async fn parked_outgoing(&self) -> Result<Vec<Outgoing>> {
        dispatch!(self, r => r.parked_outgoing().await)
    }

    async fn change_outgoing(&self, change: OutgoingChange) -> Result<bool> {
        dispatch!(self, r => r.change_outgoing(change).await)
    }
}

/// Checks that a log stored with `stored` partitions may be opened with
/// the partitions asked for (any, if none are asked for).
fn check_partitions_unchanged(app: &AppName, stored: u32, asked: Option<u32>) -> Result<()> {
    match asked {
        Some(asked) if asked != stored => Err(crate::Error::PartitionsChanged {
            app: app.to_string(),
            stored,
            asked,
        }),
        _ => Ok(()),
    }
}

/// Checks that a log of `partitions` partitions has `partition`.
fn check_partition(app: &AppName, partitions: u32, partition: u32) -> Result<()> {
    if partition < partitions {
        return Ok(());
    }
    Err(crate::Error::InvalidWrite {
        app: app.to_string(),
        reason: format!("partition {partition} does not exist: the log has {partitions} partition(s), numbered from 0"),
    })
}

/// Checks a write request before any backend touches its tables.
fn check_write(app: &AppName, events: &[StoredEvent], tracking: Option<&Tracking>) -> Result<()> {
    let invalid = |reason: String| crate::Error::InvalidWrite {
        app: app.to_string(),
        reason,
    };
    if let Some(t) = tracking
        && t.position <= t.previous
    {
        return Err(invalid(format!(
            "tracking position {} for upstream `{}` partition {} does not move forward from {}",
            t.position, t.upstream, t.partition, t.previous
        )));
    }
    for e in events {
        // Stores keep the state version as a 32-bit signed integer.
        if e.state_version == 0 || e.state_version > MAX_STATE_VERSION {
            return Err(invalid(format!(
                "event `{}` of aggregate {} has state version {}; state versions run from 1 to {MAX_STATE_VERSION}",
                e.topic, e.originator_id, e.state_version
            )));
        }
        if e.originator_version == 0 || e.originator_version > Versions::ALL.to {
            return Err(invalid(format!(
                "aggregate {} has version {}; versions run from 1 to {}",
                e.originator_id,
                e.originator_version,
                Versions::ALL.to
            )));
        }
    }
    Ok(())
}

/// The first (id, version) that appears twice in `events`, if any: a
/// conflict within one write, which no stored row explains.
fn duplicate_in_batch(events: &[StoredEvent]) -> Option<&StoredEvent> {
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    events
        .iter()
        .find(|e| !seen.insert((e.originator_id, e.originator_version)))
}

/// Wraps a driver error with the application and what the recorder was doing.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn db_error<'a>(app: &'a AppName, action: &'static str) -> impl FnOnce(sqlx::Error) -> crate::Error + 'a {
    move |source| crate::Error::Database {
        app: app.to_string(),
        action,
        source: Box::new(source),
    }
}
