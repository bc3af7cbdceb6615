//! One recorder for every SQL database: the statements, the reads, the
//! writes inside a transaction, the explanation of a write that conflicted,
//! and the schema's migrations are written once here. What differs between
//! SQLite and PostgreSQL is a [`Dialect`]: column types, placeholders, and
//! how a write reaches the database.

pub(crate) mod claims;
pub(crate) mod dialect;
pub(crate) mod migrations;
mod rows;
mod statements;

use std::sync::Arc;

use uuid::Uuid;

pub(crate) use self::dialect::{ColumnTypes, Dialect};
use self::rows::{DeadLetterRow, EventRow, NotificationRow, OutgoingRow};
pub(crate) use self::statements::{Statements, statement};
use super::{DeadLetter, DeadLetterWrite, Outgoing, OutgoingChange, Tracking, Versions, db_error, duplicate_in_batch};
use crate::{AppName, Error, Notification, Result, StoredEvent, Timestamp};

/// Writes an `impl` block of [`SqlRecorder`] over any dialect, with the
/// driver bounds its statements need: that the connection runs queries,
/// and that our column types encode and decode.
macro_rules! with_sql_bounds {
    ($($items:tt)*) => {
        impl<D: $crate::store::sql::Dialect> $crate::store::sql::SqlRecorder<D>
        where
            for<'c> &'c mut <D::Db as sqlx::Database>::Connection: sqlx::Executor<'c, Database = D::Db>,
            <D::Db as sqlx::Database>::Arguments: sqlx::IntoArguments<D::Db>,
            for<'q> i64: sqlx::Encode<'q, D::Db> + sqlx::Decode<'q, D::Db> + sqlx::Type<D::Db>,
            for<'q> i32: sqlx::Encode<'q, D::Db> + sqlx::Decode<'q, D::Db> + sqlx::Type<D::Db>,
            for<'q> uuid::Uuid: sqlx::Encode<'q, D::Db> + sqlx::Decode<'q, D::Db> + sqlx::Type<D::Db>,
            for<'q> &'q str: sqlx::Encode<'q, D::Db> + sqlx::Decode<'q, D::Db> + sqlx::Type<D::Db>,
            for<'q> String: sqlx::Encode<'q, D::Db> + sqlx::Decode<'q, D::Db> + sqlx::Type<D::Db>,
            for<'q> Vec<u8>: sqlx::Encode<'q, D::Db> + sqlx::Decode<'q, D::Db> + sqlx::Type<D::Db>,
            for<'q> Option<String>: sqlx::Encode<'q, D::Db> + sqlx::Decode<'q, D::Db> + sqlx::Type<D::Db>,
            usize: sqlx::ColumnIndex<<D::Db as sqlx::Database>::Row>,
            &'static str: sqlx::ColumnIndex<<D::Db as sqlx::Database>::Row>,
        {
            $($items)*
        }
    };
}
pub(crate) use with_sql_bounds;

/// One application's recorder on a SQL database.
#[derive(Debug)]
pub(crate) struct SqlRecorder<D: Dialect> {
    pub(crate) app: AppName,
    /// The partitions of the application's log.
    pub(crate) partitions: u32,
    pub(crate) handle: D::Handle,
    pub(crate) sql: Arc<Statements<D>>,
    /// Where commits are told.
    pub(crate) feed: crate::store::CommitFeed,
}

impl<D: Dialect> Clone for SqlRecorder<D> {
    fn clone(&self) -> Self {
        Self {
            app: self.app.clone(),
            partitions: self.partitions,
            handle: self.handle.clone(),
            sql: self.sql.clone(),
            feed: self.feed.clone(),
        }
    }
}

/// One write: events, a tracking position to move, and what it does to a
/// dead letter, recorded all or nothing.
#[derive(Debug)]
pub(crate) struct Write {
    /// The partition the events go to.
    pub(crate) partition: u32,
    pub(crate) events: Vec<StoredEvent>,
    pub(crate) tracking: Option<Tracking>,
    pub(crate) dead_letter: Option<DeadLetterWrite>,
    /// Effects recorded with the events.
    pub(crate) outbox: Vec<Outgoing>,
    /// A change to one effect already in the outbox (a write of its own).
    pub(crate) outbox_op: Option<OutboxOp>,
}

impl Write {
    /// Whether the write goes statement by statement in a transaction:
    /// it has more than events and a tracking move.
    pub(crate) fn has_side_writes(&self) -> bool {
        self.dead_letter.is_some() || !self.outbox.is_empty() || self.outbox_op.is_some()
    }
}

/// A change to one effect in the outbox: by a dispatcher or by hand, or
/// the consumption of a message by the write that delivers it.
#[derive(Debug)]
pub(crate) enum OutboxOp {
    /// Completed, failed, unparked or claimed.
    Change(OutgoingChange),
    /// Delivered by this write's events: removed, or the write fails.
    Consume(Uuid),
}

/// Why a write stopped before its commit; [`SqlRecorder::explain`] turns
/// it into the error that explains it after the rollback.
pub(crate) enum Abort {
    /// The tracking position was not where the write expected it.
    Tracking,
    /// An (originator id, version) already exists.
    Events(sqlx::Error),
    /// Anything else.
    Other(Error),
}

impl<D: Dialect> SqlRecorder<D> {
    /// The recorder of `app`'s tables, which [`migrations`] brought up to
    /// date, and found with `partitions`.
    pub(crate) fn new(app: &AppName, partitions: u32, handle: D::Handle, feed: crate::store::CommitFeed) -> Self {
        Self {
            app: app.clone(),
            partitions,
            handle,
            sql: Arc::new(Statements::new(app.table_prefix())),
            feed,
        }
    }

    /// A driver error in a write, as an [`Abort`] naming what was done.
    pub(crate) fn abort(&self, action: &'static str) -> impl FnOnce(sqlx::Error) -> Abort + '_ {
        move |source| Abort::Other(db_error(&self.app, action)(source))
    }

    /// An insert that failed, as an [`Abort`]: a conflict if a unique key
    /// was violated.
    pub(crate) fn insert_failed(&self, error: sqlx::Error) -> Abort {
        match error {
            sqlx::Error::Database(e) if e.is_unique_violation() => Abort::Events(sqlx::Error::Database(e)),
            other => self.abort("inserting events")(other),
        }
    }

    fn conflict(&self, originator_id: Uuid, version: u64) -> Error {
        Error::Concurrency {
            app: self.app.to_string(),
            originator_id,
            version,
        }
    }
}

with_sql_bounds! {
    /// Does `write` in the transaction open on `conn`: moves the tracking
    /// position, then the dead letter, then the events. A failed retry of a
    /// dead letter answers the attempts now recorded, as its one id.
    pub(crate) async fn write_in(
        &self,
        conn: &mut <D::Db as sqlx::Database>::Connection,
        write: &Write,
    ) -> Result<Vec<u64>, Abort> {
        if let Some(t) = &write.tracking {
            self.move_tracking(&mut *conn, t).await?;
        }
        let mut answer = Vec::new();
        if let Some(op) = &write.dead_letter {
            answer = self.write_dead_letter(&mut *conn, op).await?;
        }
        for outgoing in &write.outbox {
            self.insert_outgoing(&mut *conn, outgoing).await?;
        }
        if let Some(op) = &write.outbox_op {
            let done = self.write_outbox_op(&mut *conn, op).await?;
            if let (OutboxOp::Consume(id), false) = (op, done) {
                return Err(Abort::Other(Error::EffectGone {
                    app: self.app.to_string(),
                    id: *id,
                }));
            }
            answer = vec![u64::from(done)];
        }
        if write.events.is_empty() {
            return Ok(answer);
        }
        D::insert_events(self, conn, write).await
    }

    /// Moves the tracking position from `t.previous` to `t.position`.
    pub(crate) async fn move_tracking(
        &self,
        conn: &mut <D::Db as sqlx::Database>::Connection,
        t: &Tracking,
    ) -> Result<(), Abort> {
        // A worker's acquiring of its lease made the tracking rows, with
        // the epoch the move checks.
        let query = if let Some(epoch) = t.lease_epoch {
            sqlx::query(self.sql.update_fenced_tracking.clone())
                .bind(to_i64(t.position))
                .bind(t.upstream.key())
                .bind(to_i32(t.partition))
                .bind(to_i64(t.previous))
                .bind(to_i64(epoch))
        } else if t.previous == 0 {
            sqlx::query(self.sql.insert_tracking.clone())
                .bind(t.upstream.key())
                .bind(to_i32(t.partition))
                .bind(to_i64(t.position))
        } else {
            sqlx::query(self.sql.update_tracking.clone())
                .bind(to_i64(t.position))
                .bind(t.upstream.key())
                .bind(to_i32(t.partition))
                .bind(to_i64(t.previous))
        };
        let moved = query
            .execute(conn)
            .await
            .map_err(self.abort("moving the tracking position"))?;
        if D::rows_affected(&moved) == 1 { Ok(()) } else { Err(Abort::Tracking) }
    }

    async fn insert_outgoing(
        &self,
        conn: &mut <D::Db as sqlx::Database>::Connection,
        o: &Outgoing,
    ) -> Result<(), Abort> {
        sqlx::query(self.sql.insert_outgoing.clone())
            .bind(o.id)
            .bind(o.handler.as_str())
            .bind(o.payload.clone())
            .bind(o.originator_id)
            .bind(to_i64(o.originator_version))
            .bind(o.created_at.as_micros())
            .bind(to_i32(o.attempts))
            .bind(o.due_at.as_micros())
            .bind(o.last_error.clone())
            .bind(i32::from(o.parked))
            .execute(conn)
            .await
            .map_err(self.abort("recording an effect in the outbox"))?;
        Ok(())
    }

    /// Completes, fails, unparks or claims one effect; whether it was
    /// there (and, to unpark or claim, in the state the change expects).
    async fn write_outbox_op(
        &self,
        conn: &mut <D::Db as sqlx::Database>::Connection,
        op: &OutboxOp,
    ) -> Result<bool, Abort> {
        let done = match op {
            OutboxOp::Change(OutgoingChange::Complete(id)) | OutboxOp::Consume(id) => sqlx::query(self.sql.complete_outgoing.clone())
                .bind(*id)
                .execute(conn)
                .await
                .map_err(self.abort("completing an effect"))?,
            OutboxOp::Change(OutgoingChange::Fail {
                id,
                attempts,
                error,
                due_at,
            }) => sqlx::query(self.sql.fail_outgoing.clone())
                .bind(to_i32(*attempts))
                .bind(error.as_str())
                .bind(due_at.unwrap_or_else(Timestamp::now).as_micros())
                .bind(i32::from(due_at.is_none()))
                .bind(*id)
                .execute(conn)
                .await
                .map_err(self.abort("recording a failed delivery"))?,
            OutboxOp::Change(OutgoingChange::Unpark { id, due_at }) => sqlx::query(self.sql.unpark_outgoing.clone())
                .bind(due_at.as_micros())
                .bind(*id)
                .execute(conn)
                .await
                .map_err(self.abort("unparking an effect"))?,
            OutboxOp::Change(OutgoingChange::Claim { id, seen, until }) => sqlx::query(self.sql.claim_outgoing.clone())
                .bind(until.as_micros())
                .bind(*id)
                .bind(seen.as_micros())
                .execute(conn)
                .await
                .map_err(self.abort("taking an effect for delivery"))?,
        };
        Ok(D::rows_affected(&done) == 1)
    }

    /// Parks, removes or records a failed retry of a dead letter.
    async fn write_dead_letter(
        &self,
        conn: &mut <D::Db as sqlx::Database>::Connection,
        op: &DeadLetterWrite,
    ) -> Result<Vec<u64>, Abort> {
        match op {
            DeadLetterWrite::Park(letter) => {
                sqlx::query(self.sql.park.clone())
                    .bind(letter.upstream.as_str())
                    .bind(to_i32(letter.partition))
                    .bind(to_i64(letter.notification_id))
                    .bind(letter.topic.as_str())
                    .bind(letter.error.as_str())
                    .bind(to_i32(letter.attempts))
                    .bind(letter.parked_at.as_micros())
                    .bind(letter.last_failed_at.as_micros())
                    .execute(conn)
                    .await
                    .map_err(self.abort("parking a notification"))?;
                Ok(Vec::new())
            }
            DeadLetterWrite::Resolve(letter) => {
                let removed = sqlx::query(self.sql.remove_dead_letter.clone())
                    .bind(letter.upstream.as_str())
                    .bind(to_i32(letter.partition))
                    .bind(to_i64(letter.notification_id))
                    .execute(conn)
                    .await
                    .map_err(self.abort("removing a dead letter"))?;
                if D::rows_affected(&removed) == 1 {
                    Ok(Vec::new())
                } else {
                    Err(Abort::Other(letter.not_found()))
                }
            }
            DeadLetterWrite::Failed(letter) => {
                let attempts: Option<i32> = sqlx::query_scalar(self.sql.record_failed_retry.clone())
                    .bind(letter.error.as_str())
                    .bind(letter.last_failed_at.as_micros())
                    .bind(letter.upstream.as_str())
                    .bind(to_i32(letter.partition))
                    .bind(to_i64(letter.notification_id))
                    .fetch_optional(conn)
                    .await
                    .map_err(self.abort("recording a failed retry"))?;
                match attempts {
                    Some(attempts) => Ok(vec![u64::try_from(attempts).unwrap_or_default()]),
                    None => Err(Abort::Other(letter.not_found())),
                }
            }
        }
    }

    /// Turns an aborted write into the error that explains it, reading on
    /// `conn` the state the conflict left after the rollback.
    pub(crate) async fn explain(
        &self,
        conn: &mut <D::Db as sqlx::Database>::Connection,
        abort: Abort,
        write: &Write,
    ) -> Error {
        match abort {
            Abort::Other(error) => error,
            Abort::Tracking => {
                let Some(t) = &write.tracking else {
                    return Error::InvalidWrite {
                        app: self.app.to_string(),
                        reason: "tracking conflict without tracking".to_owned(),
                    };
                };
                if let Some(epoch) = t.lease_epoch {
                    match self.select_tracking_epoch(&mut *conn, &t.upstream, t.partition).await {
                        Ok(found) if found != epoch => {
                            return Error::LeaseLost {
                                app: self.app.to_string(),
                                partition: t.partition,
                                epoch,
                                found,
                            };
                        }
                        Ok(_) => {}
                        Err(error) => return error,
                    }
                }
                match self.select_tracking(conn, &t.upstream, t.partition).await {
                    Ok(found) => Error::TrackingConflict {
                        app: self.app.to_string(),
                        upstream: t.upstream.to_string(),
                        partition: t.partition,
                        expected: t.previous,
                        found,
                    },
                    Err(error) => error,
                }
            }
            Abort::Events(source) => {
                for event in &write.events {
                    let exists = sqlx::query(self.sql.select_version.clone())
                        .bind(event.originator_id)
                        .bind(to_i64(event.originator_version))
                        .fetch_optional(&mut *conn)
                        .await;
                    match exists {
                        Ok(None) => {}
                        Ok(Some(_)) => return self.conflict(event.originator_id, event.originator_version),
                        Err(source) => return db_error(&self.app, "reading events")(source),
                    }
                }
                match duplicate_in_batch(&write.events) {
                    Some(e) => self.conflict(e.originator_id, e.originator_version),
                    None => db_error(&self.app, "inserting events")(source),
                }
            }
        }
    }

    /// The lease epoch in a tracking row (0 for none).
    async fn select_tracking_epoch(
        &self,
        conn: &mut <D::Db as sqlx::Database>::Connection,
        upstream: &AppName,
        partition: u32,
    ) -> Result<u64> {
        let epoch: Option<i64> = sqlx::query_scalar(self.sql.select_tracking_epoch.clone())
            .bind(upstream.key())
            .bind(to_i32(partition))
            .fetch_optional(conn)
            .await
            .map_err(db_error(&self.app, "reading the tracking epoch"))?;
        Ok(epoch.map_or(0, to_u64))
    }

    pub(crate) async fn select_tracking(
        &self,
        conn: &mut <D::Db as sqlx::Database>::Connection,
        upstream: &AppName,
        partition: u32,
    ) -> Result<u64> {
        let position: Option<i64> = sqlx::query_scalar(self.sql.select_tracking.clone())
            .bind(upstream.key())
            .bind(to_i32(partition))
            .fetch_optional(conn)
            .await
            .map_err(db_error(&self.app, "reading the tracking position"))?;
        Ok(position.map_or(0, to_u64))
    }


    pub(crate) async fn select_events(&self, originator_id: Uuid, versions: Versions) -> Result<Vec<StoredEvent>> {
        let rows: Vec<EventRow> = sqlx::query_as(self.sql.select_events.clone())
            .bind(originator_id)
            .bind(to_i64(versions.from))
            .bind(to_i64(versions.to))
            .fetch_all(D::readers(&self.handle))
            .await
            .map_err(db_error(&self.app, "reading an aggregate's events"))?;
        D::after_read(self).await?;
        Ok(rows.into_iter().map(|row| row.0).collect())
    }

    /// Notifications read a row each (see [`Dialect::select_notifications`]);
    /// SQLite reads a page as one row instead.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) async fn select_notification_rows(&self, partition: u32, start: u64, limit: usize) -> Result<Vec<Notification>> {
        let rows: Vec<NotificationRow> = sqlx::query_as(self.sql.select_notifications.clone())
            .bind(to_i32(partition))
            .bind(to_i64(start))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(D::readers(&self.handle))
            .await
            .map_err(db_error(&self.app, "reading notifications"))?;
        // An empty page tells nothing that a flush could take back.
        if !rows.is_empty() {
            D::after_read(self).await?;
        }
        Ok(rows
            .into_iter()
            .map(|row| Notification {
                id: row.id,
                partition,
                event: row.event,
            })
            .collect())
    }

    pub(crate) async fn max_notification_id(&self, partition: u32) -> Result<u64> {
        let max: i64 = sqlx::query_scalar(self.sql.max_notification_id.clone())
            .bind(to_i32(partition))
            .fetch_one(D::readers(&self.handle))
            .await
            .map_err(db_error(&self.app, "reading the max notification id"))?;
        D::after_read(self).await?;
        Ok(to_u64(max))
    }

    pub(crate) async fn tracking_position(&self, upstream: &AppName, partition: u32) -> Result<u64> {
        let mut conn = D::readers(&self.handle)
            .acquire()
            .await
            .map_err(db_error(&self.app, "reading the tracking position"))?;
        let position = self.select_tracking(&mut conn, upstream, partition).await?;
        drop(conn);
        D::after_read(self).await?;
        Ok(position)
    }

    /// Effects in the outbox: parked, or (not parked) due by `due_by`,
    /// at most `limit`.
    pub(crate) async fn outgoing(&self, due_by: Option<Timestamp>, limit: usize) -> Result<Vec<Outgoing>> {
        let query = match due_by {
            Some(due_by) => sqlx::query_as(self.sql.select_due_outgoing.clone())
                .bind(due_by.as_micros())
                .bind(i64::try_from(limit).unwrap_or(i64::MAX)),
            None => sqlx::query_as(self.sql.select_parked_outgoing.clone()),
        };
        let rows: Vec<OutgoingRow> = query
            .fetch_all(D::readers(&self.handle))
            .await
            .map_err(db_error(&self.app, "reading the outbox"))?;
        D::after_read(self).await?;
        Ok(rows.into_iter().map(|row| row.0).collect())
    }

    pub(crate) async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let rows: Vec<DeadLetterRow> = sqlx::query_as(self.sql.select_dead_letters.clone())
            .fetch_all(D::readers(&self.handle))
            .await
            .map_err(db_error(&self.app, "reading dead letters"))?;
        D::after_read(self).await?;
        rows.into_iter().map(|row| row.into_dead_letter(&self.app)).collect()
    }
}

/// Converts a stored `i64` to the `u64` the API uses; the database only
/// ever holds values written from `u64`s no greater than `i64::MAX`.
pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

/// Converts a `u64` to the `i64` databases store, saturating.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Converts a `u32` (a partition, a state version, attempts) to the `i32`
/// databases store, saturating.
pub(crate) fn to_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// Implements [`Recorder`](crate::Recorder) for a public backend recorder
/// that wraps a [`SqlRecorder`] of `$dialect` in its field `0`.
macro_rules! recorder_over_sql {
    ($recorder:ty, $dialect:ty) => {
        impl $crate::NotificationSource for $recorder {
            fn app(&self) -> &$crate::AppName {
                &self.0.app
            }

            fn partitions(&self) -> u32 {
                self.0.partitions
            }

            async fn select_notifications(
                &self,
                partition: u32,
                start: u64,
                limit: usize,
            ) -> $crate::Result<Vec<$crate::Notification>> {
                <$dialect as $crate::store::sql::Dialect>::select_notifications(&self.0, partition, start, limit).await
            }

            async fn max_notification_id(&self, partition: u32) -> $crate::Result<u64> {
                self.0.max_notification_id(partition).await
            }
        }

        impl $crate::Recorder for $recorder {
            async fn insert(
                &self,
                partition: u32,
                events: Vec<$crate::StoredEvent>,
                tracking: Option<&$crate::Tracking>,
            ) -> $crate::Result<Vec<u64>> {
                $crate::store::check_partition(&self.0.app, self.0.partitions, partition)?;
                $crate::store::check_write(&self.0.app, &events, tracking)?;
                self.write(partition, events, tracking.cloned(), None).await
            }

            async fn select_events(
                &self,
                originator_id: uuid::Uuid,
                versions: $crate::Versions,
            ) -> $crate::Result<Vec<$crate::StoredEvent>> {
                self.0.select_events(originator_id, versions).await
            }

            async fn tracking_position(&self, upstream: &$crate::AppName, partition: u32) -> $crate::Result<u64> {
                self.0.tracking_position(upstream, partition).await
            }

            async fn park(&self, letter: &$crate::DeadLetter, tracking: &$crate::Tracking) -> $crate::Result<()> {
                $crate::store::check_write(&self.0.app, &[], Some(tracking))?;
                let park = $crate::store::DeadLetterWrite::Park(letter.clone());
                let partition = $crate::store::DEFAULT_PARTITION;
                self.write(partition, Vec::new(), Some(tracking.clone()), Some(park))
                    .await
                    .map(drop)
            }

            async fn dead_letters(&self) -> $crate::Result<Vec<$crate::DeadLetter>> {
                self.0.dead_letters().await
            }

            async fn resolve_dead_letter(
                &self,
                letter: &$crate::DeadLetter,
                events: Vec<$crate::StoredEvent>,
            ) -> $crate::Result<Vec<u64>> {
                $crate::store::check_partition(&self.0.app, self.0.partitions, letter.partition)?;
                $crate::store::check_write(&self.0.app, &events, None)?;
                let resolve = $crate::store::DeadLetterWrite::Resolve(letter.clone());
                self.write(letter.partition, events, None, Some(resolve)).await
            }

            async fn record_failed_retry(&self, letter: &$crate::DeadLetter) -> $crate::Result<u32> {
                let failed = $crate::store::DeadLetterWrite::Failed(letter.clone());
                let partition = $crate::store::DEFAULT_PARTITION;
                let answer = self.write(partition, Vec::new(), None, Some(failed)).await?;
                Ok(answer
                    .first()
                    .map_or(0, |&attempts| u32::try_from(attempts).unwrap_or(u32::MAX)))
            }

            async fn insert_with_outbox(
                &self,
                partition: u32,
                events: Vec<$crate::StoredEvent>,
                outbox: $crate::store::OutboxWrite,
            ) -> $crate::Result<Vec<u64>> {
                $crate::store::check_partition(&self.0.app, self.0.partitions, partition)?;
                $crate::store::check_write(&self.0.app, &events, None)?;
                let consume = outbox.consume.map($crate::store::sql::OutboxOp::Consume);
                self.write_with_outbox(partition, events, None, None, outbox.add, consume)
                    .await
            }

            async fn due_outgoing(
                &self,
                due_by: $crate::Timestamp,
                limit: usize,
            ) -> $crate::Result<Vec<$crate::store::Outgoing>> {
                self.0.outgoing(Some(due_by), limit).await
            }

            async fn parked_outgoing(&self) -> $crate::Result<Vec<$crate::store::Outgoing>> {
                self.0.outgoing(None, 0).await
            }

            async fn change_outgoing(&self, change: $crate::store::OutgoingChange) -> $crate::Result<bool> {
                let op = $crate::store::sql::OutboxOp::Change(change);
                let partition = $crate::store::DEFAULT_PARTITION;
                let answer = self
                    .write_with_outbox(partition, Vec::new(), None, None, Vec::new(), Some(op))
                    .await?;
                Ok(answer.first() == Some(&1))
            }
        }

        impl $recorder {
            async fn write(
                &self,
                partition: u32,
                events: Vec<$crate::StoredEvent>,
                tracking: Option<$crate::Tracking>,
                dead_letter: Option<$crate::store::DeadLetterWrite>,
            ) -> $crate::Result<Vec<u64>> {
                self.write_with_outbox(partition, events, tracking, dead_letter, Vec::new(), None)
                    .await
            }

            async fn write_with_outbox(
                &self,
                partition: u32,
                events: Vec<$crate::StoredEvent>,
                tracking: Option<$crate::Tracking>,
                dead_letter: Option<$crate::store::DeadLetterWrite>,
                outbox: Vec<$crate::store::Outgoing>,
                outbox_op: Option<$crate::store::sql::OutboxOp>,
            ) -> $crate::Result<Vec<u64>> {
                let has_events = !events.is_empty();
                let write = $crate::store::sql::Write {
                    partition,
                    events,
                    tracking,
                    dead_letter,
                    outbox,
                    outbox_op,
                };
                let ids = <$dialect as $crate::store::sql::Dialect>::write(&self.0, write).await?;
                if has_events && let Some(&head) = ids.last() {
                    self.0.feed.committed(&self.0.app, partition, head);
                }
                Ok(ids)
            }
        }
    };
}
pub(crate) use recorder_over_sql;
