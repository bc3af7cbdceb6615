//! Messages from one entity to another, delivered exactly once.
//!
//! A command asks for a message with [`Entity::send_message`]: it goes to
//! the outbox in the transaction of the command's events, like any reliable
//! effect. The dispatcher delivers it by sending the message's command to
//! its target entity, and that commit removes the message from the outbox:
//! the target's events and the message's removal are one transaction. A
//! delivery repeated after a crash finds the message gone
//! ([`Error::EffectGone`]), records nothing, and counts as delivered.
//!
//! Sender and target are entities of one [`Entities`]: one application,
//! one outbox.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::effects::{Delivery, DynHandler};
use super::{Entities, Entity};
use crate::{Aggregate, Error, HandlerError};

/// A command one entity sends another, delivered exactly once.
pub trait Message: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The type of entity it is for.
    type Target: Aggregate<Event: Clone> + Default;

    /// The name kept with it in the outbox: keep it stable across versions
    /// of the code.
    const NAME: &'static str;

    /// Applies the message to its target, as a command: records events, or
    /// refuses (the message is then tried again later, and parked after
    /// the dispatcher's attempts).
    fn apply(self, target: &mut Entity<'_, Self::Target>) -> Result<(), HandlerError>;
}

/// A message with the id of its target, as the outbox keeps it.
#[derive(Serialize, Deserialize)]
pub(super) struct Addressed<M> {
    pub(super) target: Uuid,
    pub(super) message: M,
}

/// Makes the handler that delivers messages of one type through `entities`.
pub(super) type MakeHandler = fn(Entities) -> Arc<dyn DynHandler>;

pub(super) fn make_handler<M: Message>(entities: Entities) -> Arc<dyn DynHandler> {
    Arc::new(Deliver::<M> {
        entities,
        message: std::marker::PhantomData,
    })
}

/// Delivers messages of type `M` to their targets.
struct Deliver<M> {
    entities: Entities,
    message: std::marker::PhantomData<fn() -> M>,
}

impl<M: Message> DynHandler for Deliver<M> {
    fn deliver_bytes(&self, key: Uuid, payload: Vec<u8>) -> Delivery<'_> {
        Box::pin(async move {
            let addressed: Addressed<M> = crate::codec::decode(&payload)
                .map_err(|e| format!("the message `{}` does not decode: {e}", M::NAME))?;
            let message = addressed.message;
            let sent = self
                .entities
                .send_consuming(
                    addressed.target,
                    move |target: &mut Entity<'_, M::Target>| message.clone().apply(target),
                    Some(key),
                )
                .await;
            match sent {
                Ok(_) => Ok(()),
                // Delivered before (a delivery repeated after a crash).
                Err(Error::EffectGone { .. }) => Ok(()),
                Err(error) => Err(Box::new(error) as HandlerError),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use crate::store::{OutboxWrite, Outgoing};
    use crate::{Recorder, Timestamp};

    #[crate::aggregate]
    #[derive(Debug, Default)]
    pub struct Account {
        pub balance: u64,
    }

    #[crate::aggregate(entity)]
    impl Account {
        #[event(Deposited)]
        pub fn deposit(&mut self, amount: u64) {
            self.balance += amount;
        }
    }

    #[derive(Clone, Serialize, Deserialize)]
    struct Deposit {
        amount: u64,
    }

    impl Message for Deposit {
        type Target = Account;
        const NAME: &'static str = "deposit";

        fn apply(self, target: &mut Entity<'_, Account>) -> Result<(), HandlerError> {
            target.deposit(self.amount);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_message_delivered_twice_is_applied_once() {
        let store = Store::open("memory:").await.unwrap();
        let entities = Entities::open(&store, "accounts")
            .await
            .unwrap()
            .with_message::<Deposit>();
        let target = Uuid::new_v4();
        let payload = crate::codec::encode(&Addressed {
            target,
            message: Deposit { amount: 30 },
        })
        .unwrap();
        let message = Outgoing::new(Deposit::NAME, payload.clone(), Uuid::new_v4(), 1);
        entities
            .app()
            .recorder()
            .insert_with_outbox(0, Vec::new(), OutboxWrite::add(vec![message.clone()]))
            .await
            .unwrap();

        let deliver = make_handler::<Deposit>(entities.clone());
        deliver.deliver_bytes(message.id, payload.clone()).await.unwrap();
        // As after a crash between the delivery and its completion, or by a
        // second dispatcher: the same message again.
        deliver.deliver_bytes(message.id, payload).await.unwrap();

        let account: Account = entities.load(target).await.unwrap();
        assert_eq!((account.balance, account.version()), (30, 1), "applied once");
        let due = entities
            .app()
            .recorder()
            .due_outgoing(Timestamp::now(), 10)
            .await
            .unwrap();
        assert!(due.is_empty(), "consumed by the delivery's commit");
    }
}
