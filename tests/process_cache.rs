//! A process's cache stays true to saves made through the runner: a
//! handler that only reads an aggregate decides on its latest state after a
//! command changed it, whether the command saved through `Runner::save` or
//! through the application the runner hands out. On every backend, with
//! both runners.

use eventsourcing::prelude::*;
use eventsourcing::{Aggregate, RunnerKind};

/// An account with a spending limit, changed by commands.
#[aggregate]
#[derive(Debug, Default)]
pub struct Account {
    pub limit: u64,
}

#[aggregate]
impl Account {
    #[event(Opened)]
    pub fn open(#[id] id: Uuid, limit: u64) -> Self {
        Self { limit }
    }

    #[event(LimitSet)]
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }
}

/// A request to spend from an account.
#[aggregate]
#[derive(Debug, Default)]
pub struct Request {
    pub account: Uuid,
    pub amount: u64,
}

#[aggregate]
impl Request {
    #[event(Made)]
    pub fn make(account: Uuid, amount: u64) -> Self {
        Self { account, amount }
    }
}

/// The process's decision on a request, made by reading the account.
#[aggregate]
#[derive(Debug, Default)]
pub struct Decision {
    pub approved: bool,
}

#[aggregate]
impl Decision {
    #[event(Made)]
    pub fn make(#[id] request: Uuid, approved: bool) -> Self {
        Self { approved }
    }
}

#[derive(Default)]
struct Requests;

#[policy(aggregates(Request))]
impl Requests {}

#[derive(Default)]
struct Accounts;

#[policy(aggregates(Account, Decision))]
impl Accounts {
    async fn request_made(&self, request: &Notified<RequestMade>, repo: &mut Repo<Self>) -> Result<()> {
        // Read only: nothing written to the account, so no conflict would
        // tell a stale copy.
        let limit = repo.get::<Account>(request.account).await?.limit;
        repo.add(Decision::make(request.originator_id, request.amount <= limit));
        Ok(())
    }
}

/// Makes a request of `amount` and answers whether it was approved.
async fn request(runner: &Runner, account: Uuid, amount: u64) -> bool {
    let mut request = Request::make(account, amount);
    runner
        .save::<Requests>(&mut request)
        .await
        .unwrap()
        .processed()
        .unwrap();
    runner.wait_until_quiet().await.unwrap();
    let decision: Decision = runner.app::<Accounts>().unwrap().load(request.id()).await.unwrap();
    decision.approved
}

async fn a_read_only_handler_sees_the_latest_save(store: &Store, kind: RunnerKind) {
    let runner = Runner::start(kind, system!(Requests => Accounts), store, ProcessOptions::default())
        .await
        .unwrap();
    let id = Uuid::new_v4();
    let mut account = Account::open(id, 10);
    runner
        .save::<Accounts>(&mut account)
        .await
        .unwrap()
        .processed()
        .unwrap();
    assert!(request(&runner, id, 5).await, "within the limit of 10");

    // Lowered through `Runner::save`: the process's cached account is stale.
    account.set_limit(3);
    runner
        .save::<Accounts>(&mut account)
        .await
        .unwrap()
        .processed()
        .unwrap();
    assert!(!request(&runner, id, 5).await, "over the limit of 3");

    // Raised through the application the runner hands out.
    account.set_limit(8);
    runner.app::<Accounts>().unwrap().save(&mut account).await.unwrap();
    assert!(request(&runner, id, 5).await, "within the limit of 8");

    // And into a partition named.
    account.set_limit(4);
    runner
        .app::<Accounts>()
        .unwrap()
        .save_in(0, &mut account)
        .await
        .unwrap();
    assert!(!request(&runner, id, 5).await, "over the limit of 4");
    runner.shutdown().await.unwrap();
}

async fn with_the_single_threaded_runner(store: &Store) {
    a_read_only_handler_sees_the_latest_save(store, RunnerKind::SingleThreaded).await;
}

async fn with_the_multi_task_runner(store: &Store) {
    a_read_only_handler_sees_the_latest_save(store, RunnerKind::MultiTask).await;
}

eventsourcing_tests::on_every_fresh_backend!(with_the_single_threaded_runner, with_the_multi_task_runner);
