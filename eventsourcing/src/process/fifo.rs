//! A map of aggregate ids that keeps at most `capacity` entries, forgetting
//! the oldest first: the shape of both the aggregate cache and the warm
//! histories.

use std::collections::{HashMap, HashSet, VecDeque};

use uuid::Uuid;

#[derive(Debug)]
pub(crate) struct FifoMap<V> {
    map: HashMap<Uuid, V>,
    /// Ids in the order they were put; may hold ids since taken, and ids
    /// put more than once.
    order: VecDeque<Uuid>,
    capacity: usize,
}

impl<V> FifoMap<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Keeps `value` for `id`, forgetting the oldest entries beyond the
    /// capacity (everything, with capacity 0).
    pub(crate) fn put(&mut self, id: Uuid, value: V) {
        if self.capacity == 0 {
            return;
        }
        self.map.insert(id, value);
        self.order.push_back(id);
        while self.map.len() > self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.map.remove(&oldest);
                }
                None => break,
            }
        }
        // Ids taken, or put again, linger in the queue; keep it short,
        // keeping each id's latest place.
        if self.order.len() > 2 * self.capacity.max(16) {
            let map = &self.map;
            let mut seen = HashSet::new();
            let kept: Vec<Uuid> = self
                .order
                .iter()
                .rev()
                .filter(|id| map.contains_key(id) && seen.insert(**id))
                .copied()
                .collect();
            self.order = kept.into_iter().rev().collect();
        }
    }

    pub(crate) fn take(&mut self, id: Uuid) -> Option<V> {
        self.map.remove(&id)
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}
