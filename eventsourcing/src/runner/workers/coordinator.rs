//! The loop that keeps one worker's leases: see `runner/workers.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::super::{Prompts, join_partition_task, run_task, worker};
use super::{Lease, WorkerStatus};
use crate::process::outage::{self, Outage};
use crate::process::upstream_log::UpstreamLog;
use crate::process::worker::error_chain;
use crate::store::postgres::LeaseBoard;
use crate::{AppName, Application, Error, ProcessOptions, Result, System};

/// How soon a worker looks again while part of its share is held by
/// another (being handed over, or expiring).
const WAITING_FOR_LEASES: std::time::Duration = std::time::Duration::from_millis(200);

/// One application-partition a worker may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Unit {
    partition: u32,
    /// The application's index in the system.
    app: usize,
}

/// A partition's task, under a lease.
struct Held {
    epoch: u64,
    stopping: Arc<AtomicBool>,
    handle: JoinHandle<Result<()>>,
}

/// The loop that keeps a worker's leases: it runs until `stopping`, then
/// stops its tasks, releases its leases and says it left.
pub(crate) struct Coordinator {
    pub(crate) system: System,
    /// Each application, if it runs here (in the system's order, like the
    /// fields below).
    pub(crate) apps: Vec<Option<Application>>,
    /// Each application's log, where its followers read it: here, or over
    /// HTTP.
    pub(crate) logs: Vec<UpstreamLog>,
    pub(crate) warm: Vec<super::super::Warm>,
    /// Each application's policy, if it runs here.
    pub(crate) policies: Vec<Option<crate::process::instances::Policy>>,
    pub(crate) options: ProcessOptions,
    pub(crate) board: LeaseBoard,
    pub(crate) prompts: Prompts,
    pub(crate) stopping: Arc<AtomicBool>,
    /// Wakes the loop early: at shutdown.
    pub(crate) wake: Arc<Notify>,
    pub(crate) status: Arc<WorkerStatus>,
}

impl Coordinator {
    /// The system's application-partitions that have something to process
    /// here (applications here that follow another), partition by
    /// partition.
    fn units(&self) -> Vec<Unit> {
        let following: Vec<usize> = processed_apps(&self.system)
            .map(|(i, _)| i)
            .filter(|&i| self.apps[i].is_some())
            .collect();
        (0..self.options.partitions)
            .flat_map(|partition| following.iter().map(move |&app| Unit { partition, app }))
            .collect()
    }

    fn name(&self, unit: Unit) -> &'static str {
        self.system.app_specs()[unit.app].name
    }

    /// The application of `unit`: one here (see [`units`](Self::units)).
    fn app(&self, unit: Unit) -> &Application {
        self.apps[unit.app].as_ref().expect("a unit is of an application here")
    }

    fn app_name(&self, unit: Unit) -> &AppName {
        self.app(unit).name()
    }

    pub(crate) async fn run(self) -> Result<()> {
        let heartbeat = self.options.lease_ttl / 3;
        let units = self.units();
        let mut held: BTreeMap<Unit, Held> = BTreeMap::new();
        let here = self
            .apps
            .iter()
            .flatten()
            .next()
            .expect("a worker runs an application here");
        let mut outage = Outage::new(None, here.recorder(), self.options.outage_budget);
        tracing::info!(worker = self.board.worker(), units = units.len(), "worker started");
        let result = loop {
            if self.stopping.load(Ordering::SeqCst) {
                break Ok(());
            }
            if let Err(error) = self.reap(&mut held).await {
                break Err(error);
            }
            // Until its whole share is held, a worker looks again sooner:
            // a lease it waits for may be released or expire at any moment.
            let mut pause = heartbeat;
            match self.balance(&units, &mut held).await {
                Ok(complete) => {
                    outage.over();
                    if !complete {
                        pause = pause.min(WAITING_FOR_LEASES);
                    }
                }
                Err(error) if outage::is_transient(&error) => {
                    if let Err(error) = outage.wait(error).await {
                        break Err(error);
                    }
                    continue;
                }
                Err(error) => break Err(error),
            }
            self.status.set_leases(
                held.iter()
                    .map(|(&unit, h)| Lease {
                        app: self.name(unit),
                        partition: unit.partition,
                        epoch: h.epoch,
                    })
                    .collect(),
            );
            let _ = tokio::time::timeout(pause, self.wake.notified()).await;
        };
        // Stop every task (each finishes its batch), then give the leases
        // back so that others take over at once.
        let mut first_error = result.err();
        for (unit, h) in std::mem::take(&mut held) {
            if let Err(error) = self.stop(unit, h).await {
                first_error.get_or_insert(error);
            }
        }
        self.status.set_leases(Vec::new());
        if let Err(error) = self.board.leave().await {
            tracing::warn!(worker = self.board.worker(), error = %error_chain(&error), "could not say the worker left");
        }
        tracing::info!(worker = self.board.worker(), "worker stopped");
        first_error.map_or(Ok(()), Err)
    }

    /// Collects the tasks that ended on their own: a lost lease is given up
    /// (the partition may come back at a later heartbeat); any other error
    /// stops the worker.
    async fn reap(&self, held: &mut BTreeMap<Unit, Held>) -> Result<()> {
        let ended: Vec<Unit> = held
            .iter()
            .filter(|(_, h)| h.handle.is_finished())
            .map(|(&unit, _)| unit)
            .collect();
        for unit in ended {
            let Some(h) = held.remove(&unit) else { continue };
            match join_partition_task(self.name(unit), unit.partition, h.handle).await {
                Ok(()) => {}
                Err(Error::LeaseLost { epoch, found, .. }) => {
                    tracing::info!(
                        worker = self.board.worker(),
                        app = self.name(unit),
                        partition = unit.partition,
                        epoch,
                        found,
                        "lost the lease; the partition's new owner carries on"
                    );
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// One heartbeat: says this worker is alive, and takes, keeps or gives
    /// up leases to match its share. Answers whether it holds all its share.
    async fn balance(&self, units: &[Unit], held: &mut BTreeMap<Unit, Held>) -> Result<bool> {
        let live = self.board.heartbeat().await?;
        let me = live.iter().position(|w| w == self.board.worker()).unwrap_or(live.len());
        let count = live.len().max(me + 1);
        let share: Vec<Unit> = (0..units.len()).filter(|k| k % count == me).map(|k| units[k]).collect();

        // Give up what is no longer ours; keep the rest.
        let keys: Vec<Unit> = held.keys().copied().collect();
        for unit in keys {
            if !share.contains(&unit) {
                if let Some(h) = held.remove(&unit) {
                    tracing::info!(
                        worker = self.board.worker(),
                        app = self.name(unit),
                        partition = unit.partition,
                        "handing the partition over"
                    );
                    self.stop(unit, h).await?;
                }
                continue;
            }
            let epoch = held[&unit].epoch;
            if !self.board.renew(self.app_name(unit), unit.partition, epoch).await?
                && let Some(h) = held.remove(&unit)
            {
                tracing::info!(
                    worker = self.board.worker(),
                    app = self.name(unit),
                    partition = unit.partition,
                    epoch,
                    "lost the lease; stopping the partition"
                );
                h.stopping.store(true, Ordering::SeqCst);
                self.prompts.of(self.name(unit), unit.partition).notify_one();
                // Its commits fail now: what it ends with does not matter.
                let _ = h.handle.await;
            }
        }
        for &unit in &share {
            if held.contains_key(&unit) {
                continue;
            }
            // Tracking rows of remote upstreams are fenced too.
            let upstreams = self
                .system
                .upstreams(self.name(unit))
                .map(AppName::new)
                .collect::<Result<Vec<_>>>()?;
            if let Some(epoch) = self
                .board
                .acquire(self.app_name(unit), unit.partition, &upstreams)
                .await?
            {
                tracing::info!(
                    worker = self.board.worker(),
                    app = self.name(unit),
                    partition = unit.partition,
                    epoch,
                    "took the lease"
                );
                held.insert(unit, self.start(unit, epoch));
            }
        }
        Ok(share.iter().all(|unit| held.contains_key(unit)))
    }

    /// Starts the task of `unit` under the lease at `epoch`, with nothing
    /// cached: whatever it knew before may be stale.
    fn start(&self, unit: Unit, epoch: u64) -> Held {
        let name = self.name(unit);
        if let Some(warm) = self.warm[unit.app].get(unit.partition as usize) {
            warm.clear();
        }
        let worker = worker(
            &self.system,
            self.app(unit),
            &self.logs,
            &self.warm,
            self.policies[unit.app]
                .as_ref()
                .expect("a unit is of an application here"),
            &self.options,
            unit.app,
            unit.partition,
        )
        .under_lease(epoch)
        .counting(self.status.processed.clone());
        let stopping = Arc::new(AtomicBool::new(false));
        let prompt = self.prompts.of(name, unit.partition).clone();
        let poll_interval = self.options.for_app(name).poll_interval;
        Held {
            epoch,
            stopping: stopping.clone(),
            handle: tokio::spawn(run_task(worker, prompt, stopping, poll_interval)),
        }
    }

    /// Stops the task of `unit` once its batch in hand is done, and
    /// releases its lease.
    async fn stop(&self, unit: Unit, h: Held) -> Result<()> {
        h.stopping.store(true, Ordering::SeqCst);
        self.prompts.of(self.name(unit), unit.partition).notify_one();
        let ended = match join_partition_task(self.name(unit), unit.partition, h.handle).await {
            Ok(()) | Err(Error::LeaseLost { .. }) => Ok(()),
            Err(error) => Err(error),
        };
        self.board.release(self.app_name(unit), unit.partition, h.epoch).await?;
        ended
    }
}

/// A name for this worker, unique among workers: the host (if the
/// environment says), the process id and a random suffix.
pub(crate) fn worker_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..8])
}

/// The system's name among workers: the applications its workers process
/// (those here that follow another), after their namespace (lowercase, as
/// in table names) if they have one, sorted, and its partitions.
pub(crate) fn group_name(system: &System, namespace: Option<&crate::Namespace>, options: &ProcessOptions) -> String {
    let partitions = options.partitions;
    let mut processed: Vec<String> = processed_apps(system)
        .filter(|(_, name)| !options.apps_elsewhere().any(|app| app == *name))
        .map(|(_, name)| match namespace {
            Some(namespace) => format!("{}__{name}", namespace.table_prefix()),
            None => name.to_owned(),
        })
        .collect();
    processed.sort_unstable();
    format!("{}/{partitions}", processed.join(","))
}

/// Whether an application here (`apps`, in the system's order) follows
/// another: whether a worker here has anything to process.
pub(crate) fn processes_here(system: &System, apps: &[Option<Application>]) -> bool {
    processed_apps(system).any(|(i, _)| apps[i].is_some())
}

/// The applications of `system` that workers process (those that follow
/// another), with their indices in the system.
fn processed_apps(system: &System) -> impl Iterator<Item = (usize, &'static str)> + '_ {
    system
        .app_specs()
        .iter()
        .enumerate()
        .map(|(i, spec)| (i, spec.name))
        .filter(|(_, name)| system.upstreams(name).next().is_some())
}

/// Refuses to start a worker of `group` while workers of another system
/// that processes one of its applications are alive: their leases are the
/// same rows, and one system's workers would hold partitions the other's
/// wait for.
pub(crate) async fn check_no_other_system(board: &LeaseBoard, group: &str) -> Result<()> {
    let mine = applications_of(group);
    for other in board.live_groups().await? {
        if other == group {
            continue;
        }
        if let Some(shared) = applications_of(&other).into_iter().find(|app| mine.contains(app)) {
            return Err(Error::Runner {
                reason: format!(
                    "workers of another system ({other}) are running and process `{shared}` too; an application's partitions are leased to the workers of one system: run every worker with the same system ({group} here), or stop the others first"
                ),
            });
        }
    }
    Ok(())
}

/// The applications in a group's name.
fn applications_of(group: &str) -> Vec<&str> {
    let apps = group.rsplit_once('/').map_or(group, |(apps, _)| apps);
    apps.split(',').filter(|app| !app.is_empty()).collect()
}

/// The lease board of a new worker, if `store` keeps leases.
pub(crate) fn lease_board(store: &crate::Store, system: &System, options: &ProcessOptions) -> Result<LeaseBoard> {
    let group = group_name(system, store.namespace(), options);
    match store {
        crate::Store::Postgres(store) => Ok(store.lease_board(group, worker_name(), options.lease_ttl)),
        _ => Err(super::needs_postgres()),
    }
}
