//! Rows as the recorder reads them, decoded by column name on any SQL
//! database.

use sqlx::{ColumnIndex, Decode, FromRow, Row, Type};
use uuid::Uuid;

use super::to_u64;
use crate::store::{DeadLetter, Outgoing};
use crate::topics::Topic;
use crate::{AppName, Result, StoredEvent, Timestamp};

/// A row of `{app}_events`, as an aggregate's history reads it.
pub(super) struct EventRow(pub(super) StoredEvent);

impl<'r, R: Row> FromRow<'r, R> for EventRow
where
    &'static str: ColumnIndex<R>,
    Uuid: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    i32: Decode<'r, R::Database> + Type<R::Database>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> sqlx::Result<Self> {
        Ok(Self(StoredEvent {
            originator_id: row.try_get("originator_id")?,
            originator_version: to_u64(row.try_get("originator_version")?),
            timestamp: Timestamp::from_micros(row.try_get("recorded_at")?),
            topic: Topic::new(row.try_get("topic")?),
            state_version: u32::try_from(row.try_get::<i32, _>("state_version")?).unwrap_or_default(),
            state: row.try_get("state")?,
        }))
    }
}

/// A row of `{app}_events`, as the notification log reads it.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(super) struct NotificationRow {
    pub(super) id: u64,
    pub(super) event: StoredEvent,
}

impl<'r, R: Row> FromRow<'r, R> for NotificationRow
where
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    EventRow: FromRow<'r, R>,
{
    fn from_row(row: &'r R) -> sqlx::Result<Self> {
        Ok(Self {
            id: to_u64(row.try_get("notification_id")?),
            event: EventRow::from_row(row)?.0,
        })
    }
}

/// A row of `{app}_dead_letters`.
pub(super) struct DeadLetterRow {
    upstream: String,
    partition: i32,
    notification_id: i64,
    topic: String,
    error: String,
    attempts: i32,
    parked_at: i64,
    last_failed_at: i64,
}

impl<'r, R: Row> FromRow<'r, R> for DeadLetterRow
where
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    i32: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> sqlx::Result<Self> {
        Ok(Self {
            upstream: row.try_get("upstream")?,
            partition: row.try_get("partition_id")?,
            notification_id: row.try_get("notification_id")?,
            topic: row.try_get("topic")?,
            error: row.try_get("error")?,
            attempts: row.try_get("attempts")?,
            parked_at: row.try_get("parked_at")?,
            last_failed_at: row.try_get("last_failed_at")?,
        })
    }
}

impl DeadLetterRow {
    /// The dead letter this row of `app`'s table holds.
    pub(super) fn into_dead_letter(self, app: &AppName) -> Result<DeadLetter> {
        Ok(DeadLetter {
            app: app.clone(),
            upstream: AppName::new(self.upstream)?,
            partition: u32::try_from(self.partition).unwrap_or_default(),
            notification_id: to_u64(self.notification_id),
            topic: self.topic,
            error: self.error,
            attempts: u32::try_from(self.attempts).unwrap_or_default(),
            parked_at: Timestamp::from_micros(self.parked_at),
            last_failed_at: Timestamp::from_micros(self.last_failed_at),
        })
    }
}

/// A row of `{app}_outbox`.
pub(super) struct OutgoingRow(pub(super) Outgoing);

impl<'r, R: Row> FromRow<'r, R> for OutgoingRow
where
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    i32: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    Uuid: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> sqlx::Result<Self> {
        let count = |value: i32| u32::try_from(value).unwrap_or_default();
        Ok(Self(Outgoing {
            id: row.try_get("id")?,
            handler: row.try_get("handler")?,
            payload: row.try_get("payload")?,
            originator_id: row.try_get("originator_id")?,
            originator_version: to_u64(row.try_get("originator_version")?),
            created_at: Timestamp::from_micros(row.try_get("created_at")?),
            attempts: count(row.try_get("attempts")?),
            due_at: Timestamp::from_micros(row.try_get("due_at")?),
            last_error: row.try_get("last_error")?,
            parked: row.try_get::<i32, _>("parked")? != 0,
        }))
    }
}
