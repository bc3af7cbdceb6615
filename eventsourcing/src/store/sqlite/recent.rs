//! The notifications this process committed last, per log, so that its
//! followers read them from memory instead of back from SQLite. A follower
//! usually reads what was written a moment ago, and reading a page back
//! from SQLite (a JSON array built on sqlx's SQLite thread, parsed here) is
//! the costliest part of following a log.
//!
//! Only committed notifications are kept, moved here once their commit is
//! on disk (`flush.rs`; their events are not copied). A log's notifications are
//! kept only while they are contiguous: a write numbered after a gap (
//! another process wrote to the file, or a commit whose outcome was in
//! doubt) starts the log's memory again from that write. Reads take what
//! memory holds from their start and the rest from SQLite, so a page is the
//! same either way.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::{Notification, StoredEvent};

/// Notifications kept per log, at most.
const MAX_KEPT: usize = 8_192;
/// Bytes of event state kept per log, at most.
const MAX_KEPT_BYTES: usize = 8 << 20;

/// The recent notifications of every log written through one store.
#[derive(Debug, Default)]
pub(super) struct Recent {
    /// By table prefix, then partition.
    logs: Mutex<HashMap<String, HashMap<u32, Kept>>>,
}

/// A contiguous run of one log's notifications: `events[i]` has id
/// `first + i`.
#[derive(Debug, Default)]
struct Kept {
    first: u64,
    events: VecDeque<StoredEvent>,
    bytes: usize,
}

impl Kept {
    /// The id after the last one kept.
    fn end(&self) -> u64 {
        self.first + self.events.len() as u64
    }
}

impl Recent {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u32, Kept>>> {
        self.logs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps the events of a committed write, numbered from `first`.
    pub(super) fn committed(&self, prefix: &str, partition: u32, first: u64, events: Vec<StoredEvent>) {
        let mut logs = self.lock();
        let partitions = match logs.get_mut(prefix) {
            Some(partitions) => partitions,
            None => logs.entry(prefix.to_owned()).or_default(),
        };
        let kept = partitions.entry(partition).or_default();
        if kept.events.is_empty() || kept.end() != first {
            *kept = Kept {
                first,
                ..Kept::default()
            };
        }
        for event in events {
            kept.bytes += event.state.len();
            kept.events.push_back(event);
        }
        while kept.events.len() > MAX_KEPT || (kept.bytes > MAX_KEPT_BYTES && kept.events.len() > 1) {
            if let Some(old) = kept.events.pop_front() {
                kept.bytes -= old.state.len();
                kept.first += 1;
            }
        }
    }

    /// Up to `limit` notifications from `start` on that memory holds, in
    /// id order: all of them from `start` to the last kept, or none if
    /// `start` is not kept.
    pub(super) fn read(&self, prefix: &str, partition: u32, start: u64, limit: usize) -> Vec<Notification> {
        let logs = self.lock();
        let Some(kept) = logs.get(prefix).and_then(|partitions| partitions.get(&partition)) else {
            return Vec::new();
        };
        if start < kept.first || start >= kept.end() {
            return Vec::new();
        }
        let skip = usize::try_from(start - kept.first).unwrap_or(usize::MAX);
        (start..)
            .zip(kept.events.iter().skip(skip).take(limit))
            .map(|(id, event)| Notification {
                id,
                partition,
                event: event.clone(),
            })
            .collect()
    }
}
