//! Partitioned systems: every log of the system has P partitions, a
//! command's events go to the partition of its first aggregate (or one
//! named), each upstream partition is processed on its own and its events
//! are written into the same partition downstream, and every partition stays
//! gapless. On every backend, with both runners.

#[path = "../examples/orders/domain.rs"]
#[allow(dead_code)]
mod domain;
#[path = "common/orders_check.rs"]
mod orders_check;

use eventsourcing::{Aggregate, Error, NotificationSource, ProcessOptions, Runner, RunnerKind, Store, partition_of};
use uuid::Uuid;

use domain::{Order, Orders, Payments};
use orders_check::assert_each_order_reserved_and_paid_once;

const PARTITIONS: u32 = 4;

fn options() -> ProcessOptions {
    // Small batches, so that processing spans many transactions.
    ProcessOptions::default().partitions(PARTITIONS).batch_size(5)
}

async fn partitioned_flow_completes(store: &Store, kind: RunnerKind) {
    let runner = Runner::start(kind, domain::system(), store, options()).await.unwrap();
    let mut ids = Vec::new();
    // One order per command: each goes to the partition of its id.
    for _ in 0..40 {
        let mut order = Order::create(Uuid::new_v4());
        let saved = runner.save::<Orders>(&mut order).await.unwrap();
        assert_eq!(saved.partition, partition_of(order.id(), PARTITIONS));
        saved.processed().unwrap();
        ids.push(order.id());
    }
    // Several orders in one command go together, to the first one's
    // partition, or to the one named.
    let mut orders: Vec<Order> = (0..5).map(|_| Order::create(Uuid::new_v4())).collect();
    let saved = runner.save::<Orders>(&mut orders).await.unwrap();
    assert_eq!(saved.partition, partition_of(orders[0].id(), PARTITIONS));
    assert_eq!(saved.notification_ids.len(), 5);
    saved.processed().unwrap();
    ids.extend(orders.iter().map(Aggregate::id));
    let mut order = Order::create(Uuid::new_v4());
    let saved = runner.save_in::<Orders>(3, &mut order).await.unwrap();
    assert_eq!(saved.partition, 3);
    saved.processed().unwrap();
    ids.push(order.id());

    runner.wait_until_quiet().await.unwrap();
    let lag = runner.lag().await.unwrap();
    assert_eq!(
        lag.len(),
        4 * PARTITIONS as usize,
        "each edge of the system, per partition"
    );
    assert!(lag.iter().all(|lag| lag.behind() == 0), "{lag:?}");
    let orders = runner.app::<Orders>().unwrap().recorder().clone();
    for partition in 0..PARTITIONS {
        assert!(
            orders.max_notification_id(partition).await.unwrap() > 0,
            "40 random orders reach every partition"
        );
    }
    runner.shutdown().await.unwrap();
    // Each order once, each partition gapless, each event in its order's
    // partition, and every follower at every partition's head.
    assert_each_order_reserved_and_paid_once(store, &ids).await;
}

async fn a_runner_refuses_another_number_of_partitions(store: &Store, kind: RunnerKind) {
    let runner = Runner::start(kind, domain::system(), store, options()).await.unwrap();
    runner
        .save::<Orders>(&mut Order::create(Uuid::new_v4()))
        .await
        .unwrap()
        .processed()
        .unwrap();
    runner.wait_until_quiet().await.unwrap();
    runner.shutdown().await.unwrap();

    for asked in [1, 2, 8] {
        let options = ProcessOptions::default().partitions(asked);
        match Runner::start(kind, domain::system(), store, options).await {
            Err(Error::PartitionsChanged {
                app,
                stored: PARTITIONS,
                asked: found,
            }) if found == asked => assert_eq!(app, "Orders"),
            other => panic!("a runner with {asked} partitions on logs of {PARTITIONS}: {other:?}"),
        }
    }
}

async fn partitions_are_set_for_the_whole_system(store: &Store, kind: RunnerKind) {
    let options = ProcessOptions::default().app::<Payments>(|o| o.partitions(2));
    let error = Runner::start(kind, domain::system(), store, options).await.unwrap_err();
    assert!(
        error.to_string().contains("`Payments` its own number of partitions"),
        "{error}"
    );
    for partitions in [0, eventsourcing::store::MAX_PARTITIONS + 1] {
        let options = ProcessOptions::default().partitions(partitions);
        match Runner::start(kind, domain::system(), store, options).await {
            Err(Error::InvalidPartitions { .. }) => {}
            other => panic!("{partitions} partitions: {other:?}"),
        }
    }
}

eventsourcing_tests::on_every_backend_and_runner!(
    partitioned_flow_completes,
    a_runner_refuses_another_number_of_partitions,
    partitions_are_set_for_the_whole_system,
);
