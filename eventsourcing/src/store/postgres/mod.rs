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
mod leases;
mod notify;

pub(crate) use leases::LeaseBoard;

use std::future::Future;

use sqlx::SqlStr;
use sqlx::postgres::PgArguments;
use sqlx::postgres::{PgConnection, PgPool, PgQueryResult};
use sqlx::query::QueryScalar;

use super::claims::Claim;
use super::db_error;
use super::sql::{
    Abort, ColumnTypes, Dialect, SqlRecorder, Write, recorder_over_sql, statement, to_i32, to_i64, to_u64,
};
use crate::{AppName, Result, StoredEvent};

/// Connections in the pool.
const MAX_CONNECTIONS: u32 = 16;

/// A PostgreSQL database holding any number of applications' tables.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// Names this store in its announcements of commits.
    origin: uuid::Uuid,
    feed: crate::store::CommitFeed,
    /// Listens for other stores' commits, once someone subscribes.
    listener: std::sync::Arc<tokio::sync::OnceCell<std::sync::Arc<notify::Listener>>>,
    /// Where this handle's recorders keep their tables (set by
    /// [`Store::namespaced`](crate::Store::namespaced)).
    pub(in crate::store) namespace: Option<crate::Namespace>,
}

impl PostgresStore {
    /// Connects to the database a `postgres://` URL names. One connection is
    /// made at once: an unreachable server fails with [`Error::Connect`](crate::Error::Connect),
    /// naming its `host:port`, after at most the connect timeout (the URL's
    /// `connect_timeout` parameter, in seconds; 10 by default).
    pub async fn open(url: &str) -> Result<Self> {
        let pool = connect::connect(url, MAX_CONNECTIONS, 4).await?;
        tracing::info!(url = %super::url::redact(url), "opened PostgreSQL store");
        let origin = uuid::Uuid::new_v4();
        let feed = crate::store::CommitFeed::announcing(notify::start_announcer(pool.clone(), origin));
        Ok(Self {
            pool,
            origin,
            feed,
            listener: Default::default(),
            namespace: None,
        })
    }

    /// A subscription to the commits of events to this database's logs, by
    /// this process and (through `LISTEN`) by every other.
    pub async fn commits(&self) -> Result<crate::store::Commits> {
        notify::subscribe(
            &self.pool,
            self.origin,
            &self.feed,
            &self.listener,
            self.namespace.as_ref(),
        )
        .await
    }

    /// The recorder of `app` (with its namespace), its tables created or
    /// brought up to date (see [`SCHEMA_VERSION`](crate::store::SCHEMA_VERSION))
    /// in one transaction with the claim on them; with `partitions` for a
    /// new log. [`Store::recorder`](crate::Store::recorder) opens it.
    pub(crate) async fn recorder_with(
        &self,
        app: &AppName,
        partitions: Option<u32>,
        claim: Claim,
    ) -> Result<PostgresRecorder> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_error(app, "beginning a schema migration"))?;
        // Processes opening one database at once take turns: a lock for the
        // transaction, taken before anything else, so that even the table
        // of versions is created once.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('eventsourcing schema'))")
            .execute(&mut *tx)
            .await
            .map_err(db_error(app, "locking for a schema migration"))?;
        let partitions = SqlRecorder::<Postgres>::open_tables(&mut tx, app, partitions, claim).await?;
        tx.commit()
            .await
            .map_err(db_error(app, "committing a schema migration"))?;
        let feed = self.feed.clone();
        Ok(PostgresRecorder(SqlRecorder::new(
            app,
            partitions,
            self.pool.clone(),
            feed,
        )))
    }
}

/// PostgreSQL, for the generic SQL recorder.
#[derive(Debug)]
pub(crate) struct Postgres;

/// The PostgreSQL statements: events, the log head and a tracking move
/// written by one statement.
#[derive(Debug)]
pub(crate) struct PostgresStatements {
    /// Events without tracking.
    write: SqlStr,
    /// Events with a first tracking position.
    write_inserting_tracking: SqlStr,
    /// Events moving a tracking position.
    write_updating_tracking: SqlStr,
    /// Events moving a tracking position under a worker's lease epoch.
    write_updating_fenced_tracking: SqlStr,
}

impl Dialect for Postgres {
    const NAME: &'static str = "PostgreSQL";
    const NUMBERED_PARAMETERS: bool = true;
    const TYPES: ColumnTypes = ColumnTypes {
        int: "integer",
        bigint: "bigint",
        uuid: "uuid",
        text: "text",
        bytes: "bytea",
        clustered: "",
    };

    type Db = sqlx::Postgres;
    type Handle = PgPool;
    type Statements = PostgresStatements;

    const TABLE_EXISTS: &'static str =
        "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?";
    const COLUMN_EXISTS: &'static str = "SELECT 1 FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = ? AND column_name = ?";

    fn statements(p: &str) -> PostgresStatements {
        PostgresStatements {
            write: statement::<Self>(write_statement(p, None)),
            write_inserting_tracking: statement::<Self>(write_statement(
                p,
                Some(format!(
                    "INSERT INTO {p}_tracking (upstream, partition_id, notification_id) VALUES ($8, $9, $10)
                     ON CONFLICT (upstream, partition_id) DO UPDATE SET notification_id = EXCLUDED.notification_id
                     WHERE {p}_tracking.notification_id = 0
                     RETURNING 1"
                )),
            )),
            write_updating_tracking: statement::<Self>(write_statement(
                p,
                Some(format!(
                    "UPDATE {p}_tracking SET notification_id = $10
                     WHERE upstream = $8 AND partition_id = $9 AND notification_id = $11 RETURNING 1"
                )),
            )),
            write_updating_fenced_tracking: statement::<Self>(write_statement(
                p,
                Some(format!(
                    "UPDATE {p}_tracking SET notification_id = $10
                     WHERE upstream = $8 AND partition_id = $9 AND notification_id = $11 AND epoch = $12
                     RETURNING 1"
                )),
            )),
        }
    }

    fn readers(pool: &PgPool) -> &PgPool {
        pool
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Events, with or without a tracking move, in one statement; anything
    /// with a dead letter (rare) in a transaction of a few statements.
    async fn write(recorder: &SqlRecorder<Self>, write: Write) -> Result<Vec<u64>> {
        let pool = &recorder.handle;
        let written = if write.has_side_writes() {
            match pool.begin().await {
                Ok(mut tx) => match recorder.write_in(&mut tx, &write).await {
                    Ok(ids) => tx.commit().await.map(|()| ids).map_err(recorder.abort("committing")),
                    // Dropping the transaction rolls it back.
                    Err(abort) => Err(abort),
                },
                Err(error) => Err(recorder.abort("beginning a write")(error)),
            }
        } else if write.events.is_empty() {
            // A tracking move alone: one statement, its own transaction.
            match pool.acquire().await {
                Ok(mut conn) => recorder.write_in(&mut conn, &write).await,
                Err(error) => Err(recorder.abort("moving the tracking position")(error)),
            }
        } else {
            write_in_one_statement(recorder, &write).await
        };
        match written {
            Ok(ids) => {
                tracing::debug!(app = %recorder.app, events = ids.len(), first = ids.first(), "committed");
                Ok(ids)
            }
            Err(Abort::Other(error)) => Err(error),
            Err(abort) => match pool.acquire().await {
                Ok(mut conn) => Err(recorder.explain(&mut conn, abort, &write).await),
                Err(error) => Err(db_error(&recorder.app, "reading a conflict")(error)),
            },
        }
    }

    /// A row per notification: rows come from the server in one stream.
    fn select_notifications(
        recorder: &SqlRecorder<Self>,
        partition: u32,
        start: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<crate::Notification>>> + Send {
        recorder.select_notification_rows(partition, start, limit)
    }

    /// The events numbered from the head, in the open transaction.
    async fn insert_events(
        recorder: &SqlRecorder<Self>,
        conn: &mut PgConnection,
        write: &Write,
    ) -> Result<Vec<u64>, Abort> {
        let events = &write.events;
        let numbered = events_query(&recorder.sql.dialect.write, write.partition, events)
            .fetch_all(conn)
            .await
            .map_err(|error| recorder.insert_failed(error))?;
        let first = to_u64(numbered.iter().copied().min().unwrap_or_default());
        Ok((first..first + events.len() as u64).collect())
    }
}

/// One statement that moves the tracking position (if `tracking` is given;
/// events are written only if it moved), advances the log's head and inserts
/// the events numbered from it: one round trip, one implicit transaction.
/// The head row's lock, held to the commit, orders the commits.
///
/// Parameters: `$1` partition, `$2`–`$7` the events' ids, versions,
/// timestamps, topics, states and state versions; `$8`–`$11` the upstream,
/// its partition, the new and the previous position; `$12` the lease epoch.
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

/// Events with or without a tracking move (no dead letter), by one
/// statement on the pool.
async fn write_in_one_statement(recorder: &SqlRecorder<Postgres>, write: &Write) -> Result<Vec<u64>, Abort> {
    let statements = &recorder.sql.dialect;
    let sql = match &write.tracking {
        None => &statements.write,
        Some(t) if t.lease_epoch.is_some() => &statements.write_updating_fenced_tracking,
        Some(t) if t.previous == 0 => &statements.write_inserting_tracking,
        Some(_) => &statements.write_updating_tracking,
    };
    let mut query = events_query(sql, write.partition, &write.events);
    if let Some(t) = &write.tracking {
        query = query
            .bind(t.upstream.key())
            .bind(to_i32(t.partition))
            .bind(to_i64(t.position));
        if t.previous != 0 || t.lease_epoch.is_some() {
            query = query.bind(to_i64(t.previous));
        }
        if let Some(epoch) = t.lease_epoch {
            query = query.bind(to_i64(epoch));
        }
    }
    let numbered = query
        .fetch_all(&recorder.handle)
        .await
        .map_err(|error| recorder.insert_failed(error))?;
    // Nothing written means the tracking position had moved on.
    let Some(first) = numbered.iter().copied().min() else {
        return Err(Abort::Tracking);
    };
    let first = to_u64(first);
    Ok((first..first + write.events.len() as u64).collect())
}

/// A write statement with the partition and the events bound (`$1`–`$7`).
fn events_query<'q>(
    sql: &SqlStr,
    partition: u32,
    events: &'q [StoredEvent],
) -> QueryScalar<'q, sqlx::Postgres, i64, PgArguments> {
    sqlx::query_scalar::<_, i64>(sql.clone())
        .bind(to_i32(partition))
        .bind(events.iter().map(|e| e.originator_id).collect::<Vec<_>>())
        .bind(events.iter().map(|e| to_i64(e.originator_version)).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.timestamp.as_micros()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.topic.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.state.as_slice()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| to_i32(e.state_version)).collect::<Vec<_>>())
}

/// The recorder of one application in a [`PostgresStore`].
#[derive(Clone, Debug)]
pub struct PostgresRecorder(SqlRecorder<Postgres>);

recorder_over_sql!(PostgresRecorder, Postgres);
