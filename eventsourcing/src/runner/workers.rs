//! Workers: a system's application-partitions spread over any number of
//! OS processes and machines that share one PostgreSQL database.
//!
//! Each worker says it is alive every heartbeat (a third of the lease
//! period), reads who else is, and works out its share: the system's
//! application-partitions in a fixed order, dealt round the live workers in
//! name order. It takes the leases of its share as they come free, renews
//! the ones it holds, and releases the ones no longer its share, after the
//! partition's task has finished the batch in hand. A worker that joins or
//! leaves changes everyone's share at their next heartbeat; a worker that
//! dies stops renewing, and its partitions are taken once its leases
//! expire. Shares are a suggestion that converges; the lease rows decide,
//! and fencing (see `store/postgres/leases.rs`) makes a stale owner's
//! commit fail rather than land.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::Error;

#[cfg(feature = "postgres")]
mod coordinator;

#[cfg(feature = "postgres")]
pub(crate) use coordinator::{Coordinator, check_no_other_system, lease_board, processes_here};

/// A lease this worker holds, from [`Runner::leases`](crate::Runner::leases).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The application.
    pub app: &'static str,
    /// The partition of its log.
    pub partition: u32,
    /// The lease's epoch: raised each time the partition changes hands.
    pub epoch: u64,
}

/// What a worker shares with its runner: the leases it holds and the
/// notifications it processed.
#[derive(Debug, Default)]
pub(crate) struct WorkerStatus {
    leases: std::sync::Mutex<Vec<Lease>>,
    pub(crate) processed: Arc<AtomicU64>,
}

impl WorkerStatus {
    pub(crate) fn leases(&self) -> Vec<Lease> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn set_leases(&self, leases: Vec<Lease>) {
        *self.leases.lock().unwrap_or_else(|p| p.into_inner()) = leases;
    }
}

/// Why a store cannot run workers.
pub(crate) fn needs_postgres() -> Error {
    Error::Runner {
        reason: "workers share a system through leases in PostgreSQL; open the store with a postgres:// URL, or run the system in one process with `Runner::multi_task`".to_owned(),
    }
}
