//! Commits of entities' events, grouped: one task per log partition
//! takes the commits that arrived while it was writing the last ones and
//! writes them in one transaction. A log's partition is gapless, so its
//! commits wait for each other in the database anyway (on PostgreSQL, for
//! the partition's head row); one commit of many entities' events costs
//! about what one entity's did.
//!
//! A group is all or nothing. If it fails (one entity's version was taken
//! by another writer), its commits are written again one by one, so that
//! each gets its own answer and one conflict fails only its own command.

use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};

use crate::store::{OutboxWrite, Outgoing};
use crate::{AnyRecorder, NotificationSource, Recorder, Result, StoredEvent};

/// The most commits written in one transaction.
const MAX_GROUP: usize = 256;

/// One entity's events and effects, and where its answer goes.
struct Commit {
    events: Vec<StoredEvent>,
    outbox: OutboxWrite,
    answer: oneshot::Sender<Result<Vec<u64>>>,
}

/// The commit lanes of one application's log, one per partition, started
/// at the first commit (within the runtime).
#[derive(Clone, Debug)]
pub(super) struct Committer {
    recorder: AnyRecorder,
    lanes: Arc<OnceLock<Vec<mpsc::UnboundedSender<Commit>>>>,
}

impl Committer {
    pub(super) fn new(recorder: AnyRecorder) -> Self {
        Self {
            recorder,
            lanes: Arc::default(),
        }
    }

    /// Records `events` (of one entity) in `partition` and its effects in
    /// the outbox, with whatever other commits to it are waiting; returns
    /// the events' notification ids.
    pub(super) async fn commit(
        &self,
        partition: u32,
        events: Vec<StoredEvent>,
        outbox: OutboxWrite,
    ) -> Result<Vec<u64>> {
        let lanes = self.lanes.get_or_init(|| {
            (0..self.recorder.partitions())
                .map(|partition| {
                    let (lane, commits) = mpsc::unbounded_channel();
                    tokio::spawn(write(self.recorder.clone(), partition, commits));
                    lane
                })
                .collect()
        });
        let (answer, answered) = oneshot::channel();
        let commit = Commit { events, outbox, answer };
        match lanes.get(partition as usize).map(|lane| lane.send(commit)) {
            Some(Ok(())) => {}
            // No lane (a partition the log lacks) or a lane that stopped:
            // the recorder's own answer says what is wrong.
            Some(Err(mpsc::error::SendError(commit))) => {
                return self
                    .recorder
                    .insert_with_outbox(partition, commit.events, commit.outbox)
                    .await;
            }
            None => return self.recorder.insert(partition, Vec::new(), None).await,
        }
        match answered.await {
            Ok(result) => result,
            Err(_) => Err(crate::Error::WriteAbandoned {
                app: self.recorder.app().to_string(),
            }),
        }
    }
}

/// Writes the commits of one partition as they come, grouping those that
/// wait.
async fn write(recorder: AnyRecorder, partition: u32, mut commits: mpsc::UnboundedReceiver<Commit>) {
    while let Some(first) = commits.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match commits.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        // A delivery that consumes a message is written on its own: one
        // consumed effect per transaction.
        let (alone, group): (Vec<Commit>, Vec<Commit>) = group.into_iter().partition(|c| c.outbox.consume.is_some());
        write_each(&recorder, partition, alone).await;
        if group.len() <= 1 {
            write_each(&recorder, partition, group).await;
            continue;
        }
        let events: Vec<StoredEvent> = group.iter().flat_map(|c| c.events.iter().cloned()).collect();
        let added: Vec<Outgoing> = group.iter().flat_map(|c| c.outbox.add.iter().cloned()).collect();
        match recorder
            .insert_with_outbox(partition, events, OutboxWrite::add(added))
            .await
        {
            Ok(ids) => {
                let mut ids = ids.into_iter();
                for Commit { events, answer, .. } in group {
                    let _ = answer.send(Ok(ids.by_ref().take(events.len()).collect()));
                }
            }
            Err(error) => {
                tracing::debug!(%error, commits = group.len(), "a group of entity commits failed; writing them one by one");
                write_each(&recorder, partition, group).await;
            }
        }
    }
}

/// Writes `commits` one by one, each answered with its own outcome.
async fn write_each(recorder: &AnyRecorder, partition: u32, commits: Vec<Commit>) {
    for Commit { events, outbox, answer } in commits {
        let _ = answer.send(recorder.insert_with_outbox(partition, events, outbox).await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppName, Error, Store, Timestamp};
    use uuid::Uuid;

    fn event(id: Uuid) -> StoredEvent {
        StoredEvent {
            originator_id: id,
            originator_version: 1,
            timestamp: Timestamp::now(),
            topic: "Counter.Increased".into(),
            state_version: 1,
            state: b"{}".to_vec(),
        }
    }

    #[tokio::test]
    async fn a_conflict_in_a_group_fails_only_its_own_commit() {
        let store = Store::open("memory:").await.unwrap();
        let recorder = store.recorder(&AppName::new("counters").unwrap()).await.unwrap();
        let (taken, y, z) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        recorder.insert(0, vec![event(taken)], None).await.unwrap();
        let committer = Committer::new(recorder.clone());
        // On this one-thread runtime the three are queued before the lane
        // runs: they are written as one group, which the conflict fails.
        let (y_ids, taken_ids, z_ids) = tokio::join!(
            committer.commit(0, vec![event(y)], OutboxWrite::default()),
            committer.commit(0, vec![event(taken)], OutboxWrite::default()),
            committer.commit(0, vec![event(z)], OutboxWrite::default()),
        );
        assert!(matches!(taken_ids, Err(Error::Concurrency { originator_id, .. }) if originator_id == taken));
        let mut ids = [y_ids.unwrap(), z_ids.unwrap()].concat();
        ids.sort_unstable();
        assert_eq!(ids, [2, 3], "the others are recorded, and the log stays gapless");
        assert_eq!(recorder.max_notification_id(0).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn commits_that_wait_are_written_together() {
        let store = Store::open("memory:").await.unwrap();
        let recorder = store.recorder(&AppName::new("counters").unwrap()).await.unwrap();
        let committer = Committer::new(recorder.clone());
        let commits: Vec<_> = (0..10)
            .map(|_| {
                let committer = committer.clone();
                tokio::spawn(async move {
                    committer
                        .commit(
                            0,
                            vec![event(Uuid::new_v4()), event(Uuid::new_v4())],
                            OutboxWrite::default(),
                        )
                        .await
                })
            })
            .collect();
        let mut ids = Vec::new();
        for commit in commits {
            let answer = commit.await.unwrap().unwrap();
            assert_eq!(answer.len(), 2);
            assert_eq!(answer[1], answer[0] + 1, "one commit's events are numbered together");
            ids.extend(answer);
        }
        ids.sort_unstable();
        assert_eq!(ids, (1..=20).collect::<Vec<_>>());
    }
}
