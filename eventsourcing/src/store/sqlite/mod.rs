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
//! (`group_commit.rs`).

mod dead_letters;
mod group_commit;
mod packed;

use crate::store::statement;
use sqlx::SqlStr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row};
use tokio::sync::{Mutex, oneshot};
use uuid::Uuid;

use self::dead_letters::DeadLetterSql;
use self::group_commit::{QueuedWrite, write_group};
use super::{
    Abort, DeadLetter, DeadLetterWrite, Recorder, Tracking, Versions, check_write, db_error, duplicate_in_batch,
    to_i64, to_u64,
};
use crate::topics::Topic;
use crate::{AppName, Error, Notification, Result, StoredEvent, Timestamp};

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
}

#[derive(Debug)]
struct Shared {
    /// In an `Arc` so that a group commit can hold it in a task of its own.
    writer: Arc<Mutex<Writer>>,
    readers: SqlitePool,
    /// Writes waiting for the writer; see "group commit" above.
    queue: std::sync::Mutex<Vec<QueuedWrite>>,
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
    /// names, in WAL mode with full synchronous commits.
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
            .pragma("wal_autocheckpoint", "8192");
        let conn = options.connect().await.map_err(|source| open_error(&path, source))?;
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
            }),
        })
    }

    /// Opens the recorder of one application, creating its tables if needed.
    pub async fn recorder(&self, app: &AppName) -> Result<SqliteRecorder> {
        let sql = Arc::new(Sql::new(app.table_prefix()));
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
            .map_err(db_error(app, "beginning schema creation"))?;
        let created = create_tables(&mut writer.conn, &sql).await;
        let finished = match created {
            Ok(()) => writer.finish("COMMIT").await,
            Err(_) => writer.finish("ROLLBACK").await,
        };
        created.map_err(db_error(app, "creating tables"))?;
        finished.map_err(db_error(app, "committing schema creation"))?;
        Ok(SqliteRecorder {
            app: app.clone(),
            shared: self.shared.clone(),
            sql,
        })
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

    async fn finish(&mut self, statement: &'static str) -> sqlx::Result<()> {
        sqlx::query(statement).execute(&mut self.conn).await?;
        self.in_transaction = false;
        Ok(())
    }
}

/// Creates an application's tables if they do not exist, and brings tables
/// made by earlier versions of this crate up to date: events written before
/// event versions were stored are at version 1.
async fn create_tables(conn: &mut SqliteConnection, sql: &Sql) -> sqlx::Result<()> {
    for statement in &sql.schema {
        sqlx::query(statement.clone()).execute(&mut *conn).await?;
    }
    let has_state_version: bool = sqlx::query_scalar(sql.has_state_version.clone())
        .fetch_one(&mut *conn)
        .await?;
    if !has_state_version {
        sqlx::query(sql.add_state_version.clone()).execute(&mut *conn).await?;
    }
    Ok(())
}

/// One application's SQL, written once when its recorder opens.
#[derive(Debug)]
struct Sql {
    schema: Vec<SqlStr>,
    has_state_version: SqlStr,
    add_state_version: SqlStr,
    /// `insert_events[k]` inserts `2^k` rows.
    insert_events: Vec<SqlStr>,
    advance_head: SqlStr,
    insert_tracking: SqlStr,
    update_tracking: SqlStr,
    select_tracking: SqlStr,
    select_events: SqlStr,
    select_version: SqlStr,
    select_notifications: SqlStr,
    max_notification_id: SqlStr,
    dead_letters: DeadLetterSql,
}

impl Sql {
    fn new(p: &str) -> Self {
        let dead_letters = DeadLetterSql::new(p);
        let columns = "partition_id, notification_id, originator_id, originator_version, recorded_at, topic, state_version, state";
        let insert_events = (0..=MAX_CHUNK.trailing_zeros())
            .map(|k| {
                let rows = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; 1 << k].join(", ");
                statement(format!("INSERT INTO {p}_events ({columns}) VALUES {rows}"))
            })
            .collect();
        Self {
            schema: vec![
                statement(format!(
                    "CREATE TABLE IF NOT EXISTS {p}_events (
                        partition_id INTEGER NOT NULL,
                        notification_id INTEGER NOT NULL,
                        originator_id BLOB NOT NULL,
                        originator_version INTEGER NOT NULL,
                        recorded_at INTEGER NOT NULL,
                        topic TEXT NOT NULL,
                        state_version INTEGER NOT NULL DEFAULT 1,
                        state BLOB NOT NULL,
                        PRIMARY KEY (partition_id, notification_id)
                    ) WITHOUT ROWID"
                )),
                statement(format!(
                    "CREATE UNIQUE INDEX IF NOT EXISTS {p}_events_aggregate ON {p}_events (originator_id, originator_version)"
                )),
                statement(format!(
                    "CREATE TABLE IF NOT EXISTS {p}_log_heads (
                        partition_id INTEGER PRIMARY KEY,
                        head INTEGER NOT NULL
                    )"
                )),
                statement(format!(
                    "CREATE TABLE IF NOT EXISTS {p}_tracking (
                        upstream TEXT NOT NULL,
                        partition_id INTEGER NOT NULL,
                        notification_id INTEGER NOT NULL,
                        PRIMARY KEY (upstream, partition_id)
                    ) WITHOUT ROWID"
                )),
                dead_letters.schema.clone(),
            ],
            has_state_version: statement(format!(
                "SELECT EXISTS (SELECT 1 FROM pragma_table_info('{p}_events') WHERE name = 'state_version')"
            )),
            add_state_version: statement(format!(
                "ALTER TABLE {p}_events ADD COLUMN state_version INTEGER NOT NULL DEFAULT 1"
            )),
            insert_events,
            advance_head: statement(format!(
                "INSERT INTO {p}_log_heads (partition_id, head) VALUES (?, ?)
                 ON CONFLICT (partition_id) DO UPDATE SET head = head + excluded.head RETURNING head"
            )),
            insert_tracking: statement(format!(
                "INSERT INTO {p}_tracking (upstream, partition_id, notification_id) VALUES (?, ?, ?)
                 ON CONFLICT DO NOTHING"
            )),
            update_tracking: statement(format!(
                "UPDATE {p}_tracking SET notification_id = ? WHERE upstream = ? AND partition_id = ? AND notification_id = ?"
            )),
            select_tracking: statement(format!(
                "SELECT notification_id FROM {p}_tracking WHERE upstream = ? AND partition_id = ?"
            )),
            select_events: statement(format!(
                "SELECT originator_id, originator_version, recorded_at, topic, state_version, state FROM {p}_events
                 WHERE originator_id = ? AND originator_version BETWEEN ? AND ? ORDER BY originator_version"
            )),
            select_version: statement(format!(
                "SELECT 1 FROM {p}_events WHERE originator_id = ? AND originator_version = ?"
            )),
            // One row holding the whole page as a JSON array (see
            // `select_notifications`); binary columns as hex.
            select_notifications: statement(format!(
                "SELECT json_group_array(json_array(
                     notification_id, hex(originator_id), originator_version, recorded_at, topic, state_version, hex(state)))
                 FROM (SELECT * FROM {p}_events WHERE partition_id = ? AND notification_id >= ?
                       ORDER BY notification_id LIMIT ?)"
            )),
            max_notification_id: statement(format!(
                "SELECT COALESCE(MAX(notification_id), 0) FROM {p}_events WHERE partition_id = ?"
            )),
            dead_letters,
        }
    }
}

/// The recorder of one application in a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteRecorder {
    app: AppName,
    shared: Arc<Shared>,
    sql: Arc<Sql>,
}

impl SqliteRecorder {
    async fn write(
        &self,
        conn: &mut SqliteConnection,
        events: &mut [StoredEvent],
        tracking: Option<&Tracking>,
        dead_letter: Option<&DeadLetterWrite>,
    ) -> Result<Vec<u64>, Abort> {
        let db = |action| {
            move |source: sqlx::Error| {
                Abort::Other(Error::Database {
                    app: self.app.to_string(),
                    action,
                    source: source.into(),
                })
            }
        };
        if let Some(t) = tracking {
            let upstream = t.upstream.table_prefix();
            let query = if t.previous == 0 {
                sqlx::query(self.sql.insert_tracking.clone())
                    .bind(upstream)
                    .bind(t.partition)
                    .bind(to_i64(t.position))
            } else {
                sqlx::query(self.sql.update_tracking.clone())
                    .bind(to_i64(t.position))
                    .bind(upstream)
                    .bind(t.partition)
                    .bind(to_i64(t.previous))
            };
            let moved = query
                .execute(&mut *conn)
                .await
                .map_err(db("moving the tracking position"))?
                .rows_affected()
                == 1;
            if !moved {
                return Err(Abort::Tracking);
            }
        }
        let mut answer = Vec::new();
        if let Some(op) = dead_letter {
            answer = self.write_dead_letter(conn, op).await?;
        }
        if events.is_empty() {
            return Ok(answer);
        }

        let partition = super::DEFAULT_PARTITION;
        let head: i64 = sqlx::query_scalar(self.sql.advance_head.clone())
            .bind(partition)
            .bind(events.len() as i64)
            .fetch_one(&mut *conn)
            .await
            .map_err(db("advancing the log head"))?;
        let first = to_u64(head) + 1 - events.len() as u64;
        let ids: Vec<u64> = (first..first + events.len() as u64).collect();

        // The states move into the statement's arguments (the driver would
        // copy a borrowed one); what stays behind identifies each event,
        // which is all that explaining a conflict needs.
        let mut remaining = events.len();
        let mut rows = events.iter_mut().zip(&ids);
        while remaining > 0 {
            let k = (usize::BITS - 1 - remaining.min(MAX_CHUNK).leading_zeros()) as usize;
            let mut query = sqlx::query(self.sql.insert_events[k].clone());
            for (event, id) in rows.by_ref().take(1 << k) {
                query = query
                    .bind(partition)
                    .bind(to_i64(*id))
                    .bind(event.originator_id)
                    .bind(to_i64(event.originator_version))
                    .bind(event.timestamp.as_micros())
                    .bind(event.topic.as_shared().clone())
                    .bind(event.state_version)
                    .bind(std::mem::take(&mut event.state));
            }
            match query.execute(&mut *conn).await {
                Ok(_) => {}
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Err(Abort::Events(sqlx::Error::Database(e)));
                }
                Err(e) => return Err(db("inserting events")(e)),
            }
            remaining -= 1 << k;
        }
        Ok(ids)
    }

    /// Turns an aborted write into the error that explains it, reading the
    /// state the conflict left (after the rollback, with the writer held).
    async fn explain(
        &self,
        conn: &mut SqliteConnection,
        abort: Abort,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
    ) -> Error {
        match abort {
            Abort::Other(error) => error,
            Abort::Tracking => {
                let Some(t) = tracking else {
                    return Error::InvalidWrite {
                        app: self.app.to_string(),
                        reason: "tracking conflict without tracking".to_owned(),
                    };
                };
                let found: Result<Option<i64>, _> = sqlx::query_scalar(self.sql.select_tracking.clone())
                    .bind(t.upstream.table_prefix())
                    .bind(t.partition)
                    .fetch_optional(&mut *conn)
                    .await;
                match found {
                    Ok(found) => Error::TrackingConflict {
                        app: self.app.to_string(),
                        upstream: t.upstream.to_string(),
                        partition: t.partition,
                        expected: t.previous,
                        found: found.map_or(0, to_u64),
                    },
                    Err(source) => Error::Database {
                        app: self.app.to_string(),
                        action: "reading the tracking position",
                        source: source.into(),
                    },
                }
            }
            Abort::Events(source) => {
                for event in events {
                    let exists = sqlx::query(self.sql.select_version.clone())
                        .bind(event.originator_id)
                        .bind(to_i64(event.originator_version))
                        .fetch_optional(&mut *conn)
                        .await;
                    match exists {
                        Ok(None) => {}
                        Ok(Some(_)) => return self.conflict(event),
                        Err(source) => {
                            return Error::Database {
                                app: self.app.to_string(),
                                action: "reading events",
                                source: source.into(),
                            };
                        }
                    }
                }
                match duplicate_in_batch(events) {
                    Some(event) => self.conflict(event),
                    None => Error::Database {
                        app: self.app.to_string(),
                        action: "inserting events",
                        source: source.into(),
                    },
                }
            }
        }
    }

    /// Queues a write for the writer and waits for its answer.
    async fn enqueue(
        &self,
        events: Vec<StoredEvent>,
        tracking: Option<&Tracking>,
        dead_letter: Option<DeadLetterWrite>,
    ) -> Result<Vec<u64>> {
        let (answer, answered) = oneshot::channel();
        self.shared.lock_queue().push(QueuedWrite {
            recorder: self.clone(),
            events,
            tracking: tracking.cloned(),
            dead_letter,
            answer,
        });
        // Whoever holds the writer next records everything queued by then,
        // this write included (unless an earlier holder did). The group is
        // written by a task of its own, so that a caller that stops waiting
        // cannot interrupt a transaction that holds other callers' writes.
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut writer = shared.writer.clone().lock_owned().await;
            let group = std::mem::take(&mut *shared.lock_queue());
            write_group(&mut writer, group).await;
        });
        answered.await.unwrap_or_else(|_| {
            Err(Error::WriteAbandoned {
                app: self.app.to_string(),
            })
        })
    }

    fn conflict(&self, event: &StoredEvent) -> Error {
        Error::Concurrency {
            app: self.app.to_string(),
            originator_id: event.originator_id,
            version: event.originator_version,
        }
    }
}

fn stored_event(row: &sqlx::sqlite::SqliteRow) -> sqlx::Result<StoredEvent> {
    Ok(StoredEvent {
        originator_id: row.try_get("originator_id")?,
        originator_version: to_u64(row.try_get("originator_version")?),
        timestamp: Timestamp::from_micros(row.try_get("recorded_at")?),
        topic: Topic::new(row.try_get("topic")?),
        state_version: row.try_get("state_version")?,
        state: row.try_get("state")?,
    })
}

impl Recorder for SqliteRecorder {
    fn app(&self) -> &AppName {
        &self.app
    }

    async fn insert(&self, events: Vec<StoredEvent>, tracking: Option<&Tracking>) -> Result<Vec<u64>> {
        check_write(&self.app, &events, tracking)?;
        self.enqueue(events, tracking, None).await
    }

    async fn select_events(&self, originator_id: Uuid, versions: Versions) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(self.sql.select_events.clone())
            .bind(originator_id)
            .bind(to_i64(versions.from))
            .bind(to_i64(versions.to))
            .fetch_all(&self.shared.readers)
            .await
            .map_err(db_error(&self.app, "reading an aggregate's events"))?;
        rows.iter()
            .map(stored_event)
            .collect::<sqlx::Result<_>>()
            .map_err(db_error(&self.app, "decoding an event row"))
    }

    /// Reads a page of notifications as one row, a JSON array: sqlx hands
    /// rows over from its SQLite thread one at a time, each a wake-up of
    /// the reading task and a dozen small allocations freed on the other
    /// thread, which made reading the log the costliest part of following
    /// it. One row is one hand-off.
    async fn select_notifications(&self, partition: u32, start: u64, limit: usize) -> Result<Vec<Notification>> {
        let page: String = sqlx::query_scalar(self.sql.select_notifications.clone())
            .bind(partition)
            .bind(to_i64(start))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_one(&self.shared.readers)
            .await
            .map_err(db_error(&self.app, "reading notifications"))?;
        let mut notifications = packed::notifications(&page, partition).map_err(|source| Error::Database {
            app: self.app.to_string(),
            action: "decoding a page of notifications",
            source: source.into(),
        })?;
        notifications.sort_unstable_by_key(|n| n.id);
        Ok(notifications)
    }

    async fn max_notification_id(&self, partition: u32) -> Result<u64> {
        let max: i64 = sqlx::query_scalar(self.sql.max_notification_id.clone())
            .bind(partition)
            .fetch_one(&self.shared.readers)
            .await
            .map_err(db_error(&self.app, "reading the max notification id"))?;
        Ok(to_u64(max))
    }

    async fn tracking_position(&self, upstream: &AppName, partition: u32) -> Result<u64> {
        let position: Option<i64> = sqlx::query_scalar(self.sql.select_tracking.clone())
            .bind(upstream.table_prefix())
            .bind(partition)
            .fetch_optional(&self.shared.readers)
            .await
            .map_err(db_error(&self.app, "reading the tracking position"))?;
        Ok(position.map_or(0, to_u64))
    }

    async fn park(&self, letter: &DeadLetter, tracking: &Tracking) -> Result<()> {
        check_write(&self.app, &[], Some(tracking))?;
        self.enqueue(Vec::new(), Some(tracking), Some(DeadLetterWrite::Park(letter.clone())))
            .await
            .map(drop)
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.select_dead_letters().await
    }

    async fn resolve_dead_letter(&self, letter: &DeadLetter, events: Vec<StoredEvent>) -> Result<Vec<u64>> {
        check_write(&self.app, &events, None)?;
        self.enqueue(events, None, Some(DeadLetterWrite::Resolve(letter.clone())))
            .await
    }

    async fn record_failed_retry(&self, letter: &DeadLetter) -> Result<u32> {
        let answer = self
            .enqueue(Vec::new(), None, Some(DeadLetterWrite::Failed(letter.clone())))
            .await?;
        Ok(answer
            .first()
            .map_or(0, |&attempts| u32::try_from(attempts).unwrap_or(u32::MAX)))
    }
}
