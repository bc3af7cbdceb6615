//! The loop of one process application: read a batch of upstream
//! notifications, run the policy on each, and commit the new events with
//! the tracking position in one transaction.
//!
//! Exactly once rests on the recorder: the tracking position moves from
//! the position this worker read to the last notification of the batch, or
//! the commit fails and leaves no trace. A handler that fails (error,
//! panic, undecodable event) abandons the batch; the notifications before
//! it are processed again and committed without it, and the failing one is
//! retried, then stops the application or is parked as a dead letter, per
//! [`ProcessOptions`].
//!
//! A failure on the connection (see `outage.rs`) is none of these: the
//! worker forgets what it cached and what it knew of its tracking position,
//! waits, and reads both again, since a commit whose reply was lost may or
//! may not have landed. The tracking compare-and-set keeps that exactly once.

use std::any::Any;
use std::sync::Arc;

use super::outage::{self, Outage};
use super::repo::{Cache, RepoCore};
use super::upstream_log::UpstreamLog;
use super::{HandlerError, Handling, OnFailure, Process, ProcessOptions, Records, Repo, UnknownTopics};
use crate::catch_unwind::CatchUnwind;
use crate::{
    AppName, Application, DeadLetter, Error, Notification, NotificationSource, Recorder, Result, Timestamp, Tracking,
};

/// How often a batch is tried again after another writer changed one of
/// its aggregates, before the conflict counts as a failure.
const MAX_CONFLICT_RETRIES: u32 = 8;

/// How many batches' worth of notifications that produce no events may pass
/// before their tracking position is committed. Passing over a notification
/// has no effect, so doing it again after a crash is harmless; deferring
/// saves a commit per batch of them. The position is always committed when
/// the application catches up, and at shutdown.
const DEFERRED_BATCHES: u64 = 10;

/// A process application's policy, without its type.
pub(crate) trait DynProcess: Send + Sync {
    fn handle<'a>(
        &'a self,
        upstream: &'static str,
        n: &'a Notification,
        repo: &'a mut RepoCore,
    ) -> Option<Handling<'a>>;
}

impl<P: Process> DynProcess for P {
    fn handle<'a>(
        &'a self,
        upstream: &'static str,
        n: &'a Notification,
        repo: &'a mut RepoCore,
    ) -> Option<Handling<'a>> {
        Process::handle(self, upstream, n, Repo::from_core(repo))
    }
}

/// An upstream log and how far this application has processed it.
struct Upstream {
    name: &'static str,
    /// What the upstream records: a topic outside it is unknown.
    records: &'static [Records],
    app: AppName,
    log: UpstreamLog,
    /// The last notification processed; `None` until read from the
    /// tracking table.
    position: Option<u64>,
    /// The position the tracking table holds (valid with `position`):
    /// behind `position` while tracking-only commits are deferred.
    recorded: u64,
    /// Failures in a row at `position`.
    failures: u32,
    /// Whether the last failure here was already tried again with nothing
    /// cached, in case a cached aggregate was behind the store.
    retried_uncached: bool,
    /// The notification whose handler just failed: set where it failed,
    /// taken by `failed`, which parks it if the options say so.
    failing: Option<Notification>,
}

/// One process application at work on one partition: it reads that
/// partition of each upstream log and writes into its own.
pub(crate) struct Worker {
    name: &'static str,
    partition: u32,
    /// Where the runner's saves leave new aggregates' histories for this
    /// worker (its application's, in its partition).
    warm: Option<Arc<super::warm::WarmHistories>>,
    /// The epoch of the lease this worker holds on its partition, under
    /// `Runner::worker`: every commit is fenced by it.
    lease_epoch: Option<u64>,
    /// Where its repositories find new aggregates' histories: set for a
    /// worker under a lease, whose commands run in other processes.
    own_log: Option<super::repo::OwnLog>,
    /// Notifications processed (committed), for a worker's share.
    processed: Arc<std::sync::atomic::AtomicU64>,
    app: Application,
    policy: Arc<dyn DynProcess>,
    upstreams: Vec<Upstream>,
    cache: Cache,
    options: ProcessOptions,
    outage: Outage,
}

/// Why a batch did not commit.
enum BatchFailure {
    /// The notification at `index` failed; nothing was committed.
    Handler { index: usize, error: Error },
    /// The commit itself failed.
    Commit(Error),
}

impl Worker {
    pub(crate) fn new(
        name: &'static str,
        partition: u32,
        app: Application,
        warm: Option<Arc<super::warm::WarmHistories>>,
        policy: Arc<dyn DynProcess>,
        upstreams: Vec<(&'static str, &'static [Records], UpstreamLog)>,
        options: ProcessOptions,
    ) -> Self {
        let upstreams = upstreams
            .into_iter()
            .map(|(name, records, log)| Upstream {
                name,
                records,
                // As the store names it in tracking rows and dead letters
                // read back: without the namespace its follower shares.
                app: log.app().without_namespace(),
                log,
                position: None,
                recorded: 0,
                failures: 0,
                retried_uncached: false,
                failing: None,
            })
            .collect();
        Self {
            name,
            partition,
            warm,
            lease_epoch: None,
            own_log: None,
            processed: Arc::default(),
            outage: Outage::new(Some(name), app.recorder(), options.outage_budget),
            app,
            policy,
            upstreams,
            cache: Cache::new(options.cache_capacity),
            options,
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The partition this worker processes.
    pub(crate) fn partition(&self) -> u32 {
        self.partition
    }

    /// Fences every commit by the lease held at `epoch`.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn under_lease(mut self, epoch: u64) -> Self {
        self.lease_epoch = Some(epoch);
        self.own_log = Some(super::repo::OwnLog::new(self.partition, self.options.cache_capacity));
        self
    }

    /// Counts the notifications this worker processes into `processed`.
    pub(crate) fn counting(mut self, processed: Arc<std::sync::atomic::AtomicU64>) -> Self {
        self.processed = processed;
        self
    }

    /// One batch from each upstream in turn. Returns whether anything was
    /// done (or is worth trying again at once).
    pub(crate) async fn step_all(&mut self) -> Result<bool> {
        let mut busy = false;
        for upstream in 0..self.upstreams.len() {
            busy |= self.step(upstream).await?;
        }
        Ok(busy)
    }

    /// Processes everything upstream until caught up. Returns whether
    /// anything was processed.
    pub(crate) async fn catch_up(&mut self) -> Result<bool> {
        let mut any = false;
        while self.step_all().await? {
            any = true;
        }
        Ok(any)
    }

    /// How many upstream logs this application follows.
    pub(crate) fn upstream_count(&self) -> usize {
        self.upstreams.len()
    }

    /// Processes the next batch from upstream `u`. Returns `false` if it is
    /// caught up.
    pub(crate) async fn step(&mut self, u: usize) -> Result<bool> {
        let previous = match self.position(u).await {
            Ok(previous) => previous,
            Err(error) => return self.failed_or_interrupted(u, error).await,
        };
        let upstream = &self.upstreams[u];
        let batch = match upstream
            .log
            .select_notifications(self.partition, previous + 1, self.options.batch_size)
            .await
        {
            Ok(batch) => batch,
            Err(error) => return self.failed_or_interrupted(u, error).await,
        };
        let Some(first) = batch.first() else {
            return self.record_position(u).await;
        };
        if first.id != previous + 1 {
            let error = Error::LogGap {
                app: upstream.app.to_string(),
                partition: self.partition,
                position: previous,
                found: first.id,
            };
            return self.failed(u, error).await;
        }

        let recorded = upstream.recorded;
        let mut may_defer =
            previous + batch.len() as u64 - recorded < DEFERRED_BATCHES * self.options.batch_size as u64;
        let mut end = batch.len();
        let mut conflicts = 0;
        loop {
            match self.process_batch(u, &batch[..end], recorded, may_defer).await {
                Ok(committed) => {
                    self.outage.over();
                    self.processed
                        .fetch_add(end as u64, std::sync::atomic::Ordering::Relaxed);
                    let upstream = &mut self.upstreams[u];
                    upstream.position = Some(batch[end - 1].id);
                    if committed {
                        upstream.recorded = batch[end - 1].id;
                    }
                    upstream.failures = 0;
                    upstream.retried_uncached = false;
                    return Ok(true);
                }
                // Commit the notifications before the failing one, whatever
                // they produced; it fails again on its own in the next step,
                // where retries count.
                Err(BatchFailure::Handler { index, .. }) if index > 0 => {
                    end = index;
                    may_defer = false;
                }
                Err(BatchFailure::Handler { error, .. }) => {
                    self.upstreams[u].failing = Some(batch[0].clone());
                    return self.failed_or_interrupted(u, error).await;
                }
                Err(BatchFailure::Commit(Error::TrackingConflict { found, .. })) => {
                    self.outage.over();
                    self.skip_ahead(u, found);
                    return Ok(true);
                }
                // Another worker took the partition: nothing to retry here.
                Err(BatchFailure::Commit(error @ Error::LeaseLost { .. })) => return Err(error),
                Err(BatchFailure::Commit(error)) if outage::is_transient(&error) => {
                    return self.interrupted(u, error).await;
                }
                Err(BatchFailure::Commit(Error::Concurrency { .. })) if conflicts < MAX_CONFLICT_RETRIES => {
                    // A cached aggregate was stale: reload from the store.
                    conflicts += 1;
                    self.forget_cached();
                }
                Err(BatchFailure::Commit(error)) => {
                    let error = processing_error(self.name, self.upstreams[u].name, &batch[0], Box::new(error));
                    return self.failed(u, error).await;
                }
            }
        }
    }

    /// Commits the position of notifications passed over without a commit.
    /// Returns whether there is more to do: a commit that failed is tried
    /// again, so the application is not caught up until it lands.
    async fn record_position(&mut self, u: usize) -> Result<bool> {
        match self.commit_deferred(u).await {
            Ok(()) => {
                self.outage.over();
                Ok(false)
            }
            Err(Error::TrackingConflict { found, .. }) => {
                self.outage.over();
                self.skip_ahead(u, found);
                Ok(true)
            }
            Err(error @ Error::LeaseLost { .. }) => Err(error),
            Err(error) => self.failed_or_interrupted(u, error).await,
        }
    }

    /// Moves the recorded position of upstream `u` up to the processed
    /// one, if deferred commits left it behind.
    async fn commit_deferred(&mut self, u: usize) -> Result<()> {
        let upstream = &self.upstreams[u];
        let Some(position) = upstream.position.filter(|&position| position > upstream.recorded) else {
            return Ok(());
        };
        let tracking = Tracking {
            upstream: upstream.app.clone(),
            partition: self.partition,
            previous: upstream.recorded,
            position,
            lease_epoch: self.lease_epoch,
        };
        self.app
            .recorder()
            .insert(tracking.partition, Vec::new(), Some(&tracking))
            .await?;
        self.upstreams[u].recorded = position;
        Ok(())
    }

    /// Commits every position passed over without a commit: before stopping.
    /// A connection failure is waited out (within the outage budget) and
    /// the same commit tried again: had it landed, the retry meets a
    /// tracking conflict at the position it wrote.
    pub(crate) async fn record_positions(&mut self) -> Result<()> {
        for u in 0..self.upstreams.len() {
            loop {
                match self.commit_deferred(u).await {
                    Err(error) if outage::is_transient(&error) => self.outage.wait(error).await?,
                    Err(Error::TrackingConflict { found, .. }) => {
                        self.skip_ahead(u, found);
                        break;
                    }
                    // The new owner records its own positions.
                    Ok(()) | Err(Error::LeaseLost { .. }) => break,
                    Err(error) => {
                        self.failed(u, error).await?;
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Another worker processed these notifications: carry on after them.
    fn skip_ahead(&mut self, u: usize, found: u64) {
        tracing::debug!(
            app = self.name,
            partition = self.partition,
            upstream = self.upstreams[u].name,
            found,
            "tracking conflict; skipping ahead"
        );
        self.forget_cached();
        self.upstreams[u].position = None;
    }

    /// Forgets every aggregate kept in memory: after a conflict, the store
    /// has the truth.
    fn forget_cached(&mut self) {
        self.cache.clear();
        if let Some(warm) = &self.warm {
            warm.clear();
        }
    }

    async fn position(&mut self, u: usize) -> Result<u64> {
        let upstream = &mut self.upstreams[u];
        if let Some(position) = upstream.position {
            return Ok(position);
        }
        let position = self
            .app
            .recorder()
            .tracking_position(&upstream.app, self.partition)
            .await?;
        // A log shorter than what was processed of it is not the log that
        // was processed: a store replaced under a follower, most likely
        // one that runs in another process.
        if position > 0 {
            let head = upstream.log.max_notification_id(self.partition).await?;
            if head < position {
                return Err(Error::UpstreamRewound {
                    app: self.name.to_owned(),
                    upstream: upstream.name.to_owned(),
                    partition: self.partition,
                    position,
                    head,
                });
            }
        }
        upstream.position = Some(position);
        upstream.recorded = position;
        Ok(position)
    }

    /// Runs the policy on `batch` and commits, all or nothing, moving the
    /// tracking position from `previous` (the recorded one). If `may_defer`
    /// and the batch produced no events, skips the commit and returns
    /// `false`.
    async fn process_batch(
        &mut self,
        u: usize,
        batch: &[Notification],
        previous: u64,
        may_defer: bool,
    ) -> Result<bool, BatchFailure> {
        let upstream = &self.upstreams[u];
        let cache = std::mem::replace(&mut self.cache, Cache::new(0));
        let mut repo = RepoCore::with_cache(
            self.app.name().clone(),
            Some(self.app.recorder().clone()),
            cache,
            self.warm.clone(),
            self.own_log.clone(),
        );
        let mut events = Vec::new();
        for (index, notification) in batch.iter().enumerate() {
            // The same work gets the same new ids in a simulation's runs: the
            // key names the event handled, not its place in the log.
            let _ids = crate::ids::Scope::enter(|| {
                let event = &notification.event;
                format!(
                    "{}/{}/{}/{}",
                    self.name, upstream.name, event.originator_id, event.originator_version
                )
            });
            let outcome = match run_handler(&*self.policy, upstream.name, notification, &mut repo).await {
                None => self.pass_over(upstream, notification),
                Some(outcome) => outcome,
            };
            let outcome = outcome.and_then(|()| Ok(repo.collect_new_events(&mut events)?));
            if let Err(source) = outcome {
                self.cache = repo.abandoned();
                let error = processing_error(self.name, upstream.name, notification, source);
                return Err(BatchFailure::Handler { index, error });
            }
        }
        let last = batch.last().map_or(previous, |n| n.id);
        if events.is_empty() && may_defer {
            // Nothing was changed; loaded aggregates are as the store has them.
            self.cache = repo.committed();
            return Ok(false);
        }
        let tracking = Tracking {
            upstream: upstream.app.clone(),
            partition: self.partition,
            previous,
            position: last,
            lease_epoch: self.lease_epoch,
        };
        let produced = events.len();
        match self
            .app
            .recorder()
            .insert(tracking.partition, events, Some(&tracking))
            .await
        {
            Ok(_) => {
                self.cache = repo.committed();
                tracing::debug!(
                    app = self.name,
                    partition = self.partition,
                    upstream = upstream.name,
                    notifications = batch.len(),
                    events = produced,
                    position = last,
                    "processed"
                );
                Ok(true)
            }
            Err(error) => {
                self.cache = repo.abandoned();
                Err(BatchFailure::Commit(error))
            }
        }
    }

    /// Passes over a notification the policy does not handle, unless its
    /// topic is one the upstream does not record: then warns, or fails.
    fn pass_over(&self, upstream: &Upstream, notification: &Notification) -> Result<(), super::HandlerError> {
        let topic = notification.event.topic.as_str();
        if upstream.records.iter().any(|records| records.topics.contains(&topic)) {
            return Ok(());
        }
        match self.options.unknown_topics {
            UnknownTopics::Warn => {
                tracing::warn!(
                    app = self.name,
                    upstream = upstream.name,
                    partition = notification.partition,
                    notification_id = notification.id,
                    topic,
                    "passing over a notification whose topic no aggregate of the upstream records; \
                     set `ProcessOptions::unknown_topics(UnknownTopics::Stop)` to stop instead"
                );
                Ok(())
            }
            UnknownTopics::Stop => Err(format!(
                "no aggregate of `{}` records the topic `{topic}`: an event type removed or renamed upstream, \
                 or a row written by something else",
                upstream.name
            )
            .into()),
        }
    }

    /// Waits out a connection failure, or fails with `error`.
    async fn failed_or_interrupted(&mut self, u: usize, error: Error) -> Result<bool> {
        if outage::is_transient(&error) {
            self.interrupted(u, error).await
        } else {
            self.failed(u, error).await
        }
    }

    /// The database could not be reached. Whatever was being committed may
    /// or may not have landed: forget the cached aggregates and the tracking
    /// position, and read them again after a pause (positions passed over
    /// without a commit are passed over again, which changes nothing).
    /// Fails with [`Error::Outage`] once the outage outlasts its budget.
    async fn interrupted(&mut self, u: usize, error: Error) -> Result<bool> {
        self.forget_cached();
        self.upstreams[u].position = None;
        self.outage.wait(error).await?;
        Ok(true)
    }

    /// Retries after a delay, or stops with `error` once retries are spent.
    ///
    /// The first failure at a position is tried again at once with nothing
    /// cached, without counting: a handler may have failed on an aggregate
    /// that another writer had changed since it was cached.
    async fn failed(&mut self, u: usize, error: Error) -> Result<bool> {
        let failing = self.upstreams[u].failing.take();
        if !std::mem::replace(&mut self.upstreams[u].retried_uncached, true) {
            self.forget_cached();
            return Ok(true);
        }
        let upstream = &mut self.upstreams[u];
        upstream.failures += 1;
        let attempt = upstream.failures;
        if attempt > self.options.retries {
            if let Some(notification) = failing
                && self.options.on_failure == OnFailure::Park
            {
                // Counting the first try, made again with nothing cached.
                return self.park(u, notification, &error, attempt + 1).await;
            }
            tracing::error!(app = self.name, partition = self.partition, error = %error_chain(&error), "stopping");
            self.record_positions_before_stopping().await;
            return Err(error);
        }
        tracing::warn!(
            app = self.name,
            partition = self.partition,
            attempt,
            of = self.options.retries,
            error = %error_chain(&error),
            "retrying"
        );
        self.forget_cached();
        tokio::time::sleep(self.options.retry_delay).await;
        Ok(true)
    }

    /// Parks `notification`, whose handler failed `attempts` times: records
    /// it as a dead letter in the transaction that moves the tracking
    /// position past it, and goes on with the next one.
    async fn park(&mut self, u: usize, notification: Notification, error: &Error, attempts: u32) -> Result<bool> {
        let upstream = &self.upstreams[u];
        let now = Timestamp::now();
        let letter = DeadLetter {
            app: self.app.name().clone(),
            upstream: upstream.app.clone(),
            partition: notification.partition,
            notification_id: notification.id,
            topic: notification.event.topic.to_string(),
            // The cause; the dead letter says which notification it was.
            error: match error {
                Error::Processing { source, .. } => error_chain(source.as_ref()),
                other => error_chain(other),
            },
            attempts,
            parked_at: now,
            last_failed_at: now,
        };
        let tracking = Tracking {
            upstream: upstream.app.clone(),
            partition: notification.partition,
            previous: upstream.recorded,
            position: notification.id,
            lease_epoch: self.lease_epoch,
        };
        let parked = self.app.recorder().park(&letter, &tracking).await;
        let upstream = &mut self.upstreams[u];
        upstream.failures = 0;
        upstream.retried_uncached = false;
        match parked {
            Ok(()) => {
                tracing::warn!(
                    app = self.name,
                    upstream = upstream.name,
                    partition = notification.partition,
                    notification_id = notification.id,
                    topic = %notification.event.topic,
                    attempts,
                    error = %letter.error,
                    "parked a notification whose handler keeps failing"
                );
                upstream.position = Some(notification.id);
                upstream.recorded = notification.id;
                Ok(true)
            }
            // Another worker got past it first; nothing was parked.
            Err(Error::TrackingConflict { found, .. }) => {
                self.skip_ahead(u, found);
                Ok(true)
            }
            Err(error @ Error::LeaseLost { .. }) => Err(error),
            Err(park_error) => {
                tracing::error!(
                    app = self.name,
                    partition = self.partition,
                    error = %error_chain(&park_error),
                    "stopping: could not park"
                );
                self.record_positions_before_stopping().await;
                Err(park_error)
            }
        }
    }

    /// Records deferred positions on the way out, as far as the store lets.
    async fn record_positions_before_stopping(&mut self) {
        for u in 0..self.upstreams.len() {
            // The error being reported matters more than this one.
            let _ = self.commit_deferred(u).await;
        }
    }
}

/// Runs the policy's handler for `notification`, if it has one; a panic
/// becomes an error.
/// Runs the policy's handler for `notification`, with a panic turned into
/// an error; `None` if the policy has no handler for its topic.
pub(crate) async fn run_handler(
    policy: &dyn DynProcess,
    upstream: &'static str,
    notification: &Notification,
    repo: &mut RepoCore,
) -> Option<Result<(), HandlerError>> {
    let handling = policy.handle(upstream, notification, repo)?;
    Some(match CatchUnwind(handling).await {
        Ok(result) => result,
        Err(panic) => Err(panic_message(panic).into()),
    })
}

fn processing_error(app: &str, upstream: &str, notification: &Notification, source: HandlerError) -> Error {
    Error::Processing {
        app: app.to_owned(),
        upstream: upstream.to_owned(),
        partition: notification.partition,
        notification_id: notification.id,
        topic: notification.event.topic.to_string(),
        source,
    }
}

/// An error and its sources, as one line.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What a panicking handler said.
fn panic_message(panic: Box<dyn Any + Send>) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-text payload".to_owned());
    format!("the handler panicked: {message}")
}
