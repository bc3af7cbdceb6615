//! What a command sees: the entity's state, and a place for the effects it
//! asks for.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;

use uuid::Uuid;

use super::effects::{EffectHandler, PendingEffect};
use super::messages::{Addressed, Message};
use crate::Aggregate;

/// An effect waiting for its command's commit.
pub(super) type Effect = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// An entity as a command sees it: the aggregate (through `Deref`), on
/// which the command calls its event methods, and the effects the command
/// asks for.
pub struct Entity<'a, A: Aggregate> {
    aggregate: &'a mut A,
    effects: &'a mut Vec<Effect>,
    outbox: &'a mut Vec<PendingEffect>,
}

impl<'a, A: Aggregate> Entity<'a, A> {
    pub(super) fn new(aggregate: &'a mut A, effects: &'a mut Vec<Effect>, outbox: &'a mut Vec<PendingEffect>) -> Self {
        Self {
            aggregate,
            effects,
            outbox,
        }
    }

    /// The entity's id.
    pub fn id(&self) -> Uuid {
        self.aggregate.id()
    }

    /// Starts `effect` once this command's events are committed, and never
    /// if they are not (the command refused, or lost a race with another
    /// writer and runs again, asking again). At most once: a process that
    /// stops between the commit and the start loses it.
    ///
    /// A future does nothing until it is started, so what it does happens
    /// only then: `entity.after_commit(async move { mailer.send(notice).await; })`.
    pub fn after_commit(&mut self, effect: impl Future<Output = ()> + Send + 'static) {
        self.effects.push(Box::pin(effect));
    }

    /// Records `effect` for the handler `H` in the outbox, in the
    /// transaction of this command's events: it exists only if they are
    /// committed, and a [`Dispatcher`](super::Dispatcher) delivers it at
    /// least once, with its id as the idempotency key. (A command that
    /// records no event has its effects recorded on their own, once its
    /// answer is found to come from the latest state.)
    pub fn reliable<H: EffectHandler>(&mut self, effect: H::Effect) {
        self.outbox.push(PendingEffect::new::<H>(&effect));
    }

    /// Sends `message` to the entity `target`, exactly once: it is recorded
    /// in the outbox with this command's events, and delivered by the
    /// [`Entities::dispatcher`](super::Entities::dispatcher) of entities
    /// that know it ([`Entities::with_message`](super::Entities::with_message)),
    /// as a command whose commit removes it from the outbox.
    pub fn send_message<M: Message>(&mut self, target: Uuid, message: M) {
        self.outbox.push(PendingEffect {
            handler: M::NAME,
            payload: crate::codec::encode(&Addressed { target, message }),
        });
    }
}

impl<A: Aggregate> Deref for Entity<'_, A> {
    type Target = A;

    fn deref(&self) -> &A {
        self.aggregate
    }
}

impl<A: Aggregate> DerefMut for Entity<'_, A> {
    fn deref_mut(&mut self) -> &mut A {
        self.aggregate
    }
}
