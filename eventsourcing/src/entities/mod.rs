//! Entities: aggregates that "always exist", sent commands by reference.
//!
//! An entity is an aggregate addressed by its type and id. A command sent to
//! it runs on its latest state and records its events under optimistic
//! concurrency: on a conflict the entity is read again and the command runs
//! again, up to a bound. An id with no events is the aggregate's default
//! state, so no separate "create" is needed.
//!
//! Each active entity has a task and a mailbox (`activation.rs`): sends to
//! one entity run one after another, in the order they arrive, with its
//! state kept in memory between them; different entities run in parallel.
//! An entity idle for [`EntityOptions::idle_timeout`] is deactivated. Other
//! processes may hold the same entity at the same time: correctness comes
//! from the version check at commit, never from there being one holder.
//!
//! A command may ask for effects (`entity.rs`): an after-commit effect is a
//! future that is started only once the command's events are committed,
//! and never for an attempt that lost a concurrency race or was refused.

mod activation;
mod commits;
mod effects;
mod entity;
mod messages;

use std::any::Any;
use std::time::Duration;

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{Aggregate, Application, Error, HandlerError, Result, Store};

pub use effects::{DispatchOptions, Dispatched, Dispatcher, Dispatching, EffectHandler};
pub use entity::Entity;
pub use messages::Message;

use activation::{Activations, Job};

/// How entities run: the bound on attempts after conflicts, and when an
/// idle entity is deactivated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntityOptions {
    /// How many times a command runs again after another writer changed
    /// its entity first, before the send fails with
    /// [`Error::EntityContended`] (10 by default).
    pub max_retries: u32,
    /// How long an entity stays active (its task, its state in memory)
    /// with no command to run (60 s by default).
    pub idle_timeout: Duration,
    /// How many commands may wait in one entity's mailbox before senders
    /// wait for room (1,024 by default).
    pub mailbox: usize,
}

impl Default for EntityOptions {
    fn default() -> Self {
        Self {
            max_retries: 10,
            idle_timeout: Duration::from_secs(60),
            mailbox: 1024,
        }
    }
}

impl EntityOptions {
    /// Sets [`max_retries`](Self::max_retries).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Sets [`idle_timeout`](Self::idle_timeout).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`mailbox`](Self::mailbox) (at least 1).
    pub fn mailbox(mut self, capacity: usize) -> Self {
        self.mailbox = capacity.max(1);
        self
    }
}

/// What a command sent to an entity did, once its events are committed.
#[derive(Debug)]
#[non_exhaustive]
pub struct Sent<R> {
    /// The command's own reply.
    pub reply: R,
    /// The entity's version after the command (unchanged if it recorded
    /// nothing).
    pub version: u64,
    /// The notification ids of the events it recorded, in order.
    pub notification_ids: Vec<u64>,
    /// How many times it ran again after a conflict.
    pub retries: u32,
}

/// The entities of one application: send a command to any of them by id.
///
/// ```standalone_crate
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use eventsourcing::entities::Entities;
/// use eventsourcing::prelude::*;
///
/// #[aggregate]
/// #[derive(Debug, Default)]
/// pub struct Counter {
///     pub count: u64,
/// }
///
/// #[aggregate(entity)] // it exists before its first event: no creation event
/// impl Counter {
///     #[event(Increased)]
///     pub fn increase(&mut self, by: u64) {
///         self.count += by;
///     }
/// }
///
/// let store = Store::open("memory:").await?;
/// let entities = Entities::open(&store, "counters").await?;
/// let id = Uuid::new_v4(); // never created: it exists, at its default state
/// let sent = entities
///     .send(id, |counter: &mut Entity<Counter>| {
///         counter.increase(1);
///         Ok::<_, &str>(counter.count)
///     })
///     .await?;
/// assert_eq!((sent.reply, sent.version), (1, 1));
/// # Ok::<(), eventsourcing::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Entities {
    app: Application,
    committer: commits::Committer,
    /// The messages these entities exchange, each with its type's name and
    /// what delivers it.
    messages: Vec<(&'static str, &'static str, messages::MakeHandler)>,
    options: EntityOptions,
    activations: Activations,
}

impl Entities {
    /// The entities whose events the application `name` of `store` keeps.
    pub async fn open(store: &Store, name: &str) -> Result<Self> {
        Ok(Self::new(Application::open(store, name).await?))
    }

    /// The entities whose events `app` keeps.
    pub fn new(app: Application) -> Self {
        Self {
            committer: commits::Committer::new(app.recorder().clone()),
            messages: Vec::new(),
            app,
            options: EntityOptions::default(),
            activations: Activations::default(),
        }
    }

    /// With `options` for the entities activated from now on.
    pub fn with_options(mut self, options: EntityOptions) -> Self {
        self.options = options;
        self
    }

    /// Lets these entities exchange messages of type `M`
    /// ([`Entity::send_message`]): the [`dispatcher`](Self::dispatcher)
    /// delivers them.
    ///
    /// Two message types of one name cannot be told apart in the outbox:
    /// the dispatcher then refuses to deliver, with [`Error::HandlerClash`].
    pub fn with_message<M: Message>(mut self) -> Self {
        let type_name = std::any::type_name::<M>();
        self.messages
            .retain(|(name, other, _)| *name != M::NAME || *other != type_name);
        self.messages.push((M::NAME, type_name, messages::make_handler::<M>));
        self
    }

    /// A dispatcher of these entities' outbox that delivers their messages
    /// ([`with_message`](Self::with_message)); give it the handlers of
    /// their reliable effects with [`Dispatcher::handler`].
    pub fn dispatcher(&self) -> Dispatcher {
        self.messages
            .iter()
            .fold(Dispatcher::new(&self.app), |dispatcher, (name, type_name, make)| {
                dispatcher.handler_named(name, type_name, make(self.clone()))
            })
    }

    /// The application that keeps the entities' events.
    pub fn app(&self) -> &Application {
        &self.app
    }

    /// The entity `id` as the store has it now: its default state if it
    /// has no events.
    pub async fn load<A>(&self, id: Uuid) -> Result<A>
    where
        A: Aggregate + Default,
        A::Event: Clone,
    {
        activation::catch_up(&self.app, crate::aggregate::blank::<A>(id)).await
    }

    /// How many entities are active in this process now.
    pub fn active(&self) -> usize {
        self.activations.len()
    }

    /// Runs `command` on the latest state of the entity `id` of type `A`
    /// and commits the events it records; returns its reply.
    ///
    /// The command runs on the entity's task, after the commands sent
    /// before it. It may run more than once: again, on the state read
    /// afresh, each time another writer (in this process or another)
    /// recorded an event of the entity first, up to
    /// [`EntityOptions::max_retries`] times, then the send fails with
    /// [`Error::EntityContended`]. So a command changes the entity only
    /// through its events, and asks for effects through the [`Entity`]
    /// rather than causing them.
    ///
    /// A command that returns `Err` records nothing, and its effects are
    /// dropped: the send fails with [`Error::Refused`], whose source is the
    /// command's error.
    pub async fn send<A, R, E, C>(&self, id: Uuid, command: C) -> Result<Sent<R>>
    where
        A: Aggregate + Default,
        A::Event: Clone,
        R: Send + 'static,
        E: Into<HandlerError>,
        C: FnMut(&mut Entity<'_, A>) -> std::result::Result<R, E> + Send + 'static,
    {
        self.send_consuming(id, command, None).await
    }

    /// Sends like [`send`](Self::send); with `consume`, the command is the
    /// delivery of that message, removed from the outbox by its commit.
    pub(crate) async fn send_consuming<A, R, E, C>(
        &self,
        id: Uuid,
        command: C,
        consume: Option<Uuid>,
    ) -> Result<Sent<R>>
    where
        A: Aggregate + Default,
        A::Event: Clone,
        R: Send + 'static,
        E: Into<HandlerError>,
        C: FnMut(&mut Entity<'_, A>) -> std::result::Result<R, E> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let mut command = command;
        let job: Job<A> = Box::new(move |active| {
            Box::pin(async move {
                let sent = active
                    .run(
                        &mut |entity| {
                            command(entity)
                                .map(|r| Box::new(r) as Box<dyn Any + Send>)
                                .map_err(Into::into)
                        },
                        consume,
                    )
                    .await;
                let _ = reply.send(sent);
            })
        });
        self.activations
            .deliver::<A>(&self.app, &self.committer, &self.options, id, job)
            .await?;
        let sent = answer
            .await
            .map_err(|_| Error::EntityStopped { entity: A::NAME, id })??;
        let reply = sent
            .reply
            .downcast::<R>()
            .map_err(|_| Error::EntityStopped { entity: A::NAME, id })?;
        Ok(Sent {
            reply: *reply,
            version: sent.version,
            notification_ids: sent.notification_ids,
            retries: sent.retries,
        })
    }
}
