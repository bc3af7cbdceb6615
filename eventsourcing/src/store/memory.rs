//! The in-memory backend: every promise of the recorder, no file, no server.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use uuid::Uuid;

use super::claims::Claim;
use super::{
    CommitFeed, DeadLetter, OutboxWrite, Outgoing, OutgoingChange, Recorder, Tracking, Versions, check_partition,
    check_write, duplicate_in_batch,
};
use crate::{AppName, Error, Namespace, Notification, NotificationSource, Result, StoredEvent, Timestamp};

/// A store in this process's memory. Clones share the same data, and so do
/// recorders opened twice for one application.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    /// Each application's tables, by table prefix (with its namespace).
    apps: Arc<Mutex<HashMap<String, Arc<Mutex<Tables>>>>>,
    feed: CommitFeed,
    /// Where this handle's recorders keep their tables (set by
    /// [`Store::namespaced`](crate::Store::namespaced)).
    pub(super) namespace: Option<Namespace>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The recorder of one application: with one partition if it is new,
    /// else with the partitions it was opened with first.
    pub fn recorder(&self, app: &AppName) -> Result<MemoryRecorder> {
        self.recorder_with(app, None)
    }

    /// A subscription to the commits of this store's recorders.
    pub fn commits(&self) -> super::Commits {
        self.feed.subscribe(self.namespace.as_ref())
    }

    /// The recorder of one application whose log has `partitions`
    /// partitions; see [`Store::partitioned_recorder`](crate::Store::partitioned_recorder).
    pub fn partitioned_recorder(&self, app: &AppName, partitions: u32) -> Result<MemoryRecorder> {
        self.recorder_with(app, Some(partitions))
    }

    pub(super) fn recorder_with(&self, app: &AppName, partitions: Option<u32>) -> Result<MemoryRecorder> {
        let app = app.in_namespace(self.namespace.as_ref())?;
        self.claimed_recorder(&app, partitions, Claim::Leave)
    }

    pub(super) fn claimed_recorder(
        &self,
        app: &AppName,
        partitions: Option<u32>,
        claim: Claim,
    ) -> Result<MemoryRecorder> {
        let app = app.clone();
        let (tables, stored) = self.tables(&app, partitions);
        super::check_partitions_unchanged(&app, stored, partitions)?;
        {
            let mut tables = tables.lock().unwrap_or_else(PoisonError::into_inner);
            if tables.owner != owner_of(&app) {
                let (namespace, owner) = tables.owner.clone();
                return Err(super::claims::tables_taken(&app, owner, namespace));
            }
            match (claim, tables.claimed_by) {
                (Claim::Leave, _) => {}
                (Claim::Take(process), None) => tables.claimed_by = Some(process),
                (Claim::Check(process) | Claim::Take(process), Some(claimed_by)) if claimed_by != process => {
                    return Err(super::claims::clash(&app, claimed_by.to_owned(), process));
                }
                (Claim::Check(_) | Claim::Release, _) | (Claim::Take(_), Some(_)) => {}
            }
        }
        Ok(MemoryRecorder {
            app,
            tables,
            partitions: stored,
            feed: self.feed.clone(),
        })
    }

    /// Forgets which process application runs `app`'s tables, if they
    /// exist (see [`Store::release_claim`](crate::Store::release_claim)).
    pub(super) fn release_claim(&self, app: &AppName) {
        let apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tables) = apps.get(app.table_prefix()) {
            tables.lock().unwrap_or_else(PoisonError::into_inner).claimed_by = None;
        }
    }

    /// An application's tables, made with `partitions` (or 1) if new, and
    /// the partitions they have.
    fn tables(&self, app: &AppName, partitions: Option<u32>) -> (Arc<Mutex<Tables>>, u32) {
        let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        let tables = apps
            .entry(app.table_prefix().to_owned())
            .or_insert_with(|| {
                Arc::new(Mutex::new(Tables {
                    partitions: partitions.unwrap_or(1),
                    owner: owner_of(app),
                    ..Tables::default()
                }))
            })
            .clone();
        let stored = tables.lock().unwrap_or_else(PoisonError::into_inner).partitions;
        (tables, stored)
    }
}

/// One application's events, log and tracking positions.
#[derive(Debug, Default)]
struct Tables {
    /// How many partitions the log has.
    partitions: u32,
    /// (originator id, version) to the event's place in its partition's log.
    events: BTreeMap<(Uuid, u64), (u32, usize)>,
    /// Each partition's notifications; index `i` holds id `i + 1`.
    logs: HashMap<u32, Vec<Notification>>,
    tracking: HashMap<(String, u32), u64>,
    /// Parked notifications by (upstream, partition, notification id).
    dead_letters: BTreeMap<(String, u32, u64), DeadLetter>,
    /// Effects not yet delivered, by id.
    outbox: BTreeMap<Uuid, Outgoing>,
    /// The process application that runs these tables, if one claimed them.
    claimed_by: Option<&'static str>,
    /// The (namespace, application) that made them, lowercase.
    owner: (String, String),
}

/// Who owns `app`'s tables: its namespace ("" for none) and name, lowercase.
fn owner_of(app: &AppName) -> (String, String) {
    let namespace = app.namespace().map_or("", |ns| ns.table_prefix());
    (namespace.to_owned(), app.key().to_owned())
}

fn dead_letter_key(letter: &DeadLetter) -> (String, u32, u64) {
    (
        letter.upstream.as_str().to_owned(),
        letter.partition,
        letter.notification_id,
    )
}

/// The recorder of one application in a [`MemoryStore`].
#[derive(Clone, Debug)]
pub struct MemoryRecorder {
    app: AppName,
    tables: Arc<Mutex<Tables>>,
    partitions: u32,
    feed: CommitFeed,
}

impl MemoryRecorder {
    fn tables(&self) -> MutexGuard<'_, Tables> {
        // Every write checks before it changes anything, so a panic elsewhere
        // cannot leave the tables half-written.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks a write against the tables: all or nothing, so nothing is
    /// changed before every check passed.
    fn check(&self, tables: &Tables, events: &[StoredEvent], tracking: Option<&Tracking>) -> Result<()> {
        if let Some(t) = tracking {
            let found = tables
                .tracking
                .get(&(t.upstream.key().to_owned(), t.partition))
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
        Ok(())
    }

    /// Writes what [`check`](Self::check) passed.
    fn apply(
        &self,
        tables: &mut Tables,
        partition: u32,
        events: Vec<StoredEvent>,
        tracking: Option<&Tracking>,
    ) -> Vec<u64> {
        let mut ids = Vec::with_capacity(events.len());
        for event in events {
            let log = tables.logs.entry(partition).or_default();
            let index = log.len();
            let id = index as u64 + 1;
            let key = (event.originator_id, event.originator_version);
            log.push(Notification { id, partition, event });
            tables.events.insert(key, (partition, index));
            ids.push(id);
        }
        if let Some(t) = tracking {
            tables
                .tracking
                .insert((t.upstream.key().to_owned(), t.partition), t.position);
        }
        ids
    }
}

impl NotificationSource for MemoryRecorder {
    fn app(&self) -> &AppName {
        &self.app
    }

    fn partitions(&self) -> u32 {
        self.partitions
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
}

impl Recorder for MemoryRecorder {
    async fn insert(&self, partition: u32, events: Vec<StoredEvent>, tracking: Option<&Tracking>) -> Result<Vec<u64>> {
        check_partition(&self.app, self.partitions, partition)?;
        check_write(&self.app, &events, tracking)?;
        check_no_lease(&self.app, tracking)?;
        let ids = {
            let mut tables = self.tables();
            self.check(&tables, &events, tracking)?;
            self.apply(&mut tables, partition, events, tracking)
        };
        if let Some(&head) = ids.last() {
            self.feed.committed(&self.app, partition, head);
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

    async fn tracking_position(&self, upstream: &AppName, partition: u32) -> Result<u64> {
        Ok(self
            .tables()
            .tracking
            .get(&(upstream.key().to_owned(), partition))
            .copied()
            .unwrap_or(0))
    }

    async fn park(&self, letter: &DeadLetter, tracking: &Tracking) -> Result<()> {
        check_write(&self.app, &[], Some(tracking))?;
        check_no_lease(&self.app, Some(tracking))?;
        let mut tables = self.tables();
        self.check(&tables, &[], Some(tracking))?;
        self.apply(&mut tables, super::DEFAULT_PARTITION, Vec::new(), Some(tracking));
        tables.dead_letters.insert(dead_letter_key(letter), letter.clone());
        Ok(())
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        Ok(self.tables().dead_letters.values().cloned().collect())
    }

    async fn resolve_dead_letter(&self, letter: &DeadLetter, events: Vec<StoredEvent>) -> Result<Vec<u64>> {
        check_partition(&self.app, self.partitions, letter.partition)?;
        check_write(&self.app, &events, None)?;
        let mut tables = self.tables();
        let key = dead_letter_key(letter);
        if !tables.dead_letters.contains_key(&key) {
            return Err(letter.not_found());
        }
        self.check(&tables, &events, None)?;
        tables.dead_letters.remove(&key);
        let ids = self.apply(&mut tables, letter.partition, events, None);
        drop(tables);
        if let Some(&head) = ids.last() {
            self.feed.committed(&self.app, letter.partition, head);
        }
        Ok(ids)
    }

    async fn record_failed_retry(&self, letter: &DeadLetter) -> Result<u32> {
        let mut tables = self.tables();
        let parked = tables
            .dead_letters
            .get_mut(&dead_letter_key(letter))
            .ok_or_else(|| letter.not_found())?;
        parked.attempts = parked.attempts.saturating_add(1);
        parked.error.clone_from(&letter.error);
        parked.last_failed_at = letter.last_failed_at;
        Ok(parked.attempts)
    }

    async fn insert_with_outbox(
        &self,
        partition: u32,
        events: Vec<StoredEvent>,
        outbox: OutboxWrite,
    ) -> Result<Vec<u64>> {
        check_partition(&self.app, self.partitions, partition)?;
        check_write(&self.app, &events, None)?;
        let ids = {
            let mut tables = self.tables();
            self.check(&tables, &events, None)?;
            if let Some(id) = outbox.consume.filter(|id| !tables.outbox.contains_key(id)) {
                return Err(Error::EffectGone {
                    app: self.app.to_string(),
                    id,
                });
            }
            if let Some(taken) = outbox.add.iter().find(|o| tables.outbox.contains_key(&o.id)) {
                return Err(Error::InvalidWrite {
                    app: self.app.to_string(),
                    reason: format!("an effect with id {} is in the outbox already", taken.id),
                });
            }
            let ids = self.apply(&mut tables, partition, events, None);
            if let Some(id) = outbox.consume {
                tables.outbox.remove(&id);
            }
            tables.outbox.extend(outbox.add.into_iter().map(|o| (o.id, o)));
            ids
        };
        if let Some(&head) = ids.last() {
            self.feed.committed(&self.app, partition, head);
        }
        Ok(ids)
    }

    async fn due_outgoing(&self, due_by: Timestamp, limit: usize) -> Result<Vec<Outgoing>> {
        let tables = self.tables();
        let mut due: Vec<Outgoing> = tables
            .outbox
            .values()
            .filter(|o| !o.parked && o.due_at <= due_by)
            .cloned()
            .collect();
        due.sort_by_key(|o| (o.due_at, o.id));
        due.truncate(limit);
        Ok(due)
    }

    async fn parked_outgoing(&self) -> Result<Vec<Outgoing>> {
        let mut parked: Vec<Outgoing> = self.tables().outbox.values().filter(|o| o.parked).cloned().collect();
        parked.sort_by_key(|o| (o.created_at, o.id));
        Ok(parked)
    }

    async fn change_outgoing(&self, change: OutgoingChange) -> Result<bool> {
        let mut tables = self.tables();
        Ok(match change {
            OutgoingChange::Complete(id) => tables.outbox.remove(&id).is_some(),
            OutgoingChange::Fail {
                id,
                attempts,
                error,
                due_at,
            } => match tables.outbox.get_mut(&id) {
                Some(o) => {
                    o.attempts = attempts;
                    o.last_error = Some(error);
                    o.due_at = due_at.unwrap_or_else(Timestamp::now);
                    o.parked = due_at.is_none();
                    true
                }
                None => false,
            },
            OutgoingChange::Unpark { id, due_at } => match tables.outbox.get_mut(&id) {
                Some(o) if o.parked => {
                    o.parked = false;
                    o.due_at = due_at;
                    true
                }
                _ => false,
            },
            OutgoingChange::Claim { id, seen, until } => match tables.outbox.get_mut(&id) {
                Some(o) if !o.parked && o.due_at == seen => {
                    o.due_at = until;
                    true
                }
                _ => false,
            },
        })
    }
}

/// Leases coordinate processes through a shared database; a store in one
/// process's memory has none, and refuses a write that counts on one.
fn check_no_lease(app: &AppName, tracking: Option<&Tracking>) -> Result<()> {
    match tracking.and_then(|t| t.lease_epoch) {
        Some(epoch) => Err(crate::Error::InvalidWrite {
            app: app.to_string(),
            reason: format!(
                "a write fenced by lease epoch {epoch}, and the in-memory store keeps no leases; run workers on PostgreSQL"
            ),
        }),
        None => Ok(()),
    }
}
