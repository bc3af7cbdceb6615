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

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use uuid::Uuid;

use crate::StoredEvent;

#[derive(Debug)]
pub(crate) struct WarmHistories {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    histories: HashMap<Uuid, Vec<StoredEvent>>,
    /// Ids in the order they came; may hold ids since taken.
    order: VecDeque<Uuid>,
}

impl WarmHistories {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity,
        }
    }

    /// Keeps the complete histories among `events`: the runs of one
    /// aggregate's events that start at version 1.
    pub(crate) fn put_new(&self, events: &[StoredEvent]) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut rest = events;
        while let Some(first) = rest.first() {
            let run = rest
                .iter()
                .zip(1..)
                .take_while(|(e, version)| e.originator_id == first.originator_id && e.originator_version == *version)
                .count()
                .max(1);
            if first.originator_version == 1 {
                inner.histories.insert(first.originator_id, rest[..run].to_vec());
                inner.order.push_back(first.originator_id);
            }
            rest = &rest[run..];
        }
        while inner.histories.len() > self.capacity {
            match inner.order.pop_front() {
                Some(oldest) => {
                    inner.histories.remove(&oldest);
                }
                None => break,
            }
        }
        if inner.order.len() > 2 * self.capacity.max(16) {
            let Inner { histories, order } = &mut *inner;
            order.retain(|id| histories.contains_key(id));
        }
    }

    /// The history of `id`, if a command left it here.
    pub(crate) fn take(&self, id: Uuid) -> Option<Vec<StoredEvent>> {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.histories.remove(&id)
    }

    /// Forgets everything, after a conflict.
    pub(crate) fn clear(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.histories.clear();
        inner.order.clear();
    }
}
