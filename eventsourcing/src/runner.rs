//! Runners: what drives a system's process loops.
//!
//! The single-threaded runner processes on the caller's task, after each
//! command, until the system is quiet: deterministic, for tests and
//! development. The multi-task runner gives each application a tokio task,
//! woken when the store's commit feed says an application it follows
//! committed (in this process; on PostgreSQL in any process), and by a
//! polling interval as the fallback. The runner owns these prompts, not the
//! applications.

mod dead_letters;
#[cfg(feature = "http")]
mod remote;
mod running_app;
mod workers;

pub use running_app::RunningApp;
pub(crate) use running_app::Warm;

pub use workers::Lease;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;

use crate::process::instances::{Policy, policies};
use crate::process::outage::Outage;
use crate::process::upstream_log::UpstreamLog;
use crate::process::worker::{Worker, error_chain};
use crate::{
    AnyRecorder, AppName, Application, Error, NotificationSource, Process, ProcessOptions, Recorder, Result, Store,
    System, Unsaved,
};

/// Which runner to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunnerKind {
    /// Everything on the caller's task: [`Runner::single_threaded`].
    SingleThreaded,
    /// A task per application-partition: [`Runner::multi_task`].
    MultiTask,
    /// One of any number of workers sharing the system through leases in
    /// PostgreSQL: [`Runner::worker`].
    Worker,
}

/// `single-threaded` or `multi-task`, as [`FromStr`](std::str::FromStr) reads them.
impl std::fmt::Display for RunnerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunnerKind::SingleThreaded => "single-threaded",
            RunnerKind::MultiTask => "multi-task",
            RunnerKind::Worker => "worker",
        })
    }
}

impl std::str::FromStr for RunnerKind {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "single" | "single-threaded" => Ok(Self::SingleThreaded),
            "multi" | "multi-task" => Ok(Self::MultiTask),
            "worker" => Ok(Self::Worker),
            other => Err(Error::Runner {
                reason: format!("unknown runner `{other}`; use `single`, `multi` or `worker`"),
            }),
        }
    }
}

/// What [`Runner::save`] did, once the save succeeded.
#[derive(Debug)]
#[must_use = "processing after the save may have failed: see `Saved::processing`"]
pub struct Saved {
    /// The partition the command's events went to.
    pub partition: u32,
    /// The notification ids given to the command's events, in order (ids
    /// of that partition).
    pub notification_ids: Vec<u64>,
    /// How processing after the save went, with the single-threaded runner
    /// (always `Ok` with the multi-task runner, which processes in the
    /// background). An error is an [`Error::Processing`]: the command's
    /// events are recorded, and processing resumes at the failed
    /// notification.
    pub processing: Result<()>,
}

impl Saved {
    /// The notification ids if processing went well too, or the
    /// processing error: for callers to whom both are failures (tests,
    /// scripts), but see [`Runner::save`] before retrying on it.
    pub fn processed(self) -> Result<Vec<u64>> {
        self.processing.map(|()| self.notification_ids)
    }
}

/// How far one application is behind one partition of a log it follows,
/// from [`Runner::lag`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lag {
    /// The following application.
    pub app: &'static str,
    /// The application it follows.
    pub upstream: &'static str,
    /// The partition of the upstream log.
    pub partition: u32,
    /// The upstream partition's highest notification id.
    pub head: u64,
    /// The last notification of it that `app` processed.
    pub position: u64,
}

impl Lag {
    /// Notifications not yet processed.
    pub fn behind(&self) -> u64 {
        self.head.saturating_sub(self.position)
    }
}

/// Runs a [`System`]: opens its applications in a store and processes
/// their policies.
///
/// ```standalone_crate
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use eventsourcing::NotificationSource;
/// use eventsourcing::prelude::*;
///
/// #[aggregate]
/// #[derive(Debug, Default)]
/// pub struct Ping {}
///
/// #[aggregate]
/// impl Ping {
///     #[event(Sent)]
///     pub fn send() -> Self { Self {} }
/// }
///
/// #[aggregate]
/// #[derive(Debug, Default)]
/// pub struct Pong { ping: Uuid }
///
/// #[aggregate]
/// impl Pong {
///     #[event(Sent)]
///     pub fn reply(ping: Uuid) -> Self { Self { ping } }
/// }
///
/// #[derive(Default)]
/// struct Pinger;
///
/// #[policy(aggregates(Ping))]
/// impl Pinger {}
///
/// #[derive(Default)]
/// struct Ponger;
///
/// #[policy(aggregates(Pong))]
/// impl Ponger {
///     async fn ping_sent(&self, ping: &Notified<PingSent>, repo: &mut Repo<Self>) -> Result<()> {
///         repo.add(Pong::reply(ping.originator_id));
///         Ok(())
///     }
/// }
///
/// let store = Store::open("memory:").await?;
/// let runner = Runner::single_threaded(system!(Pinger => Ponger), &store, ProcessOptions::default()).await?;
/// runner.save::<Pinger>(&mut Ping::send()).await?.processed()?;
/// // The single-threaded runner processed before `save` returned.
/// assert_eq!(runner.app::<Ponger>()?.recorder().max_notification_id(0).await?, 1);
/// runner.shutdown().await?;
/// # Ok::<(), eventsourcing::Error>(())
/// # }).unwrap();
/// ```
pub struct Runner {
    system: System,
    /// Each application of the system, in its order: `None` for one that
    /// runs in another process ([`ProcessOptions::upstream`]).
    apps: Vec<Option<Application>>,
    /// Each application's log, where its followers read it.
    logs: Vec<UpstreamLog>,
    /// Each application's warm histories, per partition: what its saves
    /// leave for its process (see `process/warm.rs`).
    warm: Vec<Warm>,
    /// Each application's policy, if it runs here.
    policies: Vec<Option<Policy>>,
    mode: Mode,
    /// How long [`wait_until_quiet`](Runner::wait_until_quiet) rides out
    /// an unreachable database.
    outage_budget: Duration,
}

enum Mode {
    SingleThreaded {
        workers: Mutex<Vec<Worker>>,
    },
    MultiTask {
        tasks: Mutex<Vec<Task>>,
        stopping: Arc<AtomicBool>,
        /// Each application-partition's wake-up, in the system's order and
        /// then by partition ([`Prompts::index`]).
        prompts: Prompts,
        /// The task that wakes followers when the store hears of a commit.
        prompter: tokio::task::AbortHandle,
        /// The tasks that wake followers of logs served by other processes
        /// when those logs grow.
        remote_prompters: Vec<tokio::task::AbortHandle>,
        /// Notifications processed.
        processed: Arc<AtomicU64>,
    },
    // Workers need PostgreSQL.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Worker {
        /// The loop that keeps this worker's leases and runs their tasks.
        coordinator: Mutex<Option<JoinHandle<Result<()>>>>,
        stopping: Arc<AtomicBool>,
        /// Wakes the coordinator: at shutdown.
        wake: Arc<Notify>,
        prompter: tokio::task::AbortHandle,
        /// As in the multi-task runner.
        remote_prompters: Vec<tokio::task::AbortHandle>,
        status: Arc<workers::WorkerStatus>,
    },
}

struct Task {
    name: &'static str,
    partition: u32,
    handle: Option<JoinHandle<Result<()>>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.mode {
            Mode::SingleThreaded { .. } => RunnerKind::SingleThreaded,
            Mode::MultiTask { .. } => RunnerKind::MultiTask,
            Mode::Worker { .. } => RunnerKind::Worker,
        };
        f.debug_struct("Runner")
            .field("kind", &kind)
            .field("system", &self.system)
            .finish()
    }
}

impl Runner {
    /// Starts the runner `kind`.
    pub async fn start(kind: RunnerKind, system: System, store: &Store, options: ProcessOptions) -> Result<Self> {
        match kind {
            RunnerKind::SingleThreaded => Self::single_threaded(system, store, options).await,
            RunnerKind::MultiTask => Self::multi_task(system, store, options).await,
            RunnerKind::Worker => Self::worker(system, store, options).await,
        }
    }

    /// A runner that processes on the caller's task: [`save`](Runner::save)
    /// and [`wait_until_quiet`](Runner::wait_until_quiet) process every
    /// notification in the system before they return.
    pub async fn single_threaded(system: System, store: &Store, options: ProcessOptions) -> Result<Self> {
        let Opened {
            apps,
            logs,
            warm,
            policies,
        } = open_apps(&system, store, &options, |recorder| recorder).await?;
        let workers = workers(&system, &apps, &logs, &warm, &policies, &options);
        let runner = Self {
            system,
            apps,
            logs,
            warm,
            policies,
            mode: Mode::SingleThreaded {
                workers: Mutex::new(workers),
            },
            outage_budget: options.outage_budget,
        };
        // Whatever was left unprocessed when the system last stopped.
        runner.wait_until_quiet().await?;
        Ok(runner)
    }

    /// A runner with a tokio task per application, woken when an
    /// application it follows commits, and every
    /// [`poll_interval`](ProcessOptions::poll_interval). Call it within a
    /// tokio runtime with the time driver enabled.
    pub async fn multi_task(system: System, store: &Store, options: ProcessOptions) -> Result<Self> {
        let Opened {
            apps,
            logs,
            warm,
            policies,
        } = open_apps(&system, store, &options, |recorder| recorder).await?;
        let prompts = Prompts::new(&system, options.partitions);
        // Subscribed before the workers start, so that no commit is missed.
        let commits = store.commits().await?;
        let prompter = tokio::spawn(prompt_followers(commits, prompts.clone()));
        let remote_prompters = prompt_followers_of_remote_logs(&system, &apps, &logs, &prompts);
        let stopping = Arc::new(AtomicBool::new(false));
        let processed = Arc::new(AtomicU64::new(0));
        let tasks = workers(&system, &apps, &logs, &warm, &policies, &options)
            .into_iter()
            .map(|worker| worker.counting(processed.clone()))
            .map(|worker| {
                let poll_interval = options.for_app(worker.name()).poll_interval;
                let prompt = prompts.of(worker.name(), worker.partition()).clone();
                Task {
                    name: worker.name(),
                    partition: worker.partition(),
                    handle: Some(tokio::spawn(run_task(worker, prompt, stopping.clone(), poll_interval))),
                }
            })
            .collect();
        Ok(Self {
            system,
            apps,
            logs,
            warm,
            policies,
            mode: Mode::MultiTask {
                tasks: Mutex::new(tasks),
                stopping,
                prompts,
                prompter: prompter.abort_handle(),
                remote_prompters,
                processed,
            },
            outage_budget: options.outage_budget,
        })
    }

    /// One worker of a system shared by any number of workers, in any
    /// number of OS processes on any number of machines, through one
    /// PostgreSQL database. Call it within a tokio runtime with the time
    /// driver enabled.
    ///
    /// Each application-partition is run by at most one worker at a time,
    /// under a lease that it renews every third of
    /// [`lease_ttl`](ProcessOptions::lease_ttl). Live workers share the
    /// application-partitions evenly, and hand some over when a worker
    /// joins or leaves; a worker that dies loses its leases when they
    /// expire, and the others take its partitions. Every commit is fenced
    /// by the lease: a worker that lost its lease (paused, cut off) cannot
    /// commit ([`Error::LeaseLost`]); it stops that partition and goes on
    /// with its share. [`shutdown`](Runner::shutdown) finishes the batches
    /// in hand and releases the leases at once.
    ///
    /// Fails on a store other than PostgreSQL.
    pub async fn worker(system: System, store: &Store, options: ProcessOptions) -> Result<Self> {
        if options.lease_ttl < Duration::from_millis(30) {
            return Err(Error::Runner {
                reason: format!(
                    "a lease of {:?} cannot be renewed in time; give `ProcessOptions::lease_ttl` a second or more",
                    options.lease_ttl
                ),
            });
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = (system, store);
            Err(workers::needs_postgres())
        }
        #[cfg(feature = "postgres")]
        Self::postgres_worker(system, store, options).await
    }

    #[cfg(feature = "postgres")]
    async fn postgres_worker(system: System, store: &Store, options: ProcessOptions) -> Result<Self> {
        let board = workers::lease_board(store, &system, &options)?;
        let Opened {
            apps,
            logs,
            warm,
            policies,
        } = open_apps(&system, store, &options, |recorder| recorder).await?;
        if !workers::processes_here(&system, &apps) {
            return Err(Error::Runner {
                reason: "no application of the system that follows another runs here (the options say the others run in another process), so a worker here would have nothing to process".to_owned(),
            });
        }
        // After the tables (the workers' among them) are made.
        workers::check_no_other_system(&board, board.group()).await?;
        let prompts = Prompts::new(&system, options.partitions);
        let commits = store.commits().await?;
        let prompter = tokio::spawn(prompt_followers(commits, prompts.clone()));
        let remote_prompters = prompt_followers_of_remote_logs(&system, &apps, &logs, &prompts);
        let stopping = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(Notify::new());
        let status = Arc::new(workers::WorkerStatus::default());
        let coordinator = workers::Coordinator {
            system: system.clone(),
            apps: apps.clone(),
            logs: logs.clone(),
            warm: warm.clone(),
            policies: policies.clone(),
            options: options.clone(),
            board,
            prompts,
            stopping: stopping.clone(),
            wake: wake.clone(),
            status: status.clone(),
        };
        let coordinator = tokio::spawn(coordinator.run());
        Ok(Self {
            system,
            apps,
            logs,
            warm,
            policies,
            mode: Mode::Worker {
                coordinator: Mutex::new(Some(coordinator)),
                stopping,
                wake,
                prompter: prompter.abort_handle(),
                remote_prompters,
                status,
            },
            outage_budget: options.outage_budget,
        })
    }

    /// The leases this runner holds now (only a [`worker`](Runner::worker)
    /// holds any).
    pub fn leases(&self) -> Vec<Lease> {
        match &self.mode {
            Mode::Worker { status, .. } => status.leases(),
            _ => Vec::new(),
        }
    }

    /// How many upstream notifications this runner's process loops have
    /// processed since it started (not counting the single-threaded
    /// runner's).
    pub fn processed(&self) -> u64 {
        match &self.mode {
            Mode::MultiTask { processed, .. } => processed.load(Ordering::Relaxed),
            Mode::Worker { status, .. } => status.processed.load(Ordering::Relaxed),
            Mode::SingleThreaded { .. } => 0,
        }
    }

    /// The system this runner runs.
    pub fn system(&self) -> &System {
        &self.system
    }

    /// The application `P`, for commands and queries: load aggregates, read
    /// its log, or save (saving through [`Runner::save`] also processes, with
    /// the single-threaded runner). Its saves tell this runner's processes
    /// what changed, which a save through another handle on the store does
    /// not (see [`ProcessOptions::cache_capacity`]).
    ///
    /// Fails for an application that runs in another process
    /// ([`ProcessOptions::upstream`]): its commands go there.
    pub fn app<P: Process>(&self) -> Result<RunningApp<'_>> {
        let i = index_of(&self.system, P::NAME)
            .filter(|&i| self.system.app_specs()[i].is::<P>())
            .ok_or_else(|| Error::Runner {
                reason: format!("`{}` is not an application of this system", P::NAME),
            })?;
        self.here(i).map(|app| RunningApp::new(app, &self.warm[i]))
    }

    /// The `i`-th application of the system, if it runs here.
    fn here(&self, i: usize) -> Result<&Application> {
        self.apps[i].as_ref().ok_or_else(|| Error::Runner {
            reason: format!(
                "`{}` runs in another process, which serves its log; this runner only follows it, so send its commands to that process",
                self.system.app_specs()[i].name
            ),
        })
    }

    /// Saves aggregates through the application `P`, then, with the
    /// single-threaded runner, processes until the system is quiet (the
    /// multi-task runner processes in the background).
    ///
    /// An `Err` always means that nothing was saved, so the command may be
    /// tried again. Once the save succeeded, how processing after it went
    /// is in [`Saved::processing`]: a failure there is no reason to save
    /// again (that would record the command twice), and processing resumes
    /// at the failed notification on the next call.
    pub async fn save<P: Process>(&self, aggregates: impl Unsaved) -> Result<Saved> {
        self.save_to::<P>(None, aggregates).await
    }

    /// Saves like [`save`](Runner::save), into `partition` rather than the
    /// partition of the first aggregate's id.
    pub async fn save_in<P: Process>(&self, partition: u32, aggregates: impl Unsaved) -> Result<Saved> {
        self.save_to::<P>(Some(partition), aggregates).await
    }

    async fn save_to<P: Process>(&self, partition: Option<u32>, aggregates: impl Unsaved) -> Result<Saved> {
        let (partition, notification_ids) = self.app::<P>()?.save_to(partition, aggregates).await?;
        let processing = match self.mode {
            Mode::SingleThreaded { .. } => self.wait_until_quiet().await,
            Mode::MultiTask { .. } | Mode::Worker { .. } => Ok(()),
        };
        Ok(Saved {
            partition,
            notification_ids,
            processing,
        })
    }

    /// Returns once every application has processed every notification of
    /// the applications it follows, or with the error that stopped one.
    ///
    /// A database that cannot be reached is waited for, within
    /// [`ProcessOptions::outage_budget`]; after that this fails with
    /// [`Error::Outage`].
    pub async fn wait_until_quiet(&self) -> Result<()> {
        match &self.mode {
            Mode::SingleThreaded { workers } => {
                let mut workers = workers.lock().await;
                loop {
                    let mut busy = false;
                    for worker in workers.iter_mut() {
                        busy |= worker.catch_up().await?;
                    }
                    if !busy {
                        return Ok(());
                    }
                }
            }
            Mode::MultiTask { .. } | Mode::Worker { .. } => {
                let mut previous = None;
                let mut outage = self
                    .apps
                    .iter()
                    .flatten()
                    .next()
                    .map(|app| Outage::new(None, app.recorder(), self.outage_budget));
                loop {
                    self.check_running().await?;
                    let (heads, caught_up) = match (self.progress().await, outage.as_mut()) {
                        (Ok(progress), outage) => {
                            if let Some(outage) = outage {
                                outage.over();
                            }
                            progress
                        }
                        (Err(error), Some(outage)) => {
                            outage.wait(error).await?;
                            continue;
                        }
                        (Err(error), None) => return Err(error),
                    };
                    // Quiet when caught up twice with no commit in between:
                    // edges are read one after another, not at one instant.
                    if caught_up && previous.as_ref() == Some(&heads) {
                        return Ok(());
                    }
                    previous = caught_up.then_some(heads);
                    // Look again soon to confirm; while work remains, less
                    // often, so that looking does not slow the work.
                    let pause = if caught_up { 2 } else { 20 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
        }
    }

    /// The error that stopped processing, if something stopped.
    async fn check_running(&self) -> Result<()> {
        match &self.mode {
            Mode::SingleThreaded { .. } => Ok(()),
            Mode::MultiTask { tasks, .. } => check_tasks(&mut tasks.lock().await).await,
            Mode::Worker { coordinator, .. } => {
                let mut coordinator = coordinator.lock().await;
                match coordinator.take_if(|handle| handle.is_finished()) {
                    None => Ok(()),
                    Some(handle) => {
                        join_coordinator(handle).await?;
                        Err(Error::Runner {
                            reason: "the worker stopped processing".to_owned(),
                        })
                    }
                }
            }
        }
    }

    /// How far each application is behind each partition of each log it
    /// follows, read from the store now (commits by other processes
    /// included).
    pub async fn lag(&self) -> Result<Vec<Lag>> {
        Ok(self.heads_and_lag().await?.1)
    }

    /// Every log partition's head, and every follower's lag.
    async fn heads_and_lag(&self) -> Result<(Vec<Vec<u64>>, Vec<Lag>)> {
        let mut heads = Vec::with_capacity(self.logs.len());
        for (i, log) in self.logs.iter().enumerate() {
            // A log served elsewhere matters here only if an application
            // here follows it.
            let mut partitions = Vec::new();
            if self.apps[i].is_some() || followed_here(&self.system, &self.apps, self.system.app_specs()[i].name) {
                for partition in 0..log.partitions() {
                    partitions.push(log.max_notification_id(partition).await?);
                }
            }
            heads.push(partitions);
        }
        let mut lag = Vec::new();
        for (spec, app) in self.system.app_specs().iter().zip(&self.apps) {
            let Some(app) = app else { continue };
            for upstream in self.system.upstreams(spec.name) {
                let Some(u) = index_of(&self.system, upstream) else {
                    continue;
                };
                for (partition, &head) in (0..).zip(&heads[u]) {
                    let position = app.recorder().tracking_position(self.logs[u].app(), partition).await?;
                    lag.push(Lag {
                        app: spec.name,
                        upstream,
                        partition,
                        head,
                        position,
                    });
                }
            }
        }
        Ok((heads, lag))
    }

    /// Every log's heads, and whether every follower has reached the heads
    /// of the logs it follows (logging how far behind they are if not).
    async fn progress(&self) -> Result<(Vec<Vec<u64>>, bool)> {
        let (heads, lag) = self.heads_and_lag().await?;
        let behind: u64 = lag.iter().map(Lag::behind).sum();
        for lag in lag.iter().filter(|lag| lag.behind() > 0) {
            tracing::debug!(
                app = lag.app,
                upstream = lag.upstream,
                partition = lag.partition,
                head = lag.head,
                position = lag.position,
                behind = lag.behind(),
                "lag"
            );
        }
        Ok((heads, behind == 0))
    }

    /// Stops processing: each task finishes the transaction in hand. Returns
    /// the error that stopped an application, if one did.
    pub async fn shutdown(self) -> Result<()> {
        if let Mode::MultiTask {
            tasks,
            stopping,
            prompts,
            prompter,
            remote_prompters,
            ..
        } = &self.mode
        {
            prompter.abort();
            remote_prompters.iter().for_each(tokio::task::AbortHandle::abort);
            stopping.store(true, Ordering::SeqCst);
            prompts.wake_all();
            let mut first_error = None;
            for task in tasks.lock().await.iter_mut() {
                if let Some(handle) = task.handle.take()
                    && let Err(error) = join(task, handle).await
                {
                    first_error.get_or_insert(error);
                }
            }
            if let Some(error) = first_error {
                return Err(error);
            }
        }
        if let Mode::Worker {
            coordinator,
            stopping,
            wake,
            prompter,
            remote_prompters,
            ..
        } = &self.mode
        {
            stopping.store(true, Ordering::SeqCst);
            wake.notify_one();
            let handle = coordinator.lock().await.take();
            if let Some(handle) = handle {
                join_coordinator(handle).await?;
            }
            prompter.abort();
            remote_prompters.iter().for_each(tokio::task::AbortHandle::abort);
        }
        Ok(())
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Mode::MultiTask {
            stopping,
            prompts,
            prompter,
            remote_prompters,
            ..
        } = &self.mode
        {
            prompter.abort();
            remote_prompters.iter().for_each(tokio::task::AbortHandle::abort);
            stopping.store(true, Ordering::SeqCst);
            prompts.wake_all();
        }
        // The coordinator stops its tasks and releases its leases on its own.
        if let Mode::Worker {
            stopping,
            wake,
            prompter,
            remote_prompters,
            ..
        } = &self.mode
        {
            prompter.abort();
            remote_prompters.iter().for_each(tokio::task::AbortHandle::abort);
            stopping.store(true, Ordering::SeqCst);
            wake.notify_one();
        }
    }
}

/// A system's applications opened in a store, each in the system's order.
pub(crate) struct Opened {
    /// Each application, if it runs here.
    pub(crate) apps: Vec<Option<Application>>,
    /// Each application's log, where its followers read it.
    pub(crate) logs: Vec<UpstreamLog>,
    /// Each application's warm histories, per partition.
    pub(crate) warm: Vec<Warm>,
    /// Each application's policy, if it runs here.
    pub(crate) policies: Vec<Option<Policy>>,
}

/// Checks `system` and `options`, then opens the system's applications in
/// `store`, each with its recorder passed through `wrap` (a simulation
/// injects its faults there) and ready for its runner, with its policy;
/// and the log of each, where its followers read it: its recorder, or for
/// an application that runs in another process
/// ([`ProcessOptions::upstream`]) its log over HTTP, and no application
/// here.
pub(crate) async fn open_apps(
    system: &System,
    store: &Store,
    options: &ProcessOptions,
    wrap: impl Fn(AnyRecorder) -> AnyRecorder,
) -> Result<Opened> {
    let named = options.apps_with_settings().chain(options.apps_elsewhere());
    if let Some(stranger) = named.into_iter().find(|app| index_of(system, app).is_none()) {
        return Err(Error::Runner {
            reason: format!(
                "the process options give settings for `{stranger}`, which is not an application of this system; remove them, or add `{stranger}` to the system"
            ),
        });
    }
    if let Some(app) = system
        .apps()
        .find(|app| options.for_app(app).partitions != options.partitions)
    {
        return Err(Error::Runner {
            reason: format!(
                "the process options give `{app}` its own number of partitions; partitions are set for the whole system: set `ProcessOptions::partitions` once"
            ),
        });
    }
    system.check()?;
    let policies = policies(system, options)?;
    // Before any tables are made, as `Application::open` does.
    crate::topics::check()?;
    // Every claim checked before any is taken: a runner refused for one
    // application leaves no claim on the others.
    let here = |spec: &&crate::system::SystemApp| !options.apps_elsewhere().any(|app| app == spec.name);
    for spec in system.app_specs().iter().filter(here) {
        store
            .check_claim(&AppName::new(spec.name)?, options.partitions, spec.path)
            .await?;
    }
    let (mut apps, mut logs, mut warm) = (Vec::new(), Vec::new(), Vec::new());
    for spec in system.app_specs() {
        let name = AppName::new(spec.name)?;
        #[cfg(feature = "http")]
        if let Some(upstream) = options.elsewhere(spec.name) {
            apps.push(None);
            logs.push(UpstreamLog::Http(upstream.log(name, options.partitions)?));
            warm.push(running_app::warm(options.partitions, 0));
            continue;
        }
        // Every log of the system has the system's partitions: a log written
        // with another number is refused rather than followed in part.
        let recorder = wrap(store.claimed_recorder(&name, options.partitions, spec.path).await?);
        logs.push(UpstreamLog::Local(recorder.clone()));
        apps.push(Some(Application::new(recorder)?));
        warm.push(running_app::warm(
            options.partitions,
            options.for_app(spec.name).cache_capacity,
        ));
    }
    Ok(Opened {
        apps,
        logs,
        warm,
        policies,
    })
}

/// Every application of the system (or its policy), for `who` (workers, a
/// simulation), which run them all here.
pub(crate) fn all_here<T: Clone>(apps: &[Option<T>], who: &str) -> Result<Vec<T>> {
    apps.iter()
        .map(|app| app.clone().ok_or_else(|| elsewhere_refused(who)))
        .collect()
}

/// The refusal of `who` to run a system some of whose applications run in
/// another process.
fn elsewhere_refused(who: &str) -> Error {
    Error::Runner {
        reason: format!(
            "{who} run every application of the system in one store, and these options say that some run in another process; use a runner to follow logs over HTTP"
        ),
    }
}

/// The logs of applications that all run here.
pub(crate) fn local_logs(apps: &[Application]) -> Vec<UpstreamLog> {
    apps.iter()
        .map(|app| UpstreamLog::Local(app.recorder().clone()))
        .collect()
}

/// A worker for each partition of each application that runs here.
fn workers(
    system: &System,
    apps: &[Option<Application>],
    logs: &[UpstreamLog],
    warm: &[Warm],
    policies: &[Option<Policy>],
    options: &ProcessOptions,
) -> Vec<Worker> {
    (0..apps.len())
        .filter_map(|i| apps[i].as_ref().zip(policies[i].as_ref()).map(|here| (i, here)))
        .flat_map(|(i, app)| (0..options.partitions).map(move |partition| (i, app, partition)))
        .map(|(i, (app, policy), partition)| worker(system, app, logs, warm, policy, options, i, partition))
        .collect()
}

/// The worker of `partition` of `app`, the `i`-th application of `system`,
/// reading the logs of the system's applications from `logs`, with its
/// warm histories in `warm` (both in the system's order), and with that
/// application's policy and settings.
#[allow(clippy::too_many_arguments)]
pub(crate) fn worker(
    system: &System,
    app: &Application,
    logs: &[UpstreamLog],
    warm: &[Warm],
    policy: &Policy,
    options: &ProcessOptions,
    i: usize,
    partition: u32,
) -> Worker {
    let spec = &system.app_specs()[i];
    let upstreams = system
        .upstreams(spec.name)
        .filter_map(|up| index_of(system, up).map(|u| (up, system.app_specs()[u].records, logs[u].clone())))
        .collect();
    Worker::new(
        spec.name,
        partition,
        app.clone(),
        warm[i].get(partition as usize).cloned(),
        policy.make(),
        upstreams,
        options.for_app(spec.name),
    )
}

/// Whether an application of `system` that runs here (`apps`, in the
/// system's order) follows the application `name`.
fn followed_here(system: &System, apps: &[Option<Application>], name: &str) -> bool {
    system
        .app_specs()
        .iter()
        .zip(apps)
        .any(|(spec, app)| app.is_some() && system.upstreams(spec.name).any(|up| up == name))
}

/// A task for each partition of each log served by another process that
/// an application here follows: it waits on the server's long poll and
/// wakes the followers when the partition grows. (Polling stays the
/// fallback, as for local logs.)
fn prompt_followers_of_remote_logs(
    system: &System,
    apps: &[Option<Application>],
    logs: &[UpstreamLog],
    prompts: &Prompts,
) -> Vec<tokio::task::AbortHandle> {
    #[cfg(feature = "http")]
    {
        logs.iter()
            .filter_map(|log| match log {
                UpstreamLog::Http(log) if followed_here(system, apps, log.app().as_str()) => Some(log),
                _ => None,
            })
            .flat_map(|log| (0..log.partitions()).map(move |partition| (log, partition)))
            .map(|(log, partition)| tokio::spawn(remote::wake_on_growth(log.clone(), partition, prompts.clone())))
            .map(|task| task.abort_handle())
            .collect()
    }
    #[cfg(not(feature = "http"))]
    {
        let _ = (system, apps, logs, prompts);
        Vec::new()
    }
}

fn index_of(system: &System, name: &str) -> Option<usize> {
    system.apps().position(|app| app == name)
}

/// The wake-ups of a system's application-partitions.
#[derive(Clone)]
pub(crate) struct Prompts {
    system: Arc<System>,
    partitions: u32,
    /// By application in the system's order, then by partition.
    prompts: Arc<[Arc<Notify>]>,
}

impl Prompts {
    pub(crate) fn new(system: &System, partitions: u32) -> Self {
        let count = system.app_specs().len() * partitions as usize;
        Self {
            system: Arc::new(system.clone()),
            partitions,
            prompts: (0..count).map(|_| Arc::new(Notify::new())).collect(),
        }
    }

    fn index(&self, app: &str, partition: u32) -> Option<usize> {
        let i = index_of(&self.system, app)?;
        (partition < self.partitions).then(|| i * self.partitions as usize + partition as usize)
    }

    /// The wake-up of `app`'s worker on `partition`.
    pub(crate) fn of(&self, app: &str, partition: u32) -> &Arc<Notify> {
        let i = self.index(app, partition).expect("a worker of this system");
        &self.prompts[i]
    }

    /// Wakes the workers that follow `partition` of `app`'s log.
    pub(crate) fn wake_followers(&self, app: &str, partition: u32) {
        for follower in self.system.followers(app) {
            if let Some(i) = self.index(follower, partition) {
                self.prompts[i].notify_one();
            }
        }
    }

    pub(crate) fn wake_all(&self) {
        self.prompts.iter().for_each(|prompt| prompt.notify_one());
    }
}

/// Wakes the workers that follow the log partition that grew: commits in
/// this process, and on PostgreSQL in every process. On a prompt that may
/// have been lost, wakes them all.
async fn prompt_followers(mut commits: crate::store::Commits, prompts: Prompts) {
    while let Some(prompt) = commits.next().await {
        match prompt {
            crate::store::Prompt::Committed(committed) => {
                prompts.wake_followers(committed.app.as_str(), committed.partition)
            }
            crate::store::Prompt::Missed => prompts.wake_all(),
        }
    }
}

/// One application's loop in the multi-task runner.
async fn run_task(
    mut worker: Worker,
    prompt: Arc<Notify>,
    stopping: Arc<AtomicBool>,
    poll_interval: Duration,
) -> Result<()> {
    tracing::debug!(app = worker.name(), partition = worker.partition(), "started");
    while !stopping.load(Ordering::SeqCst) {
        if !worker.step_all().await? {
            // Woken by a commit upstream, a shutdown, or the poll timer.
            let _ = tokio::time::timeout(poll_interval, prompt.notified()).await;
        }
    }
    worker.record_positions().await?;
    tracing::debug!(app = worker.name(), partition = worker.partition(), "stopped");
    Ok(())
}

/// Returns the error of any task that has stopped on its own.
async fn check_tasks(tasks: &mut [Task]) -> Result<()> {
    for task in tasks {
        if let Some(handle) = task.handle.take_if(|handle| handle.is_finished()) {
            join(task, handle).await?;
            return Err(Error::Runner {
                reason: format!(
                    "application `{}` stopped processing partition {}",
                    task.name, task.partition
                ),
            });
        }
    }
    Ok(())
}

async fn join_coordinator(handle: JoinHandle<Result<()>>) -> Result<()> {
    match handle.await {
        Ok(result) => result,
        Err(error) => Err(Error::Runner {
            reason: format!("the worker's coordinator ended abnormally: {}", error_chain(&error)),
        }),
    }
}

async fn join(task: &Task, handle: JoinHandle<Result<()>>) -> Result<()> {
    join_partition_task(task.name, task.partition, handle).await
}

/// What the task of `app`'s `partition` ended with; a panic or an abort is
/// an error naming it.
pub(crate) async fn join_partition_task(app: &str, partition: u32, handle: JoinHandle<Result<()>>) -> Result<()> {
    match handle.await {
        Ok(result) => result,
        Err(error) => Err(Error::Runner {
            reason: format!(
                "the task of application `{app}` partition {partition} ended abnormally: {}",
                error_chain(&error)
            ),
        }),
    }
}
