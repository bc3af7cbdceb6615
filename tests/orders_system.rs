//! The orders system on every backend and both runners: every order is
//! reserved and paid exactly once, and the logs stay contiguous. Also two
//! runners on one PostgreSQL database at once (duplicate workers).

#[path = "../examples/orders/domain.rs"]
#[allow(dead_code)]
mod domain;
#[path = "common/orders_check.rs"]
mod orders_check;

use std::time::Duration;

use eventsourcing::{Application, NotificationSource, ProcessOptions, Runner, RunnerKind, Store};
use uuid::Uuid;

use domain::{Order, Orders};
use orders_check::assert_each_order_reserved_and_paid_once;

/// Creates `count` orders, a few per transaction, and returns their ids.
async fn create_orders(runner: &Runner, count: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for chunk in 0..count.div_ceil(7) {
        let mut orders: Vec<Order> = (0..7.min(count - chunk * 7))
            .map(|_| Order::create(Uuid::new_v4()))
            .collect();
        ids.extend(orders.iter().map(eventsourcing::Aggregate::id));
        runner.save::<Orders>(&mut orders).await.unwrap().processed().unwrap();
    }
    ids
}

async fn flow_completes(store: &Store, kind: RunnerKind) {
    // Small batches, so that processing spans many transactions.
    let options = ProcessOptions::default().batch_size(5);
    let runner = Runner::start(kind, domain::system(), store, options).await.unwrap();
    let ids = create_orders(&runner, 60).await;
    runner.wait_until_quiet().await.unwrap();

    let orders = runner.app::<Orders>().unwrap();
    for id in &ids {
        let order: Order = orders.load(*id).await.unwrap();
        assert!(order.is_reserved && order.is_paid, "order {id} is reserved and paid");
        assert_eq!(eventsourcing::Aggregate::version(&order), 3);
    }
    runner.shutdown().await.unwrap();
    assert_each_order_reserved_and_paid_once(store, &ids).await;
}

async fn single_threaded_completes_before_save_returns(store: &Store) {
    let runner = Runner::single_threaded(domain::system(), store, ProcessOptions::default())
        .await
        .unwrap();
    let mut order = Order::create(Uuid::new_v4());
    runner.save::<Orders>(&mut order).await.unwrap().processed().unwrap();
    let loaded: Order = runner
        .app::<Orders>()
        .unwrap()
        .load(eventsourcing::Aggregate::id(&order))
        .await
        .unwrap();
    assert!(loaded.is_paid, "the flow finished within save");
}

async fn restart_resumes(store: &Store, kind: RunnerKind) {
    // Orders saved while no runner runs are processed by the next one.
    let orders = Application::open(store, "Orders").await.unwrap();
    let mut early: Vec<Order> = (0..10).map(|_| Order::create(Uuid::new_v4())).collect();
    let mut ids: Vec<Uuid> = early.iter().map(eventsourcing::Aggregate::id).collect();
    orders.save(&mut early).await.unwrap();

    let runner = Runner::start(kind, domain::system(), store, ProcessOptions::default())
        .await
        .unwrap();
    ids.extend(create_orders(&runner, 10).await);
    runner.wait_until_quiet().await.unwrap();
    runner.shutdown().await.unwrap();

    // A second runner finds nothing left to do, and records nothing.
    let heads = log_heads(store).await;
    let runner = Runner::start(kind, domain::system(), store, ProcessOptions::default())
        .await
        .unwrap();
    runner.wait_until_quiet().await.unwrap();
    runner.shutdown().await.unwrap();
    assert_eq!(log_heads(store).await, heads);
    assert_each_order_reserved_and_paid_once(store, &ids).await;
}

async fn shutdown_mid_flow_then_resume(store: &Store, kind: RunnerKind) {
    // The multi-task runner is stopped while it processes; the runner of
    // `kind` then finishes the work, each order once.
    let options = ProcessOptions::default().batch_size(3);
    let runner = Runner::multi_task(domain::system(), store, options).await.unwrap();
    let ids = create_orders(&runner, 40).await;
    runner.shutdown().await.unwrap();
    // What was committed by then is whole: every log is contiguous.
    for app in ["Orders", "Reservations", "Payments"] {
        orders_check::read_log(store, app).await;
    }

    let runner = Runner::start(kind, domain::system(), store, ProcessOptions::default())
        .await
        .unwrap();
    runner.wait_until_quiet().await.unwrap();
    runner.shutdown().await.unwrap();
    assert_each_order_reserved_and_paid_once(store, &ids).await;
}

/// Orders saved outside the runner, through another handle on the store,
/// are processed (`tests/prompts.rs` tells prompts from polling).
async fn writes_from_elsewhere_are_found_by_polling(store: &Store, kind: RunnerKind) {
    if kind == RunnerKind::SingleThreaded {
        return; // It processes when asked, not by itself.
    }
    let options = ProcessOptions::default().poll_interval(Duration::from_millis(10));
    let runner = Runner::start(kind, domain::system(), store, options).await.unwrap();
    let elsewhere = Application::open(store, "Orders").await.unwrap();
    let mut orders: Vec<Order> = (0..10).map(|_| Order::create(Uuid::new_v4())).collect();
    let ids: Vec<Uuid> = orders.iter().map(eventsourcing::Aggregate::id).collect();
    elsewhere.save(&mut orders).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), runner.wait_until_quiet())
        .await
        .expect("the runner found the orders within a minute")
        .unwrap();
    runner.shutdown().await.unwrap();
    assert_each_order_reserved_and_paid_once(store, &ids).await;
}

async fn log_heads(store: &Store) -> Vec<u64> {
    let mut heads = Vec::new();
    for app in ["Orders", "Reservations", "Payments"] {
        let app = Application::open(store, app).await.unwrap();
        heads.push(app.recorder().max_notification_id(0).await.unwrap());
    }
    heads
}

eventsourcing_tests::on_every_backend_and_runner!(
    flow_completes,
    restart_resumes,
    shutdown_mid_flow_then_resume,
    writes_from_elsewhere_are_found_by_polling,
);

mod single_threaded {
    eventsourcing_tests::on_every_backend!(single_threaded_completes_before_save_returns);
    use super::single_threaded_completes_before_save_returns;
}

#[test]
fn the_system_draws_itself() {
    let system = domain::system();
    assert_eq!(
        system.mermaid(),
        "flowchart LR\n    Orders --> Reservations\n    Reservations --> Orders\n    Orders --> Payments\n    Payments --> Orders\n"
    );
    assert_eq!(
        system.apps().collect::<Vec<_>>(),
        ["Orders", "Reservations", "Payments"]
    );
    assert_eq!(
        system.upstreams("Orders").collect::<Vec<_>>(),
        ["Reservations", "Payments"]
    );
}

/// Two runners on one PostgreSQL database process the same system at once:
/// each notification is processed by one of them, never both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_workers_on_postgres_process_each_notification_once() {
    let Some(url) = eventsourcing_tests::fresh_postgres_url().await else {
        return;
    };
    let options = ProcessOptions::default()
        .batch_size(10)
        .poll_interval(Duration::from_millis(5));
    let first_store = Store::open(&url).await.unwrap();
    let second_store = Store::open(&url).await.unwrap();
    let first = Runner::multi_task(domain::system(), &first_store, options.clone())
        .await
        .unwrap();
    let second = Runner::multi_task(domain::system(), &second_store, options)
        .await
        .unwrap();

    // Orders arrive through both, while both process.
    let mut ids = create_orders(&first, 150).await;
    ids.extend(create_orders(&second, 150).await);
    first.wait_until_quiet().await.unwrap();
    second.wait_until_quiet().await.unwrap();
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();

    assert_each_order_reserved_and_paid_once(&first_store, &ids).await;
}
