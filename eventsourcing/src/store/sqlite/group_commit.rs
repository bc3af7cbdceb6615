//! Group commit: a durable commit waits for the disk, and while one write
//! holds the writer, others queue. Whoever takes the writer next records
//! every queued write in one transaction, each inside its own savepoint, so
//! that one write's conflict rolls back that write alone; one flush then
//! serves them all. Savepoints nest: each write's is opened at the end of
//! the round trip before it and stays open once the write succeeded (the
//! `COMMIT` commits them all), which saves round trips; see
//! `single_trip.rs`. Each write keeps its own all-or-nothing promise and its
//! own answer.

use sqlx::sqlite::SqliteConnection;
use tokio::sync::oneshot;

use super::recent::Recent;
use super::{Shared, Sqlite, Writer, single_trip};
use crate::store::sql::{Abort, SqlRecorder, Write};
use crate::{AppName, Error, Result};

/// A write waiting for the writer, with where to send its answer.
pub(super) struct QueuedWrite {
    pub(super) recorder: SqlRecorder<Sqlite>,
    pub(super) write: Write,
    /// Its string and arguments, if it goes in one round trip.
    pub(super) prepared: Option<single_trip::Prepared>,
    pub(super) answer: oneshot::Sender<Result<Vec<u64>>>,
}

impl std::fmt::Debug for QueuedWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedWrite")
            .field("app", &self.recorder.app)
            .field("events", &self.write.events.len())
            .finish()
    }
}

impl Shared {
    pub(super) fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<QueuedWrite>> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Records a group of queued writes in one transaction, each in its own
/// savepoint when there are several, and answers each.
pub(super) async fn write_group(recent: &Recent, writer: &mut Writer, mut group: Vec<QueuedWrite>) {
    // A caller that stopped waiting gets nothing recorded.
    group.retain(|write| !write.answer.is_closed());
    let Some(first) = group.first() else {
        return;
    };
    let first_app = first.recorder.app.clone();
    if let Err(source) = writer.begin_group().await {
        let _ = writer.reset().await;
        return fail_group(group, &first_app, "beginning a write", source);
    }
    let mut answers = Vec::with_capacity(group.len());
    for write in &mut group {
        let recorder = &write.recorder;
        let written = match write.prepared.take() {
            Some(prepared) => single_trip::write_in_one_trip(recorder, &mut writer.conn, &write.write, prepared).await,
            None => write_by_statements(&mut writer.conn, recorder, &write.write).await,
        };
        let written = match written {
            Ok(written) => written,
            Err((action, source)) => {
                let _ = writer.reset().await;
                return fail_group(group, &first_app, action, source);
            }
        };
        let answer = match written {
            Ok(ids) => Ok(ids),
            Err(abort) => Err(recorder.explain(&mut writer.conn, abort, &write.write).await),
        };
        answers.push(answer);
    }
    if writer.in_transaction
        && let Err(source) = writer.finish("COMMIT").await
    {
        // The transaction may still be open; never leave it so.
        let _ = writer.reset().await;
        return fail_group(group, &first_app, "committing", source);
    }
    for (mut write, answer) in group.into_iter().zip(answers) {
        if let Ok(ids) = &answer {
            tracing::debug!(app = %write.recorder.app, events = ids.len(), first = ids.first(), "committed");
            // With events, the answer is their notification ids.
            if let (false, Some(&first)) = (write.write.events.is_empty(), ids.first()) {
                let events = std::mem::take(&mut write.write.events);
                recent.committed(write.recorder.app.table_prefix(), write.write.partition, first, events);
            }
        }
        let _ = write.answer.send(answer);
    }
}

/// Does a write statement by statement inside the savepoint opened for it
/// (dead letters go this way), then opens the next write's savepoint, or
/// rolls back to its own if the write aborts. An error of the savepoints
/// themselves leaves the transaction in doubt: the caller fails the group.
async fn write_by_statements(
    conn: &mut SqliteConnection,
    recorder: &SqlRecorder<Sqlite>,
    write: &Write,
) -> Result<Result<Vec<u64>, Abort>, (&'static str, sqlx::Error)> {
    let (statement, action, written) = match recorder.write_in(&mut *conn, write).await {
        Ok(ids) => ("SAVEPOINT write", "opening a savepoint", Ok(ids)),
        Err(abort) => ("ROLLBACK TO write", "rolling back a write", Err(abort)),
    };
    sqlx::query(statement)
        .execute(&mut *conn)
        .await
        .map_err(|source| (action, source))?;
    Ok(written)
}

/// Answers every write of a group whose transaction failed: nothing of
/// theirs was recorded.
fn fail_group(group: Vec<QueuedWrite>, first_app: &AppName, action: &'static str, source: sqlx::Error) {
    let message = source.to_string();
    let mut source = Some(source);
    for write in group {
        // The driver's error goes to the first write; the others are told
        // in words which write of their transaction failed.
        let source: Box<dyn std::error::Error + Send + Sync> = match source.take() {
            Some(source) => source.into(),
            None => format!("a write of `{first_app}` in the same transaction: {message}").into(),
        };
        let _ = write.answer.send(Err(Error::Database {
            app: write.recorder.app.to_string(),
            action,
            source,
        }));
    }
}
