//! Leases: which worker runs each application-partition, agreed through
//! the database and nothing else.
//!
//! A lease row per partition (`{app}_leases`) names its owner, an epoch and
//! an expiry on the database's clock (so that machines' clocks need not
//! agree). Taking a lease that expired (or was released) raises its epoch
//! and writes that epoch into the partition's tracking rows in the same
//! transaction; a worker's commits move the tracking position only where
//! the epoch is still theirs. So a worker that lost its lease (paused, cut
//! off, slow) cannot commit: the row lock the takeover held makes its
//! commit wait and then find the new epoch.
//!
//! Workers say they are alive in `eventsourcing_workers`, per system, so
//! that each can work out its fair share; see `runner/workers.rs`.

use std::time::Duration;

use sqlx::postgres::PgPool;

use super::super::db_error;
use super::super::sql::migrations::WORKERS_TABLE;
use super::super::sql::{to_i32, to_i64, to_u64};
use crate::{AppName, Error, Result};

/// A statement of ours, with `$n` parameters.
fn sql(text: String) -> sqlx::SqlStr {
    super::super::sql::statement::<super::Postgres>(text)
}

/// The database's clock, in microseconds since the Unix epoch.
const NOW: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";

/// One worker's view of the leases of a system in a PostgreSQL database.
#[derive(Clone, Debug)]
pub(crate) struct LeaseBoard {
    pool: PgPool,
    /// The system's name among workers: its applications.
    group: String,
    /// This worker's name.
    worker: String,
    /// How long a lease or a worker's word that it is alive lasts.
    ttl_micros: i64,
}

impl LeaseBoard {
    pub(crate) fn new(pool: PgPool, group: String, worker: String, ttl: Duration) -> Self {
        Self {
            pool,
            group,
            worker,
            ttl_micros: i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX / 4),
        }
    }

    pub(crate) fn worker(&self) -> &str {
        &self.worker
    }

    fn error(&self, action: &'static str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
        move |source| Error::Store {
            store: format!("PostgreSQL (workers of {})", self.group),
            action,
            source: Box::new(source),
        }
    }

    /// Says this worker is alive for another lease period, and answers the
    /// workers alive now, this one included, in a stable order.
    pub(crate) async fn heartbeat(&self) -> Result<Vec<String>> {
        sqlx::query(sql(format!(
            "INSERT INTO {WORKERS_TABLE} (grp, worker, expires_at) VALUES ($1, $2, {NOW} + $3)
             ON CONFLICT (grp, worker) DO UPDATE SET expires_at = EXCLUDED.expires_at"
        )))
        .bind(&self.group)
        .bind(&self.worker)
        .bind(self.ttl_micros)
        .execute(&self.pool)
        .await
        .map_err(self.error("saying a worker is alive"))?;
        // Workers gone for long are forgotten.
        sqlx::query(sql(format!(
            "DELETE FROM {WORKERS_TABLE} WHERE grp = $1 AND expires_at < {NOW} - 100 * $2::bigint"
        )))
        .bind(&self.group)
        .bind(self.ttl_micros)
        .execute(&self.pool)
        .await
        .map_err(self.error("forgetting departed workers"))?;
        sqlx::query_scalar(sql(format!(
            "SELECT worker FROM {WORKERS_TABLE} WHERE grp = $1 AND expires_at > {NOW} ORDER BY worker"
        )))
        .bind(&self.group)
        .fetch_all(&self.pool)
        .await
        .map_err(self.error("listing the workers alive"))
    }

    /// Takes the lease on `partition` of `app` if it is free (never taken,
    /// expired or released) or already this worker's, with a new epoch
    /// written into the tracking rows of each of `upstreams`. Answers the
    /// epoch, or `None` if another worker holds it.
    pub(crate) async fn acquire(&self, app: &AppName, partition: u32, upstreams: &[AppName]) -> Result<Option<u64>> {
        let p = app.table_prefix();
        let db = |action| db_error(app, action);
        let mut tx = self.pool.begin().await.map_err(db("beginning to take a lease"))?;
        let epoch: Option<i64> = sqlx::query_scalar(sql(format!(
            "INSERT INTO {p}_leases AS l (partition_id, owner, epoch, expires_at) VALUES ($1, $2, 1, {NOW} + $3)
             ON CONFLICT (partition_id) DO UPDATE
                 SET owner = EXCLUDED.owner, epoch = l.epoch + 1, expires_at = EXCLUDED.expires_at
                 WHERE l.expires_at < {NOW} OR l.owner = EXCLUDED.owner
             RETURNING epoch"
        )))
        .bind(to_i32(partition))
        .bind(&self.worker)
        .bind(self.ttl_micros)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("taking a lease"))?;
        let Some(epoch) = epoch else {
            return Ok(None);
        };
        for upstream in upstreams {
            sqlx::query(sql(format!(
                "INSERT INTO {p}_tracking (upstream, partition_id, notification_id, epoch) VALUES ($1, $2, 0, $3)
                 ON CONFLICT (upstream, partition_id) DO UPDATE SET epoch = EXCLUDED.epoch"
            )))
            .bind(upstream.key())
            .bind(to_i32(partition))
            .bind(epoch)
            .execute(&mut *tx)
            .await
            .map_err(db("fencing the tracking rows of a lease"))?;
        }
        tx.commit().await.map_err(db("committing a lease"))?;
        Ok(Some(to_u64(epoch)))
    }

    /// Extends this worker's lease at `epoch`. Answers `false` if it is no
    /// longer this worker's (another took it over).
    pub(crate) async fn renew(&self, app: &AppName, partition: u32, epoch: u64) -> Result<bool> {
        let p = app.table_prefix();
        let renewed = sqlx::query(sql(format!(
            "UPDATE {p}_leases SET expires_at = {NOW} + $4
             WHERE partition_id = $1 AND owner = $2 AND epoch = $3"
        )))
        .bind(to_i32(partition))
        .bind(&self.worker)
        .bind(to_i64(epoch))
        .bind(self.ttl_micros)
        .execute(&self.pool)
        .await
        .map_err(db_error(app, "renewing a lease"))?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Gives up this worker's lease at `epoch`, so that another worker may
    /// take it at once.
    pub(crate) async fn release(&self, app: &AppName, partition: u32, epoch: u64) -> Result<()> {
        let p = app.table_prefix();
        sqlx::query(sql(format!(
            "UPDATE {p}_leases SET expires_at = 0 WHERE partition_id = $1 AND owner = $2 AND epoch = $3"
        )))
        .bind(to_i32(partition))
        .bind(&self.worker)
        .bind(to_i64(epoch))
        .execute(&self.pool)
        .await
        .map_err(db_error(app, "releasing a lease"))?;
        Ok(())
    }

    /// The systems (groups) with workers alive now, in the whole store.
    pub(crate) async fn live_groups(&self) -> Result<Vec<String>> {
        sqlx::query_scalar(sql(format!(
            "SELECT DISTINCT grp FROM {WORKERS_TABLE} WHERE expires_at > {NOW} ORDER BY grp"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(self.error("listing the systems with workers alive"))
    }

    /// The system this worker belongs to.
    pub(crate) fn group(&self) -> &str {
        &self.group
    }

    /// Says this worker is gone (its leases are released one by one).
    pub(crate) async fn leave(&self) -> Result<()> {
        sqlx::query(sql(format!(
            "DELETE FROM {WORKERS_TABLE} WHERE grp = $1 AND worker = $2"
        )))
        .bind(&self.group)
        .bind(&self.worker)
        .execute(&self.pool)
        .await
        .map_err(self.error("saying a worker left"))?;
        Ok(())
    }
}

impl super::PostgresStore {
    /// The lease board of worker `worker` of the system `group`.
    pub(crate) fn lease_board(&self, group: String, worker: String, ttl: Duration) -> LeaseBoard {
        LeaseBoard::new(self.pool.clone(), group, worker, ttl)
    }
}
