//! How the runner sees the logs it follows: how far behind each
//! application is, per application, upstream and partition; and that it
//! refuses a log written with more partitions than it processes.

#[path = "../examples/orders/domain.rs"]
#[allow(dead_code)]
mod domain;

use eventsourcing::{Application, Lag, ProcessOptions, Runner, Store};
use uuid::Uuid;

use domain::Order;

fn lag(app: &'static str, upstream: &'static str, head: u64, position: u64) -> Lag {
    Lag {
        app,
        upstream,
        partition: 0,
        head,
        position,
    }
}

async fn lag_is_what_followers_have_not_processed(store: &Store) {
    // The single-threaded runner processes only when asked, so orders saved
    // past it wait.
    let runner = Runner::single_threaded(domain::system(), store, ProcessOptions::default())
        .await
        .unwrap();
    assert!(runner.lag().await.unwrap().iter().all(|lag| lag.behind() == 0));

    let elsewhere = Application::open(store, "Orders").await.unwrap();
    let mut orders: Vec<Order> = (0..3).map(|_| Order::create(Uuid::new_v4())).collect();
    elsewhere.save(&mut orders).await.unwrap();
    let behind = runner.lag().await.unwrap();
    assert_eq!(
        behind,
        vec![
            lag("Orders", "Reservations", 0, 0),
            lag("Orders", "Payments", 0, 0),
            lag("Reservations", "Orders", 3, 0),
            lag("Payments", "Orders", 3, 0),
        ]
    );
    assert_eq!(behind.iter().map(Lag::behind).sum::<u64>(), 6);

    runner.wait_until_quiet().await.unwrap();
    let caught_up = runner.lag().await.unwrap();
    assert!(caught_up.iter().all(|lag| lag.behind() == 0), "{caught_up:?}");
    // Each order: created, reserved and paid in Orders; one event each in
    // Reservations and Payments.
    assert_eq!(
        caught_up.iter().map(|lag| (lag.upstream, lag.head)).collect::<Vec<_>>(),
        [("Reservations", 3), ("Payments", 3), ("Orders", 9), ("Orders", 9)]
    );
}

eventsourcing_tests::on_every_fresh_backend!(lag_is_what_followers_have_not_processed);

/// Runners process one partition per log for now: a log written with more
/// partitions is refused, not followed in part.
async fn a_runner_refuses_a_partitioned_log(store: &Store) {
    store
        .partitioned_recorder(&eventsourcing::AppName::new("Payments").unwrap(), 4)
        .await
        .unwrap();
    for kind in [
        eventsourcing::RunnerKind::SingleThreaded,
        eventsourcing::RunnerKind::MultiTask,
    ] {
        let error = Runner::start(kind, domain::system(), store, ProcessOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                eventsourcing::Error::PartitionsChanged {
                    stored: 4,
                    asked: 1,
                    ..
                }
            ),
            "{error}"
        );
    }
}

mod partitioned {
    use super::a_runner_refuses_a_partitioned_log;
    eventsourcing_tests::on_every_fresh_backend!(a_runner_refuses_a_partitioned_log);
}
