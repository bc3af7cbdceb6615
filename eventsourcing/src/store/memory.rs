//! The in-memory backend: every promise of the recorder, no file, no server.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use uuid::Uuid;

use super::{Recorder, Tracking, Versions, check_write, duplicate_in_batch};
use crate::{AppName, Error, Notification, Result, StoredEvent};

/// A store in this process's memory. Clones share the same data, and so do
/// recorders opened twice for one application.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    apps: Arc<Mutex<HashMap<String, Arc<Mutex<Tables>>>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The recorder of one application.
    pub fn recorder(&self, app: &AppName) -> MemoryRecorder {
        let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        let tables = apps.entry(app.table_prefix().to_owned()).or_default().clone();
        MemoryRecorder {
            app: app.clone(),
            tables,
        }
    }
}

/// One application's events, log and tracking positions.
#[derive(Debug, Default)]
struct Tables {
    /// (originator id, version) to the event's place in its partition's log.
    events: BTreeMap<(Uuid, u64), (u32, usize)>,
    /// Each partition's notifications; index `i` holds id `i + 1`.
    logs: HashMap<u32, Vec<Notification>>,
    tracking: HashMap<(String, u32), u64>,
}

/// The recorder of one application in a [`MemoryStore`].
#[derive(Clone, Debug)]
pub struct MemoryRecorder {
    app: AppName,
    tables: Arc<Mutex<Tables>>,
}

impl MemoryRecorder {
    fn tables(&self) -> MutexGuard<'_, Tables> {
        // Every write checks before it changes anything, so a panic elsewhere
        // cannot leave the tables half-written.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Recorder for MemoryRecorder {
    fn app(&self) -> &AppName {
        &self.app
    }

    async fn insert(&self, events: &[StoredEvent], tracking: Option<&Tracking>) -> Result<Vec<u64>> {
        check_write(&self.app, events, tracking)?;
        let mut tables = self.tables();

        // Check everything first: all or nothing.
        if let Some(t) = tracking {
            let found = tables
                .tracking
                .get(&(t.upstream.table_prefix().to_owned(), t.partition))
                .copied();
            if found.unwrap_or(0) != t.previous {
                return Err(Error::TrackingConflict {
                    app: self.app.to_string(),
                    upstream: t.upstream.to_string(),
                    partition: t.partition,
                    expected: t.previous,
                    found: found.unwrap_or(0),
                });
            }
        }
        let conflict = events
            .iter()
            .find(|e| tables.events.contains_key(&(e.originator_id, e.originator_version)))
            .or_else(|| duplicate_in_batch(events));
        if let Some(e) = conflict {
            return Err(Error::Concurrency {
                app: self.app.to_string(),
                originator_id: e.originator_id,
                version: e.originator_version,
            });
        }

        let partition = super::DEFAULT_PARTITION;
        let mut ids = Vec::with_capacity(events.len());
        for event in events {
            let log = tables.logs.entry(partition).or_default();
            let index = log.len();
            let id = index as u64 + 1;
            log.push(Notification {
                id,
                partition,
                event: event.clone(),
            });
            tables
                .events
                .insert((event.originator_id, event.originator_version), (partition, index));
            ids.push(id);
        }
        if let Some(t) = tracking {
            tables
                .tracking
                .insert((t.upstream.table_prefix().to_owned(), t.partition), t.position);
        }
        Ok(ids)
    }

    async fn select_events(&self, originator_id: Uuid, versions: Versions) -> Result<Vec<StoredEvent>> {
        let tables = self.tables();
        if versions.from > versions.to {
            return Ok(Vec::new());
        }
        Ok(tables
            .events
            .range((originator_id, versions.from)..=(originator_id, versions.to))
            .map(|(_, (partition, index))| tables.logs[partition][*index].event.clone())
            .collect())
    }

    async fn select_notifications(&self, partition: u32, start: u64, limit: usize) -> Result<Vec<Notification>> {
        let tables = self.tables();
        let Some(log) = tables.logs.get(&partition) else {
            return Ok(Vec::new());
        };
        let skip = usize::try_from(start.saturating_sub(1)).unwrap_or(usize::MAX);
        Ok(log.iter().skip(skip).take(limit).cloned().collect())
    }

    async fn max_notification_id(&self, partition: u32) -> Result<u64> {
        Ok(self.tables().logs.get(&partition).map_or(0, |log| log.len() as u64))
    }

    async fn tracking_position(&self, upstream: &AppName, partition: u32) -> Result<u64> {
        Ok(self
            .tables()
            .tracking
            .get(&(upstream.table_prefix().to_owned(), partition))
            .copied()
            .unwrap_or(0))
    }
}
