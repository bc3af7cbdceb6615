//! Namespaces: independent systems sharing one database, each in tables of
//! its own (`Store::namespaced`), on every backend. One system runs in
//! several namespaces at once without seeing the others' events, commits or
//! workers; and a second system with an application of one name is refused
//! in a namespace (and the store) where another system runs it, naming
//! both, instead of sharing its tables.

#[path = "../examples/orders/domain.rs"]
#[allow(dead_code)]
mod domain;
#[path = "common/orders_check.rs"]
mod orders_check;

use std::time::{Duration, Instant};

use eventsourcing::store::{Commits, Committed, Prompt};
use eventsourcing::{AppName, Application, Error, NotificationSource, ProcessOptions, Runner, Store};
use eventsourcing_tests::Dog;
use uuid::Uuid;

use domain::Order;
use orders_check::{assert_each_order_reserved_and_paid_once, create_orders};

/// The orders system in two namespaces and outside any, at once: each
/// log holds its own orders only, numbered from 1, and each order is
/// reserved and paid once in its own namespace.
async fn one_system_runs_in_several_namespaces_apart(store: &Store) {
    let eu = store.namespaced("eu").unwrap();
    let us = store.namespaced("us").unwrap();
    let mut runners = Vec::new();
    for store in [&eu, &us, store] {
        runners.push(
            Runner::multi_task(domain::system(), store, ProcessOptions::default())
                .await
                .unwrap(),
        );
    }
    let mut orders = Vec::new();
    for (runner, count) in runners.iter().zip([5, 3, 2]) {
        orders.push(create_orders(runner, count).await);
    }
    for runner in runners {
        runner.wait_until_quiet().await.unwrap();
        runner.shutdown().await.unwrap();
    }
    for (store, orders) in [&eu, &us, store].into_iter().zip(&orders) {
        assert_each_order_reserved_and_paid_once(store, orders).await;
    }
    let orders = Application::open(&eu, "Orders").await.unwrap();
    assert_eq!(orders.name().table_prefix(), "eu__orders");
    assert_eq!(orders.name().as_str(), "Orders");
    assert_eq!(orders.name().namespace().map(|ns| ns.as_str()), Some("eu"));
}

/// A system whose `Reservations` is another type than the orders
/// system's is refused where the orders system runs, naming both types,
/// and nothing of it runs; in a namespace of its own it runs. Releasing the
/// claim lets it run in place of the other.
async fn a_second_system_with_an_application_of_one_name_is_refused(store: &Store) {
    let options = ProcessOptions::default;
    let orders_system = Runner::single_threaded(domain::system(), store, options())
        .await
        .unwrap();
    let placed = create_orders(&orders_system, 2).await;
    orders_system.shutdown().await.unwrap();

    let other_system = || eventsourcing::system!(other::Shop => other::Reservations);
    let error = Runner::single_threaded(other_system(), store, options())
        .await
        .unwrap_err();
    match &error {
        Error::SystemClash {
            app,
            namespace,
            claimed_by,
            claimant,
        } => {
            assert_eq!(app, "Reservations");
            assert_eq!(namespace, &None);
            // Module paths within the crate: the same module compiled into
            // two programs is one application.
            assert_eq!(claimed_by, "domain::Reservations");
            assert_eq!(claimant, "other::Reservations");
        }
        other => panic!("expected a clash of systems, got {other}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("store.namespaced") && message.contains("release_claim"),
        "{message}"
    );
    // The refused system claimed nothing, not even its `Shop`, which no
    // other system ran: a third system's `Shop` runs.
    let third = Runner::single_threaded(
        eventsourcing::system!(third::Shop => domain::Reservations),
        store,
        options(),
    )
    .await
    .unwrap();
    third.shutdown().await.unwrap();
    store.release_claim(&AppName::new("Shop").unwrap()).await.unwrap();
    // The orders system itself starts again, and its work is intact.
    let again = Runner::single_threaded(domain::system(), store, options())
        .await
        .unwrap();
    again.shutdown().await.unwrap();
    assert_each_order_reserved_and_paid_once(store, &placed).await;

    // In a namespace of its own, the other system runs.
    let elsewhere = store.namespaced("other").unwrap();
    let runner = Runner::single_threaded(other_system(), &elsewhere, options())
        .await
        .unwrap();
    let mut order = Order::create(Uuid::new_v4());
    runner
        .save::<other::Shop>(&mut order)
        .await
        .unwrap()
        .processed()
        .unwrap();
    runner.shutdown().await.unwrap();
    let reservations = Application::open(&elsewhere, "Reservations").await.unwrap();
    assert_eq!(reservations.recorder().max_notification_id(0).await.unwrap(), 1);

    // A clash names the namespace it happened in.
    let error = Runner::single_threaded(domain::system(), &elsewhere, options())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::SystemClash { namespace: Some(ns), .. } if ns == "other"),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("in namespace `other`")
            && message.contains(r#"store.namespaced("other")?.release_claim(&AppName::new("Reservations")?)"#),
        "{message}"
    );

    // Released, the claim goes to the next system that runs it.
    store
        .release_claim(&AppName::new("Reservations").unwrap())
        .await
        .unwrap();
    let runner = Runner::single_threaded(other_system(), store, options()).await.unwrap();
    runner.shutdown().await.unwrap();
    let error = Runner::single_threaded(domain::system(), store, options())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::SystemClash { claimed_by, .. } if claimed_by == "other::Reservations"),
        "{error}"
    );
}

/// An application outside any namespace whose name has two underscores in
/// a row has the table names of one in a namespace: the second of the two
/// to open them is refused, naming both, whichever comes first.
async fn an_application_named_like_a_namespaced_one_is_refused(store: &Store) {
    Application::open(store, "eu__orders").await.unwrap();
    let error = Application::open(&store.namespaced("eu").unwrap(), "Orders")
        .await
        .unwrap_err();
    match &error {
        Error::TablesTaken {
            tables,
            owner,
            owner_namespace,
            app,
            namespace,
        } => {
            assert_eq!(
                (tables.as_str(), owner.as_str(), owner_namespace),
                ("eu__orders", "eu__orders", &None)
            );
            assert_eq!((app.as_str(), namespace.as_deref()), ("Orders", Some("eu")));
        }
        other => panic!("expected the tables to be taken, got {other}"),
    }
    Application::open(&store.namespaced("us").unwrap(), "Orders")
        .await
        .unwrap();
    let error = Application::open(store, "us__orders").await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("belong to application `orders` in namespace `us`"),
        "{error}"
    );
}

/// Releasing the claim on an application that has no tables makes none:
/// the system that comes later makes them with its own partitions.
async fn releasing_a_claim_makes_no_tables(store: &Store) {
    store.release_claim(&AppName::new("Orders").unwrap()).await.unwrap();
    let runner = Runner::single_threaded(domain::system(), store, ProcessOptions::default().partitions(4))
        .await
        .unwrap();
    let orders = create_orders(&runner, 3).await;
    runner.shutdown().await.unwrap();
    assert_each_order_reserved_and_paid_once(store, &orders).await;
}

/// A subscription to a namespaced store's commits hears that namespace's
/// commits only, not those of an application of the same name elsewhere;
/// and namespaces, like application names, ignore case.
async fn a_namespace_hears_its_own_commits_only(store: &Store) {
    let kennel_a = store.namespaced("A").unwrap();
    let mut commits = kennel_a.commits().await.unwrap();
    for elsewhere in [store.clone(), store.namespaced("b").unwrap()] {
        let kennel = Application::open(&elsewhere, "Kennel").await.unwrap();
        kennel.save(&mut Dog::register("Fido")).await.unwrap();
    }
    let kennel = Application::open(&store.namespaced("a").unwrap(), "Kennel")
        .await
        .unwrap();
    kennel.save(&mut Dog::register("Rex")).await.unwrap();
    let committed = next_commit(&mut commits).await;
    assert_eq!(committed.app.table_prefix(), "a__kennel");
    assert_eq!(committed.head, 1);
}

/// The next commit a subscription hears, within 10 s.
async fn next_commit(commits: &mut Commits) -> Committed {
    let prompt = tokio::time::timeout(Duration::from_secs(10), commits.next())
        .await
        .expect("a prompt")
        .expect("the feed is open");
    match prompt {
        Prompt::Committed(committed) => committed,
        Prompt::Missed => panic!("no prompt was lost"),
    }
}

/// A namespace that cannot name tables is refused with what is wrong, and
/// so is an application whose tables would be too long in a namespace.
async fn bad_namespaces_are_refused(store: &Store) {
    for bad in ["", "2eu", "e-u", "eu_", "e__u", "sqlite", &"n".repeat(21)] {
        let error = store.namespaced(bad).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidNamespace { namespace, .. } if namespace == bad),
            "{bad}: {error}"
        );
    }
    let long = store.namespaced(&"n".repeat(20)).unwrap();
    let error = Application::open(&long, &"a".repeat(30)).await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, Error::InvalidNamespace { .. }) && message.contains("shorter namespace"),
        "{message}"
    );
}

eventsourcing_tests::on_every_fresh_backend!(
    one_system_runs_in_several_namespaces_apart,
    a_second_system_with_an_application_of_one_name_is_refused,
    a_namespace_hears_its_own_commits_only,
    bad_namespaces_are_refused,
    an_application_named_like_a_namespaced_one_is_refused,
    releasing_a_claim_makes_no_tables,
);

/// Tables made before namespaces existed (schema version 5 and earlier)
/// belong to an application in none: `fr__orders` from then is not taken
/// by `orders` in the namespace `fr`.
#[tokio::test]
async fn tables_from_before_namespaces_belong_to_no_namespace() {
    use sqlx::Connection;
    let file = eventsourcing_tests::TempSqlite::new();
    Application::open(&file.open().await, "fr__orders").await.unwrap();
    // As a build of version 5 left them: no owner, and version 5.
    let mut conn = sqlx::SqliteConnection::connect(&file.url()).await.unwrap();
    for sql in [
        "DELETE FROM eventsourcing_table_owners",
        "UPDATE eventsourcing_applications SET schema_version = 5",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    let store = file.open().await;
    let error = Application::open(&store.namespaced("fr").unwrap(), "orders")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::TablesTaken { owner, owner_namespace: None, .. } if owner == "fr__orders"),
        "{error}"
    );
    Application::open(&store, "fr__orders").await.unwrap();
}

/// On PostgreSQL, commits are announced to other processes: another
/// store's subscription in namespace `a` hears `a`'s commits, not those of
/// namespace `b`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_hears_its_namespace_only() {
    let Some(url) = eventsourcing_tests::fresh_postgres_url().await else {
        return;
    };
    let writer = Store::open(&url).await.unwrap();
    let listener = Store::open(&url).await.unwrap().namespaced("a").unwrap();
    let mut commits = listener.commits().await.unwrap();
    for namespace in ["b", "a"] {
        let kennel = Application::open(&writer.namespaced(namespace).unwrap(), "Kennel")
            .await
            .unwrap();
        kennel.save(&mut Dog::register("Rex")).await.unwrap();
    }
    assert_eq!(next_commit(&mut commits).await.app.table_prefix(), "a__kennel");
}

/// Workers of one system in two namespaces of one database run at once,
/// each taking every partition of its own namespace: they are not one
/// group of workers sharing the partitions out between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_in_two_namespaces_each_take_their_own_partitions() {
    let Some(url) = eventsourcing_tests::fresh_postgres_url().await else {
        return;
    };
    const PARTITIONS: u32 = 2;
    let options = || {
        ProcessOptions::default()
            .partitions(PARTITIONS)
            .lease_ttl(Duration::from_millis(900))
    };
    let store = Store::open(&url).await.unwrap();
    let (eu, us) = (store.namespaced("eu").unwrap(), store.namespaced("us").unwrap());
    let first = Runner::worker(domain::system(), &eu, options()).await.unwrap();
    let second = Runner::worker(domain::system(), &us, options()).await.unwrap();
    let units = 3 * PARTITIONS as usize;
    let start = Instant::now();
    while first.leases().len() < units || second.leases().len() < units {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "each worker takes all {units} of its namespace's partitions: {} and {}",
            first.leases().len(),
            second.leases().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let eu_orders = create_orders(&first, 20).await;
    let us_orders = create_orders(&second, 10).await;
    for runner in [&first, &second] {
        runner.wait_until_quiet().await.unwrap();
    }
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
    assert_each_order_reserved_and_paid_once(&eu, &eu_orders).await;
    assert_each_order_reserved_and_paid_once(&us, &us_orders).await;
}

/// Namespaces ignore case: workers in `EU` and in `eu` are workers of one
/// system on one set of tables, and share its partitions out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_in_one_namespace_spelled_two_ways_share_the_partitions() {
    let Some(url) = eventsourcing_tests::fresh_postgres_url().await else {
        return;
    };
    let options = || {
        ProcessOptions::default()
            .partitions(2)
            .lease_ttl(Duration::from_millis(900))
    };
    let store = Store::open(&url).await.unwrap();
    let first = Runner::worker(domain::system(), &store.namespaced("EU").unwrap(), options())
        .await
        .unwrap();
    let second = Runner::worker(domain::system(), &store.namespaced("eu").unwrap(), options())
        .await
        .unwrap();
    let start = Instant::now();
    while first.leases().len() != 3 || second.leases().len() != 3 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the two workers hold 3 of the 6 units each: {} and {}",
            first.leases().len(),
            second.leases().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
}

/// A third system's shop.
mod third {
    use eventsourcing::prelude::*;

    use super::domain::Order;

    #[derive(Default)]
    pub struct Shop;

    #[policy(aggregates(Order))]
    impl Shop {}
}

/// Another system whose process application is also named `Reservations`.
mod other {
    use eventsourcing::prelude::*;

    use super::domain::{Order, OrderCreated, Reservation};

    #[derive(Default)]
    pub struct Shop;

    #[policy(aggregates(Order))]
    impl Shop {}

    #[derive(Default)]
    pub struct Reservations;

    #[policy(aggregates(Reservation))]
    impl Reservations {
        async fn order_created(&self, order: &Notified<OrderCreated>, repo: &mut Repo<Self>) -> Result<()> {
            repo.add(Reservation::create(order.originator_id));
            Ok(())
        }
    }
}
