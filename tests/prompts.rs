//! What wakes a multi-task runner's applications: the store's commit feed.
//! With polling set to ten minutes, a flow still completes in moments when
//! its commits are heard: in this process on every backend, and from
//! another process on PostgreSQL (`LISTEN`/`NOTIFY`). On SQLite another
//! process's commits are found by polling.

#[path = "../examples/orders/domain.rs"]
#[allow(dead_code)]
mod domain;
#[path = "common/orders_check.rs"]
mod orders_check;

use std::time::Duration;

use eventsourcing::{Application, ProcessOptions, Runner, Store};
use uuid::Uuid;

use domain::Order;
use orders_check::assert_each_order_reserved_and_paid_once;

/// Polling so rare that a test that relies on it times out.
const NO_POLLING: Duration = Duration::from_secs(600);

/// Saves 20 orders through `writer` while `runner` runs, and waits at most
/// `within` for the system to finish them.
async fn orders_complete(runner: &Runner, writer: &Application, within: Duration) -> Vec<Uuid> {
    let mut orders: Vec<Order> = (0..20).map(|_| Order::create(Uuid::new_v4())).collect();
    let ids = orders.iter().map(eventsourcing::Aggregate::id).collect();
    writer.save(&mut orders).await.unwrap();
    tokio::time::timeout(within, runner.wait_until_quiet())
        .await
        .expect("the runner finished the orders in time")
        .unwrap();
    ids
}

async fn commits_in_this_process_wake_the_runner(store: &Store) {
    let options = ProcessOptions::default().poll_interval(NO_POLLING);
    let runner = Runner::multi_task(domain::system(), store, options).await.unwrap();
    let writer = Application::open(store, "Orders").await.unwrap();
    let ids = orders_complete(&runner, &writer, Duration::from_secs(20)).await;
    runner.shutdown().await.unwrap();
    assert_each_order_reserved_and_paid_once(store, &ids).await;
}

eventsourcing_tests::on_every_fresh_backend!(commits_in_this_process_wake_the_runner);

/// Another store on the same database, as another process would have:
/// its commits reach the runner only through `LISTEN`. The runner's own
/// store is a temporary, dropped once the runner started: what the runner
/// needs to hear commits, it keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_commits_by_another_process_wake_the_runner() {
    let Some(url) = eventsourcing_tests::fresh_postgres_url().await else {
        return;
    };
    let options = ProcessOptions::default().poll_interval(NO_POLLING);
    let runner = Runner::multi_task(domain::system(), &Store::open(&url).await.unwrap(), options)
        .await
        .unwrap();
    let elsewhere = Store::open(&url).await.unwrap();
    let writer = Application::open(&elsewhere, "Orders").await.unwrap();
    let ids = orders_complete(&runner, &writer, Duration::from_secs(20)).await;
    runner.shutdown().await.unwrap();
    assert_each_order_reserved_and_paid_once(&elsewhere, &ids).await;
}

/// On SQLite, nothing crosses processes but the file: another store's
/// commits are found by polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commits_by_another_process_are_found_by_polling() {
    let file = eventsourcing_tests::TempSqlite::new();
    let (here, elsewhere) = (file.open().await, file.open().await);
    let options = ProcessOptions::default().poll_interval(Duration::from_millis(20));
    let runner = Runner::multi_task(domain::system(), &here, options).await.unwrap();
    let writer = Application::open(&elsewhere, "Orders").await.unwrap();
    let ids = orders_complete(&runner, &writer, Duration::from_secs(60)).await;
    runner.shutdown().await.unwrap();
    assert_each_order_reserved_and_paid_once(&here, &ids).await;
}
