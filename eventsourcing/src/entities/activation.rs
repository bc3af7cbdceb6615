//! Active entities: a task per entity, fed by a mailbox, holding the
//! entity's state between commands; and the register of the active ones.
//!
//! A sender finds the entity's mailbox in the register, or starts its task.
//! A task idle for its timeout takes itself out of the register (under the
//! register's lock, and only if its mailbox is empty), closes its mailbox,
//! runs whatever slipped in before the close, and ends; a sender whose
//! command finds the mailbox closed starts a new task.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;
use uuid::Uuid;

use super::EntityOptions;
use super::commits::Committer;
use super::effects::PendingEffect;
use super::entity::{Effect, Entity};
use crate::aggregate::{apply_to_entity, blank};
use crate::catch_unwind::CatchUnwind;
use crate::store::{OutboxWrite, Outgoing};
use crate::{
    Aggregate, Application, Error, HandlerError, NotificationSource, Recorder, Result, Versions, partition_of,
};

/// A command for an entity of type `A`, with its reply, erased.
pub(super) type Job<A> =
    Box<dyn for<'a> FnOnce(&'a mut Active<A>) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> + Send>;

/// A command, its reply erased, as the task runs it.
pub(super) type Command<'c, A> =
    dyn FnMut(&mut Entity<'_, A>) -> std::result::Result<Box<dyn Any + Send>, HandlerError> + Send + 'c;

/// What a command did, its reply erased.
pub(super) struct SentAny {
    pub(super) reply: Box<dyn Any + Send>,
    pub(super) version: u64,
    pub(super) notification_ids: Vec<u64>,
    pub(super) retries: u32,
}

/// Each active entity's mailbox, by type and id: each value is the
/// `mpsc::Sender<Job<A>>` of its entity's type.
type Mailboxes = HashMap<(TypeId, Uuid), Box<dyn Any + Send + Sync>>;

/// The mailboxes of the active entities.
#[derive(Clone, Default)]
pub(super) struct Activations {
    mailboxes: Arc<Mutex<Mailboxes>>,
}

impl std::fmt::Debug for Activations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activations").field("active", &self.len()).finish()
    }
}

impl Activations {
    fn lock(&self) -> MutexGuard<'_, Mailboxes> {
        self.mailboxes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Puts `job` in the mailbox of the entity `id`, starting its task if
    /// it is not active.
    pub(super) async fn deliver<A>(
        &self,
        app: &Application,
        committer: &Committer,
        options: &EntityOptions,
        id: Uuid,
        job: Job<A>,
    ) -> Result<()>
    where
        A: Aggregate + Default,
        A::Event: Clone,
    {
        let mut job = job;
        loop {
            let mailbox = self.mailbox::<A>(app, committer, options, id);
            match mailbox.send(job).await {
                Ok(()) => return Ok(()),
                // The task went idle (or stopped) as the command arrived:
                // start another.
                Err(mpsc::error::SendError(back)) => {
                    self.forget::<A>(id, &mailbox);
                    job = back;
                }
            }
        }
    }

    fn mailbox<A>(
        &self,
        app: &Application,
        committer: &Committer,
        options: &EntityOptions,
        id: Uuid,
    ) -> mpsc::Sender<Job<A>>
    where
        A: Aggregate + Default,
        A::Event: Clone,
    {
        let key = (TypeId::of::<A>(), id);
        let mut mailboxes = self.lock();
        if let Some(mailbox) = mailboxes
            .get(&key)
            .and_then(|mailbox| mailbox.downcast_ref::<mpsc::Sender<Job<A>>>())
            .filter(|mailbox| !mailbox.is_closed())
        {
            return mailbox.clone();
        }
        let (mailbox, jobs) = mpsc::channel(options.mailbox);
        mailboxes.insert(key, Box::new(mailbox.clone()));
        let active = Active {
            app: app.clone(),
            committer: committer.clone(),
            id,
            options: options.clone(),
            state: None,
        };
        tokio::spawn(run(active, jobs, self.clone()));
        mailbox
    }

    /// Takes the entity `id` out of the register if `mailbox` is still its
    /// mailbox there.
    fn forget<A: Aggregate>(&self, id: Uuid, mailbox: &mpsc::Sender<Job<A>>) {
        let key = (TypeId::of::<A>(), id);
        let mut mailboxes = self.lock();
        let same = mailboxes
            .get(&key)
            .and_then(|registered| registered.downcast_ref::<mpsc::Sender<Job<A>>>())
            .is_some_and(|registered| registered.same_channel(mailbox));
        if same {
            mailboxes.remove(&key);
        }
    }
}

/// An entity's task: runs the commands of its mailbox one after another,
/// until it has been idle for its timeout.
async fn run<A>(mut active: Active<A>, mut jobs: mpsc::Receiver<Job<A>>, activations: Activations)
where
    A: Aggregate + Default,
    A::Event: Clone,
{
    let idle = active.options.idle_timeout;
    loop {
        match tokio::time::timeout(idle, jobs.recv()).await {
            Ok(Some(job)) => run_job(&mut active, job).await,
            Ok(None) => return,
            Err(_) => {
                let key = (TypeId::of::<A>(), active.id);
                {
                    let mut mailboxes = activations.lock();
                    if !jobs.is_empty() {
                        continue;
                    }
                    mailboxes.remove(&key);
                }
                jobs.close();
                // Commands sent by whoever found the mailbox just before it
                // left the register.
                while let Some(job) = jobs.recv().await {
                    run_job(&mut active, job).await;
                }
                tracing::debug!(entity = A::NAME, id = %active.id, "deactivated an idle entity");
                return;
            }
        }
    }
}

/// Runs one command. If it panics, its sender is told the entity stopped
/// (its reply is dropped) and the task goes on with the state the store
/// has: a panic that took the task down would also fail the commands that
/// were already in its mailbox, which never ran.
async fn run_job<A>(active: &mut Active<A>, job: Job<A>)
where
    A: Aggregate + Default,
    A::Event: Clone,
{
    if CatchUnwind(job(active)).await.is_err() {
        tracing::warn!(entity = A::NAME, id = %active.id, "a command panicked; it recorded nothing");
        active.state = None;
    }
}

/// An active entity: its state as last read or written here.
pub(super) struct Active<A> {
    app: Application,
    committer: Committer,
    id: Uuid,
    options: EntityOptions,
    /// `None` until read, and after a failed write (the store has the truth).
    state: Option<A>,
}

impl<A> Active<A>
where
    A: Aggregate + Default,
    A::Event: Clone,
{
    /// Runs `command` on the latest state and commits its events, running
    /// it again after a conflict, within the bound.
    ///
    /// The command runs on the state held here without asking the store
    /// first: if it records events, the commit's version check says whether
    /// another writer got there first. Only an answer that commits nothing
    /// (a read, a refusal) on a held state is checked against the store
    /// before it is given, one query that a write does not need.
    ///
    /// With `consume`, the command is the delivery of that message: the
    /// commit removes it from the outbox, or fails with
    /// [`Error::EffectGone`] if it was delivered already.
    pub(super) async fn run(&mut self, command: &mut Command<'_, A>, consume: Option<Uuid>) -> Result<SentAny> {
        let mut retries = 0;
        loop {
            let (mut state, fresh) = match self.state.take() {
                Some(state) => (state, false),
                None => (catch_up(&self.app, blank::<A>(self.id)).await?, true),
            };
            let before = state.version();
            let (mut effects, mut outbox) = (Vec::new(), Vec::new());
            let outcome = command(&mut Entity::new(&mut state, &mut effects, &mut outbox));
            let dirty = !state.pending_events().is_empty();
            let reply = match outcome {
                Ok(reply) if dirty => reply,
                // Nothing to commit: the answer stands if the state it came
                // from is still the latest.
                outcome => {
                    if !fresh && self.changed_since(before).await? {
                        self.lost_race(&mut retries).await?;
                        continue;
                    }
                    // Events triggered before a refusal are not recorded:
                    // the state they made is dropped with them.
                    if !dirty {
                        self.state = Some(state);
                    }
                    return match outcome {
                        Ok(reply) => {
                            // Reliable effects of a command that recorded no
                            // event are recorded on their own.
                            if !outbox.is_empty() || consume.is_some() {
                                let outbox = OutboxWrite {
                                    add: self.outgoing(outbox, before)?,
                                    consume,
                                };
                                let partition = partition_of(self.id, self.app.recorder().partitions());
                                self.committer.commit(partition, Vec::new(), outbox).await?;
                            }
                            start(effects);
                            Ok(SentAny {
                                reply,
                                version: before,
                                notification_ids: Vec::new(),
                                retries,
                            })
                        }
                        Err(source) => Err(Error::Refused {
                            entity: A::NAME,
                            id: self.id,
                            source,
                        }),
                    };
                }
            };
            if let Some(other) = state.pending_events().iter().find(|e| e.originator_id != self.id) {
                return Err(Error::InvalidWrite {
                    app: self.app.name().to_string(),
                    reason: format!(
                        "a command sent to {} {} recorded an event of aggregate {}; a command records events of its own entity only",
                        A::NAME,
                        self.id,
                        other.originator_id
                    ),
                });
            }
            let outbox = OutboxWrite {
                add: self.outgoing(outbox, state.version())?,
                consume,
            };
            let partition = partition_of(self.id, self.app.recorder().partitions());
            match self.committer.commit(partition, state.encode_pending()?, outbox).await {
                Ok(notification_ids) => {
                    state.clear_pending();
                    let version = state.version();
                    self.state = Some(state);
                    start(effects);
                    return Ok(SentAny {
                        reply,
                        version,
                        notification_ids,
                        retries,
                    });
                }
                // Another writer got there first: read it again, and run
                // the command on what it recorded. The effects asked for
                // on the stale state are dropped.
                Err(Error::Concurrency { .. }) => self.lost_race(&mut retries).await?,
                Err(error) => return Err(error),
            }
        }
    }

    /// The reliable effects a command asked for, as outbox rows of this
    /// entity at `version`; or why one cannot be recorded.
    fn outgoing(&self, pending: Vec<PendingEffect>, version: u64) -> Result<Vec<Outgoing>> {
        pending
            .into_iter()
            .map(|effect| match effect.payload {
                Ok(payload) => Ok(Outgoing::new(effect.handler, payload, self.id, version)),
                Err(error) => Err(Error::InvalidWrite {
                    app: self.app.name().to_string(),
                    reason: format!(
                        "a command sent to {} {} asked for an effect for `{}` that cannot be encoded: {error}",
                        A::NAME,
                        self.id,
                        effect.handler
                    ),
                }),
            })
            .collect()
    }

    /// Whether the store has events of this entity after `version`.
    async fn changed_since(&self, version: u64) -> Result<bool> {
        let since = Versions {
            from: version + 1,
            to: Versions::ALL.to,
        };
        Ok(!self.app.recorder().select_events(self.id, since).await?.is_empty())
    }

    /// After another writer changed the entity first: forgets the state
    /// held here and waits a moment before the next attempt, or fails once
    /// the attempts are spent.
    async fn lost_race(&mut self, retries: &mut u32) -> Result<()> {
        self.state = None;
        if *retries >= self.options.max_retries {
            return Err(Error::EntityContended {
                entity: A::NAME,
                id: self.id,
                attempts: *retries + 1,
            });
        }
        *retries += 1;
        back_off(*retries).await;
        Ok(())
    }
}

/// `state` with the events `app` recorded of it since its version applied.
pub(super) async fn catch_up<A>(app: &Application, state: A) -> Result<A>
where
    A: Aggregate,
    A::Event: Clone,
{
    let since = Versions {
        from: state.version() + 1,
        to: Versions::ALL.to,
    };
    let events = app.recorder().select_events(state.id(), since).await?;
    events
        .iter()
        .try_fold(state, |state, stored| apply_to_entity(state, stored.decode()?))
}

/// Waits a random moment, longer after each conflict in a row (up to
/// 6.4 ms), so that nodes racing for one entity stop colliding in step.
async fn back_off(retries: u32) {
    let ceiling = 100u64 << retries.min(6);
    let micros = Uuid::new_v4().as_u128() as u64 % ceiling;
    tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
}

/// Starts the effects of a committed command.
fn start(effects: Vec<Effect>) {
    for effect in effects {
        tokio::spawn(effect);
    }
}
