//! Messages between entities: a transfer withdraws from one account and
//! sends the other a deposit, delivered exactly once by the dispatcher of
//! the entities that know it; on every backend.

use eventsourcing::entities::{DispatchOptions, Entities, Entity, Message};
use eventsourcing::prelude::*;
use eventsourcing::{Error, HandlerError};
use eventsourcing_tests::unique_app;
use serde::{Deserialize, Serialize};

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

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deposit {
    pub amount: u64,
}

impl Message for Deposit {
    type Target = Account;
    const NAME: &'static str = "deposit";

    fn apply(self, account: &mut Entity<'_, Account>) -> Result<(), HandlerError> {
        account.deposit(self.amount);
        Ok(())
    }
}

/// A withdrawal asked of another account: refused if it cannot pay.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Charge {
    pub amount: u64,
}

impl Message for Charge {
    type Target = Account;
    const NAME: &'static str = "charge";

    fn apply(self, account: &mut Entity<'_, Account>) -> Result<(), HandlerError> {
        Ok(account.withdraw(self.amount)?)
    }
}

async fn balance(entities: &Entities, id: Uuid) -> u64 {
    entities.load::<Account>(id).await.unwrap().balance
}

async fn a_transfer_deposits_once_through_a_message(store: &Store) {
    let entities = Entities::open(store, unique_app("accounts").as_str())
        .await
        .unwrap()
        .with_message::<Deposit>();
    let (from, to) = (Uuid::new_v4(), Uuid::new_v4());
    entities
        .send(from, |a: &mut Entity<Account>| {
            a.deposit(100);
            Ok::<_, String>(())
        })
        .await
        .unwrap();
    entities
        .send(from, move |a: &mut Entity<Account>| {
            a.withdraw(30)?;
            a.send_message(to, Deposit { amount: 30 });
            Ok::<_, String>(())
        })
        .await
        .unwrap();
    assert_eq!((balance(&entities, from).await, balance(&entities, to).await), (70, 0));

    // Two dispatchers at once: the deposit is applied once.
    let (one, two) = (entities.dispatcher(), entities.dispatcher());
    let (a, b) = tokio::join!(one.dispatch_due(), two.dispatch_due());
    assert!(a.unwrap().delivered + b.unwrap().delivered >= 1);
    assert_eq!((balance(&entities, from).await, balance(&entities, to).await), (70, 30));
    assert_eq!(
        one.dispatch_due().await.unwrap().delivered,
        0,
        "nothing left to deliver"
    );

    // A transfer that the sender refuses sends nothing.
    let refused = entities
        .send(from, move |a: &mut Entity<Account>| {
            a.withdraw(500)?;
            a.send_message(to, Deposit { amount: 500 });
            Ok::<_, String>(())
        })
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::Refused { .. }));
    assert_eq!(one.dispatch_due().await.unwrap().delivered, 0);
    assert_eq!(balance(&entities, to).await, 30);
}

eventsourcing_tests::on_every_backend!(a_transfer_deposits_once_through_a_message);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_its_target_refuses_is_retried_then_parked() {
    let store = Store::open("memory:").await.unwrap();
    let entities = Entities::open(&store, unique_app("accounts").as_str())
        .await
        .unwrap()
        .with_message::<Charge>();
    let (shop, customer) = (Uuid::new_v4(), Uuid::new_v4());
    entities
        .send(shop, move |s: &mut Entity<Account>| {
            s.deposit(1);
            s.send_message(customer, Charge { amount: 20 });
            Ok::<_, String>(())
        })
        .await
        .unwrap();
    let dispatcher = entities
        .dispatcher()
        .with_options(DispatchOptions::default().max_attempts(1));
    assert_eq!(
        dispatcher.dispatch_due().await.unwrap().parked,
        1,
        "the customer cannot pay"
    );
    let parked = dispatcher.parked().await.unwrap();
    let error = parked[0].last_error.clone().unwrap();
    assert!(error.contains("balance 0 is below 20"), "{error}");

    // Once the customer can pay, the message retried by hand goes through.
    entities
        .send(customer, |c: &mut Entity<Account>| {
            c.deposit(50);
            Ok::<_, String>(())
        })
        .await
        .unwrap();
    assert!(dispatcher.retry(parked[0].id).await.unwrap());
    assert_eq!(dispatcher.dispatch_due().await.unwrap().delivered, 1);
    assert_eq!(balance(&entities, customer).await, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_no_dispatcher_knows_is_parked_and_says_how_to_fix_it() {
    let store = Store::open("memory:").await.unwrap();
    let entities = Entities::open(&store, unique_app("accounts").as_str()).await.unwrap();
    entities
        .send(Uuid::new_v4(), |a: &mut Entity<Account>| {
            a.deposit(1);
            a.send_message(Uuid::new_v4(), Deposit { amount: 1 });
            Ok::<_, String>(())
        })
        .await
        .unwrap();
    let dispatcher = entities.dispatcher();
    assert_eq!(dispatcher.dispatch_due().await.unwrap().parked, 1);
    let error = dispatcher.parked().await.unwrap()[0].last_error.clone().unwrap();
    assert!(error.contains("Entities::with_message"), "{error}");
}

/// Another message type that says it is a `deposit`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Refund {
    pub amount: u64,
}

impl Message for Refund {
    type Target = Account;
    const NAME: &'static str = "deposit";

    fn apply(self, account: &mut Entity<'_, Account>) -> Result<(), HandlerError> {
        account.deposit(self.amount);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_message_types_of_one_name_are_refused() {
    let store = Store::open("memory:").await.unwrap();
    let entities = Entities::open(&store, unique_app("accounts").as_str())
        .await
        .unwrap()
        .with_message::<Deposit>()
        .with_message::<Refund>()
        // The same type twice is one handler.
        .with_message::<Refund>();
    let error = entities.dispatcher().dispatch_due().await.unwrap_err();
    assert!(matches!(error, Error::HandlerClash { name: "deposit", .. }), "{error}");
    let fine = Entities::open(&store, unique_app("accounts").as_str())
        .await
        .unwrap()
        .with_message::<Deposit>()
        .with_message::<Deposit>();
    assert!(fine.dispatcher().dispatch_due().await.is_ok());
}
