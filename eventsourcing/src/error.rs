//! The one error type of the runtime crate.

use uuid::Uuid;

/// Everything that can go wrong in the runtime, with what failed and where.
///
/// Messages name the application, aggregate, version, notification or topic
/// concerned and, where the caller can act, what to do. Underlying causes
/// (database, JSON) are kept as [`std::error::Error::source`], not repeated in
/// the message.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An application name that cannot name tables.
    #[error(
        "invalid application name `{name}`: {reason}; use 1 to 40 ASCII letters, digits or underscores, starting with a letter"
    )]
    InvalidAppName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// Another process application runs an application of this name in
    /// this store (and namespace): two systems would share its tables.
    #[error(
        "application `{app}`{} is run by `{claimed_by}` in this store, and `{claimant}` is another application of that name: the two systems would share its tables and tracking, and one of them would process nothing. Give one system a namespace of its own (`store.namespaced(\"…\")`), or one application another name (`#[policy(name = \"…\")]`); if `{claimant}` is `{claimed_by}` moved or renamed, release the old claim with `{}` while none of its runners run",
        in_namespace(namespace.as_deref()),
        release_claim(app, namespace.as_deref())
    )]
    SystemClash {
        /// The application's name.
        app: String,
        /// Its namespace, if any.
        namespace: Option<String>,
        /// The process application that runs it (its module path).
        claimed_by: String,
        /// The one that was refused.
        claimant: String,
    },

    /// An application's tables belong to another (namespace, application)
    /// with the same table names: `eu__orders` in no namespace, and
    /// `orders` in the namespace `eu`.
    #[error(
        "the tables `{tables}_…` belong to application `{owner}`{}, so application `{app}`{} cannot have them: a name with two underscores in a row reads like a namespace and an application; rename one of them, or use another namespace",
        in_namespace(owner_namespace.as_deref()),
        in_namespace(namespace.as_deref())
    )]
    TablesTaken {
        /// The tables' prefix.
        tables: String,
        /// The application that owns them (lowercase, as in table names).
        owner: String,
        /// Its namespace, if any.
        owner_namespace: Option<String>,
        /// The application refused.
        app: String,
        /// Its namespace, if any.
        namespace: Option<String>,
    },

    /// A namespace that cannot name tables.
    #[error("invalid namespace `{namespace}`: {reason}")]
    InvalidNamespace {
        /// The namespace as given.
        namespace: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Another writer recorded this aggregate version first: optimistic
    /// concurrency control rejected the whole transaction.
    #[error(
        "version conflict in application `{app}`: aggregate {originator_id} already has version {version}; reload the aggregate and retry the command"
    )]
    Concurrency {
        /// The application whose store rejected the write.
        app: String,
        /// The aggregate written concurrently.
        originator_id: Uuid,
        /// The version that already exists.
        version: u64,
    },

    /// The tracking position for an upstream log is not where this
    /// transaction expected it: the notifications were already processed
    /// (by a duplicate worker or before a restart). The transaction left no
    /// trace.
    #[error(
        "tracking conflict in application `{app}`: position for upstream `{upstream}` partition {partition} is {found}, not {expected}; these notifications were already processed, so read the position again and continue after it"
    )]
    TrackingConflict {
        /// The downstream application.
        app: String,
        /// The upstream application whose log is followed.
        upstream: String,
        /// The upstream partition.
        partition: u32,
        /// The position the transaction expected to move on from.
        expected: u64,
        /// The position recorded.
        found: u64,
    },

    /// A worker's commit for a partition whose lease another worker has
    /// taken since (a pause, a cut connection, a slow commit): nothing was
    /// written. The worker stops that partition and rejoins.
    #[error(
        "lease lost on partition {partition} of application `{app}`: this worker held it at epoch {epoch}, and another worker took it over (the partition's tracking is at epoch {found}); nothing was written, and the new owner processes these notifications. Stop this partition and rejoin"
    )]
    LeaseLost {
        /// The application whose partition it was.
        app: String,
        /// The partition.
        partition: u32,
        /// The epoch the worker held.
        epoch: u64,
        /// The epoch found in the partition's tracking.
        found: u64,
    },

    /// A write request that breaks the recorder's rules (not a conflict).
    #[error("invalid write to application `{app}`: {reason}")]
    InvalidWrite {
        /// The application written to.
        app: String,
        /// What is wrong with the request.
        reason: String,
    },

    /// A notification log section id that is not `"current"` or `"first,last"`.
    #[error("malformed section id `{id}`: {reason}")]
    SectionId {
        /// The section id as given.
        id: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A notification log read that found a hole where an id should be.
    #[error(
        "notification log of application `{app}` partition {partition} skipped from {position} to {found}; the log must be contiguous, so check that nothing else writes to its tables"
    )]
    LogGap {
        /// The application whose log was read.
        app: String,
        /// The partition read.
        partition: u32,
        /// The reader's position before the read.
        position: u64,
        /// The notification id that came next.
        found: u64,
    },

    /// A log position that no notification can have.
    #[error(
        "position {position} in the notification log of application `{app}` partition {partition} is past the largest notification id {max}"
    )]
    LogPosition {
        /// The application whose log is read.
        app: String,
        /// The partition.
        partition: u32,
        /// The position asked for.
        position: u64,
        /// The largest notification id.
        max: u64,
    },

    /// A partition that the log does not have.
    #[error(
        "the log of application `{app}` has no partition {partition}: it has {partitions} partition(s), numbered from 0"
    )]
    UnknownPartition {
        /// The application.
        app: String,
        /// The partition asked for.
        partition: u32,
        /// The partitions the log has.
        partitions: u32,
    },

    /// Tables written by a newer version of this crate, at a schema version
    /// this build does not know: it refuses them rather than misread them.
    #[error(
        "the {backend} tables of application `{app}` are at schema version {found}, but this build of eventsourcing knows versions up to {supported}: a newer version wrote them; run that version (or newer), or open a store this version wrote"
    )]
    SchemaTooNew {
        /// The application whose tables were opened.
        app: String,
        /// The database: `SQLite` or `PostgreSQL`.
        backend: &'static str,
        /// The version the tables are at.
        found: u32,
        /// The newest version this build knows
        /// ([`SCHEMA_VERSION`](crate::store::SCHEMA_VERSION)).
        supported: u32,
    },

    /// A number of partitions no log may have.
    #[error(
        "application `{app}` cannot have {asked} partitions: a log has 1 to {max} partitions", max = crate::store::MAX_PARTITIONS
    )]
    InvalidPartitions {
        /// The application.
        app: String,
        /// The partitions asked for.
        asked: u32,
    },

    /// A log opened with another number of partitions than it was written
    /// with. Notifications are numbered per partition, and followers track
    /// each partition, so a log is not re-partitioned in place.
    #[error(
        "the log of application `{app}` has {stored} partition(s), and {asked} were asked for; a log is not re-partitioned in place: open it with {stored} partition(s), or copy its events into a new store with {asked} (a process application following this log can write them there)"
    )]
    PartitionsChanged {
        /// The application.
        app: String,
        /// The partitions the log was written with.
        stored: u32,
        /// The partitions asked for.
        asked: u32,
    },

    /// A store that could not be opened, named by its location (never with
    /// a password).
    #[error("cannot open the store `{location}`: {hint}")]
    StoreOpen {
        /// The file path or server, as the URL gave it.
        location: String,
        /// What is wrong, and what to do.
        hint: String,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A simulated run that broke a promise: the seed, and what went wrong.
    #[error(
        "simulation seed {seed} on {backend} failed: {message}; run this seed again (`Simulation::run({seed})`) to replay it exactly. What happened before:\n{trace}"
    )]
    Simulation {
        /// The seed that fails.
        seed: u64,
        /// Where it ran.
        backend: String,
        /// The promise broken.
        message: String,
        /// The faults injected and workers restarted, in order.
        trace: String,
    },

    /// A fault a [`Simulation`](crate::simulation::Simulation) injected.
    #[error("simulated fault in application `{app}`: {fault}")]
    Simulated {
        /// The application whose commit it struck.
        app: String,
        /// What happened.
        fault: &'static str,
    },

    /// A store URL with a scheme this crate does not know, or for a backend
    /// that was compiled out.
    #[error("unsupported store URL `{url}`: {reason}; use `memory:`, `sqlite://PATH` or `postgres://USER@HOST/DB`")]
    StoreUrl {
        /// The URL, with any password hidden.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An event that could not be turned into bytes.
    #[error("cannot encode event `{topic}` of aggregate {originator_id} at version {version}")]
    Encode {
        /// The event's topic.
        topic: &'static str,
        /// The aggregate that triggered it.
        originator_id: Uuid,
        /// The event's version.
        version: u64,
        /// The codec's reason.
        #[source]
        source: serde_json::Error,
    },

    /// Stored event state that does not decode into the type registered
    /// for its topic.
    #[error(
        "cannot decode event `{topic}` of aggregate {originator_id} at version {version}; the stored state does not match the event type registered for this topic"
    )]
    Decode {
        /// The stored topic.
        topic: String,
        /// The aggregate it belongs to.
        originator_id: Uuid,
        /// The stored version.
        version: u64,
        /// The codec's reason.
        #[source]
        source: serde_json::Error,
    },

    /// A stored topic that no event type of this aggregate is registered for.
    #[error(
        "unknown topic `{topic}` for aggregate {originator_id} at version {version}; register an event type for it before reading these events (an event type that was renamed keeps its old topic with `#[event(Name, topic = \"…\")]`)"
    )]
    UnknownTopic {
        /// The stored topic.
        topic: String,
        /// The aggregate it belongs to.
        originator_id: Uuid,
        /// The stored version.
        version: u64,
    },

    /// An event that cannot apply to the aggregate as it is: a creation event
    /// for an aggregate that exists, or any other event for one that does not.
    #[error("event `{topic}` at version {version} cannot apply to aggregate {originator_id}: {reason}")]
    NotApplicable {
        /// The event's topic.
        topic: String,
        /// The aggregate.
        originator_id: Uuid,
        /// The event's version.
        version: u64,
        /// Why it cannot apply.
        reason: &'static str,
    },

    /// No events are recorded for this aggregate id in this application.
    #[error("aggregate {aggregate} {originator_id} not found in application `{app}`")]
    AggregateNotFound {
        /// The application searched.
        app: String,
        /// The aggregate type's name.
        aggregate: &'static str,
        /// The id asked for.
        originator_id: Uuid,
    },

    /// The aggregate exists but has not reached the version asked for.
    #[error(
        "aggregate {aggregate} {originator_id} in application `{app}` has no version {version}; its latest is {latest}"
    )]
    VersionNotFound {
        /// The application searched.
        app: String,
        /// The aggregate type's name.
        aggregate: &'static str,
        /// The id asked for.
        originator_id: Uuid,
        /// The version asked for.
        version: u64,
        /// The latest version recorded.
        latest: u64,
    },

    /// Two event types claim one topic, so stored events would be ambiguous.
    #[error(
        "topic `{topic}` is registered by both `{first}` and `{second}`; give one of them another topic with `#[event(Name, topic = \"…\")]`"
    )]
    DuplicateTopic {
        /// The topic.
        topic: &'static str,
        /// One event type claiming it.
        first: String,
        /// The other.
        second: String,
    },

    /// Two types in one system are applications of one name, so they would
    /// share tables and tracking and one would process nothing.
    #[error(
        "`{first}` and `{second}` are two applications with one name, `{name}`: they would share its tables and tracking; give one of them another name with `#[policy(name = \"…\", aggregates(...))]`"
    )]
    DuplicateApp {
        /// The name both have.
        name: &'static str,
        /// The type named first in the system.
        first: &'static str,
        /// The other type.
        second: &'static str,
    },

    /// A policy could not process a notification: its handler returned an
    /// error or panicked, the event did not decode, or the commit failed.
    /// Nothing from that notification was recorded, and processing resumes
    /// at it.
    #[error(
        "application `{app}` failed to process notification {notification_id} (`{topic}`) of upstream `{upstream}` partition {partition}; nothing from it was recorded, and processing resumes at this notification once the cause is fixed"
    )]
    Processing {
        /// The process application.
        app: String,
        /// The upstream application whose notification it was.
        upstream: String,
        /// The upstream partition.
        partition: u32,
        /// The notification's id in the upstream log.
        notification_id: u64,
        /// The notification's topic.
        topic: String,
        /// What went wrong: the handler's error, a panic's message, or the
        /// runtime's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A dead letter to retry or discard that is no longer parked: another
    /// retry processed it, or it was discarded.
    #[error(
        "application `{app}` has no parked notification {notification_id} (`{topic}`) of upstream `{upstream}` partition {partition}; another retry processed it or it was discarded, so list the dead letters again"
    )]
    DeadLetterNotFound {
        /// The process application.
        app: String,
        /// The upstream application whose notification it was.
        upstream: String,
        /// The upstream partition.
        partition: u32,
        /// The notification's id in the upstream log.
        notification_id: u64,
        /// The notification's topic.
        topic: String,
    },

    /// A retry of a parked notification failed again: nothing from it was
    /// recorded, and it stays parked with one more attempt.
    #[error(
        "application `{app}` failed again to process parked notification {notification_id} (`{topic}`) of upstream `{upstream}` partition {partition} (attempt {attempts}); it stays parked, so fix the cause and retry it, or discard it"
    )]
    RetryFailed {
        /// The process application.
        app: String,
        /// The upstream application whose notification it is.
        upstream: String,
        /// The upstream partition.
        partition: u32,
        /// The notification's id in the upstream log.
        notification_id: u64,
        /// The notification's topic.
        topic: String,
        /// The attempts recorded now, this one included.
        attempts: u32,
        /// What went wrong: the handler's error, a panic's message, or the
        /// runtime's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// An aggregate id asked for as one aggregate type that is another.
    #[error(
        "aggregate {originator_id} in application `{app}` is a {found}, not a {expected}; ask the repository for the type that recorded it"
    )]
    AggregateType {
        /// The application.
        app: String,
        /// The aggregate id.
        originator_id: Uuid,
        /// The type asked for.
        expected: &'static str,
        /// The type it is.
        found: &'static str,
    },

    /// A process runner that stopped, or was asked for an application that
    /// is not in its system.
    #[error("runner: {reason}")]
    Runner {
        /// What happened.
        reason: String,
    },

    /// A database operation on an application's tables that failed.
    #[error("database error in application `{app}` while {action}")]
    Database {
        /// The application whose tables were used.
        app: String,
        /// What the recorder was doing.
        action: &'static str,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A database operation of the store itself (not of one application's
    /// tables) that failed.
    #[error("database error in the store `{store}` while {action}")]
    Store {
        /// The store: a SQLite path, or a PostgreSQL server as host:port.
        store: String,
        /// What the store was doing.
        action: &'static str,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A write whose outcome this process never learned: the task that
    /// committed it ended before answering. It may or may not have been
    /// recorded; load the aggregates it touched before trying again.
    #[error(
        "a write to application `{app}` was abandoned before its answer; it may or may not have been recorded, so load what it touched before trying again"
    )]
    WriteAbandoned {
        /// The application written to.
        app: String,
    },

    /// A database server that could not be reached when the store opened:
    /// nothing listens at the address, it did not answer within the connect
    /// timeout, or it refused the login.
    #[error(
        "cannot connect to PostgreSQL at {server} (`{url}`): {reason}; check that the server is running and accepts connections at that address, or fix the URL"
    )]
    Connect {
        /// The server's `host:port`.
        server: String,
        /// The URL, with any password hidden.
        url: String,
        /// What happened: `connection refused`, `no answer within 10 s`, or
        /// the server's own words.
        reason: String,
        /// The driver's error, if there was one (a timeout has none).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// A follower's tracking position past the end of the log it follows:
    /// the upstream's store was replaced, or restored from an older copy,
    /// since the follower processed it. Nothing more is processed, since
    /// the notifications after the position would not be the ones it
    /// expects.
    #[error(
        "application `{app}` has processed `{upstream}` partition {partition} up to notification {position}, but that log now ends at {head}: the upstream's store was replaced or restored from an older copy. Nothing was processed; restore the upstream's store, or give the follower a fresh store if it should start again"
    )]
    UpstreamRewound {
        /// The following application.
        app: String,
        /// The application it follows.
        upstream: String,
        /// The partition.
        partition: u32,
        /// The follower's tracking position.
        position: u64,
        /// The log's highest notification id now.
        head: u64,
    },

    /// An effect to consume that is not in the outbox: it was delivered
    /// (or discarded) already, so its delivery is not recorded again.
    #[error(
        "effect {id} is not in the outbox of application `{app}`: it was delivered or discarded already; nothing was written"
    )]
    EffectGone {
        /// The application whose outbox it was in.
        app: String,
        /// The effect.
        id: Uuid,
    },

    /// Two handlers of effects (or entity messages) given one name: an
    /// effect finds its handler by the name it carries, so it could not
    /// tell them apart. The dispatcher delivers nothing.
    #[error(
        "two handlers of effects are named `{name}`: `{first}` and `{second}`; an effect finds its handler by name, so give each a NAME of its own"
    )]
    HandlerClash {
        /// The name both carry.
        name: &'static str,
        /// The first handler's type.
        first: &'static str,
        /// The second handler's type.
        second: &'static str,
    },

    /// A command sent to an entity refused: it returned an error, so
    /// nothing was recorded and its effects were dropped. The source is the
    /// command's own error.
    #[error("{entity} {id} refused the command: {source}")]
    Refused {
        /// The entity's type.
        entity: &'static str,
        /// The entity's id.
        id: Uuid,
        /// What the command returned.
        #[source]
        source: crate::HandlerError,
    },

    /// A command sent to an entity lost the race to record its events every
    /// time it ran: other writers kept changing the entity first.
    #[error(
        "{entity} {id} is contended: the command ran {attempts} times and each time another writer recorded an event of it first; nothing was recorded. Send it again later, or raise `EntityOptions::max_retries`"
    )]
    EntityContended {
        /// The entity's type.
        entity: &'static str,
        /// The entity's id.
        id: Uuid,
        /// How many times the command ran.
        attempts: u32,
    },

    /// An entity's task ended before it answered a command: the command
    /// panicked, or the runtime is shutting down. The command's events
    /// may or may not have been recorded; read the entity before sending it
    /// again.
    #[error(
        "{entity} {id} stopped before it answered (its command panicked, or the runtime is shutting down); the command may or may not have been recorded, so read the entity before sending it again"
    )]
    EntityStopped {
        /// The entity's type.
        entity: &'static str,
        /// The entity's id.
        id: Uuid,
    },

    /// A log read over HTTP that the server refused or answered with what
    /// is not a log: a status such as 401, 404 or 400, a body that is not
    /// the section format, or a log that is not the one expected. Trying
    /// again does not help; fix the URL, the token or the system.
    #[error("the log of `{app}` at {url} cannot be read: {reason}")]
    Remote {
        /// The application whose log was read.
        app: String,
        /// The URL asked for.
        url: String,
        /// What went wrong, with the server's own words if it gave any.
        reason: String,
    },

    /// A log read over HTTP that failed for a reason that passes: no
    /// answer, a refused connection, a 5xx or 429 status, after the
    /// reader's own retries. A process application waits it out within its
    /// [`outage_budget`](crate::ProcessOptions::outage_budget).
    #[error(
        "the log of `{app}` at {url} is unreachable: {reason}; check that the process serving it is running, or wait for it to come back"
    )]
    RemoteUnavailable {
        /// The application whose log was read.
        app: String,
        /// The URL asked for.
        url: String,
        /// What happened.
        reason: String,
    },

    /// A log server set up with options it cannot serve (a section size
    /// out of range, an empty token, a token for an application it does
    /// not serve), or that could not go on serving (its listener failed).
    #[error("log server: {reason}")]
    LogServer {
        /// What happened.
        reason: String,
    },

    /// The database stayed unreachable for longer than
    /// [`ProcessOptions::outage_budget`](crate::ProcessOptions::outage_budget):
    /// the application stopped. Nothing was lost; started again once the
    /// server is back, it resumes where it stopped.
    #[error(
        "application `{app}` could not reach {server} while {action} for {:.1} s, longer than its outage budget of {:.1} s; it stopped, and resumes where it left off when started again once the server is back (raise `ProcessOptions::outage_budget` to ride out longer outages)",
        .waited.as_secs_f64(),
        .budget.as_secs_f64()
    )]
    Outage {
        /// The application that was waiting.
        app: String,
        /// What it was doing.
        action: String,
        /// Where the database is: `PostgreSQL at host:port`.
        server: String,
        /// How long the database had been unreachable.
        waited: std::time::Duration,
        /// The budget it exceeded.
        budget: std::time::Duration,
        /// The last failure.
        #[source]
        source: Box<Error>,
    },
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to release the claim on `app` in `namespace`.
fn release_claim(app: &str, namespace: Option<&str>) -> String {
    let store = namespace.map_or("store".to_owned(), |ns| format!("store.namespaced(\"{ns}\")?"));
    format!("{store}.release_claim(&AppName::new(\"{app}\")?)")
}

/// ` in namespace `ns`` for a namespace, or nothing.
fn in_namespace(namespace: Option<&str>) -> String {
    namespace.map(|ns| format!(" in namespace `{ns}`")).unwrap_or_default()
}
