//! Checks the stores of an orders system after a run: what "exactly once"
//! means for the user, read from the applications' logs; and creates the
//! orders to check.

use std::collections::HashMap;

use eventsourcing::{Aggregate, Application, Notification, NotificationSource, Recorder, Runner, Store};
use uuid::Uuid;

use crate::domain::{Order, Orders, PaymentEvent, ReservationEvent};

/// Creates `count` orders through `runner`, one commit each, and answers
/// their ids. (Not every test that checks orders creates them this way.)
#[allow(dead_code)]
pub async fn create_orders(runner: &Runner, count: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let mut order = Order::create(Uuid::new_v4());
        runner.save::<Orders>(&mut order).await.unwrap().processed().unwrap();
        ids.push(order.id());
    }
    ids
}

/// Every notification of every partition of an application's log,
/// partition by partition, checking that each partition's ids run 1, 2, 3,
/// … with no gap.
pub async fn read_log(store: &Store, app: &str) -> Vec<Notification> {
    let recorder = Application::open(store, app).await.unwrap().recorder().clone();
    let mut all: Vec<Notification> = Vec::new();
    for partition in 0..recorder.partitions() {
        let mut part: Vec<Notification> = Vec::new();
        loop {
            let page = recorder
                .select_notifications(partition, part.len() as u64 + 1, 1000)
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            part.extend(page);
        }
        for (i, n) in part.iter().enumerate() {
            assert_eq!(n.id, i as u64 + 1, "partition {partition} of {app} is not contiguous");
            assert_eq!(n.partition, partition);
        }
        all.extend(part);
    }
    all
}

/// Asserts that an event about an order is in the partition where the
/// order was created: processed downstream in the partition it came from.
fn assert_in_the_orders_partition(app: &str, n: &Notification, order_id: Uuid, created_in: &HashMap<Uuid, u32>) {
    assert_eq!(
        Some(&n.partition),
        created_in.get(&order_id),
        "{app} notification {} ({}) about order {order_id} is in the partition the order was created in",
        n.id,
        n.event.topic
    );
}

/// Asserts that each order of `orders` was created, reserved and paid
/// exactly once, with one reservation and one payment each and nothing
/// else, and that each follower's tracking is at its upstream's head.
pub async fn assert_each_order_reserved_and_paid_once(store: &Store, orders: &[Uuid]) {
    let orders_log = read_log(store, "Orders").await;
    let partitions = Application::open(store, "Orders")
        .await
        .unwrap()
        .recorder()
        .partitions();
    let created_in: HashMap<Uuid, u32> = orders_log
        .iter()
        .filter(|n| n.event.topic.as_str() == "Order.Created")
        .map(|n| (n.event.originator_id, n.partition))
        .collect();
    for n in &orders_log {
        assert_in_the_orders_partition("Orders", n, n.event.originator_id, &created_in);
    }
    let mut topics: HashMap<(Uuid, &str), usize> = HashMap::new();
    for n in &orders_log {
        *topics
            .entry((n.event.originator_id, n.event.topic.as_str()))
            .or_default() += 1;
    }
    for id in orders {
        for topic in ["Order.Created", "Order.Reserved", "Order.Paid"] {
            assert_eq!(topics.get(&(*id, topic)), Some(&1), "order {id}: {topic} recorded once");
        }
    }
    assert_eq!(
        orders_log.len(),
        3 * orders.len(),
        "the Orders log holds only these orders' events"
    );

    let mut reserved: HashMap<Uuid, usize> = HashMap::new();
    for n in read_log(store, "Reservations").await {
        let event = n.event.decode::<ReservationEvent>().unwrap().event;
        let ReservationEvent::Created(created) = event;
        assert_in_the_orders_partition("Reservations", &n, created.order_id, &created_in);
        *reserved.entry(created.order_id).or_default() += 1;
    }
    let mut paid: HashMap<Uuid, usize> = HashMap::new();
    for n in read_log(store, "Payments").await {
        let PaymentEvent::Created(created) = n.event.decode::<PaymentEvent>().unwrap().event;
        assert_in_the_orders_partition("Payments", &n, created.order_id, &created_in);
        *paid.entry(created.order_id).or_default() += 1;
    }
    for id in orders {
        assert_eq!(reserved.get(id), Some(&1), "order {id} has one reservation");
        assert_eq!(paid.get(id), Some(&1), "order {id} has one payment");
    }
    assert_eq!((reserved.len(), paid.len()), (orders.len(), orders.len()));

    // Every follower processed (and tracked) all of its upstream's log.
    for (app, upstream) in [
        ("Reservations", "Orders"),
        ("Orders", "Reservations"),
        ("Payments", "Orders"),
        ("Orders", "Payments"),
    ] {
        let app = Application::open(store, app).await.unwrap();
        let upstream = Application::open(store, upstream).await.unwrap();
        for partition in 0..partitions {
            let head = upstream.recorder().max_notification_id(partition).await.unwrap();
            let position = app
                .recorder()
                .tracking_position(upstream.name(), partition)
                .await
                .unwrap();
            assert_eq!(
                position,
                head,
                "{} tracked partition {partition} of {} to its head",
                app.name(),
                upstream.name()
            );
        }
    }
}
