//! Group commit: a durable commit waits for the disk, and while one write
//! holds the writer, others queue. Whoever takes the writer next records
//! every queued write in one transaction, each inside its own savepoint, so
//! that one write's conflict rolls back that write alone; one flush then
//! serves them all. Each write keeps its own all-or-nothing promise and its
//! own answer.

use tokio::sync::oneshot;

use super::{Shared, SqliteRecorder, Writer};
use crate::store::DeadLetterWrite;
use crate::{AppName, Error, Result, StoredEvent, Tracking};

/// A write waiting for the writer, with where to send its answer.
pub(super) struct QueuedWrite {
    pub(super) recorder: SqliteRecorder,
    pub(super) events: Vec<StoredEvent>,
    pub(super) tracking: Option<Tracking>,
    pub(super) dead_letter: Option<DeadLetterWrite>,
    pub(super) answer: oneshot::Sender<Result<Vec<u64>>>,
}

impl std::fmt::Debug for QueuedWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedWrite")
            .field("app", &self.recorder.app)
            .field("events", &self.events.len())
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
pub(super) async fn write_group(writer: &mut Writer, mut group: Vec<QueuedWrite>) {
    // A caller that stopped waiting gets nothing recorded.
    group.retain(|write| !write.answer.is_closed());
    let Some(first) = group.first() else {
        return;
    };
    let first_app = first.recorder.app.clone();
    if let Err(source) = writer.begin().await {
        return fail_group(group, &first_app, "beginning a write", source);
    }
    let alone = group.len() == 1;
    let mut answers = Vec::with_capacity(group.len());
    for write in &mut group {
        let recorder = &write.recorder;
        if !alone && let Err(source) = sqlx::query("SAVEPOINT write").execute(&mut writer.conn).await {
            let _ = writer.reset().await;
            return fail_group(group, &first_app, "opening a savepoint", source);
        }
        let answer = match recorder
            .write(
                &mut writer.conn,
                &mut write.events,
                write.tracking.as_ref(),
                write.dead_letter.as_ref(),
            )
            .await
        {
            Ok(ids) => {
                if !alone && let Err(source) = sqlx::query("RELEASE write").execute(&mut writer.conn).await {
                    let _ = writer.reset().await;
                    return fail_group(group, &first_app, "releasing a savepoint", source);
                }
                Ok(ids)
            }
            Err(abort) => {
                let undo = if alone {
                    writer.finish("ROLLBACK").await
                } else {
                    match sqlx::query("ROLLBACK TO write").execute(&mut writer.conn).await {
                        Ok(_) => sqlx::query("RELEASE write").execute(&mut writer.conn).await.map(drop),
                        Err(error) => Err(error),
                    }
                };
                if let Err(source) = undo {
                    let _ = writer.reset().await;
                    return fail_group(group, &first_app, "rolling back", source);
                }
                Err(recorder
                    .explain(&mut writer.conn, abort, &write.events, write.tracking.as_ref())
                    .await)
            }
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
    for (write, answer) in group.into_iter().zip(answers) {
        if let Ok(ids) = &answer {
            tracing::debug!(app = %write.recorder.app, events = ids.len(), first = ids.first(), "committed");
        }
        let _ = write.answer.send(answer);
    }
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
