//! A write in one round trip to sqlx's SQLite thread. Each statement sent
//! to sqlx is a message to that thread and back, a wake-up on each side;
//! a write was five or more (savepoint, tracking, head, one insert per
//! power-of-two chunk, release), and the single writer spent most of its
//! time handing them over. Here a write's statements are one string:
//!
//! ```text
//! BEGIN IMMEDIATE; SAVEPOINT write;                     -- if it is a group's first
//! <move the tracking position>; SELECT changes();      -- if it tracks
//! <advance the head> RETURNING head;                    -- if it has events
//! INSERT INTO <events> SELECT ?, (SELECT head - <count> FROM <heads> WHERE partition_id = ?) + column1,
//!     column2, … FROM (VALUES (…), …);
//! SAVEPOINT write;                                      -- for the next write
//! ```
//!
//! The notification ids are computed in SQL from the advanced head, so no
//! answer is needed half-way (a scalar subquery, which SQLite computes once
//! per statement; a join with the head row instead made it copy the rows
//! into a temporary table first). Each write runs inside a savepoint opened
//! before it (by the group's start or the previous write's string), so that
//! a string that fails anywhere rolls back to a savepoint that surely
//! belongs to it. Savepoints nest: one left open on success is committed
//! by the group's `COMMIT`, and a write that aborts rolls back to its own
//! alone. A tracking position that was not where the write expected shows
//! as `changes()` 0; that write is then rolled back like one whose insert
//! failed.

use std::collections::HashMap;
use std::fmt::Write as _;

use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::{Arguments, SqlStr};

use super::Sqlite;
use crate::store::sql::{Abort, SqlRecorder, Write, statement, to_i32, to_i64, to_u64};
use crate::{Error, Result};

/// The largest multi-row insert in a write's string.
const MAX_ROWS: usize = 256;
/// Strings kept per application; beyond that the cache starts again (a
/// log written in many different batch sizes costs a prepare each time).
const MAX_CACHED: usize = 512;

/// How a write moves its tracking position.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum TrackingMove {
    None,
    /// The first position of this upstream partition: an insert.
    Insert,
    /// From a previous position: an update that must match it.
    Update,
    /// An update that must also match the writer's lease epoch.
    Fenced,
}

/// The write strings of one application, by tracking move and number of
/// events, made on first use.
#[derive(Debug, Default)]
pub(super) struct WriteStrings {
    strings: std::sync::Mutex<HashMap<(TrackingMove, usize, Opening), SqlStr>>,
}

/// Whether a write's string also begins its group's transaction.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(super) enum Opening {
    /// A later write of the group: its savepoint is open already.
    InGroup,
    /// The group's first write: `BEGIN IMMEDIATE; SAVEPOINT write;` first,
    /// which saves the group a round trip of its own.
    BeginsGroup,
}

impl WriteStrings {
    fn get(&self, recorder: &SqlRecorder<Sqlite>, tracking: TrackingMove, events: usize, opening: Opening) -> SqlStr {
        let mut strings = self.strings.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sql) = strings.get(&(tracking, events, opening)) {
            return sql.clone();
        }
        if strings.len() >= MAX_CACHED {
            strings.clear();
        }
        let sql = write_string(recorder, tracking, events, opening);
        strings.insert((tracking, events, opening), sql.clone());
        sql
    }
}

/// The statements of a write, as one string (see the module's comment).
fn write_string(recorder: &SqlRecorder<Sqlite>, tracking: TrackingMove, events: usize, opening: Opening) -> SqlStr {
    let p = recorder.app.table_prefix();
    let mut sql = String::new();
    if opening == Opening::BeginsGroup {
        sql.push_str("BEGIN IMMEDIATE;\nSAVEPOINT write;\n");
    }
    match tracking {
        TrackingMove::None => {}
        TrackingMove::Insert => {
            let _ = writeln!(sql, "{};\nSELECT changes();", recorder.sql.insert_tracking.as_str());
        }
        TrackingMove::Update => {
            let _ = writeln!(sql, "{};\nSELECT changes();", recorder.sql.update_tracking.as_str());
        }
        TrackingMove::Fenced => {
            let _ = writeln!(
                sql,
                "{};\nSELECT changes();",
                recorder.sql.update_fenced_tracking.as_str()
            );
        }
    }
    if events > 0 {
        let _ = writeln!(sql, "{};", recorder.sql.advance_head.as_str());
        let mut remaining = events;
        while remaining > 0 {
            let rows = remaining.min(MAX_ROWS);
            let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
            let _ = writeln!(
                sql,
                "INSERT INTO {p}_events (partition_id, notification_id, originator_id, originator_version,
                                         recorded_at, topic, state_version, state)
                 SELECT ?, (SELECT head - ? FROM {p}_log_heads WHERE partition_id = ?) + column1,
                        column2, column3, column4, column5, column6, column7
                 FROM (VALUES {values});"
            );
            remaining -= rows;
        }
    }
    sql.push_str("SAVEPOINT write;");
    statement::<Sqlite>(sql)
}

/// A write's string and arguments, made by the caller's task before the
/// write queues, so that the single writer does not wait for them.
pub(super) struct Prepared {
    /// As a later write of a group.
    sql: SqlStr,
    /// As the first write of a group, beginning its transaction.
    sql_beginning: SqlStr,
    arguments: Result<SqliteArguments, BoxDynError>,
}

impl Prepared {
    /// Whether the write can begin a group: its arguments encoded, so
    /// that its string surely runs.
    pub(super) fn can_begin(&self) -> bool {
        self.arguments.is_ok()
    }
}

/// The string and arguments of `write`, if [`write_in_one_trip`] takes it:
/// events and a tracking move, not a dead letter (those go statement by
/// statement).
pub(super) fn prepare(recorder: &SqlRecorder<Sqlite>, write: &Write) -> Option<Prepared> {
    if write.has_side_writes() {
        return None;
    }
    let tracking = match &write.tracking {
        None => TrackingMove::None,
        // A worker taking its lease made the row: always an update.
        Some(t) if t.lease_epoch.is_some() => TrackingMove::Fenced,
        Some(t) if t.previous == 0 => TrackingMove::Insert,
        Some(_) => TrackingMove::Update,
    };
    let strings = &recorder.sql.dialect.write_strings;
    let count = write.events.len();
    Some(Prepared {
        sql: strings.get(recorder, tracking, count, Opening::InGroup),
        sql_beginning: strings.get(recorder, tracking, count, Opening::BeginsGroup),
        arguments: arguments(write, tracking),
    })
}

/// Does `write` (as `prepared`) in the transaction open on `conn`, inside
/// the savepoint opened for it, in one round trip when it succeeds, and
/// answers its notification ids. A write that aborts is rolled back to its
/// savepoint before this returns; an error rolling back (the outer `Err`)
/// leaves the transaction in doubt, for the caller to roll back whole.
///
/// With [`Opening::BeginsGroup`] the string also begins the transaction
/// (and the caller has checked [`Prepared::can_begin`]). A string that
/// fails then may have failed before or after `BEGIN`: the outer `Err`
/// says so, and the caller rolls back whatever began and does the write
/// again the usual way.
pub(super) async fn write_in_one_trip(
    recorder: &SqlRecorder<Sqlite>,
    conn: &mut SqliteConnection,
    write: &Write,
    prepared: Prepared,
    opening: Opening,
) -> Result<Result<Vec<u64>, Abort>, (&'static str, sqlx::Error)> {
    let count = write.events.len();
    let Prepared {
        sql,
        sql_beginning,
        arguments,
    } = prepared;
    let sql = match opening {
        Opening::InGroup => sql,
        Opening::BeginsGroup => sql_beginning,
    };
    let arguments = match arguments {
        Ok(arguments) => arguments,
        Err(source) => {
            return Ok(Err(Abort::Other(Error::Database {
                app: recorder.app.to_string(),
                action: "encoding a write's arguments",
                source,
            })));
        }
    };
    let query = sqlx::query_scalar_with::<_, i64, _>(sql, arguments);
    let abort = match query.fetch_all(&mut *conn).await {
        Ok(rows) => {
            let (moved, head) = match write.tracking {
                Some(_) => (rows.first().copied(), rows.get(1).copied()),
                None => (Some(1), rows.first().copied()),
            };
            let abort = match (moved, head) {
                (Some(1), _) if count == 0 => return Ok(Ok(Vec::new())),
                (Some(1), Some(head)) => {
                    let first = to_u64(head) + 1 - count as u64;
                    return Ok(Ok((first..first + count as u64).collect()));
                }
                (Some(1), None) => Abort::Other(Error::InvalidWrite {
                    app: recorder.app.to_string(),
                    reason: "advancing the log head returned no row".to_owned(),
                }),
                _ => Abort::Tracking,
            };
            // The string ran to its end and opened the next savepoint:
            // remove that one, then undo this write.
            sqlx::query("RELEASE write; ROLLBACK TO write")
                .execute(&mut *conn)
                .await
                .map_err(|source| ("rolling back a write", source))?;
            abort
        }
        Err(error) if opening == Opening::BeginsGroup => return Err(("beginning a group with its first write", error)),
        Err(error) => {
            // The string stopped at the error, before the next savepoint.
            sqlx::query("ROLLBACK TO write")
                .execute(&mut *conn)
                .await
                .map_err(|source| ("rolling back a write", source))?;
            match error {
                sqlx::Error::Database(e) if e.is_unique_violation() => Abort::Events(sqlx::Error::Database(e)),
                error => recorder.abort("writing events")(error),
            }
        }
    };
    // The insert ran even if the tracking move found nothing to move, so a
    // unique violation may hide a tracking conflict; that one comes first.
    if let (Abort::Events(_), Some(t)) = (&abort, &write.tracking) {
        match recorder.select_tracking(&mut *conn, &t.upstream, t.partition).await {
            Ok(found) if found != t.previous => return Ok(Err(Abort::Tracking)),
            Ok(_) => {}
            Err(error) => return Ok(Err(Abort::Other(error))),
        }
    }
    Ok(Err(abort))
}

/// The arguments of a write's string, in its order, in one allocation (a
/// growing argument list was copied over and over on large writes).
fn arguments(write: &Write, tracking: TrackingMove) -> Result<SqliteArguments, BoxDynError> {
    let (partition, events) = (to_i32(write.partition), &write.events);
    let count = events.len();
    let mut arguments = SqliteArguments::default();
    let chunks = count.div_ceil(MAX_ROWS);
    arguments.reserve(5 + 2 + 3 * chunks + 7 * count, 0);
    if let Some(t) = &write.tracking {
        if tracking == TrackingMove::Insert {
            arguments.add(t.upstream.key())?;
            arguments.add(to_i32(t.partition))?;
            arguments.add(to_i64(t.position))?;
        } else {
            arguments.add(to_i64(t.position))?;
            arguments.add(t.upstream.key())?;
            arguments.add(to_i32(t.partition))?;
            arguments.add(to_i64(t.previous))?;
            if let Some(epoch) = t.lease_epoch {
                arguments.add(to_i64(epoch))?;
            }
        }
    }
    if count > 0 {
        arguments.add(partition)?;
        arguments.add(count as i64)?;
        for (start, chunk) in (0..).step_by(MAX_ROWS).zip(events.chunks(MAX_ROWS)) {
            arguments.add(partition)?;
            arguments.add(count as i64)?;
            arguments.add(partition)?;
            for (offset, event) in (start + 1..).zip(chunk) {
                arguments.add(offset as i64)?;
                arguments.add(event.originator_id)?;
                arguments.add(to_i64(event.originator_version))?;
                arguments.add(event.timestamp.as_micros())?;
                arguments.add(event.topic.as_shared().clone())?;
                arguments.add(to_i32(event.state_version))?;
                arguments.add(event.state.as_slice())?;
            }
        }
    }
    Ok(arguments)
}
