//! The histories of aggregates an application's commands just created, so
//! that its own process finds them without a read from the store.
//!
//! In the orders system a customer's command creates each order, and
//! moments later the Orders process loads that order to mark it reserved.
//! The command had the order's whole history in hand (its events from
//! version 1), so `Application::save` leaves a copy here and the process's
//! repository replays it instead of asking the store. A history that went
//! stale meanwhile (another writer changed the aggregate) only costs a
//! concurrency conflict at commit, after which the process reloads from the
//! store: optimistic concurrency keeps this safe.
//!
//! Saves of aggregates that already existed mark them stale here instead,
//! so that the process drops its cached copy and reads the store: a handler
//! that only reads an aggregate would otherwise decide on an old state with
//! no conflict to tell it. (Writers in other processes are not seen this
//! way; see `ProcessOptions::cache_capacity`.)

use std::collections::HashSet;
use std::sync::Mutex;

use uuid::Uuid;

use super::fifo::FifoMap;
use crate::StoredEvent;

#[derive(Debug)]
pub(crate) struct WarmHistories {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    histories: FifoMap<Vec<StoredEvent>>,
    /// Aggregates saved since the process may have cached them.
    stale: HashSet<Uuid>,
    /// Set when too many went stale to list: the process drops its cache.
    all_stale: bool,
}

impl WarmHistories {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                histories: FifoMap::new(capacity),
                stale: HashSet::new(),
                all_stale: false,
            }),
        }
    }

    /// Keeps the complete histories among `events`: the runs of one
    /// aggregate's events that start at version 1.
    pub(crate) fn put_new(&self, events: Vec<StoredEvent>) {
        self.put(events, true);
    }

    /// Keeps the histories of aggregates created among `events`, read from
    /// the application's own log (by a worker whose commands run in other
    /// processes). Unlike [`put_new`](Self::put_new), later events mark
    /// nothing stale: they may be this process's own writes, which its
    /// cache already holds. They drop a kept history that they extend, so
    /// that no history handed out is known to be short; one that goes
    /// short afterwards costs a concurrency conflict at commit, as with
    /// `put_new`.
    pub(crate) fn put_from_log(&self, events: impl IntoIterator<Item = StoredEvent>) {
        self.put(events, false);
    }

    /// Keeps the runs of one aggregate's events that start at version 1;
    /// a run that starts later drops the aggregate's kept history and, if
    /// `mark_stale`, marks it stale.
    fn put(&self, events: impl IntoIterator<Item = StoredEvent>, mark_stale: bool) {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let capacity = inner.histories.capacity();
        if capacity == 0 {
            return;
        }
        let mut events = events.into_iter().peekable();
        while let Some(first) = events.next() {
            let id = first.originator_id;
            if first.originator_version != 1 {
                inner.histories.take(id);
                if mark_stale {
                    inner.stale.insert(id);
                    if inner.stale.len() > capacity {
                        inner.stale.clear();
                        inner.all_stale = true;
                    }
                }
                continue;
            }
            let mut history = vec![first];
            while let Some(next) =
                events.next_if(|e| e.originator_id == id && e.originator_version == history.len() as u64 + 1)
            {
                history.push(next);
            }
            inner.histories.put(id, history);
        }
    }

    /// Whether a cached copy of `id` may be behind the store; asking
    /// forgets the answer.
    pub(crate) fn take_stale(&self, id: Uuid) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.stale.remove(&id)
    }

    /// Whether every cached aggregate may be behind the store; asking
    /// forgets the answer.
    pub(crate) fn take_all_stale(&self) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::take(&mut inner.all_stale)
    }

    /// The history of `id`, if a command left it here.
    pub(crate) fn take(&self, id: Uuid) -> Option<Vec<StoredEvent>> {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.histories.take(id)
    }

    /// Forgets everything, after a conflict.
    pub(crate) fn clear(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.histories.clear();
        inner.stale.clear();
        inner.all_stale = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    fn event(id: Uuid, version: u64) -> StoredEvent {
        StoredEvent {
            originator_id: id,
            originator_version: version,
            timestamp: Timestamp::now(),
            topic: "T".into(),
            state_version: 1,
            state: Vec::new(),
        }
    }

    #[test]
    fn keeps_whole_histories_and_marks_later_saves_stale() {
        let warm = WarmHistories::new(10);
        let (new, old) = (Uuid::now_v7(), Uuid::now_v7());
        warm.put_new(vec![event(new, 1), event(new, 2), event(old, 4)]);
        assert_eq!(warm.take(new).map(|h| h.len()), Some(2));
        assert!(warm.take(old).is_none(), "a history from version 4 is not whole");
        assert!(warm.take_stale(old));
        assert!(!warm.take_stale(old), "asking forgets");

        // A later save of a new aggregate makes its kept history stale.
        warm.put_new(vec![event(new, 1)]);
        warm.put_new(vec![event(new, 2)]);
        assert!(warm.take(new).is_none());
        assert!(warm.take_stale(new));
    }

    #[test]
    fn histories_from_the_log_are_kept_and_later_events_mark_nothing_stale() {
        let warm = WarmHistories::new(10);
        let (new, old) = (Uuid::now_v7(), Uuid::now_v7());
        warm.put_from_log(vec![event(new, 1), event(new, 2), event(old, 2)]);
        assert_eq!(warm.take(new).map(|h| h.len()), Some(2));
        assert!(
            !warm.take_stale(old),
            "an event after version 1 may be this process's own"
        );

        // A later event drops a kept history it extends.
        warm.put_from_log(vec![event(new, 1)]);
        warm.put_from_log(vec![event(new, 2)]);
        assert!(warm.take(new).is_none());
        assert!(!warm.take_stale(new));
    }

    #[test]
    fn too_many_stale_aggregates_make_everything_stale() {
        let warm = WarmHistories::new(2);
        let saves: Vec<_> = (0..3).map(|_| event(Uuid::now_v7(), 2)).collect();
        warm.put_new(saves);
        assert!(warm.take_all_stale());
        assert!(!warm.take_all_stale());
    }
}
