//! `GET /{app}/notifications?after=N&wait=MS`: the notifications after a
//! position, waiting for one when there are none yet. Waiters are woken by
//! the store's commit feed, and look again every half second whatever it
//! says: a commit by another process on SQLite is never announced, and a
//! prompt can be lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::LogServer;
use super::respond::{self, ApiError, NO_STORE};
use crate::http::wire::{ItemJson, NotificationsJson};
use crate::log::MAX_NOTIFICATION_ID;
use crate::store::{Commits, Prompt};
use crate::{AnyRecorder, NotificationSource};

/// How often a waiting request looks at the log even if no commit was
/// heard of.
const RECHECK: Duration = Duration::from_millis(500);

/// One signal per partition of each application served, bumped when the
/// partition may have grown.
#[derive(Clone)]
pub(super) struct Wakers {
    signals: Arc<BTreeMap<String, Vec<watch::Sender<u64>>>>,
    /// The task that relays the store's commits, stopped with the last clone.
    _relay: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Wakers {
    /// Signals for the partitions of `apps`, bumped by a task that reads
    /// `commits`. By lowercase name, as tables are: a log served as
    /// `orders` is woken by commits of `Orders`.
    pub(super) fn start(apps: &BTreeMap<String, AnyRecorder>, commits: Commits) -> Self {
        let signals: BTreeMap<String, Vec<watch::Sender<u64>>> = apps
            .iter()
            .map(|(app, recorder)| {
                let partitions = (0..recorder.partitions()).map(|_| watch::Sender::new(0)).collect();
                (app.to_ascii_lowercase(), partitions)
            })
            .collect();
        let signals = Arc::new(signals);
        let relay = tokio::spawn(relay(commits, Arc::clone(&signals)));
        Self {
            signals,
            _relay: Arc::new(AbortOnDrop(relay)),
        }
    }

    /// A receiver that sees every bump from now on.
    fn subscribe(&self, app: &str, partition: u32) -> Option<watch::Receiver<u64>> {
        let signal = self
            .signals
            .get(&app.to_ascii_lowercase())?
            .get(usize::try_from(partition).ok()?)?;
        Some(signal.subscribe())
    }
}

async fn relay(mut commits: Commits, signals: Arc<BTreeMap<String, Vec<watch::Sender<u64>>>>) {
    let bump = |signal: &watch::Sender<u64>| signal.send_modify(|generation| *generation = generation.wrapping_add(1));
    while let Some(prompt) = commits.next().await {
        match prompt {
            Prompt::Committed(committed) => {
                let signal = signals
                    .get(committed.app.key())
                    .and_then(|partitions| partitions.get(usize::try_from(committed.partition).ok()?));
                if let Some(signal) = signal {
                    bump(signal);
                }
            }
            Prompt::Missed => signals.values().flatten().for_each(bump),
        }
    }
    // The store is gone: waiters still look every RECHECK.
    tracing::debug!("log server: the store's commit feed ended");
}

/// The query of a notifications request; every key may be left out.
#[derive(Deserialize)]
pub(super) struct NotificationsQuery {
    after: Option<u64>,
    partition: Option<u32>,
    limit: Option<u64>,
    wait: Option<u64>,
}

/// `GET /{app}/notifications`.
pub(super) async fn notifications(
    State(server): State<LogServer>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<NotificationsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(app) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let recorder = server.readable(&headers, &app)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let after = query.after.unwrap_or(0);
    if after > MAX_NOTIFICATION_ID {
        return Err(ApiError::bad_request(format!(
            "after={after} is past the largest notification id {MAX_NOTIFICATION_ID}"
        )));
    }
    let limit = query.limit.unwrap_or(server.section_size);
    if limit > server.section_size {
        return Err(ApiError::bad_request(format!(
            "limit={limit} is above the section size {}; ask for at most that many",
            server.section_size
        )));
    }
    let partition = query.partition.unwrap_or(crate::store::DEFAULT_PARTITION);
    LogServer::check_partition(recorder, partition)?;
    let wait = Duration::from_millis(query.wait.unwrap_or(0)).min(server.max_wait);

    // Subscribed before the first look, so that no commit after it is missed.
    let mut woken = server.wakers.subscribe(&app, partition);
    let deadline = Instant::now() + wait;
    loop {
        let (head, items) = look(recorder, partition, after, limit).await?;
        // With limit=0 the head alone says whether there is one.
        let found = if limit == 0 { head > after } else { !items.is_empty() };
        let now = Instant::now();
        if found || now >= deadline {
            let answer = NotificationsJson {
                partition,
                after,
                head,
                items: items.iter().map(ItemJson::from).collect(),
            };
            return Ok(respond::json(StatusCode::OK, NO_STORE, &answer));
        }
        let nap = (deadline - now).min(RECHECK);
        match woken.as_mut() {
            Some(woken) => {
                let _ = tokio::time::timeout(nap, woken.changed()).await;
            }
            None => tokio::time::sleep(nap).await,
        }
    }
}

/// The partition's head and up to `limit` notifications after `after`.
async fn look(
    recorder: &AnyRecorder,
    partition: u32,
    after: u64,
    limit: u64,
) -> crate::Result<(u64, Vec<crate::Notification>)> {
    let head = recorder.max_notification_id(partition).await?;
    if limit == 0 || after == MAX_NOTIFICATION_ID {
        return Ok((head, Vec::new()));
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let items = recorder.select_notifications(partition, after + 1, limit).await?;
    // A commit between the two reads: the head is at least what was read.
    let head = head.max(items.last().map_or(0, |n| n.id));
    Ok((head, items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppName, Recorder, Store, StoredEvent, Timestamp};

    #[tokio::test]
    async fn a_commit_wakes_the_waiters_of_its_partition_only() {
        let store = Store::open("memory:").await.unwrap();
        let app = AppName::new("dogs").unwrap();
        let recorder = store.partitioned_recorder(&app, 2).await.unwrap();
        let apps = BTreeMap::from([(app.as_str().to_owned(), recorder.clone())]);
        let wakers = Wakers::start(&apps, store.commits().await.unwrap());
        let (zero, mut one) = (
            wakers.subscribe("dogs", 0).unwrap(),
            wakers.subscribe("dogs", 1).unwrap(),
        );
        assert!(wakers.subscribe("dogs", 2).is_none() && wakers.subscribe("cats", 0).is_none());

        let event = StoredEvent {
            originator_id: uuid::Uuid::new_v4(),
            originator_version: 1,
            timestamp: Timestamp::now(),
            topic: "Dog.Registered".into(),
            state_version: 1,
            state: b"{}".to_vec(),
        };
        recorder.insert(1, vec![event.clone()], None).await.unwrap();
        let woken = tokio::time::timeout(Duration::from_secs(5), one.changed()).await;
        assert!(matches!(woken, Ok(Ok(()))), "partition 1's waiter is woken");
        assert!(!zero.has_changed().unwrap(), "partition 0's is not");

        // Names ignore case, as tables do.
        let mut zero = zero;
        let dogs = store.recorder(&AppName::new("Dogs").unwrap()).await.unwrap();
        let event = StoredEvent {
            originator_id: uuid::Uuid::new_v4(),
            ..event
        };
        dogs.insert(0, vec![event], None).await.unwrap();
        let woken = tokio::time::timeout(Duration::from_secs(5), zero.changed()).await;
        assert!(matches!(woken, Ok(Ok(()))), "a commit through `Dogs` wakes `dogs`");
    }
}
