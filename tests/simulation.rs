//! Exactly-once, proven by simulation: the orders system and a bank-transfer
//! saga (with refusals) run under many seeds on memory and SQLite, with
//! crashes, failed commits and duplicate workers injected at commit
//! boundaries; every run must leave gapless logs, every notification
//! processed once, and the aggregates of an uninterrupted run.
//!
//! `EVENTSOURCING_SIMULATION_SEEDS` sets the number of seeds (1,000 by
//! default).

#[path = "../examples/orders/domain.rs"]
#[allow(dead_code)]
mod domain;

use std::path::PathBuf;

use eventsourcing::Error;
use eventsourcing::prelude::*;
use eventsourcing::simulation::{Faults, Simulation};

fn seeds() -> u64 {
    std::env::var("EVENTSOURCING_SIMULATION_SEEDS")
        .ok()
        .and_then(|seeds| seeds.parse().ok())
        .unwrap_or(1000)
}

/// A directory in memory where there is one, so that SQLite's flushes are
/// cheap; the temp directory otherwise.
fn sqlite_dir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() { shm } else { std::env::temp_dir() }
}

fn orders() -> Simulation {
    Simulation::new(domain::system(), 6, |apps, i| async move {
        let mut order = domain::Order::create(domain::order_id(i as u64));
        apps.app::<domain::Orders>()?.save(&mut order).await?;
        Ok(())
    })
}

/// An account that refuses a debit it cannot cover.
#[aggregate]
#[derive(Debug, Default)]
pub struct Account {
    balance: i64,
}

#[aggregate]
impl Account {
    #[event(Opened)]
    pub fn open(#[id] id: Uuid, balance: i64) -> Self {
        Self { balance }
    }

    #[event(Debited)]
    fn debit(&mut self, transfer: Uuid, amount: i64) {
        self.balance -= amount;
    }

    #[event(Credited)]
    fn credit(&mut self, transfer: Uuid, amount: i64) {
        self.balance += amount;
    }

    #[event(Refused)]
    fn refuse(&mut self, transfer: Uuid) {}
}

/// A transfer between two accounts: requested, then completed or refused.
#[aggregate]
#[derive(Debug, Default)]
#[allow(dead_code)]
pub struct Transfer {
    from: Uuid,
    to: Uuid,
    amount: i64,
    outcome: Option<bool>,
}

#[aggregate]
impl Transfer {
    #[event(Requested)]
    pub fn request(#[id] id: Uuid, from: Uuid, to: Uuid, amount: i64) -> Self {
        Self {
            from,
            to,
            amount,
            outcome: None,
        }
    }

    #[event(Completed)]
    fn complete(&mut self) {
        self.outcome = Some(true);
    }

    #[event(Refused)]
    fn refuse(&mut self) {
        self.outcome = Some(false);
    }
}

#[derive(Default)]
struct Transfers;

#[policy(aggregates(Transfer))]
impl Transfers {
    async fn account_debited(&self, debited: &Notified<AccountDebited>, repo: &mut Repo<Self>) -> Result<()> {
        repo.get::<Transfer>(debited.transfer).await?.complete();
        Ok(())
    }

    async fn account_refused(&self, refused: &Notified<AccountRefused>, repo: &mut Repo<Self>) -> Result<()> {
        repo.get::<Transfer>(refused.transfer).await?.refuse();
        Ok(())
    }
}

#[derive(Default)]
struct Accounts;

#[policy(aggregates(Account))]
impl Accounts {
    async fn transfer_requested(&self, requested: &Notified<TransferRequested>, repo: &mut Repo<Self>) -> Result<()> {
        let transfer = requested.originator_id;
        let from = repo.get::<Account>(requested.from).await?;
        if from.balance < requested.amount {
            from.refuse(transfer);
            return Ok(());
        }
        from.debit(transfer, requested.amount);
        repo.get::<Account>(requested.to)
            .await?
            .credit(transfer, requested.amount);
        Ok(())
    }
}

const ACCOUNTS: usize = 3;

fn account_id(n: usize) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("account-{n}").as_bytes())
}

/// Opens three accounts of 100, then asks for transfers between them, some
/// of which they cannot cover.
fn transfers() -> Simulation {
    Simulation::new(
        system!(Transfers => Accounts => Transfers),
        ACCOUNTS + 6,
        |apps, i| async move {
            if i < ACCOUNTS {
                apps.app::<Accounts>()?
                    .save(&mut Account::open(account_id(i), 100))
                    .await?;
            } else {
                let (from, to) = (account_id(i % ACCOUNTS), account_id((i + 1) % ACCOUNTS));
                let amount = [40, 70, 90][i % 3];
                let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("transfer-{i}").as_bytes());
                apps.app::<Transfers>()?
                    .save(&mut Transfer::request(id, from, to, amount))
                    .await?;
            }
            Ok(())
        },
    )
}

async fn passes_every_seed(simulation: Simulation) {
    let started = std::time::Instant::now();
    let summary = simulation
        .run_seeds(0..seeds())
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    eprintln!("{summary:?} in {:.1?}", started.elapsed());
    assert_eq!(summary.runs as u64, seeds());
    if seeds() >= 100 {
        let total = &summary.total;
        assert!(
            total.crashes > 0 && total.failed_commits > 0 && total.duplicates > 0,
            "every kind of fault was injected: {total:?}"
        );
    }
}

#[tokio::test]
async fn the_orders_system_in_memory() {
    passes_every_seed(orders()).await;
}

#[tokio::test]
async fn the_orders_system_on_sqlite() {
    passes_every_seed(orders().on_sqlite(sqlite_dir())).await;
}

#[tokio::test]
async fn a_saga_with_refusals_in_memory() {
    passes_every_seed(transfers()).await;
}

#[tokio::test]
async fn a_saga_with_refusals_on_sqlite() {
    passes_every_seed(transfers().on_sqlite(sqlite_dir())).await;
}

#[tokio::test]
async fn a_seed_replays_exactly() {
    let simulation = transfers().on_sqlite(sqlite_dir());
    for seed in [3, 17] {
        assert_eq!(simulation.run(seed).await.unwrap(), simulation.run(seed).await.unwrap());
    }
}

/// Opens accounts, and responds to nothing.
#[derive(Default)]
struct Bank;

#[policy(aggregates(Account))]
impl Bank {}

/// A handler that makes a new aggregate with a random id, so that every run
/// differs from the uninterrupted one.
#[derive(Default)]
struct Careless;

#[aggregate]
#[derive(Debug, Default)]
pub struct Note {}

#[aggregate]
impl Note {
    #[event(Written)]
    pub fn write(#[id] id: Uuid) -> Self {
        Self {}
    }
}

#[policy(aggregates(Note))]
impl Careless {
    async fn account_opened(&self, _opened: &Notified<AccountOpened>, repo: &mut Repo<Self>) -> Result<()> {
        repo.add(Note::write(Uuid::new_v4()));
        Ok(())
    }
}

#[tokio::test]
async fn a_failing_seed_names_itself_and_what_broke() {
    let simulation = Simulation::new(system!(Bank => Careless), 2, |apps, i| async move {
        apps.app::<Bank>()?.save(&mut Account::open(account_id(i), 1)).await?;
        Ok(())
    })
    .faults(Faults {
        crash: 0.5,
        failed_commit: 0.5,
        duplicate_worker: 0.0,
    });
    let error = simulation.run_seeds(5..10).await.unwrap_err();
    let Error::Simulation {
        seed, message, trace, ..
    } = &error
    else {
        panic!("expected a simulation failure, got {error}");
    };
    assert_eq!(*seed, 5);
    assert!(message.contains("which the uninterrupted run"), "{message}");
    assert!(error.to_string().contains("Simulation::run(5)"), "{error}");
    // Run again, the seed fails the same way, after the same faults.
    let Err(Error::Simulation { trace: again, .. }) = simulation.run(5).await else {
        panic!("seed 5 fails again");
    };
    assert_eq!(trace, &again);
}
