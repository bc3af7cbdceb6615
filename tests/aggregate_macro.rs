//! `#[aggregate]` and `#[event]`: generated events, dispatch, identity, and
//! the application that loads and saves aggregates, on every backend.

use eventsourcing::prelude::*;
use eventsourcing::topics::Topic;
use eventsourcing::{DomainEvent, Error, Recorder, Versions};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An order with five kinds of events.
#[aggregate]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    customer: String,
    lines: Vec<(String, u32)>,
    reservation_id: Option<Uuid>,
    payment_id: Option<Uuid>,
    cancelled: Option<String>,
}

#[aggregate]
impl Order {
    /// Starts an order for a customer.
    #[event(Created)]
    pub fn create(customer: String) -> Self {
        Self {
            customer,
            lines: Vec::new(),
            reservation_id: None,
            payment_id: None,
            cancelled: None,
        }
    }

    /// Adds a line to the order.
    #[event(LineAdded, topic = "orders.line-added", version = 2, upcasters(line_added_from_v1))]
    pub fn add_line(&mut self, sku: String, mut quantity: u32) {
        quantity = quantity.max(1);
        self.lines.push((sku, quantity));
    }

    #[event(Reserved)]
    fn set_reserved(&mut self, reservation_id: Uuid) {
        self.reservation_id = Some(reservation_id);
    }

    #[event(Paid)]
    fn set_paid(&mut self, payment_id: Uuid) {
        self.payment_id = Some(payment_id);
    }

    #[event(Cancelled)]
    fn set_cancelled(&mut self, reason: String) {
        self.cancelled = Some(reason);
    }

    /// A command: validates, then triggers an event or returns an error.
    pub fn reserve(&mut self, reservation_id: Uuid) -> Result<(), &'static str> {
        if self.reservation_id.is_some() {
            return Err("already reserved");
        }
        self.set_reserved(reservation_id);
        Ok(())
    }

    /// Pays a reserved order.
    pub fn pay(&mut self, payment_id: Uuid) -> Result<(), &'static str> {
        if self.reservation_id.is_none() {
            return Err("not reserved");
        }
        self.set_paid(payment_id);
        Ok(())
    }

    /// Cancels the order.
    pub fn cancel(&mut self, reason: &str) {
        self.set_cancelled(reason.to_owned());
    }

    /// Whether the order is paid.
    pub fn is_paid(&self) -> bool {
        self.payment_id.is_some()
    }
}

/// An aggregate whose id the caller chooses: one account per email.
#[aggregate]
#[derive(Debug, Default)]
pub struct Account {
    email: String,
}

#[aggregate]
impl Account {
    #[event(Opened)]
    fn open(#[id] id: Uuid, email: String) -> Self {
        assert!(!id.is_nil());
        Self { email }
    }

    /// The account for `email`, with an id derived from it.
    pub fn for_email(email: &str) -> Self {
        Self::open(Self::id_for(email), email.to_owned())
    }

    /// The id of the account for `email`.
    pub fn id_for(email: &str) -> Uuid {
        Uuid::new_v5(&Uuid::NAMESPACE_URL, email.as_bytes())
    }
}

fn full_order() -> Order {
    let mut order = Order::create("ada".to_owned());
    order.add_line("A-7".to_owned(), 0);
    order.add_line("B-2".to_owned(), 3);
    order.reserve(Uuid::new_v4()).unwrap();
    order.pay(Uuid::new_v4()).unwrap();
    order.cancel("changed mind");
    order
}

#[test]
fn triggering_applies_and_keeps_pending_events() {
    let order = full_order();
    assert_eq!(order.lines, [("A-7".to_owned(), 1), ("B-2".to_owned(), 3)]);
    assert!(order.is_paid());
    assert_eq!(order.version(), 6);
    assert!(!order.id().is_nil());
    assert!(order.created_on() <= order.modified_on());

    let pending = order.pending_events();
    let topics: Vec<_> = pending.iter().map(|e| e.topic()).collect();
    assert_eq!(
        topics,
        [
            "Order.Created",
            "orders.line-added",
            "orders.line-added",
            "Order.Reserved",
            "Order.Paid",
            "Order.Cancelled"
        ]
    );
    assert_eq!(
        pending.iter().map(|e| e.originator_version).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert!(pending.iter().all(|e| e.originator_id == order.id()));
    // The event carries the argument as given; the body's change is replayed.
    assert_eq!(
        pending[1].event,
        OrderEvent::LineAdded(OrderLineAdded {
            sku: "A-7".to_owned(),
            quantity: 0
        })
    );
}

#[test]
fn replaying_pending_events_rebuilds_an_equal_state() {
    let order = full_order();
    let stored = order.encode_pending().unwrap();
    let replayed = Order::replay(&stored).unwrap().expect("events");
    assert_eq!(replayed, order);
    assert_eq!((replayed.id(), replayed.version()), (order.id(), 6));
    assert_eq!(
        (replayed.created_on(), replayed.modified_on()),
        (order.created_on(), order.modified_on())
    );
    assert!(replayed.pending_events().is_empty());
}

#[test]
fn commands_that_fail_record_nothing() {
    let mut order = Order::create("bob".to_owned());
    assert_eq!(order.pay(Uuid::new_v4()), Err("not reserved"));
    order.reserve(Uuid::new_v4()).unwrap();
    assert_eq!(order.reserve(Uuid::new_v4()), Err("already reserved"));
    assert_eq!(order.pending_events().len(), 2);
}

/// Version 1 of `LineAdded` had no quantity: one of each.
fn line_added_from_v1(state: &mut serde_json::Value) {
    state["quantity"] = 1.into();
}

#[test]
fn event_types_are_named_with_topics_and_versions() {
    assert_eq!(OrderCreated::TOPIC, "Order.Created");
    assert_eq!(
        (OrderLineAdded::TOPIC, OrderLineAdded::VERSION),
        ("orders.line-added", 2)
    );
    assert_eq!(OrderPaid::VERSION, 1);
    assert_eq!(Order::NAME, "Order");
    assert_eq!(OrderEvent::TOPICS.len(), 5);
    let event: OrderEvent = OrderPaid {
        payment_id: Uuid::nil(),
    }
    .into_event();
    assert_eq!(event.topic(), "Order.Paid");
    assert_eq!(
        OrderEvent::from(OrderCancelled { reason: "x".into() }),
        OrderEvent::Cancelled(OrderCancelled { reason: "x".into() })
    );
    let registered: Vec<_> = eventsourcing::topics::registered()
        .filter(|r| r.aggregate == "Order")
        .collect();
    assert_eq!(registered.len(), 5);
    eventsourcing::topics::check().unwrap();
}

#[test]
fn the_aggregate_struct_still_serializes_its_own_state() {
    let order = full_order();
    let json = serde_json_value(&order);
    assert!(json.contains("\"customer\":\"ada\""), "{json}");
    assert!(!json.contains("__es_meta"), "{json}");
}

fn serde_json_value(order: &Order) -> String {
    String::from_utf8(eventsourcing::codec::encode(order).unwrap()).unwrap()
}

#[test]
fn the_caller_can_choose_the_id() {
    let account = Account::for_email("ada@example.com");
    assert_eq!(account.id(), Account::id_for("ada@example.com"));
    assert_eq!(account.email, "ada@example.com");
    let replayed = Account::replay(&account.encode_pending().unwrap()).unwrap().unwrap();
    assert_eq!(
        (replayed.id(), replayed.email.as_str()),
        (account.id(), "ada@example.com")
    );
    // Two new orders get two new ids.
    assert_ne!(Order::create("a".into()).id(), Order::create("a".into()).id());
}

async fn round_trips_through_the_store(store: &Store) {
    let app = Application::open(store, &eventsourcing_tests::unique_app("orders").to_string())
        .await
        .unwrap();
    let mut order = full_order();
    let mut other = Order::create("eve".to_owned());
    let ids = app.save((&mut order, &mut other)).await.unwrap();
    assert_eq!(ids, (1..=7).collect::<Vec<u64>>());
    assert!(order.pending_events().is_empty() && other.pending_events().is_empty());

    let loaded: Order = app.load(order.id()).await.unwrap();
    assert_eq!(loaded, order);
    assert_eq!(
        (loaded.version(), loaded.created_on(), loaded.modified_on()),
        (6, order.created_on(), order.modified_on())
    );

    let at_three: Order = app.load_at(order.id(), 3).await.unwrap();
    assert_eq!(
        (at_three.version(), at_three.lines.len(), at_three.is_paid()),
        (3, 2, false)
    );
    let err = app.load_at::<Order>(order.id(), 7).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::VersionNotFound {
                version: 7,
                latest: 6,
                ..
            }
        ),
        "{err:?}"
    );

    let missing = Uuid::new_v4();
    let err = app.load::<Order>(missing).await.unwrap_err();
    assert!(
        matches!(&err, Error::AggregateNotFound { originator_id, aggregate: "Order", .. } if *originator_id == missing)
    );
    assert!(err.to_string().contains(&missing.to_string()), "{err}");

    // Two copies of one aggregate change concurrently: the second save is a
    // conflict the caller can match on, and its events stay pending.
    let mut first: Order = app.load(other.id()).await.unwrap();
    let mut second: Order = app.load(other.id()).await.unwrap();
    first.reserve(Uuid::new_v4()).unwrap();
    second.cancel("too slow");
    app.save(&mut first).await.unwrap();
    match app.save(&mut second).await {
        Err(Error::Concurrency {
            originator_id,
            version: 2,
            ..
        }) => assert_eq!(originator_id, other.id()),
        other => panic!("expected a concurrency error, got {other:?}"),
    }
    assert_eq!(second.pending_events().len(), 1);
    let mut retried: Order = app.load(other.id()).await.unwrap();
    retried.cancel("too slow");
    app.save(&mut retried).await.unwrap();
    assert_eq!(app.load::<Order>(other.id()).await.unwrap().version(), 3);

    // The application's log holds every event in order.
    let notifications = app.log().reader().read_to_end().await.unwrap();
    assert_eq!(notifications.len(), 9);
    let decoded = notifications[1].event.decode::<OrderEvent>().unwrap();
    assert_eq!(
        decoded.event,
        OrderEvent::LineAdded(OrderLineAdded {
            sku: "A-7".to_owned(),
            quantity: 0
        })
    );

    // Saving a slice saves every aggregate in it.
    let mut many: Vec<Order> = (0..3).map(|i| Order::create(format!("c{i}"))).collect();
    assert_eq!(app.save(&mut many).await.unwrap(), [10, 11, 12]);
    assert_eq!(
        app.save(&mut many).await.unwrap(),
        Vec::<u64>::new(),
        "nothing pending, nothing saved"
    );
}

/// Recording and reading events does not copy their topics: a topic an
/// `#[event]` registered is one shared string, whichever backend it went
/// through; other topics read as themselves.
async fn hands_registered_topics_around_without_copies(store: &Store) {
    let app = Application::open(store, &eventsourcing_tests::unique_app("topics").to_string())
        .await
        .unwrap();
    let mut order = full_order();
    app.save(&mut order).await.unwrap();
    let shared = |topic: &str| Topic::new(topic).as_str().as_ptr();
    let notifications = app.log().reader().read_to_end().await.unwrap();
    assert_eq!(notifications.len(), 6);
    for notification in &notifications {
        let topic = &notification.event.topic;
        assert_eq!(
            topic.as_str().as_ptr(),
            shared(topic),
            "`{topic}` read back from the log"
        );
    }
    for event in app.recorder().select_events(order.id(), Versions::ALL).await.unwrap() {
        let topic = &event.topic;
        assert_eq!(
            topic.as_str().as_ptr(),
            shared(topic),
            "`{topic}` read back as an aggregate's event"
        );
    }
    let unregistered = Topic::new("Nobody.Registered");
    assert_eq!(unregistered, "Nobody.Registered");
    assert_ne!(unregistered.as_str().as_ptr(), shared("Nobody.Registered"));
}

eventsourcing_tests::on_every_backend!(
    round_trips_through_the_store,
    hands_registered_topics_around_without_copies
);
