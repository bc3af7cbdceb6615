//! An application of a running system, as a runner hands it out: an
//! [`Application`] whose saves also tell the runner's processes which
//! aggregates changed. The runner owns that state (the warm histories of
//! `process/warm.rs`), not the application.

use std::ops::Deref;
use std::sync::Arc;

use crate::process::warm::WarmHistories;
use crate::{Application, Result, StoredEvent, Unsaved};

/// The warm histories of one application, one per partition.
pub(crate) type Warm = Arc<[Arc<WarmHistories>]>;

/// Warm histories for `partitions` partitions, each keeping up to
/// `capacity` aggregates.
pub(crate) fn warm(partitions: u32, capacity: usize) -> Warm {
    (0..partitions)
        .map(|_| Arc::new(WarmHistories::new(capacity)))
        .collect()
}

/// An application of a running system, from [`Runner::app`](crate::Runner::app):
/// everything an [`Application`] does (through `Deref`), with
/// [`save`](RunningApp::save) and [`save_in`](RunningApp::save_in) that also
/// hand the new events to the system's processes in this runner, so that
/// they find new aggregates without a read and drop what they cached of the
/// ones that changed.
#[derive(Clone, Copy, Debug)]
pub struct RunningApp<'r> {
    app: &'r Application,
    warm: &'r [Arc<WarmHistories>],
}

impl<'r> RunningApp<'r> {
    pub(crate) fn new(app: &'r Application, warm: &'r [Arc<WarmHistories>]) -> Self {
        Self { app, warm }
    }

    /// The application itself.
    pub fn application(&self) -> &'r Application {
        self.app
    }

    /// Records the pending events of the aggregates like
    /// [`Application::save`], in the partition of the first one's id.
    pub async fn save(&self, aggregates: impl Unsaved) -> Result<Vec<u64>> {
        Ok(self.save_to(None, aggregates).await?.1)
    }

    /// Records the pending events of the aggregates like
    /// [`Application::save_in`], in `partition`.
    pub async fn save_in(&self, partition: u32, aggregates: impl Unsaved) -> Result<Vec<u64>> {
        Ok(self.save_to(Some(partition), aggregates).await?.1)
    }

    /// Saves in `partition`, or the first aggregate's; answers the
    /// partition with the ids.
    pub(crate) async fn save_to(&self, partition: Option<u32>, aggregates: impl Unsaved) -> Result<(u32, Vec<u64>)> {
        let keep = |partition: u32, events: Vec<StoredEvent>| {
            if let Some(warm) = self.warm.get(partition as usize) {
                warm.put_new(events);
            }
        };
        self.app.save_observed(partition, aggregates, Some(&keep)).await
    }
}

impl Deref for RunningApp<'_> {
    type Target = Application;

    fn deref(&self) -> &Application {
        self.app
    }
}
