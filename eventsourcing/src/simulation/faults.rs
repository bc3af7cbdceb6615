//! The faults a simulation injects at commit boundaries, through a recorder
//! that wraps the real one, and the record of every commit that landed.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use crate::{
    AnyRecorder, AppName, DeadLetter, Error, Notification, NotificationSource, Recorder, Result, StoredEvent, Tracking,
    Versions,
};

/// How often each fault strikes a process's commit, from 0 (never) to 1
/// (always). Commands are never failed: they are the workload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Faults {
    /// Everything in memory is dropped and the store reopened, at the commit
    /// (half the time before it lands, half the time after).
    pub crash: f64,
    /// The commit fails (half the time before it lands, half the time after
    /// it landed, when the caller cannot tell it did).
    pub failed_commit: f64,
    /// A second worker for the same application joins, racing the first for
    /// the same notifications.
    pub duplicate_worker: f64,
}

impl Faults {
    /// No faults: the uninterrupted run each seeded run is compared with.
    pub const NONE: Faults = Faults {
        crash: 0.0,
        failed_commit: 0.0,
        duplicate_worker: 0.0,
    };
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            crash: 0.03,
            failed_commit: 0.08,
            duplicate_worker: 0.05,
        }
    }
}

/// A small seeded generator (SplitMix64): the same seed, the same schedule,
/// on every machine and in every version of this crate's dependencies.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` at least 1).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// A process commit that landed.
#[derive(Clone, Debug)]
pub(crate) struct Landed {
    pub(crate) app: String,
    pub(crate) upstream: String,
    pub(crate) partition: u32,
    pub(crate) previous: u64,
    pub(crate) position: u64,
}

/// What the faulty recorders share: the generator that decides faults, what
/// landed, and what the driver must do next.
#[derive(Debug)]
pub(crate) struct Plan {
    rng: Rng,
    faults: Faults,
    pub(crate) landed: Vec<Landed>,
    /// Set by a crash: the driver drops everything and reopens the store.
    pub(crate) crashed: bool,
    /// Set at a commit of this application: the driver adds a duplicate worker.
    pub(crate) duplicate: Option<String>,
    /// Commits failed so far, before or after they landed.
    pub(crate) failed_commits: usize,
    /// What happened, for a failing seed's report.
    pub(crate) trace: Vec<String>,
}

impl Plan {
    pub(crate) fn new(seed: u64, faults: Faults) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            rng: Rng::new(seed ^ 0x5eed_fa17),
            faults,
            landed: Vec::new(),
            crashed: false,
            duplicate: None,
            failed_commits: 0,
            trace: Vec::new(),
        }))
    }
}

/// The fault chosen for one commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    FailBefore,
    FailAfter,
    CrashBefore,
    CrashAfter,
    Duplicate,
}

impl Fault {
    fn lands(self) -> bool {
        !matches!(self, Fault::FailBefore | Fault::CrashBefore)
    }

    fn fails(self) -> bool {
        !matches!(self, Fault::None | Fault::Duplicate)
    }
}

/// A recorder that injects the plan's faults into commits that carry a
/// tracking position (a process's commits), and records those that land.
#[derive(Clone, Debug)]
pub struct FaultyRecorder {
    inner: Box<AnyRecorder>,
    plan: Arc<Mutex<Plan>>,
}

impl FaultyRecorder {
    pub(crate) fn new(inner: AnyRecorder, plan: Arc<Mutex<Plan>>) -> Self {
        Self {
            inner: Box::new(inner),
            plan,
        }
    }

    /// The recorder the faults are injected in front of.
    pub(crate) fn inner(&self) -> &AnyRecorder {
        &self.inner
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn decide(&self, tracking: &Tracking) -> Fault {
        let mut plan = self.plan();
        let faults = plan.faults;
        let fault = if plan.rng.chance(faults.crash) {
            if plan.rng.chance(0.5) {
                Fault::CrashBefore
            } else {
                Fault::CrashAfter
            }
        } else if plan.rng.chance(faults.failed_commit) {
            plan.failed_commits += 1;
            if plan.rng.chance(0.5) {
                Fault::FailBefore
            } else {
                Fault::FailAfter
            }
        } else if plan.rng.chance(faults.duplicate_worker) {
            Fault::Duplicate
        } else {
            Fault::None
        };
        if fault != Fault::None {
            let line = format!(
                "{fault:?} at the commit of `{}` moving `{}` partition {} from {} to {}",
                self.inner.app(),
                tracking.upstream,
                tracking.partition,
                tracking.previous,
                tracking.position
            );
            plan.trace.push(line);
        }
        fault
    }
}

/// A boxed future: the recorder inside is an [`AnyRecorder`] too, so its
/// futures are boxed to keep their types finite.
type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

#[allow(refining_impl_trait)]
impl NotificationSource for FaultyRecorder {
    fn app(&self) -> &AppName {
        self.inner.app()
    }

    fn partitions(&self) -> u32 {
        self.inner.partitions()
    }

    fn select_notifications(&self, partition: u32, start: u64, limit: usize) -> Boxed<'_, Vec<Notification>> {
        Box::pin(self.inner.select_notifications(partition, start, limit))
    }

    fn max_notification_id(&self, partition: u32) -> Boxed<'_, u64> {
        Box::pin(self.inner.max_notification_id(partition))
    }
}

#[allow(refining_impl_trait)]
impl Recorder for FaultyRecorder {
    fn insert(&self, partition: u32, events: Vec<StoredEvent>, tracking: Option<&Tracking>) -> Boxed<'_, Vec<u64>> {
        // Owned, so that the boxed future borrows only the recorder.
        let tracking = tracking.cloned();
        Box::pin(async move {
            let tracking = tracking.as_ref();
            let Some(t) = tracking else {
                return self.inner.insert(partition, events, None).await;
            };
            let fault = self.decide(t);
            let result = if fault.lands() {
                self.inner.insert(partition, events, tracking).await
            } else {
                Ok(Vec::new())
            };
            let mut plan = self.plan();
            if result.is_ok() && fault.lands() {
                plan.landed.push(Landed {
                    app: self.inner.app().to_string(),
                    upstream: t.upstream.to_string(),
                    partition: t.partition,
                    previous: t.previous,
                    position: t.position,
                });
            }
            match fault {
                Fault::CrashBefore | Fault::CrashAfter => plan.crashed = true,
                Fault::Duplicate => plan.duplicate = Some(self.inner.app().to_string()),
                _ => {}
            }
            if fault.fails() {
                return Err(Error::Simulated {
                    app: self.inner.app().to_string(),
                    fault: if fault.lands() {
                        "the commit landed, but its answer was lost"
                    } else {
                        "the commit failed before it landed"
                    },
                });
            }
            result
        })
    }

    fn select_events(&self, originator_id: Uuid, versions: Versions) -> Boxed<'_, Vec<StoredEvent>> {
        Box::pin(self.inner.select_events(originator_id, versions))
    }

    fn park(&self, letter: &DeadLetter, tracking: &Tracking) -> Boxed<'_, ()> {
        let (letter, tracking) = (letter.clone(), tracking.clone());
        Box::pin(async move {
            self.inner.park(&letter, &tracking).await?;
            self.plan().landed.push(Landed {
                app: self.inner.app().to_string(),
                upstream: tracking.upstream.to_string(),
                partition: tracking.partition,
                previous: tracking.previous,
                position: tracking.position,
            });
            Ok(())
        })
    }

    fn dead_letters(&self) -> Boxed<'_, Vec<DeadLetter>> {
        Box::pin(self.inner.dead_letters())
    }

    fn resolve_dead_letter(&self, letter: &DeadLetter, events: Vec<StoredEvent>) -> Boxed<'_, Vec<u64>> {
        let letter = letter.clone();
        Box::pin(async move { self.inner.resolve_dead_letter(&letter, events).await })
    }

    fn record_failed_retry(&self, letter: &DeadLetter) -> Boxed<'_, u32> {
        let letter = letter.clone();
        Box::pin(async move { self.inner.record_failed_retry(&letter).await })
    }

    fn tracking_position(&self, upstream: &AppName, partition: u32) -> Boxed<'_, u64> {
        let upstream = upstream.clone();
        Box::pin(async move { self.inner.tracking_position(&upstream, partition).await })
    }

    fn insert_with_outbox(
        &self,
        partition: u32,
        events: Vec<StoredEvent>,
        outbox: crate::store::OutboxWrite,
    ) -> Boxed<'_, Vec<u64>> {
        Box::pin(self.inner.insert_with_outbox(partition, events, outbox))
    }

    fn due_outgoing(&self, due_by: crate::Timestamp, limit: usize) -> Boxed<'_, Vec<crate::store::Outgoing>> {
        Box::pin(self.inner.due_outgoing(due_by, limit))
    }

    fn parked_outgoing(&self) -> Boxed<'_, Vec<crate::store::Outgoing>> {
        Box::pin(self.inner.parked_outgoing())
    }

    fn change_outgoing(&self, change: crate::store::OutgoingChange) -> Boxed<'_, bool> {
        Box::pin(self.inner.change_outgoing(change))
    }
}
