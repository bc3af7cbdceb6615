//! The dead-letter table on PostgreSQL: parked notifications, each written
//! in one transaction with the tracking move or the events it goes with.
//! Parking and retries are rare, so these take a few round trips where the
//! hot path takes one.

use crate::store::statement;
use sqlx::Row;
use sqlx::SqlStr;
use sqlx::postgres::PgRow;

use super::{PostgresRecorder, events_query};
use crate::store::{Abort, DeadLetter, Tracking, db_error, to_i64, to_u64};
use crate::{AppName, Error, Result, StoredEvent, Timestamp};

/// One application's dead-letter SQL.
#[derive(Debug)]
pub(super) struct DeadLetterSql {
    pub(super) schema: SqlStr,
    insert: SqlStr,
    delete: SqlStr,
    update: SqlStr,
    select: SqlStr,
}

impl DeadLetterSql {
    pub(super) fn new(p: &str) -> Self {
        let columns = "upstream, partition_id, notification_id, topic, error, attempts, parked_at, last_failed_at";
        Self {
            schema: statement(format!(
                "CREATE TABLE IF NOT EXISTS {p}_dead_letters (
                    upstream text NOT NULL,
                    partition_id integer NOT NULL,
                    notification_id bigint NOT NULL,
                    topic text NOT NULL,
                    error text NOT NULL,
                    attempts integer NOT NULL,
                    parked_at bigint NOT NULL,
                    last_failed_at bigint NOT NULL,
                    PRIMARY KEY (upstream, partition_id, notification_id)
                )"
            )),
            insert: statement(format!(
                "INSERT INTO {p}_dead_letters ({columns}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (upstream, partition_id, notification_id) DO UPDATE SET
                     error = EXCLUDED.error, attempts = EXCLUDED.attempts, last_failed_at = EXCLUDED.last_failed_at"
            )),
            delete: statement(format!(
                "DELETE FROM {p}_dead_letters WHERE upstream = $1 AND partition_id = $2 AND notification_id = $3"
            )),
            update: statement(format!(
                "UPDATE {p}_dead_letters SET attempts = attempts + 1, error = $1, last_failed_at = $2
                 WHERE upstream = $3 AND partition_id = $4 AND notification_id = $5 RETURNING attempts"
            )),
            select: statement(format!(
                "SELECT {columns} FROM {p}_dead_letters ORDER BY upstream, partition_id, notification_id"
            )),
        }
    }
}

impl PostgresRecorder {
    fn db_abort(&self, action: &'static str) -> impl FnOnce(sqlx::Error) -> Abort + '_ {
        move |source| {
            Abort::Other(Error::Database {
                app: self.app.to_string(),
                action,
                source: source.into(),
            })
        }
    }

    /// Moves the tracking position and records the dead letter, in one
    /// transaction.
    pub(super) async fn write_park(&self, letter: &DeadLetter, tracking: &Tracking) -> Result<(), Abort> {
        let sql = &self.sql.dead_letters;
        let mut tx = self.pool.begin().await.map_err(self.db_abort("beginning to park"))?;
        let moved = self
            .tracking_query(tracking)
            .execute(&mut *tx)
            .await
            .map_err(self.db_abort("moving the tracking position"))?
            .rows_affected();
        if moved != 1 {
            // Dropping the transaction rolls it back.
            return Err(Abort::Tracking);
        }
        sqlx::query(sql.insert.clone())
            .bind(letter.upstream.as_str())
            .bind(letter.partition as i32)
            .bind(to_i64(letter.notification_id))
            .bind(&letter.topic)
            .bind(&letter.error)
            .bind(i32::try_from(letter.attempts).unwrap_or(i32::MAX))
            .bind(letter.parked_at.as_micros())
            .bind(letter.last_failed_at.as_micros())
            .execute(&mut *tx)
            .await
            .map_err(self.db_abort("parking a notification"))?;
        tx.commit()
            .await
            .map_err(self.db_abort("committing a parked notification"))
    }

    /// Removes the dead letter (if it is still there: the row lock makes a
    /// concurrent retry wait, then find it gone) and records `events`, in
    /// one transaction.
    pub(super) async fn write_resolve(&self, letter: &DeadLetter, events: &[StoredEvent]) -> Result<Vec<u64>, Abort> {
        let sql = &self.sql.dead_letters;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(self.db_abort("beginning to resolve a dead letter"))?;
        let removed = sqlx::query(sql.delete.clone())
            .bind(letter.upstream.as_str())
            .bind(letter.partition as i32)
            .bind(to_i64(letter.notification_id))
            .execute(&mut *tx)
            .await
            .map_err(self.db_abort("removing a dead letter"))?
            .rows_affected();
        if removed != 1 {
            return Err(Abort::Other(letter.not_found()));
        }
        let mut ids = Vec::new();
        if !events.is_empty() {
            let numbered = match events_query(&self.sql.write, events).fetch_all(&mut *tx).await {
                Ok(numbered) => numbered,
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Err(Abort::Events(sqlx::Error::Database(e)));
                }
                Err(e) => return Err(self.db_abort("writing events")(e)),
            };
            let first = to_u64(numbered.iter().copied().min().unwrap_or_default());
            ids = (first..first + events.len() as u64).collect();
        }
        tx.commit()
            .await
            .map_err(self.db_abort("committing a resolved dead letter"))?;
        Ok(ids)
    }

    pub(super) async fn update_failed_retry(&self, letter: &DeadLetter) -> Result<u32> {
        let attempts: Option<i32> = sqlx::query_scalar(self.sql.dead_letters.update.clone())
            .bind(&letter.error)
            .bind(letter.last_failed_at.as_micros())
            .bind(letter.upstream.as_str())
            .bind(letter.partition as i32)
            .bind(to_i64(letter.notification_id))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error(&self.app, "recording a failed retry"))?;
        match attempts {
            Some(attempts) => Ok(u32::try_from(attempts).unwrap_or_default()),
            None => Err(letter.not_found()),
        }
    }

    pub(super) async fn select_dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query(self.sql.dead_letters.select.clone())
            .fetch_all(&self.pool)
            .await
            .map_err(db_error(&self.app, "reading dead letters"))?;
        rows.iter().map(|row| dead_letter(&self.app, row)).collect()
    }
}

fn dead_letter(app: &AppName, row: &PgRow) -> Result<DeadLetter> {
    let read = || -> sqlx::Result<_> {
        Ok((
            row.try_get::<String, _>("upstream")?,
            row.try_get::<i32, _>("partition_id")?,
            row.try_get::<i64, _>("notification_id")?,
            row.try_get::<String, _>("topic")?,
            row.try_get::<String, _>("error")?,
            row.try_get::<i32, _>("attempts")?,
            row.try_get::<i64, _>("parked_at")?,
            row.try_get::<i64, _>("last_failed_at")?,
        ))
    };
    let (upstream, partition, notification_id, topic, error, attempts, parked_at, last_failed_at) =
        read().map_err(db_error(app, "decoding a dead-letter row"))?;
    Ok(DeadLetter {
        app: app.clone(),
        upstream: AppName::new(upstream)?,
        partition: u32::try_from(partition).unwrap_or_default(),
        notification_id: to_u64(notification_id),
        topic,
        error,
        attempts: u32::try_from(attempts).unwrap_or_default(),
        parked_at: Timestamp::from_micros(parked_at),
        last_failed_at: Timestamp::from_micros(last_failed_at),
    })
}
