//! Group commit: while one write holds the writer, others queue. Whoever
//! takes the writer next records every queued write in one transaction,
//! each inside its own savepoint, so that one write's conflict rolls back
//! that write alone. Savepoints nest: each write's is opened at the end of
//! the round trip before it and stays open once the write succeeded (the
//! `COMMIT` commits them all), which saves round trips; see
//! `single_trip.rs`. The group's first write begins the transaction in its
//! own round trip. Each write keeps its own all-or-nothing promise and its
//! own answer, given once the flusher made the commit durable (`flush.rs`).
//!
//! Writes that queue while a group is being written wait for the next
//! group. (They used to join the group being written, which saved a flush
//! when every `COMMIT` waited for the disk. Now that the flush is off the
//! writer's path, a group that grows only delays the answers of its first
//! writes: the orders flow ran at 45–46% of the plain SQLite rate with
//! joining, 52–53% without.)

use std::sync::Arc;

use sqlx::sqlite::SqliteConnection;
use tokio::sync::oneshot;

use super::flush::Flushed;
use super::single_trip::{self, Opening};
use super::{Shared, Sqlite, Writer, flush_error};
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
/// savepoint, and has the flusher answer each once the commit is durable.
pub(super) async fn write_group(shared: &Arc<Shared>, writer: &mut Writer, mut group: Vec<QueuedWrite>) {
    // A caller that stopped waiting gets nothing recorded.
    group.retain(|write| !write.answer.is_closed());
    // After a failed flush nothing is written: it could not be vouched for.
    if let Some(failed) = shared.flusher.failed() {
        for write in group {
            let _ = write.answer.send(Err(flush_error(&write.recorder.app)(failed.clone())));
        }
        return;
    }
    let Some(first) = group.first() else {
        return;
    };
    let first_app = first.recorder.app.clone();
    let mut begun = false;
    let mut answers = Vec::with_capacity(group.len());
    while answers.len() < group.len() {
        let write = &mut group[answers.len()];
        let recorder = &write.recorder;
        let written = if begun {
            write_one(&mut writer.conn, recorder, &write.write, write.prepared.take()).await
        } else {
            begun = true;
            match begin_with(writer, recorder, &write.write, write.prepared.take()).await {
                Ok(written) => written,
                Err(source) => {
                    let _ = writer.reset().await;
                    return fail_group(group, &first_app, "beginning a write", source);
                }
            }
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
    // The writer goes on to the next group while the flusher makes this
    // one durable; only then are its writers answered (`flush.rs`).
    let kept = shared.clone();
    shared
        .flusher
        .after_next_flush(move |flushed| answer_flushed(&kept, group, answers, flushed));
}

/// Answers the writes of a committed group once its flush ended, and keeps
/// their notifications for followers.
fn answer_flushed(shared: &Shared, group: Vec<QueuedWrite>, answers: Vec<Result<Vec<u64>>>, flushed: Flushed) {
    for (mut write, answer) in group.into_iter().zip(answers) {
        let answer = match (answer, &flushed) {
            (Ok(ids), Ok(())) => {
                tracing::debug!(app = %write.recorder.app, events = ids.len(), first = ids.first(), "committed");
                // With events, the answer is their notification ids.
                if let (false, Some(&first)) = (write.write.events.is_empty(), ids.first()) {
                    let events = std::mem::take(&mut write.write.events);
                    shared
                        .recent
                        .committed(write.recorder.app.table_prefix(), write.write.partition, first, events);
                }
                Ok(ids)
            }
            (Ok(_), Err(error)) => Err(flush_error(&write.recorder.app)(error.clone())),
            (Err(error), _) => Err(error),
        };
        let _ = write.answer.send(answer);
    }
}

/// What a write's round trips answer: its ids or why it aborted (rolled
/// back to its savepoint), or an error that leaves the transaction in
/// doubt.
type Written = Result<Result<Vec<u64>, Abort>, (&'static str, sqlx::Error)>;

/// Does a write of a group whose transaction is open.
async fn write_one(
    conn: &mut SqliteConnection,
    recorder: &SqlRecorder<Sqlite>,
    write: &Write,
    prepared: Option<single_trip::Prepared>,
) -> Written {
    match prepared {
        Some(prepared) => single_trip::write_in_one_trip(recorder, conn, write, prepared, Opening::InGroup).await,
        None => write_by_statements(conn, recorder, write).await,
    }
}

/// Begins the group's transaction with its first write: in that write's
/// own round trip when it goes in one, else on its own. A string that
/// fails may have failed before its `BEGIN` ran or after: what began is
/// rolled back and the write done again the usual way, which also tells
/// whether it conflicted. The outer `Err` is a transaction that did not
/// begin.
async fn begin_with(
    writer: &mut Writer,
    recorder: &SqlRecorder<Sqlite>,
    write: &Write,
    prepared: Option<single_trip::Prepared>,
) -> Result<Written, sqlx::Error> {
    writer.reset().await?;
    let prepared = match prepared {
        Some(prepared) if prepared.can_begin() => {
            // Set first: if the string fails half-way, `reset` rolls back
            // whatever began.
            writer.in_transaction = true;
            let written =
                single_trip::write_in_one_trip(recorder, &mut writer.conn, write, prepared, Opening::BeginsGroup).await;
            match written {
                Ok(written) => return Ok(Ok(written)),
                Err((_, error)) if is_busy(&error) => return Err(error),
                Err(_) => {
                    writer.reset().await?;
                    single_trip::prepare(recorder, write)
                }
            }
        }
        prepared => prepared,
    };
    writer.begin_group().await?;
    Ok(write_one(&mut writer.conn, recorder, write, prepared).await)
}

/// Whether SQLite was busy: another process held the lock for longer than
/// the busy timeout. Trying again would wait that long again.
fn is_busy(error: &sqlx::Error) -> bool {
    // Primary result codes SQLITE_BUSY and SQLITE_LOCKED, in the low byte
    // of the extended codes.
    let code = match error {
        sqlx::Error::Database(e) => e.code().and_then(|code| code.parse::<i32>().ok()),
        _ => None,
    };
    matches!(code.map(|code| code & 0xff), Some(5 | 6))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use uuid::Uuid;

    use super::*;
    use crate::store::claims::Claim;
    use crate::store::sqlite::SqliteStore;
    use crate::topics::Topic;
    use crate::{StoredEvent, Timestamp, Tracking};

    /// A store in a fresh directory, and the directory (to remove).
    async fn store() -> (SqliteStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("eventsourcing-group-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("group.db").display());
        (SqliteStore::open(&url).await.unwrap(), dir)
    }

    fn event(id: Uuid, version: u64) -> StoredEvent {
        StoredEvent {
            originator_id: id,
            originator_version: version,
            timestamp: Timestamp::from_micros(1),
            topic: Topic::new("Group.Event"),
            state_version: 1,
            state: b"{}".to_vec(),
        }
    }

    /// A write of `events` (moving `tracking`), as the recorder queues it,
    /// and where its answer arrives.
    fn queued(
        recorder: &SqlRecorder<Sqlite>,
        events: Vec<StoredEvent>,
        tracking: Option<Tracking>,
    ) -> (QueuedWrite, oneshot::Receiver<Result<Vec<u64>>>) {
        let write = Write {
            partition: 0,
            events,
            tracking,
            dead_letter: None,
            outbox: Vec::new(),
            outbox_op: None,
        };
        let (answer, answered) = oneshot::channel();
        let prepared = single_trip::prepare(recorder, &write);
        let queued = QueuedWrite {
            recorder: recorder.clone(),
            write,
            prepared,
            answer,
        };
        (queued, answered)
    }

    fn tracking(previous: u64, position: u64) -> Option<Tracking> {
        Some(Tracking {
            upstream: AppName::new("upstream").unwrap(),
            partition: 0,
            previous,
            position,
            lease_epoch: None,
        })
    }

    /// Writes `group`; answers how many transactions committed.
    async fn write_counting_commits(store: &SqliteStore, group: Vec<QueuedWrite>) -> usize {
        let shared = &store.shared;
        let mut writer = shared.writer.lock().await;
        let commits = Arc::new(AtomicUsize::new(0));
        let counted = commits.clone();
        writer.conn.lock_handle().await.unwrap().set_commit_hook(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            true
        });
        write_group(shared, &mut writer, group).await;
        commits.load(Ordering::SeqCst)
    }

    /// A group is one transaction, and each of its writes is still all or
    /// nothing: one that conflicts is rolled back alone.
    #[tokio::test]
    async fn a_write_of_a_group_that_conflicts_is_rolled_back_alone() {
        let (store, dir) = store().await;
        let recorder = store
            .recorder_with(&AppName::new("joins").unwrap(), None, Claim::Leave)
            .await
            .unwrap()
            .0;
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let (first, first_answer) = queued(&recorder, vec![event(a, 1)], tracking(0, 1));
        let (second, second_answer) = queued(&recorder, vec![event(a, 1)], None);
        let (third, third_answer) = queued(&recorder, vec![event(b, 1), event(b, 2)], tracking(1, 2));

        let commits = write_counting_commits(&store, vec![first, second, third]).await;

        assert_eq!(commits, 1, "one transaction for the group");
        assert_eq!(first_answer.await.unwrap().unwrap(), [1]);
        assert!(matches!(second_answer.await.unwrap(), Err(Error::Concurrency { .. })));
        assert_eq!(third_answer.await.unwrap().unwrap(), [2, 3]);
        let upstream = AppName::new("upstream").unwrap();
        assert_eq!(recorder.tracking_position(&upstream, 0).await.unwrap(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The first write of a group begins its transaction in its own round
    /// trip; when it conflicts, it is rolled back alone and the group goes
    /// on, whether its events or its tracking position conflicted.
    #[tokio::test]
    async fn a_group_whose_first_write_conflicts_records_the_rest() {
        let (store, dir) = store().await;
        let recorder = store
            .recorder_with(&AppName::new("first").unwrap(), None, Claim::Leave)
            .await
            .unwrap()
            .0;
        let a = Uuid::now_v7();
        let (stored, stored_answer) = queued(&recorder, vec![event(a, 1)], tracking(0, 1));
        assert_eq!(write_counting_commits(&store, vec![stored]).await, 1);
        assert_eq!(stored_answer.await.unwrap().unwrap(), [1]);

        // Its events exist already.
        let (again, again_answer) = queued(&recorder, vec![event(a, 1)], None);
        let (next, next_answer) = queued(&recorder, vec![event(a, 2)], None);
        assert_eq!(write_counting_commits(&store, vec![again, next]).await, 1);
        assert!(matches!(again_answer.await.unwrap(), Err(Error::Concurrency { .. })));
        assert_eq!(next_answer.await.unwrap().unwrap(), [2]);

        // Its tracking position moved on already.
        let (stale, stale_answer) = queued(&recorder, vec![event(a, 3)], tracking(0, 5));
        let (next, next_answer) = queued(&recorder, vec![event(a, 3)], tracking(1, 5));
        assert_eq!(write_counting_commits(&store, vec![stale, next]).await, 1);
        assert!(matches!(
            stale_answer.await.unwrap(),
            Err(Error::TrackingConflict { .. })
        ));
        assert_eq!(next_answer.await.unwrap().unwrap(), [3]);
        let events = recorder.select_events(a, crate::Versions::ALL).await.unwrap();
        assert_eq!(events, [event(a, 1), event(a, 2), event(a, 3)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A transaction that could not begin because another connection (as
    /// another process would) holds the write lock is told apart from a
    /// conflict: that write is not tried again, which would wait the busy
    /// timeout a second time.
    #[tokio::test]
    async fn tells_a_busy_database_from_a_conflict() {
        use sqlx::ConnectOptions;
        use sqlx::sqlite::SqliteConnectOptions;

        let dir = std::env::temp_dir().join(format!("eventsourcing-busy-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.join("busy.db"))
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::ZERO);
        let mut holder = options.connect().await.unwrap();
        let mut other = options.connect().await.unwrap();
        sqlx::query("CREATE TABLE t (k INTEGER PRIMARY KEY)")
            .execute(&mut holder)
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE; INSERT INTO t VALUES (1)")
            .execute(&mut holder)
            .await
            .unwrap();
        let busy = sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap_err();
        assert!(is_busy(&busy), "{busy}");
        let duplicate = sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut holder)
            .await
            .unwrap_err();
        assert!(!is_busy(&duplicate), "{duplicate}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
