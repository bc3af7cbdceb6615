//! Entities: commands sent by id to aggregates that always exist, on every
//! backend; optimistic concurrency across nodes; effects after commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use eventsourcing::entities::{Entities, Entity, EntityOptions};
use eventsourcing::prelude::*;
use eventsourcing::{Error, NotificationSource};
use eventsourcing_tests::unique_app;

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

#[aggregate]
#[derive(Debug, Default)]
pub struct Account {
    pub balance: u64,
}

#[aggregate(entity)]
impl Account {
    #[event(Deposited)]
    pub fn deposit(&mut self, amount: u64) {
        self.balance += amount;
    }

    #[event(Withdrawn)]
    fn withdrawn(&mut self, amount: u64) {
        self.balance -= amount;
    }

    pub fn withdraw(&mut self, amount: u64) -> std::result::Result<(), String> {
        if amount > self.balance {
            return Err(format!("balance {} is below {amount}", self.balance));
        }
        self.withdrawn(amount);
        Ok(())
    }
}

async fn open(store: &Store) -> Entities {
    Entities::open(store, unique_app("entities").as_str()).await.unwrap()
}

fn increase(counter: &mut Entity<Counter>) -> std::result::Result<u64, &'static str> {
    counter.increase(1);
    Ok(counter.count)
}

async fn an_entity_exists_before_its_first_event(store: &Store) {
    let entities = open(store).await;
    let id = Uuid::new_v4();
    let fresh: Counter = entities.load(id).await.unwrap();
    assert_eq!((fresh.count, fresh.version(), fresh.id()), (0, 0, id));

    let sent = entities.send(id, increase).await.unwrap();
    assert_eq!((sent.reply, sent.version, sent.retries), (1, 1, 0));
    assert_eq!(sent.notification_ids, [1]);
    let sent = entities.send(id, increase).await.unwrap();
    assert_eq!((sent.reply, sent.version), (2, 2));
    let loaded: Counter = entities.load(id).await.unwrap();
    assert_eq!((loaded.count, loaded.version()), (2, 2));

    // A command that records nothing answers from the state and commits nothing.
    let read = entities
        .send(id, |c: &mut Entity<Counter>| Ok::<_, &str>(c.count))
        .await
        .unwrap();
    assert_eq!((read.reply, read.version, read.notification_ids.len()), (2, 2, 0));
}

async fn a_refused_command_records_nothing_and_starts_no_effect(store: &Store) {
    let entities = open(store).await;
    let id = Uuid::new_v4();
    entities
        .send(id, |a: &mut Entity<Account>| {
            a.deposit(50);
            Ok::<_, String>(())
        })
        .await
        .unwrap();
    let effects = Arc::new(AtomicUsize::new(0));
    let counted = effects.clone();
    let error = entities
        .send(id, move |a: &mut Entity<Account>| {
            let counted = counted.clone();
            a.after_commit(async move {
                counted.fetch_add(1, Ordering::SeqCst);
            });
            // Records a deposit, then refuses: neither is kept.
            a.deposit(10);
            a.withdraw(100)
        })
        .await
        .unwrap_err();
    match &error {
        Error::Refused {
            entity,
            id: refused,
            source,
        } => {
            assert_eq!((*entity, *refused), ("Account", id));
            assert_eq!(source.to_string(), "balance 60 is below 100");
        }
        other => panic!("expected Refused, got {other}"),
    }
    let account: Account = entities.load(id).await.unwrap();
    assert_eq!((account.balance, account.version()), (50, 1));
    assert_eq!(entities.app().recorder().max_notification_id(0).await.unwrap(), 1);
    // And the entity's state in memory is not the refused one either.
    let balance = entities
        .send(id, |a: &mut Entity<Account>| Ok::<_, String>(a.balance))
        .await
        .unwrap();
    assert_eq!(balance.reply, 50);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(effects.load(Ordering::SeqCst), 0, "no effect of a refused command");
}

async fn sends_to_one_entity_run_in_order_and_each_sees_the_last(store: &Store) {
    let entities = open(store).await;
    let id = Uuid::new_v4();
    let sends: Vec<_> = (0..100)
        .map(|_| {
            let entities = entities.clone();
            tokio::spawn(async move { entities.send(id, increase).await.unwrap() })
        })
        .collect();
    let mut replies = Vec::new();
    for send in sends {
        let sent = send.await.unwrap();
        assert_eq!(sent.retries, 0, "one node runs one entity's commands one at a time");
        replies.push(sent.reply);
    }
    replies.sort_unstable();
    assert_eq!(
        replies,
        (1..=100).collect::<Vec<_>>(),
        "each command saw the one before"
    );
}

async fn two_nodes_hammering_one_entity_lose_no_update(store: &Store) {
    let name = unique_app("entities");
    // Two nodes: each its own activations and cached state, one store.
    let nodes = [
        Entities::open(store, name.as_str()).await.unwrap(),
        Entities::open(store, name.as_str()).await.unwrap(),
    ];
    let id = Uuid::new_v4();
    let mut sends = Vec::new();
    for _ in 0..60 {
        for node in &nodes {
            let node = node.clone();
            sends.push(tokio::spawn(async move { node.send(id, increase).await }));
        }
    }
    let (mut sent, mut contended, mut retries) = (0, 0, 0);
    for send in sends {
        match send.await.unwrap() {
            Ok(s) => {
                sent += 1;
                retries += s.retries;
            }
            Err(Error::EntityContended { .. }) => contended += 1,
            Err(other) => panic!("{other}"),
        }
    }
    let counter: Counter = nodes[0].load(id).await.unwrap();
    assert_eq!(counter.count, sent, "every committed send counted once");
    // A send that lost the race more often than the bound says so; none
    // is lost or counted twice.
    assert_eq!(sent + contended, 120, "{retries} retries in all");
}

async fn a_node_answers_from_the_latest_state_whoever_wrote_it(store: &Store) {
    let name = unique_app("entities");
    let (a, b) = (
        Entities::open(store, name.as_str()).await.unwrap(),
        Entities::open(store, name.as_str()).await.unwrap(),
    );
    let id = Uuid::new_v4();
    a.send(id, increase).await.unwrap();
    b.send(id, increase).await.unwrap();
    // Node a holds the entity at version 1; b has recorded version 2.
    let read = a
        .send(id, |c: &mut Entity<Counter>| Ok::<_, &str>(c.count))
        .await
        .unwrap();
    assert_eq!((read.reply, read.version), (2, 2), "a read sees the other node's write");

    // A refusal on a stale state is not given: the command runs again on
    // the latest, where it succeeds.
    let account = Uuid::new_v4();
    let refused = a
        .send(account, |acc: &mut Entity<Account>| acc.withdraw(30))
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::Refused { .. }));
    b.send(account, |acc: &mut Entity<Account>| {
        acc.deposit(100);
        Ok::<_, String>(())
    })
    .await
    .unwrap();
    let withdrawn = a
        .send(account, |acc: &mut Entity<Account>| {
            acc.withdraw(30).map(|()| acc.balance)
        })
        .await
        .unwrap();
    assert_eq!((withdrawn.reply, withdrawn.version), (70, 2));
}

eventsourcing_tests::on_every_backend!(
    an_entity_exists_before_its_first_event,
    a_refused_command_records_nothing_and_starts_no_effect,
    sends_to_one_entity_run_in_order_and_each_sees_the_last,
    two_nodes_hammering_one_entity_lose_no_update,
    a_node_answers_from_the_latest_state_whoever_wrote_it,
);

/// Records an event of `id` through another handle on the store, from
/// inside a command: the command's own commit then conflicts. (A memory
/// store, so that blocking on the write cannot wait on this runtime.)
fn interfere(store: &Store, app: &str, id: Uuid) {
    let (store, app) = (store.clone(), app.to_owned());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let other = Entities::open(&store, &app).await.unwrap();
                other.send(id, increase).await.unwrap();
            })
    })
    .join()
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_keeps_losing_the_race_fails_at_the_bound_and_says_so() {
    let store = Store::open("memory:").await.unwrap();
    let app = unique_app("entities");
    let entities = Entities::open(&store, app.as_str())
        .await
        .unwrap()
        .with_options(EntityOptions::default().max_retries(2));
    let id = Uuid::new_v4();
    let runs = Arc::new(AtomicU32::new(0));
    let (counted, interfering) = (runs.clone(), store.clone());
    let name = app.to_string();
    let error = entities
        .send(id, move |c: &mut Entity<Counter>| {
            counted.fetch_add(1, Ordering::SeqCst);
            interfere(&interfering, &name, id);
            c.increase(1);
            Ok::<_, &str>(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::EntityContended {
                entity: "Counter",
                attempts: 3,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("max_retries"), "{error}");
    assert_eq!(runs.load(Ordering::SeqCst), 3, "the first run and two retries");
    let counter: Counter = entities.load(id).await.unwrap();
    assert_eq!(counter.count, 3, "only the interfering writes were recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_start_after_the_commit_and_never_for_a_lost_attempt() {
    let store = Store::open("memory:").await.unwrap();
    let app = unique_app("entities");
    let entities = Entities::open(&store, app.as_str()).await.unwrap();
    let id = Uuid::new_v4();
    let started = Arc::new(AtomicUsize::new(0));
    let runs = Arc::new(AtomicU32::new(0));
    let (counted, effects, interfering) = (runs.clone(), started.clone(), store.clone());
    let name = app.to_string();
    let (done, effect_ran) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let sent = entities
        .send(id, move |c: &mut Entity<Counter>| {
            // The first run loses the race; the second commits.
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                interfere(&interfering, &name, id);
            }
            c.increase(10);
            let (effects, done, count) = (effects.clone(), done.clone(), c.count);
            c.after_commit(async move {
                effects.fetch_add(1, Ordering::SeqCst);
                let _ = done.send(count);
            });
            Ok::<_, &str>(())
        })
        .await
        .unwrap();
    assert_eq!((sent.retries, sent.version), (1, 2));
    let mut effect_ran = effect_ran;
    let count = tokio::time::timeout(Duration::from_secs(5), effect_ran.recv())
        .await
        .expect("the effect of the committed attempt starts")
        .unwrap();
    assert_eq!(count, 11, "the effect asked for by the attempt that committed");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(started.load(Ordering::SeqCst), 1, "none for the attempt that lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_entity_is_deactivated_and_comes_back_on_the_next_send() {
    let store = Store::open("memory:").await.unwrap();
    let entities = open(&store)
        .await
        .with_options(EntityOptions::default().idle_timeout(Duration::from_millis(400)));
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    entities.send(a, increase).await.unwrap();
    entities.send(b, increase).await.unwrap();
    assert_eq!(entities.active(), 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(entities.active(), 0, "both went idle");
    let sent = entities.send(a, increase).await.unwrap();
    assert_eq!(sent.reply, 2, "read again from the store");
    assert_eq!(entities.active(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_panics_stops_only_its_own_send() {
    let store = Store::open("memory:").await.unwrap();
    let entities = open(&store).await;
    let id = Uuid::new_v4();
    entities.send(id, increase).await.unwrap();
    let error = entities
        .send(id, |c: &mut Entity<Counter>| -> std::result::Result<(), &str> {
            c.increase(1);
            panic!("a bug in the command")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::EntityStopped { entity: "Counter", .. }),
        "{error}"
    );
    // The entity comes back, as the store has it: the panicking command
    // recorded nothing.
    let sent = entities.send(id, increase).await.unwrap();
    assert_eq!((sent.reply, sent.version), (2, 2));
}

/// A command that waits in the mailbox behind one that panics still runs:
/// the panic fails its own send only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_queued_behind_a_panicking_one_runs() {
    let store = Store::open("memory:").await.unwrap();
    let entities = open(&store).await;
    let id = Uuid::new_v4();
    let panicking = entities.send(id, |c: &mut Entity<Counter>| -> std::result::Result<(), &str> {
        // Long enough for the next command to be queued behind it.
        std::thread::sleep(Duration::from_millis(200));
        c.increase(1);
        panic!("a bug in the command")
    });
    let queued = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        entities.send(id, increase).await
    };
    let (panicked, queued) = tokio::join!(panicking, queued);
    assert!(matches!(panicked, Err(Error::EntityStopped { .. })), "{panicked:?}");
    let sent = queued.unwrap();
    assert_eq!((sent.reply, sent.version), (1, 1));
}
