//! Workers sharing a partitioned system through leases in PostgreSQL,
//! within one test process: the shares even out as workers join and
//! leave, every order is processed once, and workers refuse stores that
//! cannot hold leases. `tests/worker_processes.rs` kills and pauses worker
//! OS processes.

#[path = "../examples/orders/domain.rs"]
#[allow(dead_code)]
mod domain;
#[path = "common/orders_check.rs"]
mod orders_check;

use std::time::{Duration, Instant};

use eventsourcing::{
    AppName, Error, NotificationSource, ProcessOptions, Recorder, Runner, Store, StoredEvent, Timestamp, Tracking,
};
use uuid::Uuid;

use orders_check::{assert_each_order_reserved_and_paid_once, create_orders};

const PARTITIONS: u32 = 4;
/// Three applications follow another, in each of four partitions.
const UNITS: usize = 3 * PARTITIONS as usize;

fn options() -> ProcessOptions {
    ProcessOptions::default()
        .partitions(PARTITIONS)
        .lease_ttl(Duration::from_millis(900))
        .batch_size(20)
}

/// Waits until `check` holds, for at most `within`.
async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_the_partitions_evenly_as_they_join_and_leave() {
    let Some(url) = eventsourcing_tests::fresh_postgres_url().await else {
        return;
    };
    let first_store = Store::open(&url).await.unwrap();
    let first = Runner::worker(domain::system(), &first_store, options()).await.unwrap();
    eventually(Duration::from_secs(10), "one worker takes every partition", || {
        first.leases().len() == UNITS
    })
    .await;
    let mut ids = create_orders(&first, 100).await;

    // A second worker joins: the partitions are shared half and half, each
    // held by one worker only.
    let second_store = Store::open(&url).await.unwrap();
    let second = Runner::worker(domain::system(), &second_store, options())
        .await
        .unwrap();
    ids.extend(create_orders(&second, 100).await);
    eventually(Duration::from_secs(10), "two workers hold half each", || {
        first.leases().len() == UNITS / 2 && second.leases().len() == UNITS / 2
    })
    .await;
    let mut held: Vec<_> = first
        .leases()
        .into_iter()
        .chain(second.leases())
        .map(|lease| (lease.app, lease.partition))
        .collect();
    held.sort();
    held.dedup();
    assert_eq!(held.len(), UNITS, "no application-partition held twice");
    ids.extend(create_orders(&first, 100).await);
    first.wait_until_quiet().await.unwrap();
    assert!(
        first.processed() > 0 && second.processed() > 0,
        "both did some of the work"
    );

    // The second leaves: its leases are released at once, and the first
    // takes them all back.
    second.shutdown().await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the remaining worker takes every partition",
        || first.leases().len() == UNITS,
    )
    .await;
    ids.extend(create_orders(&first, 50).await);
    first.wait_until_quiet().await.unwrap();
    first.shutdown().await.unwrap();
    assert_each_order_reserved_and_paid_once(&first_store, &ids).await;
}

/// A lease too short to renew in time is refused before anything starts.
#[tokio::test]
async fn a_lease_too_short_to_renew_is_refused() {
    let Some(url) = eventsourcing_tests::fresh_postgres_url().await else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    for ttl in [Duration::ZERO, Duration::from_millis(29)] {
        let error = Runner::worker(domain::system(), &store, options().lease_ttl(ttl))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("cannot be renewed in time"), "{error}");
    }
}

#[tokio::test]
async fn workers_need_a_store_that_holds_leases() {
    let store = eventsourcing_tests::memory_store().await;
    let error = Runner::worker(domain::system(), &store, options()).await.unwrap_err();
    assert!(error.to_string().contains("leases in PostgreSQL"), "{error}");
    let file = eventsourcing_tests::TempSqlite::new();
    let error = Runner::worker(domain::system(), &file.open().await, options())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("leases in PostgreSQL"), "{error}");
}

/// A write under a lease that another worker has taken since fails with
/// `Error::LeaseLost` and writes nothing, with events (one statement) and
/// without (a tracking move alone); under the current lease it lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_under_a_lease_taken_over_fails_and_writes_nothing() {
    let Some(url) = eventsourcing_tests::fresh_postgres_url().await else {
        return;
    };
    let options = ProcessOptions::default()
        .partitions(1)
        .lease_ttl(Duration::from_secs(30));
    let lease_of = |runner: &Runner| {
        runner
            .leases()
            .into_iter()
            .find(|lease| lease.app == "Reservations")
            .map(|lease| lease.epoch)
    };
    // A first worker takes the leases, and hands them over when it stops.
    let store = Store::open(&url).await.unwrap();
    let first = Runner::worker(domain::system(), &store, options.clone()).await.unwrap();
    eventually(Duration::from_secs(10), "the first worker holds its leases", || {
        lease_of(&first).is_some()
    })
    .await;
    let stale = lease_of(&first).unwrap();
    first.shutdown().await.unwrap();
    let second = Runner::worker(domain::system(), &store, options).await.unwrap();
    eventually(Duration::from_secs(10), "the second worker takes over", || {
        lease_of(&second).is_some()
    })
    .await;
    let current = lease_of(&second).unwrap();
    assert!(current > stale);

    let reservations = store
        .partitioned_recorder(&AppName::new("Reservations").unwrap(), 1)
        .await
        .unwrap();
    let orders = AppName::new("Orders").unwrap();
    let tracking = |epoch| Tracking {
        upstream: orders.clone(),
        partition: 0,
        previous: 0,
        position: 1,
        lease_epoch: Some(epoch),
    };
    let event = || StoredEvent {
        originator_id: Uuid::new_v4(),
        originator_version: 1,
        timestamp: Timestamp::now(),
        topic: "Reservation.Created".into(),
        state_version: 1,
        state: b"{}".to_vec(),
    };
    for events in [vec![event()], Vec::new()] {
        match reservations.insert(0, events, Some(&tracking(stale))).await {
            Err(Error::LeaseLost {
                app,
                partition: 0,
                epoch,
                found,
            }) => {
                assert_eq!((app.as_str(), epoch, found), ("Reservations", stale, current));
            }
            other => panic!("a write under a lost lease: {other:?}"),
        }
        assert_eq!(reservations.max_notification_id(0).await.unwrap(), 0, "nothing written");
        assert_eq!(reservations.tracking_position(&orders, 0).await.unwrap(), 0);
    }
    second.shutdown().await.unwrap();
    // The lease the second worker released is still the last one given:
    // a write under it lands.
    reservations
        .insert(0, vec![event()], Some(&tracking(current)))
        .await
        .unwrap();
    assert_eq!(reservations.tracking_position(&orders, 0).await.unwrap(), 1);
}

/// A system once run by workers can be run in one process again: the
/// tracking rows a worker made on taking its leases (at position 0) do not
/// stop a runner without leases from moving on from them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_without_leases_carries_on_where_workers_left_off() {
    let Some(url) = eventsourcing_tests::fresh_postgres_url().await else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    let worker = Runner::worker(domain::system(), &store, options()).await.unwrap();
    eventually(Duration::from_secs(10), "the worker takes every partition", || {
        worker.leases().len() == UNITS
    })
    .await;
    worker.shutdown().await.unwrap();

    let runner = Runner::multi_task(domain::system(), &store, options()).await.unwrap();
    let ids = create_orders(&runner, 20).await;
    tokio::time::timeout(Duration::from_secs(30), runner.wait_until_quiet())
        .await
        .expect("the runner processed the orders")
        .unwrap();
    runner.shutdown().await.unwrap();
    assert_each_order_reserved_and_paid_once(&store, &ids).await;
}

/// Workers of two systems that both process one application (the same
/// type, so that the store's claim on it does not refuse the second
/// system) would hold partitions the other's workers wait for: the second
/// system's worker is refused while the first's are alive, naming both, and
/// starts once they are gone. (An application of one name but another
/// type is refused even then: `tests/namespaces.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_of_another_system_processing_the_same_application_is_refused() {
    let Some(url) = eventsourcing_tests::fresh_postgres_url().await else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    let first = Runner::worker(domain::system(), &store, options()).await.unwrap();
    let other = eventsourcing::system!(other::Shop => domain::Reservations);
    let error = Runner::worker(other.clone(), &store, options()).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("another system (Orders,Payments,Reservations/4)") && message.contains("`Reservations`"),
        "{message}"
    );
    first.shutdown().await.unwrap();
    let second = Runner::worker(other, &store, options()).await.unwrap();
    second.shutdown().await.unwrap();
}

/// Another system, whose shop also records orders.
mod other {
    use eventsourcing::prelude::*;

    use super::domain::Order;

    #[derive(Default)]
    pub struct Shop;

    #[policy(aggregates(Order))]
    impl Shop {}
}
