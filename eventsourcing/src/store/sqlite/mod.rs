//! The SQLite backend: the embedded default, one file, no server.
//!
//! SQLite lets one connection write at a time. This store keeps one writer
//! connection behind an async mutex, so writers in this process queue
//! without busy-waiting, and starts every write with `BEGIN IMMEDIATE`, so
//! a writer in another process waits (up to the busy timeout) instead of
//! failing half-way. Because writes are serial, notification ids taken from
//! the log's head row inside the write transaction are contiguous and
//! become visible in id order. Readers use a small pool and, in WAL mode,
//! never block the writer.
//!
//! Writes that queue while one holds the writer are committed together
//! (`group_commit.rs`), and each commit is flushed to disk by a thread of
//! its own while the writer goes on (`flush.rs`).

mod flush;
mod group_commit;
mod packed;
mod recent;
mod single_trip;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, SqlStr};
use tokio::sync::{Mutex, oneshot};

use self::group_commit::{QueuedWrite, write_group};
use super::claims::Claim;
use super::db_error;
use super::sql::{
    Abort, ColumnTypes, Dialect, SqlRecorder, Write, recorder_over_sql, statement, to_i32, to_i64, to_u64,
};
use crate::{AppName, Error, Result};

/// How long a write waits for another process's write to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections for concurrent reads.
const READERS: u32 = 4;
/// The largest multi-row insert; writes are split into power-of-two chunks
/// so that a handful of prepared statements serve every batch size.
const MAX_CHUNK: usize = 256;

/// A SQLite database file holding any number of applications' tables.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    shared: Arc<Shared>,
    /// Where this handle's recorders keep their tables (set by
    /// [`Store::namespaced`](crate::Store::namespaced)).
    pub(in crate::store) namespace: Option<crate::Namespace>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    /// In an `Arc` so that a group commit can hold it in a task of its own.
    writer: Arc<Mutex<Writer>>,
    readers: SqlitePool,
    /// Writes waiting for the writer; see "group commit" above.
    queue: std::sync::Mutex<Vec<QueuedWrite>>,
    /// Where commits are told (in this process only: other processes on
    /// the file poll).
    feed: crate::store::CommitFeed,
    /// The notifications committed last, for followers to read from memory.
    recent: recent::Recent,
    /// Makes commits durable after the writer made them (`flush.rs`).
    flusher: flush::Flusher,
}

#[derive(Debug)]
struct Writer {
    conn: SqliteConnection,
    /// Set while a transaction is open, so that a write whose future was
    /// dropped half-way is rolled back before the next one begins.
    in_transaction: bool,
}

/// Why a SQLite file did not open, naming it and what to check.
fn open_error(path: &std::path::Path, source: sqlx::Error) -> Error {
    let directory = path.parent().filter(|dir| !dir.as_os_str().is_empty());
    let hint = match directory {
        Some(dir) if !dir.is_dir() => format!(
            "the directory `{}` does not exist; create it, or choose a file in a directory that does",
            dir.display()
        ),
        _ => {
            "check that the path is a SQLite database (or a new file) in a directory this process can write".to_owned()
        }
    };
    Error::StoreOpen {
        location: path.display().to_string(),
        hint,
        source: Box::new(source),
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the SQLite file a `sqlite://PATH` URL
    /// names, in WAL mode, its commits flushed to disk before they are
    /// answered or read (`flush.rs`).
    pub async fn open(url: &str) -> Result<Self> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(Error::StoreUrl {
                url: url.to_owned(),
                reason: "a SQLite in-memory database is private to one connection",
            });
        }
        let options = SqliteConnectOptions::from_str(url).map_err(|source| Error::Store {
            store: url.to_owned(),
            action: "reading the SQLite URL",
            source: source.into(),
        })?;
        let path = options.get_filename().to_path_buf();
        if path.as_os_str().is_empty() {
            return Err(Error::StoreUrl {
                url: url.to_owned(),
                reason: "a SQLite URL needs a file path, such as `sqlite://orders.db`",
            });
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            // Room for the pages a busy log and its index touch, and fewer
            // checkpoints (each one syncs the database file).
            .pragma("cache_size", "-65536")
            .pragma("wal_autocheckpoint", "8192")
            .pragma("temp_store", "memory");
        // The writer's commits are flushed by the flusher (`flush.rs`).
        let mut conn = options
            .clone()
            .synchronous(SqliteSynchronous::Normal)
            .connect()
            .await
            .map_err(|source| open_error(&path, source))?;
        let flusher = start_flusher(&mut conn, url)
            .await
            .map_err(|source| open_error(&path, source))?;
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .min_connections(0)
            .connect_with(options)
            .await
            .map_err(|source| open_error(&path, source))?;
        tracing::info!(url, "opened SQLite store");
        Ok(Self {
            shared: Arc::new(Shared {
                writer: Arc::new(Mutex::new(Writer {
                    conn,
                    in_transaction: false,
                })),
                readers,
                queue: std::sync::Mutex::new(Vec::new()),
                feed: crate::store::CommitFeed::default(),
                recent: recent::Recent::default(),
                flusher,
            }),
            namespace: None,
        })
    }

    /// Opens the recorder of `app` (already in its namespace), with
    /// `partitions` if it is new, taking or releasing the claim on it in
    /// the transaction of its migration (see
    /// [`SCHEMA_VERSION`](crate::store::SCHEMA_VERSION)); what
    /// [`Store::recorder`](crate::Store::recorder) calls.
    pub(crate) async fn recorder_with(
        &self,
        app: &AppName,
        partitions: Option<u32>,
        claim: Claim,
    ) -> Result<SqliteRecorder> {
        if let Some(failed) = self.shared.flusher.failed() {
            return Err(flush_error(app)(failed));
        }
        let mut writer = self.shared.writer.lock().await;
        writer
            .reset()
            .await
            .map_err(db_error(app, "rolling back an interrupted write"))?;
        // In one write transaction, so that processes opening one file at
        // once take turns.
        writer
            .begin()
            .await
            .map_err(db_error(app, "beginning a schema migration"))?;
        let migrated = SqlRecorder::<Sqlite>::open_tables(&mut writer.conn, app, partitions, claim).await;
        let finished = match migrated {
            Ok(_) => writer.finish("COMMIT").await,
            Err(_) => writer.finish("ROLLBACK").await,
        };
        drop(writer);
        // What the migration wrote, or read to refuse (a claim another
        // process just made), is on disk before anyone is told.
        let flushed = self.shared.flusher.flush().await;
        let partitions = migrated?;
        finished.map_err(db_error(app, "committing a schema migration"))?;
        flushed.map_err(flush_error(app))?;
        let feed = self.shared.feed.clone();
        Ok(SqliteRecorder(SqlRecorder::new(
            app,
            partitions,
            self.shared.clone(),
            feed,
        )))
    }
}

/// Starts flushing the log of the file the writer `conn` has open, named
/// as SQLite names it (absolute, symbolic links resolved), once it is sure
/// the file is in WAL mode. SQLite keeps the log's index in the `-shm` file
/// unless the file is locked exclusively (a locking mode, or a VFS such as
/// `unix-excl` chosen in the URL); a `-shm` file left beside it then tells
/// nothing.
async fn start_flusher(conn: &mut SqliteConnection, url: &str) -> sqlx::Result<flush::Flusher> {
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *conn).await?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(sqlx::Error::Configuration(
            format!("the file is in journal mode `{mode}`, not `wal`, and SQLite did not change it").into(),
        ));
    }
    let file: String = sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
        .fetch_one(&mut *conn)
        .await?;
    let locking: String = sqlx::query_scalar("PRAGMA locking_mode").fetch_one(&mut *conn).await?;
    let shared_index = locking.eq_ignore_ascii_case("normal") && !url.contains("vfs=");
    Ok(flush::Flusher::start(std::path::Path::new(&file), shared_index)?)
}

impl SqliteStore {
    /// A subscription to the commits of this store's recorders, in this
    /// process (other processes on the file are not heard: their followers
    /// poll).
    pub fn commits(&self) -> crate::store::Commits {
        self.shared.feed.subscribe(self.namespace.as_ref())
    }
}

impl Writer {
    /// Rolls back a transaction left open. One that SQLite already ended
    /// (a COMMIT that ran although its caller stopped waiting, or an error
    /// that rolled everything back) counts as rolled back.
    async fn reset(&mut self) -> sqlx::Result<()> {
        if self.in_transaction {
            match sqlx::query("ROLLBACK").execute(&mut self.conn).await {
                Ok(_) => {}
                Err(sqlx::Error::Database(e)) if e.message().contains("no transaction is active") => {}
                Err(error) => return Err(error),
            }
            self.in_transaction = false;
        }
        Ok(())
    }

    async fn begin(&mut self) -> sqlx::Result<()> {
        self.reset().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut self.conn).await?;
        self.in_transaction = true;
        Ok(())
    }

    /// Begins a group of writes, with the savepoint of its first write
    /// (`single_trip.rs`).
    async fn begin_group(&mut self) -> sqlx::Result<()> {
        self.reset().await?;
        // Set first: if the string fails half-way, `reset` rolls back
        // whatever began (and takes "no transaction" as done).
        self.in_transaction = true;
        sqlx::query("BEGIN IMMEDIATE; SAVEPOINT write")
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    async fn finish(&mut self, statement: &'static str) -> sqlx::Result<()> {
        sqlx::query(statement).execute(&mut self.conn).await?;
        self.in_transaction = false;
        Ok(())
    }
}

/// Why a commit or a read of `app` is in doubt: the write-ahead log did not
/// reach the disk.
pub(super) fn flush_error(app: &AppName) -> impl FnOnce(Arc<std::io::Error>) -> Error + '_ {
    move |source| Error::Database {
        app: app.to_string(),
        action: "flushing the SQLite write-ahead log to disk (the commit may be lost: check the disk, then open the store again)",
        source: Box::new(source),
    }
}

/// SQLite, for the generic SQL recorder.
#[derive(Debug)]
pub(crate) struct Sqlite;

/// The SQLite statements: multi-row inserts of events.
#[derive(Debug)]
pub(crate) struct SqliteStatements {
    /// `insert_events[k]` inserts `2^k` rows.
    insert_events: Vec<SqlStr>,
    /// A page of notifications as one row: a JSON array (see
    /// `select_notifications`), binary columns as hex.
    select_packed_notifications: SqlStr,
    /// Writes as one string each (`single_trip.rs`).
    write_strings: single_trip::WriteStrings,
}

impl Dialect for Sqlite {
    type Db = sqlx::Sqlite;
    type Handle = Arc<Shared>;
    type Statements = SqliteStatements;

    const NAME: &'static str = "SQLite";
    const TYPES: ColumnTypes = ColumnTypes {
        int: "INTEGER",
        bigint: "INTEGER",
        uuid: "BLOB",
        text: "TEXT",
        bytes: "BLOB",
        clustered: " WITHOUT ROWID",
    };
    const NUMBERED_PARAMETERS: bool = false;
    const TABLE_EXISTS: &'static str = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?";
    const COLUMN_EXISTS: &'static str = "SELECT 1 FROM pragma_table_info(?) WHERE name = ?";

    fn statements(p: &str) -> SqliteStatements {
        let columns = "partition_id, notification_id, originator_id, originator_version, recorded_at, topic, state_version, state";
        SqliteStatements {
            insert_events: (0..=MAX_CHUNK.trailing_zeros())
                .map(|k| {
                    let rows = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; 1 << k].join(", ");
                    statement::<Self>(format!("INSERT INTO {p}_events ({columns}) VALUES {rows}"))
                })
                .collect(),
            select_packed_notifications: statement::<Self>(format!(
                "SELECT json_group_array(json_array(
                     notification_id, hex(originator_id), originator_version, recorded_at, topic, state_version, hex(state)))
                 FROM (SELECT * FROM {p}_events WHERE partition_id = ? AND notification_id >= ?
                       ORDER BY notification_id LIMIT ?)"
            )),
            write_strings: single_trip::WriteStrings::default(),
        }
    }

    /// Notifications this process committed a moment ago come from memory
    /// (`recent.rs`), the rest from the file (`select_packed`).
    async fn select_notifications(
        recorder: &SqlRecorder<Self>,
        partition: u32,
        start: u64,
        limit: usize,
    ) -> Result<Vec<crate::Notification>> {
        let prefix = recorder.app.table_prefix();
        let mut kept = recorder.handle.recent.read(prefix, partition, start, limit);
        if kept.len() >= limit {
            return Ok(kept);
        }
        let read = Self::select_packed(recorder, partition, start + kept.len() as u64, limit - kept.len()).await?;
        if kept.is_empty() {
            return Ok(read);
        }
        kept.extend(read);
        Ok(kept)
    }

    fn readers(shared: &Arc<Shared>) -> &SqlitePool {
        &shared.readers
    }

    /// A read may have seen commits not yet flushed, this process's or
    /// another's: it waits for a flush that begins after it, unless nothing
    /// was committed since the last one began.
    async fn after_read(recorder: &SqlRecorder<Self>) -> Result<()> {
        recorder
            .handle
            .flusher
            .flush_unless_flushed()
            .await
            .map_err(flush_error(&recorder.app))
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Queues the write for the writer and waits for its answer.
    async fn write(recorder: &SqlRecorder<Self>, write: Write) -> Result<Vec<u64>> {
        let (answer, answered) = oneshot::channel();
        let shared = &recorder.handle;
        let prepared = single_trip::prepare(recorder, &write);
        shared.lock_queue().push(QueuedWrite {
            recorder: recorder.clone(),
            write,
            prepared,
            answer,
        });
        // Whoever holds the writer next records everything queued by then,
        // this write included (unless an earlier holder did). The group is
        // written by a task of its own, so that a caller that stops waiting
        // cannot interrupt a transaction that holds other callers' writes.
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut writer = shared.writer.clone().lock_owned().await;
            let group = std::mem::take(&mut *shared.lock_queue());
            write_group(&shared, &mut writer, group).await;
        });
        answered.await.unwrap_or_else(|_| {
            Err(Error::WriteAbandoned {
                app: recorder.app.to_string(),
            })
        })
    }

    /// Advances the head, then inserts the rows in power-of-two chunks.
    async fn insert_events(
        recorder: &SqlRecorder<Self>,
        conn: &mut SqliteConnection,
        write: &Write,
    ) -> Result<Vec<u64>, Abort> {
        let (partition, events) = (to_i32(write.partition), &write.events);
        let head: i64 = sqlx::query_scalar(recorder.sql.advance_head.clone())
            .bind(partition)
            .bind(events.len() as i64)
            .fetch_one(&mut *conn)
            .await
            .map_err(recorder.abort("advancing the log head"))?;
        let first = to_u64(head) + 1 - events.len() as u64;
        let ids: Vec<u64> = (first..first + events.len() as u64).collect();

        let mut rows = events.iter().zip(&ids);
        let mut remaining = events.len();
        while remaining > 0 {
            let k = (usize::BITS - 1 - remaining.min(MAX_CHUNK).leading_zeros()) as usize;
            let mut query = sqlx::query(recorder.sql.dialect.insert_events[k].clone());
            for (event, id) in rows.by_ref().take(1 << k) {
                query = query
                    .bind(partition)
                    .bind(to_i64(*id))
                    .bind(event.originator_id)
                    .bind(to_i64(event.originator_version))
                    .bind(event.timestamp.as_micros())
                    .bind(event.topic.as_shared().clone())
                    .bind(to_i32(event.state_version))
                    .bind(event.state.as_slice());
            }
            query
                .execute(&mut *conn)
                .await
                .map_err(|error| recorder.insert_failed(error))?;
            remaining -= 1 << k;
        }
        Ok(ids)
    }
}

impl Sqlite {
    /// Reads a page of notifications as one row, a JSON array: sqlx hands
    /// rows over from its SQLite thread one at a time, each a wake-up of
    /// the reading task and a dozen small allocations freed on the other
    /// thread, which made reading the log the costliest part of following
    /// it. One row is one hand-off.
    async fn select_packed(
        recorder: &SqlRecorder<Self>,
        partition: u32,
        start: u64,
        limit: usize,
    ) -> Result<Vec<crate::Notification>> {
        let page: String = sqlx::query_scalar(recorder.sql.dialect.select_packed_notifications.clone())
            .bind(to_i32(partition))
            .bind(to_i64(start))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_one(&recorder.handle.readers)
            .await
            .map_err(db_error(&recorder.app, "reading notifications"))?;
        let mut notifications = packed::notifications(&page, partition).map_err(|source| Error::Database {
            app: recorder.app.to_string(),
            action: "decoding a page of notifications",
            source: source.into(),
        })?;
        notifications.sort_unstable_by_key(|n| n.id);
        // An empty page tells nothing that a flush could take back (but
        // after a failed flush, nothing is read).
        if !notifications.is_empty() {
            Self::after_read(recorder).await?;
        } else if let Some(failed) = recorder.handle.flusher.failed() {
            return Err(flush_error(&recorder.app)(failed));
        }
        Ok(notifications)
    }
}

/// The recorder of one application in a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteRecorder(SqlRecorder<Sqlite>);

recorder_over_sql!(SqliteRecorder, Sqlite);
