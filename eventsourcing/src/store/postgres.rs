//! The PostgreSQL backend: one database shared by processes and machines.
//!
//! Notification ids come from a head row per (application, partition),
//! advanced with `INSERT … ON CONFLICT DO UPDATE … RETURNING` in the same
//! transaction as the events. The row lock it takes is held until commit,
//! so a second writer to the same log waits until the first is visible and
//! then continues from its head: ids are contiguous and become visible in id
//! order. Events go in with one `INSERT … SELECT FROM UNNEST(…)` statement,
//! one round trip whatever the batch size.

mod connect;

use crate::store::statement;
use sqlx::SqlStr;
use std::sync::Arc;

use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::query::{Query, QueryScalar};
use sqlx::{Postgres, Row};
use uuid::Uuid;

mod dead_letters;

use self::dead_letters::DeadLetterSql;
use super::{
    Abort, DeadLetter, Recorder, Tracking, Versions, check_write, db_error, duplicate_in_batch, to_i64, to_u64,
};
use crate::topics::Topic;
use crate::{AppName, Error, Notification, Result, StoredEvent, Timestamp};

/// Connections in the pool.
const MAX_CONNECTIONS: u32 = 16;

/// A PostgreSQL database holding any number of applications' tables.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database a `postgres://` URL names. One connection is
    /// made at once: an unreachable server fails with [`Error::Connect`],
    /// naming its `host:port`, after at most the connect timeout (the URL's
    /// `connect_timeout` parameter, in seconds; 10 by default).
    pub async fn open(url: &str) -> Result<Self> {
        let pool = connect::connect(url, MAX_CONNECTIONS, 4).await?;
        tracing::info!(url = %super::url::redact(url), "opened PostgreSQL store");
        Ok(Self { pool })
    }

    /// Opens the recorder of one application, creating its tables if needed.
    pub async fn recorder(&self, app: &AppName) -> Result<PostgresRecorder> {
        let sql = Arc::new(Sql::new(app.table_prefix()));
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_error(app, "beginning schema creation"))?;
        // Concurrent CREATE … IF NOT EXISTS can still collide in the catalog;
        // a lock per application makes creators take turns.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("eventsourcing:{}", app.table_prefix()))
            .execute(&mut *tx)
            .await
            .map_err(db_error(app, "locking for schema creation"))?;
        for statement in &sql.schema {
            sqlx::query(statement.clone())
                .execute(&mut *tx)
                .await
                .map_err(db_error(app, "creating tables"))?;
        }
        tx.commit().await.map_err(db_error(app, "committing schema creation"))?;
        Ok(PostgresRecorder {
            app: app.clone(),
            pool: self.pool.clone(),
            sql,
        })
    }
}

/// One application's SQL, written once when its recorder opens.
#[derive(Debug)]
struct Sql {
    schema: Vec<SqlStr>,
    /// Events without tracking, as one statement.
    write: SqlStr,
    /// Events with a first tracking position, as one statement.
    write_inserting_tracking: SqlStr,
    /// Events moving a tracking position, as one statement.
    write_updating_tracking: SqlStr,
    insert_tracking: SqlStr,
    update_tracking: SqlStr,
    select_tracking: SqlStr,
    select_events: SqlStr,
    select_existing: SqlStr,
    select_notifications: SqlStr,
    max_notification_id: SqlStr,
    dead_letters: DeadLetterSql,
}

impl Sql {
    fn new(p: &str) -> Self {
        let dead_letters = DeadLetterSql::new(p);
        Self {
            schema: vec![
                statement(format!(
                    "CREATE TABLE IF NOT EXISTS {p}_events (
                        partition_id integer NOT NULL,
                        notification_id bigint NOT NULL,
                        originator_id uuid NOT NULL,
                        originator_version bigint NOT NULL,
                        recorded_at bigint NOT NULL,
                        topic text NOT NULL,
                        state_version integer NOT NULL DEFAULT 1,
                        state bytea NOT NULL,
                        PRIMARY KEY (partition_id, notification_id)
                    )"
                )),
                // Tables made before event versions were stored: their
                // events are at version 1.
                statement(format!(
                    "ALTER TABLE {p}_events ADD COLUMN IF NOT EXISTS state_version integer NOT NULL DEFAULT 1"
                )),
                statement(format!(
                    "CREATE UNIQUE INDEX IF NOT EXISTS {p}_events_aggregate ON {p}_events (originator_id, originator_version)"
                )),
                statement(format!(
                    "CREATE TABLE IF NOT EXISTS {p}_log_heads (
                        partition_id integer PRIMARY KEY,
                        head bigint NOT NULL
                    )"
                )),
                statement(format!(
                    "CREATE TABLE IF NOT EXISTS {p}_tracking (
                        upstream text NOT NULL,
                        partition_id integer NOT NULL,
                        notification_id bigint NOT NULL,
                        PRIMARY KEY (upstream, partition_id)
                    )"
                )),
                dead_letters.schema.clone(),
            ],
            write: statement(write_statement(p, None)),
            write_inserting_tracking: statement(write_statement(
                p,
                Some(format!(
                    "INSERT INTO {p}_tracking (upstream, partition_id, notification_id) VALUES ($8, $9, $10)
                     ON CONFLICT DO NOTHING RETURNING 1"
                )),
            )),
            write_updating_tracking: statement(write_statement(
                p,
                Some(format!(
                    "UPDATE {p}_tracking SET notification_id = $10
                     WHERE upstream = $8 AND partition_id = $9 AND notification_id = $11 RETURNING 1"
                )),
            )),
            insert_tracking: statement(format!(
                "INSERT INTO {p}_tracking (upstream, partition_id, notification_id) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING"
            )),
            update_tracking: statement(format!(
                "UPDATE {p}_tracking SET notification_id = $1
                 WHERE upstream = $2 AND partition_id = $3 AND notification_id = $4"
            )),
            select_tracking: statement(format!(
                "SELECT notification_id FROM {p}_tracking WHERE upstream = $1 AND partition_id = $2"
            )),
            select_events: statement(format!(
                "SELECT originator_id, originator_version, recorded_at, topic, state_version, state FROM {p}_events
                 WHERE originator_id = $1 AND originator_version BETWEEN $2 AND $3 ORDER BY originator_version"
            )),
            select_existing: statement(format!(
                "SELECT e.originator_id, e.originator_version
                 FROM UNNEST($1::uuid[], $2::bigint[]) WITH ORDINALITY AS k(id, version, n)
                 JOIN {p}_events e ON e.originator_id = k.id AND e.originator_version = k.version
                 ORDER BY k.n LIMIT 1"
            )),
            select_notifications: statement(format!(
                "SELECT notification_id, originator_id, originator_version, recorded_at, topic, state_version, state
                 FROM {p}_events WHERE partition_id = $1 AND notification_id >= $2 ORDER BY notification_id LIMIT $3"
            )),
            max_notification_id: statement(format!(
                "SELECT COALESCE(MAX(notification_id), 0) FROM {p}_events WHERE partition_id = $1"
            )),
            dead_letters,
        }
    }
}

/// One statement that moves the tracking position (if `tracking` is given;
/// events are written only if it moved), advances the log's head and inserts
/// the events numbered from it: one round trip, one implicit transaction.
/// The head row's lock, held to the commit, orders the commits.
///
/// Parameters: `$1` partition, `$2`–`$7` the events' ids, versions,
/// timestamps, topics, states and state versions; `$8`–`$11` the upstream, its partition,
/// the new and the previous position.
fn write_statement(p: &str, tracking: Option<String>) -> String {
    let (with_tracking, guard) = match tracking {
        Some(statement) => (format!("t AS ({statement}),"), "WHERE EXISTS (SELECT 1 FROM t)"),
        None => (String::new(), ""),
    };
    format!(
        "WITH {with_tracking}
         h AS (
             INSERT INTO {p}_log_heads (partition_id, head)
             SELECT $1::integer, cardinality($2::uuid[]) {guard}
             ON CONFLICT (partition_id) DO UPDATE SET head = {p}_log_heads.head + EXCLUDED.head
             RETURNING head
         )
         INSERT INTO {p}_events
           (partition_id, notification_id, originator_id, originator_version, recorded_at, topic, state_version, state)
         SELECT $1::integer, h.head - cardinality($2::uuid[]) + e.n, e.id, e.version, e.at, e.topic, e.state_version, e.state
         FROM h, UNNEST($2::uuid[], $3::bigint[], $4::bigint[], $5::text[], $6::bytea[], $7::integer[])
             WITH ORDINALITY AS e(id, version, at, topic, state, state_version, n)
         RETURNING notification_id"
    )
}

/// The recorder of one application in a [`PostgresStore`].
#[derive(Clone, Debug)]
pub struct PostgresRecorder {
    app: AppName,
    pool: PgPool,
    sql: Arc<Sql>,
}

impl PostgresRecorder {
    async fn write(&self, events: &[StoredEvent], tracking: Option<&Tracking>) -> Result<Vec<u64>, Abort> {
        let db = |action| {
            move |source: sqlx::Error| {
                Abort::Other(Error::Database {
                    app: self.app.to_string(),
                    action,
                    source: source.into(),
                })
            }
        };
        if events.is_empty() {
            let Some(t) = tracking else {
                return Ok(Vec::new());
            };
            let moved = self
                .tracking_query(t)
                .execute(&self.pool)
                .await
                .map_err(db("moving the tracking position"))?
                .rows_affected();
            return if moved == 1 {
                Ok(Vec::new())
            } else {
                Err(Abort::Tracking)
            };
        }

        let sql = match tracking {
            None => &self.sql.write,
            Some(t) if t.previous == 0 => &self.sql.write_inserting_tracking,
            Some(_) => &self.sql.write_updating_tracking,
        };
        let mut query = events_query(sql, events);
        if let Some(t) = tracking {
            query = query
                .bind(t.upstream.table_prefix())
                .bind(t.partition as i32)
                .bind(to_i64(t.position));
            if t.previous != 0 {
                query = query.bind(to_i64(t.previous));
            }
        }
        let numbered = match query.fetch_all(&self.pool).await {
            Ok(numbered) => numbered,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(Abort::Events(sqlx::Error::Database(e)));
            }
            Err(e) => return Err(db("writing events")(e)),
        };
        // Nothing written means the tracking position had moved on.
        let Some(first) = numbered.iter().copied().min() else {
            return Err(Abort::Tracking);
        };
        let first = to_u64(first);
        Ok((first..first + events.len() as u64).collect())
    }

    /// Moves the tracking position from `t.previous` to `t.position`; it
    /// moved if one row is affected.
    fn tracking_query<'q>(&'q self, t: &'q Tracking) -> Query<'q, Postgres, PgArguments> {
        if t.previous == 0 {
            sqlx::query(self.sql.insert_tracking.clone())
                .bind(t.upstream.table_prefix())
                .bind(t.partition as i32)
                .bind(to_i64(t.position))
        } else {
            sqlx::query(self.sql.update_tracking.clone())
                .bind(to_i64(t.position))
                .bind(t.upstream.table_prefix())
                .bind(t.partition as i32)
                .bind(to_i64(t.previous))
        }
    }

    /// Turns an aborted write into the error that explains it, reading the
    /// state the conflict left after the rollback.
    async fn explain(&self, abort: Abort, events: &[StoredEvent], tracking: Option<&Tracking>) -> Error {
        match abort {
            Abort::Other(error) => error,
            Abort::Tracking => match tracking {
                Some(t) => match self.tracking_position(&t.upstream, t.partition).await {
                    Ok(found) => Error::TrackingConflict {
                        app: self.app.to_string(),
                        upstream: t.upstream.to_string(),
                        partition: t.partition,
                        expected: t.previous,
                        found,
                    },
                    Err(error) => error,
                },
                None => Error::InvalidWrite {
                    app: self.app.to_string(),
                    reason: "tracking conflict without tracking".to_owned(),
                },
            },
            Abort::Events(source) => {
                let existing = sqlx::query(self.sql.select_existing.clone())
                    .bind(events.iter().map(|e| e.originator_id).collect::<Vec<_>>())
                    .bind(events.iter().map(|e| to_i64(e.originator_version)).collect::<Vec<_>>())
                    .fetch_optional(&self.pool)
                    .await;
                let conflict = |originator_id, version| Error::Concurrency {
                    app: self.app.to_string(),
                    originator_id,
                    version,
                };
                match existing {
                    Ok(Some(row)) => match (row.try_get(0), row.try_get::<i64, _>(1)) {
                        (Ok(id), Ok(version)) => conflict(id, to_u64(version)),
                        (Err(source), _) | (_, Err(source)) => Error::Database {
                            app: self.app.to_string(),
                            action: "reading events",
                            source: source.into(),
                        },
                    },
                    Ok(None) => match duplicate_in_batch(events) {
                        Some(e) => conflict(e.originator_id, e.originator_version),
                        None => Error::Database {
                            app: self.app.to_string(),
                            action: "inserting events",
                            source: source.into(),
                        },
                    },
                    Err(source) => Error::Database {
                        app: self.app.to_string(),
                        action: "reading events",
                        source: source.into(),
                    },
                }
            }
        }
    }
}

/// A write statement with the partition and the events bound (`$1`–`$6`).
fn events_query<'q>(sql: &SqlStr, events: &'q [StoredEvent]) -> QueryScalar<'q, Postgres, i64, PgArguments> {
    sqlx::query_scalar::<_, i64>(sql.clone())
        .bind(super::DEFAULT_PARTITION as i32)
        .bind(events.iter().map(|e| e.originator_id).collect::<Vec<_>>())
        .bind(events.iter().map(|e| to_i64(e.originator_version)).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.timestamp.as_micros()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.topic.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.state.as_slice()).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| i32::try_from(e.state_version).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
}

fn stored_event(row: &PgRow) -> sqlx::Result<StoredEvent> {
    Ok(StoredEvent {
        originator_id: row.try_get("originator_id")?,
        originator_version: to_u64(row.try_get("originator_version")?),
        timestamp: Timestamp::from_micros(row.try_get("recorded_at")?),
        topic: Topic::new(row.try_get("topic")?),
        state_version: u32::try_from(row.try_get::<i32, _>("state_version")?).unwrap_or_default(),
        state: row.try_get("state")?,
    })
}

impl Recorder for PostgresRecorder {
    fn app(&self) -> &AppName {
        &self.app
    }

    async fn insert(&self, events: Vec<StoredEvent>, tracking: Option<&Tracking>) -> Result<Vec<u64>> {
        let events = events.as_slice();
        check_write(&self.app, events, tracking)?;
        match self.write(events, tracking).await {
            Ok(ids) => {
                tracing::debug!(app = %self.app, events = events.len(), first = ids.first(), "committed");
                Ok(ids)
            }
            Err(abort) => Err(self.explain(abort, events, tracking).await),
        }
    }

    async fn select_events(&self, originator_id: Uuid, versions: Versions) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(self.sql.select_events.clone())
            .bind(originator_id)
            .bind(to_i64(versions.from))
            .bind(to_i64(versions.to))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error(&self.app, "reading an aggregate's events"))?;
        rows.iter()
            .map(stored_event)
            .collect::<sqlx::Result<_>>()
            .map_err(db_error(&self.app, "decoding an event row"))
    }

    async fn select_notifications(&self, partition: u32, start: u64, limit: usize) -> Result<Vec<Notification>> {
        let rows = sqlx::query(self.sql.select_notifications.clone())
            .bind(partition as i32)
            .bind(to_i64(start))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error(&self.app, "reading notifications"))?;
        rows.iter()
            .map(|row| {
                Ok(Notification {
                    id: to_u64(row.try_get("notification_id")?),
                    partition,
                    event: stored_event(row)?,
                })
            })
            .collect::<sqlx::Result<_>>()
            .map_err(db_error(&self.app, "decoding a notification row"))
    }

    async fn max_notification_id(&self, partition: u32) -> Result<u64> {
        let max: i64 = sqlx::query_scalar(self.sql.max_notification_id.clone())
            .bind(partition as i32)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error(&self.app, "reading the max notification id"))?;
        Ok(to_u64(max))
    }

    async fn tracking_position(&self, upstream: &AppName, partition: u32) -> Result<u64> {
        let position: Option<i64> = sqlx::query_scalar(self.sql.select_tracking.clone())
            .bind(upstream.table_prefix())
            .bind(partition as i32)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error(&self.app, "reading the tracking position"))?;
        Ok(position.map_or(0, to_u64))
    }

    async fn park(&self, letter: &DeadLetter, tracking: &Tracking) -> Result<()> {
        check_write(&self.app, &[], Some(tracking))?;
        match self.write_park(letter, tracking).await {
            Ok(()) => Ok(()),
            Err(abort) => Err(self.explain(abort, &[], Some(tracking)).await),
        }
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.select_dead_letters().await
    }

    async fn resolve_dead_letter(&self, letter: &DeadLetter, events: Vec<StoredEvent>) -> Result<Vec<u64>> {
        let events = events.as_slice();
        check_write(&self.app, events, None)?;
        match self.write_resolve(letter, events).await {
            Ok(ids) => Ok(ids),
            Err(abort) => Err(self.explain(abort, events, None).await),
        }
    }

    async fn record_failed_retry(&self, letter: &DeadLetter) -> Result<u32> {
        self.update_failed_retry(letter).await
    }
}
