//! How a process application processes: batch size, retries, polling,
//! what a notification that keeps failing does; for all applications, and
//! per application.

use std::sync::Arc;
use std::time::Duration;

use super::Process;
use super::instances::Instances;

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
    /// prompt arrives (prompts cover commits made in this process, and on
    /// PostgreSQL in every process; polling covers prompts that were lost,
    /// and commits by other processes on a SQLite file).
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
    /// What to do with a notification whose topic no aggregate of its
    /// upstream records (an event type removed or renamed upstream, or a
    /// row written by something else).
    pub unknown_topics: UnknownTopics,
    /// What a notification whose handler still fails after
    /// [`retries`](Self::retries) does: stop its application (the default),
    /// or park and let processing go on.
    pub on_failure: OnFailure,
    /// Settings for one application, over the ones above.
    overrides: AppOverrides,
    /// The applications made by the caller, with their dependencies.
    pub(crate) instances: Instances,
    /// How long the database may stay unreachable (a restart, a failover, a
    /// network cut) before the application stops with
    /// [`Error::Outage`](crate::Error::Outage). Until then every read and
    /// commit that fails on the connection is retried with backoff (50 ms
    /// doubling to 2 s), logged as a warning, and not counted toward
    /// [`retries`](Self::retries).
    pub outage_budget: Duration,
    /// How many partitions every log of the system has (1 to
    /// [`MAX_PARTITIONS`](crate::store::MAX_PARTITIONS); 1 by default).
    /// A command's events go to the partition of its first aggregate's id
    /// ([`partition_of`](crate::partition_of)); a process application
    /// processes each upstream partition on its own and writes into the
    /// same partition. Set per system: a store whose logs were written
    /// with another number is refused.
    pub partitions: u32,
    /// How long a worker's lease on an application-partition lasts without
    /// renewal ([`Runner::worker`](crate::Runner::worker)): workers renew
    /// every third of it, and take over a dead worker's partitions once it
    /// has passed. Shorter fails over sooner; longer rides out longer
    /// pauses (a stop-the-world, a slow network) without handing over.
    pub lease_ttl: Duration,
    /// The applications of the system that run in other processes, and
    /// where they serve their logs.
    #[cfg(feature = "http")]
    elsewhere: Vec<(&'static str, crate::http::Upstream)>,
}

/// What a process application does with an upstream notification whose
/// topic none of the upstream's aggregates records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnknownTopics {
    /// Log a warning naming the application, the notification and its
    /// topic, and pass over it (the default).
    #[default]
    Warn,
    /// Fail on it, as on a handler error: the application retries and then
    /// stops there, so that nothing is passed over unseen.
    Stop,
}

/// What a process application does with a notification whose handler still
/// fails after its retries (an error, a panic, an event that does not
/// decode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnFailure {
    /// The application stops with [`Error::Processing`](crate::Error::Processing),
    /// and every later notification waits until the cause is fixed.
    #[default]
    Stop,
    /// The notification is parked: recorded as a
    /// [`DeadLetter`](crate::DeadLetter) in the transaction that moves the
    /// tracking position past it, and processing goes on with the next one.
    /// Failures of the store itself still stop or are retried.
    Park,
}

/// Changes one application's settings: applied to the settings for all
/// when a runner starts.
type Override = Arc<dyn Fn(ProcessOptions) -> ProcessOptions + Send + Sync>;

/// The per-application settings, in the order they were given.
#[derive(Clone, Default)]
struct AppOverrides(Vec<(&'static str, Override)>);

impl std::fmt::Debug for AppOverrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(app, _)| app)).finish()
    }
}

/// The same overrides: the same applications, with the same functions.
impl PartialEq for AppOverrides {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|((a, f), (b, g))| a == b && Arc::ptr_eq(f, g))
    }
}

impl Eq for AppOverrides {}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            batch_size: 100,
            retries: 0,
            retry_delay: Duration::from_millis(500),
            poll_interval: Duration::from_millis(100),
            cache_capacity: 10_000,
            unknown_topics: UnknownTopics::Warn,
            on_failure: OnFailure::Stop,
            overrides: AppOverrides::default(),
            instances: Instances::default(),
            outage_budget: Duration::from_secs(60),
            partitions: 1,
            lease_ttl: Duration::from_secs(10),
            #[cfg(feature = "http")]
            elsewhere: Vec::new(),
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

    /// Sets [`unknown_topics`](Self::unknown_topics).
    pub fn unknown_topics(mut self, unknown_topics: UnknownTopics) -> Self {
        self.unknown_topics = unknown_topics;
        self
    }

    /// Sets [`cache_capacity`](Self::cache_capacity).
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Sets [`partitions`](Self::partitions).
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Sets [`lease_ttl`](Self::lease_ttl).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Sets [`outage_budget`](Self::outage_budget).
    pub fn outage_budget(mut self, budget: Duration) -> Self {
        self.outage_budget = budget;
        self
    }
    /// Sets [`on_failure`](Self::on_failure).
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// Settings for the application `P` alone: `change` gets the settings
    /// for all (whatever order they are given in) and returns `P`'s.
    ///
    /// ```
    /// # use eventsourcing::prelude::*;
    /// # #[derive(Default)] struct Payments;
    /// # #[policy(aggregates())] impl Payments {}
    /// # #[derive(Default)] struct Audit;
    /// # #[policy(aggregates())] impl Audit {}
    /// use eventsourcing::OnFailure;
    ///
    /// let options = ProcessOptions::default()
    ///     .app::<Payments>(|o| o.on_failure(OnFailure::Park))
    ///     .batch_size(50);
    /// assert_eq!(options.for_app("Payments").on_failure, OnFailure::Park);
    /// assert_eq!(options.for_app("Payments").batch_size, 50);
    /// assert_eq!(options.for_app("Audit").on_failure, OnFailure::Stop);
    /// ```
    ///
    /// A runner refuses settings for an application its system does not
    /// have.
    pub fn app<P: Process>(
        mut self,
        change: impl Fn(ProcessOptions) -> ProcessOptions + Send + Sync + 'static,
    ) -> Self {
        self.overrides.0.push((P::NAME, Arc::new(change)));
        self
    }

    /// The application `P` as the runner runs it: `policy`, made by the
    /// caller with its dependencies (an HTTP client, a configuration, a
    /// connection pool), rather than `P::default()`. An application
    /// without `Default` needs one: a runner refuses to start without it,
    /// and refuses an instance of a type that is not an application of its
    /// system. Given twice, the last one counts.
    ///
    /// The one instance is shared by all the application's workers (every
    /// partition, every task of a multi-task runner) and by
    /// [`Runner::retry_dead_letter`](crate::Runner::retry_dead_letter), so
    /// its handlers, which take `&self`, may run at the same time: state
    /// that changes goes behind a lock or an atomic. Without an instance,
    /// each worker makes its own `P::default()`.
    ///
    /// ```
    /// # use eventsourcing::prelude::*;
    /// struct Notifier {
    ///     endpoint: String,
    /// }
    /// # #[policy(aggregates())] impl Notifier {}
    ///
    /// let options = ProcessOptions::default().instance(Notifier { endpoint: "http://10.0.0.7/notices".into() });
    /// ```
    pub fn instance<P: Process>(mut self, policy: P) -> Self {
        self.instances.add(policy);
        self
    }

    /// The settings the application named `app` runs with: these, changed
    /// by whatever [`app`](Self::app) gave for it.
    pub fn for_app(&self, app: &str) -> ProcessOptions {
        let base = ProcessOptions {
            overrides: AppOverrides::default(),
            ..self.clone()
        };
        self.overrides
            .0
            .iter()
            .filter(|(name, _)| *name == app)
            .fold(base, |options, (_, change)| ProcessOptions {
                // An application's settings cannot name other applications.
                // (Instances given there a runner refuses: see `instances.rs`.)
                overrides: AppOverrides::default(),
                ..change(options)
            })
    }

    /// Says that the application `P` runs in another process, with a
    /// store of its own, and serves its log at `upstream`: a runner given
    /// these options does not run `P`, and the applications that follow it
    /// read its log over HTTP (woken by the server's long poll). Their
    /// tracking stays in their own store, so they process it exactly once.
    /// The system stays the one `system!` declared, on both sides.
    ///
    /// ```
    /// # use eventsourcing::prelude::*;
    /// # #[derive(Default)] struct Reservations;
    /// # #[policy(aggregates())] impl Reservations {}
    /// use eventsourcing::http::Upstream;
    ///
    /// let options = ProcessOptions::default().upstream::<Reservations>(Upstream::http("http://10.0.0.5:8080"));
    /// assert_eq!(options.elsewhere("Reservations").map(Upstream::url), Some("http://10.0.0.5:8080"));
    /// ```
    #[cfg(feature = "http")]
    pub fn upstream<P: Process>(mut self, upstream: crate::http::Upstream) -> Self {
        self.elsewhere.retain(|(app, _)| *app != P::NAME);
        self.elsewhere.push((P::NAME, upstream));
        self
    }

    /// Where the application named `app` serves its log, if it runs in
    /// another process ([`upstream`](Self::upstream)).
    #[cfg(feature = "http")]
    pub fn elsewhere(&self, app: &str) -> Option<&crate::http::Upstream> {
        self.elsewhere
            .iter()
            .find(|(name, _)| *name == app)
            .map(|(_, upstream)| upstream)
    }

    /// The applications that run in other processes.
    pub(crate) fn apps_elsewhere(&self) -> impl Iterator<Item = &'static str> + '_ {
        #[cfg(feature = "http")]
        return self.elsewhere.iter().map(|(app, _)| *app);
        #[cfg(not(feature = "http"))]
        std::iter::empty()
    }

    /// The applications given settings of their own.
    pub(crate) fn apps_with_settings(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.overrides.0.iter().map(|(app, _)| *app)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Payments;

    #[crate::policy(aggregates())]
    impl Payments {}

    #[test]
    fn an_application_gets_the_settings_for_all_changed_by_its_own_in_order() {
        let options = ProcessOptions::default()
            .app::<Payments>(|o| {
                let retries = o.retries + 1;
                o.retries(retries, Duration::ZERO)
            })
            .retries(2, Duration::from_millis(1))
            .app::<Payments>(|o| o.on_failure(OnFailure::Park).app::<Payments>(|o| o.batch_size(7)));

        let payments = options.for_app("Payments");
        assert_eq!((payments.retries, payments.retry_delay), (3, Duration::ZERO));
        assert_eq!(payments.on_failure, OnFailure::Park);
        // Settings given inside an application's own are not applied.
        assert_eq!(payments.batch_size, 100);
        assert_eq!(payments.apps_with_settings().count(), 0);

        let others = options.for_app("Audit");
        assert_eq!((others.retries, others.on_failure), (2, OnFailure::Stop));
        assert_eq!(
            options.apps_with_settings().collect::<Vec<_>>(),
            ["Payments", "Payments"]
        );
        assert_eq!(options.clone(), options, "clones share the same settings");
    }
}
