//! How a process application processes: batch size, retries, polling.

use std::time::Duration;

/// Settings for the loops that process upstream notifications.
///
/// ```
/// use std::time::Duration;
/// use eventsourcing::ProcessOptions;
///
/// let options = ProcessOptions::default().batch_size(500).retries(3, Duration::from_millis(100));
/// assert_eq!(options.batch_size, 500);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessOptions {
    /// The most notifications processed in one transaction (at least 1).
    pub batch_size: usize,
    /// How many times a failing notification is tried again before the
    /// application stops (0: stop at the first failure).
    pub retries: u32,
    /// How long to wait before trying a failed notification again.
    pub retry_delay: Duration,
    /// How often a multi-task runner looks for new notifications when no
    /// prompt arrives (prompts cover writes made in this process; polling
    /// covers writes made by other processes).
    pub poll_interval: Duration,
    /// How many aggregates each application keeps in memory between
    /// transactions, instead of replaying them from the store.
    ///
    /// Saves through this process's applications keep the cache true. A
    /// change made by another process is noticed when this process writes
    /// that aggregate (a concurrency conflict, then a reload), but not when
    /// a handler only reads it: set 0 if other processes change aggregates
    /// that your handlers read without writing.
    pub cache_capacity: usize,
    /// How long the database may stay unreachable (a restart, a failover, a
    /// network cut) before the application stops with
    /// [`Error::Outage`](crate::Error::Outage). Until then every read and
    /// commit that fails on the connection is retried with backoff (50 ms
    /// doubling to 2 s), logged as a warning, and not counted toward
    /// [`retries`](Self::retries).
    pub outage_budget: Duration,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            batch_size: 100,
            retries: 0,
            retry_delay: Duration::from_millis(500),
            poll_interval: Duration::from_millis(100),
            cache_capacity: 10_000,
            outage_budget: Duration::from_secs(60),
        }
    }
}

impl ProcessOptions {
    /// Sets [`batch_size`](Self::batch_size); 0 counts as 1.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Sets [`retries`](Self::retries) and [`retry_delay`](Self::retry_delay).
    pub fn retries(mut self, retries: u32, delay: Duration) -> Self {
        self.retries = retries;
        self.retry_delay = delay;
        self
    }

    /// Sets [`poll_interval`](Self::poll_interval).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets [`cache_capacity`](Self::cache_capacity).
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Sets [`outage_budget`](Self::outage_budget).
    pub fn outage_budget(mut self, budget: Duration) -> Self {
        self.outage_budget = budget;
        self
    }
}
