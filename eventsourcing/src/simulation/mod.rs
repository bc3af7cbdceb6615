//! Deterministic simulation: exactly-once, checked under crashes, failed
//! commits and duplicate workers, on a seeded schedule you can replay.
//!
//! A [`Simulation`] drives a [`System`] with a workload of commands. Each
//! run follows one seed: which command or worker goes next, the batch size,
//! the cache size, and, at every commit a process makes, whether it crashes
//! (everything in memory dropped, the store reopened), fails (before the
//! commit lands, or after it landed with the answer lost), or lets a second
//! worker race the first. After each run it checks that every log is
//! gapless and in order, that every upstream notification was processed
//! exactly once by each follower, and that every aggregate equals the one
//! an uninterrupted run made. A failing seed is reported with what
//! happened, and running that seed again replays it exactly.
//!
//! The comparison needs the same work to make the same aggregates: new
//! aggregates get ids derived from what creates them (the command, or the
//! upstream notification being handled) during a simulation, so take ids
//! from `#[id]` arguments or the generated ones, not `Uuid::new_v4()` in a
//! handler. The outcome must not depend on how the logs of two upstreams
//! interleave (it does not when each aggregate is changed from one log).

mod checks;
mod faults;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

pub use faults::{Faults, FaultyRecorder};

use self::checks::Histories;
use self::faults::{Plan, Rng};
use crate::process::instances::{Instances, Policy};
use crate::process::worker::Worker;
use crate::runner::Warm;
use crate::{AnyRecorder, Application, Error, Process, ProcessOptions, Result, RunningApp, Store, System};

/// The most scheduling steps one run may take before it counts as stuck.
const MAX_STEPS: usize = 200_000;

type Command = dyn Fn(Apps, usize) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + Sync;

/// Runs a system under seeded faults and checks exactly-once.
///
/// ```standalone_crate
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use eventsourcing::prelude::*;
/// use eventsourcing::simulation::Simulation;
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
/// pub struct Pong {}
///
/// #[aggregate]
/// impl Pong {
///     #[event(Sent)]
///     pub fn reply(#[id] ping: Uuid) -> Self { Self {} }
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
/// let simulation = Simulation::new(system!(Pinger => Ponger), 10, |apps, _| async move {
///     apps.app::<Pinger>()?.save(&mut Ping::send()).await?;
///     Ok(())
/// });
/// let summary = simulation.run_seeds(0..20).await?;
/// assert_eq!(summary.runs, 20);
/// # Ok::<(), eventsourcing::Error>(())
/// # }).unwrap();
/// ```
pub struct Simulation {
    system: System,
    commands: usize,
    command: Arc<Command>,
    faults: Faults,
    backend: Backend,
    /// The applications made by the caller, with their dependencies.
    instances: Instances,
    reference: OnceCell<Histories>,
}

/// Where a simulation keeps its events.
#[derive(Clone, Debug)]
enum Backend {
    Memory,
    /// A SQLite file per seed in this directory, removed after a passing
    /// run, its name prefixed so that simulations running at once (in one
    /// process or several) never share a file.
    Sqlite {
        dir: PathBuf,
        prefix: String,
    },
}

/// The applications of a simulated system, for the workload's commands.
#[derive(Clone)]
pub struct Apps {
    system: System,
    apps: Arc<[Application]>,
    warm: Arc<[Warm]>,
}

impl Apps {
    /// The application `P`, to save aggregates through.
    pub fn app<P: Process>(&self) -> Result<RunningApp<'_>> {
        self.system
            .apps()
            .position(|name| name == P::NAME)
            .map(|i| RunningApp::new(&self.apps[i], &self.warm[i]))
            .ok_or_else(|| Error::Runner {
                reason: format!("`{}` is not an application of this system", P::NAME),
            })
    }
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Scheduling steps: commands run and batches stepped.
    pub steps: usize,
    /// Faults injected, by kind.
    pub crashes: usize,
    /// Commits failed, before or after they landed.
    pub failed_commits: usize,
    /// Duplicate workers started.
    pub duplicates: usize,
    /// Process commits that landed.
    pub commits: usize,
}

/// What many runs did, added up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Seeds run, all passing.
    pub runs: usize,
    /// The runs' reports, added up.
    pub total: Report,
}

impl Simulation {
    /// A simulation of `system` whose workload is `commands` commands: the
    /// `i`-th runs `command(apps, i)`, in order, interleaved with the
    /// processing at the seed's choice. Runs in memory unless
    /// [`on_sqlite`](Self::on_sqlite) says otherwise.
    pub fn new<F, Fut>(system: System, commands: usize, command: F) -> Self
    where
        F: Fn(Apps, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        Self {
            system,
            commands,
            command: Arc::new(move |apps, i| Box::pin(command(apps, i))),
            faults: Faults::default(),
            backend: Backend::Memory,
            instances: Instances::default(),
            reference: OnceCell::new(),
        }
    }

    /// Sets how often each fault strikes.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Runs the application `P` as `policy`, made with its dependencies,
    /// as [`ProcessOptions::instance`] does for a runner: an application
    /// without `Default` needs one. It is shared by every run, every
    /// worker and every restart after a crash.
    pub fn instance<P: Process>(mut self, policy: P) -> Self {
        self.instances.add(policy);
        self
    }

    /// Runs on SQLite files in `dir`, one per seed (a directory in memory,
    /// such as `/dev/shm`, keeps runs fast), removed after a passing run.
    pub fn on_sqlite(mut self, dir: impl Into<PathBuf>) -> Self {
        self.backend = Backend::Sqlite {
            dir: dir.into(),
            prefix: format!("simulation-{}", uuid::Uuid::new_v4().simple()),
        };
        self
    }

    /// Runs every seed in `seeds`, stopping at the first that fails, with
    /// an [`Error::Simulation`] that names it.
    pub async fn run_seeds(&self, seeds: std::ops::Range<u64>) -> Result<Summary> {
        let mut summary = Summary::default();
        for seed in seeds {
            let report = self.run(seed).await?;
            summary.runs += 1;
            let total = &mut summary.total;
            total.steps += report.steps;
            total.crashes += report.crashes;
            total.failed_commits += report.failed_commits;
            total.duplicates += report.duplicates;
            total.commits += report.commits;
        }
        Ok(summary)
    }

    /// Runs one seed and checks it; the same seed replays the same run.
    pub async fn run(&self, seed: u64) -> Result<Report> {
        let reference = self
            .reference
            .get_or_try_init(|| async {
                let (_, histories) = self.run_with(0, Faults::NONE, &Backend::Memory).await?;
                Ok::<_, Error>(histories)
            })
            .await?;
        let (report, histories) = self.run_with(seed, self.faults, &self.backend).await?;
        checks::compare(&histories, reference).map_err(|message| self.failure(seed, message, Vec::new()))?;
        Ok(report)
    }

    fn failure(&self, seed: u64, message: String, trace: Vec<String>) -> Error {
        Error::Simulation {
            seed,
            backend: match &self.backend {
                Backend::Memory => "memory".to_owned(),
                Backend::Sqlite { dir, .. } => format!("SQLite in {}", dir.display()),
            },
            message,
            trace: trace.join("\n"),
        }
    }

    /// One run: the schedule, then the checks of logs and tracking.
    async fn run_with(&self, seed: u64, faults: Faults, backend: &Backend) -> Result<(Report, Histories)> {
        let _reproducible = crate::ids::Reproducible::enable();
        let mut rng = Rng::new(seed);
        let mut options = ProcessOptions::default()
            .batch_size(1 + rng.below(4))
            .retries(0, Duration::ZERO)
            .cache_capacity([0, 3, 1000][rng.below(3)]);
        options.instances = self.instances.clone();
        let plan = Plan::new(seed, faults);
        let file = match backend {
            Backend::Memory => None,
            Backend::Sqlite { dir, prefix } => Some(SqliteFile::new(dir.join(format!("{prefix}-{seed}.db")))),
        };
        let memory = Store::open("memory:").await?;
        let open_store = || async {
            match &file {
                None => Ok(memory.clone()),
                Some(file) => Store::open(&file.url()).await,
            }
        };
        let mut world = World::open(&self.system, open_store().await?, &plan, &options).await?;
        let mut report = Report::default();
        let fail = |message: String, plan: &Arc<Mutex<Plan>>| {
            let trace = plan.lock().map(|plan| plan.trace.clone()).unwrap_or_default();
            self.failure(seed, message, trace)
        };

        let mut next_command = 0;
        let mut quiet_round = false;
        while !quiet_round || next_command < self.commands {
            report.steps += 1;
            if report.steps > MAX_STEPS {
                return Err(fail(format!("not quiet after {MAX_STEPS} steps"), &plan));
            }
            if next_command < self.commands && rng.below(3) == 0 {
                let _ids = crate::ids::Scope::enter(|| format!("command/{next_command}"));
                (self.command)(world.apps(), next_command)
                    .await
                    .map_err(|e| fail(format!("command {next_command} failed: {e}"), &plan))?;
                next_command += 1;
                quiet_round = false;
                continue;
            }
            // While commands remain, one batch of a worker chosen at random;
            // then rounds over every worker until one round does nothing.
            let following: Vec<usize> = (0..world.workers.len())
                .filter(|&w| world.workers[w].1.upstream_count() > 0)
                .collect();
            let busy = if next_command < self.commands {
                if following.is_empty() {
                    continue;
                }
                let w = following[rng.below(following.len())];
                let u = rng.below(world.workers[w].1.upstream_count());
                self.step(&mut world, w, u, &plan, &mut report).await
            } else {
                let mut busy = false;
                let mut w = 0;
                while w < world.workers.len() {
                    for u in 0..world.workers[w].1.upstream_count() {
                        busy |= self.step(&mut world, w, u, &plan, &mut report).await;
                        if world.crashed {
                            break;
                        }
                    }
                    if world.crashed {
                        break;
                    }
                    w += 1;
                }
                busy
            };
            if world.crashed {
                report.crashes += 1;
                plan_trace(&plan, "crash: everything in memory dropped, the store reopened");
                drop(world);
                world = World::open(&self.system, open_store().await?, &plan, &options).await?;
                quiet_round = false;
                continue;
            }
            quiet_round = next_command >= self.commands && !busy;
        }

        let (histories, heads) = checks::read_logs(&world.apps).await.map_err(|m| fail(m, &plan))?;
        let (landed, failed_commits) = plan
            .lock()
            .map(|mut plan| (std::mem::take(&mut plan.landed), plan.failed_commits))
            .unwrap_or_default();
        report.commits = landed.len();
        report.failed_commits = failed_commits;
        checks::check_exactly_once(&self.system, &world.apps, &landed, &heads)
            .await
            .map_err(|m| fail(m, &plan))?;
        drop(world);
        if let Some(file) = file {
            file.remove();
        }
        Ok((report, histories))
    }

    /// Steps worker `w` on upstream `u` and deals with what the plan says
    /// happened: a crash, a duplicate worker to start, or a worker that
    /// stopped (started again, as an operator would). Returns whether the
    /// step did anything.
    async fn step(&self, world: &mut World, w: usize, u: usize, plan: &Arc<Mutex<Plan>>, report: &mut Report) -> bool {
        let result = world.workers[w].1.step(u).await;
        let (crashed, duplicate) = match plan.lock() {
            Ok(mut plan) => (std::mem::take(&mut plan.crashed), plan.duplicate.take()),
            Err(_) => (true, None),
        };
        if crashed {
            world.crashed = true;
            return true;
        }
        // A second worker for the same partition as the one stepped.
        let partition = world.workers[w].1.partition();
        if let Some(app) = duplicate
            && let Some(i) = self.system.apps().position(|name| name == app)
            && world
                .workers
                .iter()
                .filter(|(a, worker)| *a == i && worker.partition() == partition)
                .count()
                < 2
        {
            report.duplicates += 1;
            world.workers.push((i, world.worker(i, partition)));
        }
        match result {
            Ok(busy) => busy,
            Err(error) => {
                plan_trace(
                    plan,
                    &format!(
                        "worker of `{}` stopped ({error}); started again",
                        world.workers[w].1.name()
                    ),
                );
                let (i, partition) = (world.workers[w].0, world.workers[w].1.partition());
                world.workers[w] = (i, world.worker(i, partition));
                true
            }
        }
    }
}

fn plan_trace(plan: &Arc<Mutex<Plan>>, line: &str) {
    if let Ok(mut plan) = plan.lock() {
        plan.trace.push(line.to_owned());
    }
}

/// Everything a crash loses: the applications' handles, the workers and
/// their caches.
struct World {
    system: System,
    options: ProcessOptions,
    apps: Arc<[Application]>,
    warm: Arc<[Warm]>,
    /// Each application's policy.
    policies: Vec<Policy>,
    /// Each worker with the index of its application; duplicates included.
    workers: Vec<(usize, Worker)>,
    crashed: bool,
}

impl World {
    async fn open(system: &System, store: Store, plan: &Arc<Mutex<Plan>>, options: &ProcessOptions) -> Result<Self> {
        let opened = crate::runner::open_apps(system, &store, options, |inner| {
            AnyRecorder::Faulty(FaultyRecorder::new(inner, plan.clone()))
        })
        .await?;
        let apps = crate::runner::all_here(&opened.apps, "simulations")?;
        let policies = crate::runner::all_here(&opened.policies, "simulations")?;
        let mut world = Self {
            system: system.clone(),
            options: options.clone(),
            apps: apps.into(),
            warm: opened.warm.into(),
            policies,
            workers: Vec::new(),
            crashed: false,
        };
        world.workers = (0..world.apps.len())
            .flat_map(|i| (0..options.partitions).map(move |partition| (i, partition)))
            .map(|(i, partition)| (i, world.worker(i, partition)))
            .collect();
        Ok(world)
    }

    fn worker(&self, i: usize, partition: u32) -> Worker {
        let logs = crate::runner::local_logs(&self.apps);
        crate::runner::worker(
            &self.system,
            &self.apps[i],
            &logs,
            &self.warm,
            &self.policies[i],
            &self.options,
            i,
            partition,
        )
    }

    fn apps(&self) -> Apps {
        Apps {
            system: self.system.clone(),
            apps: self.apps.clone(),
            warm: self.warm.clone(),
        }
    }
}

/// A run's SQLite file, removed with its WAL files.
struct SqliteFile(PathBuf);

impl SqliteFile {
    fn new(path: PathBuf) -> Self {
        let file = Self(path);
        file.remove();
        file
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }

    fn remove(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}
