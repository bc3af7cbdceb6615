//! Reliable effects of entities' commands: recorded with the events,
//! delivered at least once by a dispatcher with an idempotency key,
//! completed once, retried with backoff, parked, retried and discarded by
//! hand; never recorded for a command that refused or lost a race.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsourcing::entities::{DispatchOptions, Dispatcher, EffectHandler, Entities, Entity};
use eventsourcing::prelude::*;
use eventsourcing::{Error, HandlerError, Recorder, Timestamp};
use eventsourcing_tests::unique_app;
use serde::{Deserialize, Serialize};

#[aggregate]
#[derive(Debug, Default)]
pub struct Counter {
    pub count: u64,
}

#[aggregate(entity)]
impl Counter {
    #[event(Increased)]
    pub fn increase(&mut self, by: u64) {
        self.count += by;
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub counter: Uuid,
    pub count: u64,
}

/// The admin's inbox: what it received, by idempotency key; it fails the
/// first `failures` deliveries.
#[derive(Clone, Default)]
struct Inbox {
    received: Arc<Mutex<HashMap<Uuid, Vec<Notice>>>>,
    failures: Arc<AtomicU32>,
}

impl EffectHandler for Inbox {
    type Effect = Notice;
    const NAME: &'static str = "notify_admin";

    async fn deliver(&self, key: Uuid, notice: Notice) -> Result<(), HandlerError> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1))
            .is_ok()
        {
            return Err("the mail server is down".into());
        }
        self.received.lock().unwrap().entry(key).or_default().push(notice);
        Ok(())
    }
}

impl Inbox {
    fn notices(&self) -> Vec<Notice> {
        self.received.lock().unwrap().values().flatten().cloned().collect()
    }
}

/// Increases the counter; at 3 the admin gets a notice.
fn increase(counter: &mut Entity<Counter>) -> std::result::Result<u64, &'static str> {
    counter.increase(1);
    if counter.count == 3 {
        let notice = Notice {
            counter: counter.id(),
            count: counter.count,
        };
        counter.reliable::<Inbox>(notice);
    }
    Ok(counter.count)
}

async fn open(store: &Store) -> Entities {
    Entities::open(store, unique_app("effects").as_str()).await.unwrap()
}

async fn a_reliable_effect_is_delivered_once_after_its_commit(store: &Store) {
    let entities = open(store).await;
    let inbox = Inbox::default();
    let dispatcher = Dispatcher::new(entities.app()).handler(inbox.clone());
    let id = Uuid::new_v4();
    for _ in 0..5 {
        entities.send(id, increase).await.unwrap();
    }
    let due = entities
        .app()
        .recorder()
        .due_outgoing(Timestamp::now(), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "recorded with the third increase");
    assert_eq!((due[0].originator_id, due[0].originator_version), (id, 3));

    let pass = dispatcher.dispatch_due().await.unwrap();
    assert_eq!(pass.delivered, 1);
    assert_eq!(inbox.notices(), [Notice { counter: id, count: 3 }]);
    let keys: Vec<Uuid> = inbox.received.lock().unwrap().keys().copied().collect();
    assert_eq!(keys, [due[0].id], "the effect's id is the idempotency key");
    assert_eq!(
        dispatcher.dispatch_due().await.unwrap().delivered,
        0,
        "completed: not again"
    );
}

eventsourcing_tests::on_every_backend!(
    a_reliable_effect_is_delivered_once_after_its_commit,
    two_dispatchers_deliver_each_effect_once
);

/// Slow to answer, so that dispatchers overlap; counts deliveries by key.
#[derive(Clone, Default)]
struct SlowInbox {
    deliveries: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl EffectHandler for SlowInbox {
    type Effect = Notice;
    const NAME: &'static str = "notify_admin";

    async fn deliver(&self, key: Uuid, _: Notice) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        *self.deliveries.lock().unwrap().entry(key).or_default() += 1;
        Ok(())
    }
}

/// Dispatchers on several nodes share one outbox: each effect is taken by
/// one of them and delivered once, not once by each.
async fn two_dispatchers_deliver_each_effect_once(store: &Store) {
    let entities = open(store).await;
    let effects = 20;
    for _ in 0..effects {
        let id = Uuid::new_v4();
        for _ in 0..3 {
            entities.send(id, increase).await.unwrap();
        }
    }
    let inbox = SlowInbox::default();
    let dispatchers = [
        Dispatcher::new(entities.app()).handler(inbox.clone()),
        Dispatcher::new(entities.app()).handler(inbox.clone()),
    ];
    let mut delivered = 0;
    while delivered < effects {
        let (first, second) = tokio::join!(dispatchers[0].dispatch_due(), dispatchers[1].dispatch_due());
        delivered += first.unwrap().delivered + second.unwrap().delivered;
    }
    assert_eq!(delivered, effects, "each completed once");
    let deliveries = inbox.deliveries.lock().unwrap();
    assert_eq!(deliveries.len(), effects);
    assert!(
        deliveries.values().all(|&n| n == 1),
        "each delivered once: {deliveries:?}"
    );
}

/// A dispatcher that never gives up on a delivery (the longest timeout)
/// delivers like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_without_a_timeout_delivers() {
    let store = Store::open("memory:").await.unwrap();
    let entities = open(&store).await;
    let inbox = Inbox::default();
    let dispatcher = Dispatcher::new(entities.app())
        .handler(inbox.clone())
        .with_options(DispatchOptions::default().timeout(Duration::MAX));
    let id = Uuid::new_v4();
    for _ in 0..3 {
        entities.send(id, increase).await.unwrap();
    }
    assert_eq!(dispatcher.dispatch_due().await.unwrap().delivered, 1);
    assert_eq!(inbox.notices(), [Notice { counter: id, count: 3 }]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_effect_is_recorded_for_a_refused_command() {
    let store = Store::open("memory:").await.unwrap();
    let entities = open(&store).await;
    let id = Uuid::new_v4();
    let error = entities
        .send(id, |c: &mut Entity<Counter>| {
            c.increase(3);
            c.reliable::<Inbox>(Notice {
                counter: c.id(),
                count: 3,
            });
            Err::<(), _>("refused after asking")
        })
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Refused { .. }));
    let due = entities
        .app()
        .recorder()
        .due_outgoing(Timestamp::now(), 10)
        .await
        .unwrap();
    assert!(due.is_empty(), "no effect without its events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_effect_is_recorded_for_an_attempt_that_lost_the_race() {
    let store = Store::open("memory:").await.unwrap();
    let name = unique_app("effects");
    let (a, b) = (
        Entities::open(&store, name.as_str()).await.unwrap(),
        Entities::open(&store, name.as_str()).await.unwrap(),
    );
    let id = Uuid::new_v4();
    a.send(id, increase).await.unwrap();
    b.send(id, increase).await.unwrap();
    // a holds version 1; b wrote version 2. a's command runs on version 1,
    // asks for a notice at count 2 (wrong: the latest count is 2 already)
    // and loses the race; run again on version 2, it asks for count 3.
    let sent = a
        .send(id, |c: &mut Entity<Counter>| {
            c.increase(1);
            c.reliable::<Inbox>(Notice {
                counter: c.id(),
                count: c.count,
            });
            Ok::<_, &str>(c.count)
        })
        .await
        .unwrap();
    assert_eq!((sent.reply, sent.retries), (3, 1));
    let due = a.app().recorder().due_outgoing(Timestamp::now(), 10).await.unwrap();
    assert_eq!(due.len(), 1, "only the attempt that committed recorded its effect");
    assert_eq!(due[0].originator_version, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_delivery_is_retried_with_backoff_then_parked_retried_and_discarded() {
    let store = Store::open("memory:").await.unwrap();
    let entities = open(&store).await;
    let inbox = Inbox::default();
    inbox.failures.store(100, Ordering::SeqCst);
    let options = DispatchOptions::default()
        .max_attempts(3)
        .backoff(Duration::from_millis(300), Duration::from_millis(600));
    let dispatcher = Dispatcher::new(entities.app())
        .handler(inbox.clone())
        .with_options(options);
    let id = Uuid::new_v4();
    for _ in 0..3 {
        entities.send(id, increase).await.unwrap();
    }

    let first = dispatcher.dispatch_due().await.unwrap();
    assert_eq!((first.delivered, first.failed, first.parked), (0, 1, 0));
    assert_eq!(
        dispatcher.dispatch_due().await.unwrap().failed,
        0,
        "not due again before its backoff"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(dispatcher.dispatch_due().await.unwrap().failed, 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        dispatcher.dispatch_due().await.unwrap().parked,
        1,
        "the third failure parks it"
    );

    let parked = dispatcher.parked().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].attempts, 3);
    assert_eq!(parked[0].last_error.as_deref(), Some("the mail server is down"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        dispatcher.dispatch_due().await.unwrap(),
        Default::default(),
        "parked: never due"
    );

    // The server is back: retried by hand, it is delivered.
    inbox.failures.store(0, Ordering::SeqCst);
    assert!(dispatcher.retry(parked[0].id).await.unwrap());
    assert_eq!(dispatcher.dispatch_due().await.unwrap().delivered, 1);
    assert_eq!(inbox.notices().len(), 1);

    // Another one, discarded instead.
    let other = Uuid::new_v4();
    inbox.failures.store(100, Ordering::SeqCst);
    let dispatcher = dispatcher.with_options(DispatchOptions::default().max_attempts(1));
    for _ in 0..3 {
        entities.send(other, increase).await.unwrap();
    }
    assert_eq!(dispatcher.dispatch_due().await.unwrap().parked, 1);
    let parked = dispatcher.parked().await.unwrap();
    assert!(dispatcher.discard(parked[0].id).await.unwrap());
    assert!(!dispatcher.discard(parked[0].id).await.unwrap(), "discarded once");
    assert!(dispatcher.parked().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_effect_without_a_handler_is_parked_and_says_so() {
    let store = Store::open("memory:").await.unwrap();
    let entities = open(&store).await;
    let id = Uuid::new_v4();
    for _ in 0..3 {
        entities.send(id, increase).await.unwrap();
    }
    let dispatcher = Dispatcher::new(entities.app());
    assert_eq!(dispatcher.dispatch_due().await.unwrap().parked, 1);
    let parked = dispatcher.parked().await.unwrap();
    let error = parked[0].last_error.clone().unwrap();
    assert!(error.contains("no handler named `notify_admin`"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_dispatcher_delivers_what_is_recorded_while_it_runs() {
    let file = eventsourcing_tests::TempSqlite::new();
    let store = file.open().await;
    let entities = open(&store).await;
    let inbox = Inbox::default();
    let running = Dispatcher::new(entities.app())
        .handler(inbox.clone())
        .with_options(DispatchOptions::default().poll_interval(Duration::from_millis(10)))
        .start()
        .unwrap();
    let ids: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        for _ in 0..3 {
            entities.send(*id, increase).await.unwrap();
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while inbox.notices().len() < ids.len() {
        assert!(std::time::Instant::now() < deadline, "every notice delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.stop().await;
    let mut counters: Vec<Uuid> = inbox.notices().iter().map(|n| n.counter).collect();
    counters.sort_unstable();
    let mut expected = ids.clone();
    expected.sort_unstable();
    assert_eq!(counters, expected, "one notice per counter");
}

/// A handler that panics on every delivery.
struct Panics;

impl EffectHandler for Panics {
    type Effect = Notice;
    const NAME: &'static str = "notify_admin";

    async fn deliver(&self, _: Uuid, _: Notice) -> Result<(), HandlerError> {
        panic!("the handler's bug")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_counts_as_a_failure_and_is_parked() {
    let store = Store::open("memory:").await.unwrap();
    let entities = open(&store).await;
    let id = Uuid::new_v4();
    for _ in 0..3 {
        entities.send(id, increase).await.unwrap();
    }
    let dispatcher = Dispatcher::new(entities.app()).handler(Panics).with_options(
        DispatchOptions::default()
            .max_attempts(2)
            .backoff(Duration::ZERO, Duration::ZERO),
    );
    assert_eq!(dispatcher.dispatch_due().await.unwrap().failed, 1);
    assert_eq!(
        dispatcher.dispatch_due().await.unwrap().parked,
        1,
        "not retried for ever"
    );
    let parked = dispatcher.parked().await.unwrap();
    assert_eq!(
        (parked[0].attempts, parked[0].last_error.as_deref()),
        (2, Some("the handler panicked"))
    );
}

/// Another handler that says its effects are `notify_admin` too.
struct AlsoNotifies;

impl EffectHandler for AlsoNotifies {
    type Effect = Notice;
    const NAME: &'static str = "notify_admin";

    async fn deliver(&self, _: Uuid, _: Notice) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handlers_of_one_name_are_refused_and_nothing_is_delivered() {
    let store = Store::open("memory:").await.unwrap();
    let entities = open(&store).await;
    let id = Uuid::new_v4();
    for _ in 0..3 {
        entities.send(id, increase).await.unwrap();
    }
    let inbox = Inbox::default();
    let dispatcher = Dispatcher::new(entities.app())
        .handler(inbox.clone())
        .handler(AlsoNotifies);
    let error = dispatcher.dispatch_due().await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::HandlerClash {
                name: "notify_admin",
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("AlsoNotifies"), "{error}");
    assert!(dispatcher.clone().start().is_err());
    assert!(inbox.notices().is_empty());
    let due = entities
        .app()
        .recorder()
        .due_outgoing(Timestamp::now(), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "the effect waits, undelivered and unparked");
}
