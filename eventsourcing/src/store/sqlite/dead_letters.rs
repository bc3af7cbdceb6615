//! The dead-letter table on SQLite: parked notifications, written in the
//! transaction of the write they belong to.

use crate::store::statement;
use sqlx::Row;
use sqlx::SqlStr;
use sqlx::sqlite::{SqliteConnection, SqliteRow};

use super::{Abort, SqliteRecorder};
use crate::store::{DeadLetter, DeadLetterWrite, to_i64, to_u64};
use crate::{AppName, Error, Result, Timestamp};

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
                    upstream TEXT NOT NULL,
                    partition_id INTEGER NOT NULL,
                    notification_id INTEGER NOT NULL,
                    topic TEXT NOT NULL,
                    error TEXT NOT NULL,
                    attempts INTEGER NOT NULL,
                    parked_at INTEGER NOT NULL,
                    last_failed_at INTEGER NOT NULL,
                    PRIMARY KEY (upstream, partition_id, notification_id)
                ) WITHOUT ROWID"
            )),
            insert: statement(format!(
                "INSERT INTO {p}_dead_letters ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (upstream, partition_id, notification_id) DO UPDATE SET
                     error = excluded.error, attempts = excluded.attempts, last_failed_at = excluded.last_failed_at"
            )),
            delete: statement(format!(
                "DELETE FROM {p}_dead_letters WHERE upstream = ? AND partition_id = ? AND notification_id = ?"
            )),
            update: statement(format!(
                "UPDATE {p}_dead_letters SET attempts = attempts + 1, error = ?, last_failed_at = ?
                 WHERE upstream = ? AND partition_id = ? AND notification_id = ? RETURNING attempts"
            )),
            select: statement(format!(
                "SELECT {columns} FROM {p}_dead_letters ORDER BY upstream, partition_id, notification_id"
            )),
        }
    }
}

impl SqliteRecorder {
    /// Does `op` in the open transaction. A failed retry answers with the
    /// attempts now recorded, as the one element of the returned ids.
    pub(super) async fn write_dead_letter(
        &self,
        conn: &mut SqliteConnection,
        op: &DeadLetterWrite,
    ) -> Result<Vec<u64>, Abort> {
        let sql = &self.sql.dead_letters;
        let db = |action| {
            move |source: sqlx::Error| {
                Abort::Other(Error::Database {
                    app: self.app.to_string(),
                    action,
                    source: source.into(),
                })
            }
        };
        match op {
            DeadLetterWrite::Park(letter) => {
                sqlx::query(sql.insert.clone())
                    .bind(letter.upstream.as_str())
                    .bind(letter.partition)
                    .bind(to_i64(letter.notification_id))
                    .bind(&letter.topic)
                    .bind(&letter.error)
                    .bind(letter.attempts)
                    .bind(letter.parked_at.as_micros())
                    .bind(letter.last_failed_at.as_micros())
                    .execute(&mut *conn)
                    .await
                    .map_err(db("parking a notification"))?;
                Ok(Vec::new())
            }
            DeadLetterWrite::Resolve(letter) => {
                let removed = sqlx::query(sql.delete.clone())
                    .bind(letter.upstream.as_str())
                    .bind(letter.partition)
                    .bind(to_i64(letter.notification_id))
                    .execute(&mut *conn)
                    .await
                    .map_err(db("removing a dead letter"))?
                    .rows_affected();
                if removed == 1 {
                    Ok(Vec::new())
                } else {
                    Err(Abort::Other(letter.not_found()))
                }
            }
            DeadLetterWrite::Failed(letter) => {
                let attempts: Option<i64> = sqlx::query_scalar(sql.update.clone())
                    .bind(&letter.error)
                    .bind(letter.last_failed_at.as_micros())
                    .bind(letter.upstream.as_str())
                    .bind(letter.partition)
                    .bind(to_i64(letter.notification_id))
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(db("recording a failed retry"))?;
                match attempts {
                    Some(attempts) => Ok(vec![to_u64(attempts)]),
                    None => Err(Abort::Other(letter.not_found())),
                }
            }
        }
    }

    pub(super) async fn select_dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query(self.sql.dead_letters.select.clone())
            .fetch_all(&self.shared.readers)
            .await
            .map_err(crate::store::db_error(&self.app, "reading dead letters"))?;
        rows.iter().map(|row| dead_letter(&self.app, row)).collect()
    }
}

fn dead_letter(app: &AppName, row: &SqliteRow) -> Result<DeadLetter> {
    let decode = crate::store::db_error(app, "decoding a dead-letter row");
    let read = || -> sqlx::Result<_> {
        Ok((
            row.try_get::<String, _>("upstream")?,
            row.try_get::<u32, _>("partition_id")?,
            row.try_get::<i64, _>("notification_id")?,
            row.try_get::<String, _>("topic")?,
            row.try_get::<String, _>("error")?,
            row.try_get::<u32, _>("attempts")?,
            row.try_get::<i64, _>("parked_at")?,
            row.try_get::<i64, _>("last_failed_at")?,
        ))
    };
    let (upstream, partition, notification_id, topic, error, attempts, parked_at, last_failed_at) =
        read().map_err(decode)?;
    Ok(DeadLetter {
        app: app.clone(),
        upstream: AppName::new(upstream)?,
        partition,
        notification_id: to_u64(notification_id),
        topic,
        error,
        attempts,
        parked_at: Timestamp::from_micros(parked_at),
        last_failed_at: Timestamp::from_micros(last_failed_at),
    })
}
