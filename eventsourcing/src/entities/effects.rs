//! Reliable effects: recorded in the outbox in the transaction of the
//! events of the command that asked for them, and delivered at least once
//! by a [`Dispatcher`], which completes each exactly once.
//!
//! A delivery that fails is tried again with a growing pause, its attempts
//! and error recorded; past [`DispatchOptions::max_attempts`] the effect is
//! parked, to be listed, retried or discarded. Each handler is given the
//! effect's id as an idempotency key: the same on every attempt, so that a
//! receiver recognises a delivery repeated after a crash. Dispatchers on
//! several nodes share an outbox: each takes an effect (a claim, for the
//! length of a delivery) before delivering it, so that one of them does.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::store::{Outgoing, OutgoingChange};
use crate::{AnyRecorder, Application, Error, HandlerError, Recorder, Result, Timestamp};

/// Delivers one kind of reliable effect: a notice, an email, an HTTP call.
/// Construct it with its dependencies (a client, a configuration) and give
/// it to a [`Dispatcher`].
pub trait EffectHandler: Send + Sync + 'static {
    /// The effect's data, kept in the outbox as JSON until delivered.
    type Effect: Serialize + DeserializeOwned + Send + 'static;

    /// The name kept with each effect, which finds its handler: keep it
    /// stable across versions of the code.
    const NAME: &'static str;

    /// Delivers `effect`. `key` is the effect's id, the same on every
    /// attempt: pass it on as an idempotency key.
    fn deliver(&self, key: Uuid, effect: Self::Effect) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

pub(super) type Delivery<'a> = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'a>>;

/// A handler, its effect type erased.
pub(super) trait DynHandler: Send + Sync {
    fn deliver_bytes(&self, key: Uuid, payload: Vec<u8>) -> Delivery<'_>;
}

impl<H: EffectHandler> DynHandler for H {
    fn deliver_bytes(&self, key: Uuid, payload: Vec<u8>) -> Delivery<'_> {
        Box::pin(async move {
            let effect: H::Effect = crate::codec::decode(&payload)
                .map_err(|e| format!("the effect for `{}` does not decode: {e}", H::NAME))?;
            self.deliver(key, effect).await
        })
    }
}

/// How a [`Dispatcher`] delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DispatchOptions {
    /// The most effects read and delivered at once (100).
    pub batch: usize,
    /// How often a running dispatcher looks for due effects (100 ms).
    pub poll_interval: Duration,
    /// Deliveries of one effect that may fail before it is parked (10).
    pub max_attempts: u32,
    /// The pause after the first failure, doubling after each (1 s), up to
    /// [`max_backoff`](Self::max_backoff).
    pub first_backoff: Duration,
    /// The longest pause between two attempts (5 min).
    pub max_backoff: Duration,
    /// How long one delivery may take before it counts as failed (30 s).
    /// It also bounds how long an effect taken by a dispatcher that
    /// stopped mid-delivery (a crash) waits before another delivers it:
    /// this, and 2 s.
    pub timeout: Duration,
}

impl Default for DispatchOptions {
    fn default() -> Self {
        Self {
            batch: 100,
            poll_interval: Duration::from_millis(100),
            max_attempts: 10,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            timeout: Duration::from_secs(30),
        }
    }
}

impl DispatchOptions {
    /// Sets [`max_attempts`](Self::max_attempts) (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets [`first_backoff`](Self::first_backoff) and
    /// [`max_backoff`](Self::max_backoff).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    /// Sets [`poll_interval`](Self::poll_interval).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The pause before the attempt after `attempts` failed ones.
    fn backoff_after(&self, attempts: u32) -> Duration {
        let doubled = self
            .first_backoff
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        doubled.min(self.max_backoff)
    }
}

/// How long past a delivery's timeout an effect taken for it stays taken:
/// room to record how the delivery went.
const CLAIM_MARGIN: Duration = Duration::from_secs(2);

/// The time `pause` from now.
fn later(pause: Duration) -> Timestamp {
    let micros = i64::try_from(pause.as_micros()).unwrap_or(i64::MAX);
    Timestamp::from_micros(Timestamp::now().as_micros().saturating_add(micros))
}

/// Delivers the reliable effects of one application's outbox with the
/// handlers it is given.
#[derive(Clone)]
pub struct Dispatcher {
    recorder: AnyRecorder,
    /// Each handler by the name its effects carry, with its type's name.
    handlers: HashMap<&'static str, (Arc<dyn DynHandler>, &'static str)>,
    /// Two handlers given one name (it, and their types), which effects
    /// could not tell apart.
    clash: Option<(&'static str, &'static str, &'static str)>,
    options: DispatchOptions,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("app", &crate::NotificationSource::app(&self.recorder))
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .field("options", &self.options)
            .finish()
    }
}

/// What one pass of a [`Dispatcher`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dispatched {
    /// Effects delivered and completed.
    pub delivered: usize,
    /// Deliveries that failed and will be tried again.
    pub failed: usize,
    /// Effects parked by this pass.
    pub parked: usize,
}

impl Dispatcher {
    /// A dispatcher of the outbox of `app`, with no handlers yet.
    pub fn new(app: &Application) -> Self {
        Self {
            recorder: app.recorder().clone(),
            handlers: HashMap::new(),
            clash: None,
            options: DispatchOptions::default(),
        }
    }

    /// Delivers the effects named [`H::NAME`](EffectHandler::NAME) with `handler`.
    ///
    /// Two handlers of one name (or a handler named like an entity message)
    /// cannot both be found from their effects: the dispatcher then refuses
    /// to deliver, with [`Error::HandlerClash`].
    pub fn handler<H: EffectHandler>(self, handler: H) -> Self {
        self.handler_named(H::NAME, std::any::type_name::<H>(), Arc::new(handler))
    }

    /// Delivers the effects named `name` with `handler` (an entity
    /// message's deliverer).
    pub(super) fn handler_named(
        mut self,
        name: &'static str,
        type_name: &'static str,
        handler: Arc<dyn DynHandler>,
    ) -> Self {
        if let Some((_, first)) = self.handlers.insert(name, (handler, type_name))
            && self.clash.is_none()
        {
            self.clash = Some((name, first, type_name));
        }
        self
    }

    /// Fails if two handlers share a name.
    fn check_names(&self) -> Result<()> {
        match self.clash {
            Some((name, first, second)) => Err(Error::HandlerClash { name, first, second }),
            None => Ok(()),
        }
    }

    /// With `options`.
    pub fn with_options(mut self, options: DispatchOptions) -> Self {
        self.options = options;
        self
    }

    /// Delivers the effects due now (up to [`DispatchOptions::batch`]), at
    /// once, and records how each went.
    ///
    /// Fails with [`Error::HandlerClash`] if two of its handlers share a
    /// name, delivering nothing.
    pub async fn dispatch_due(&self) -> Result<Dispatched> {
        self.check_names()?;
        let listed = self.recorder.due_outgoing(Timestamp::now(), self.options.batch).await?;
        let due = self.claim(listed).await?;
        let mut deliveries = JoinSet::new();
        // Each delivery's effect, by its task: a task that panics leaves its
        // failure to be recorded like any other.
        let mut in_flight = HashMap::new();
        for outgoing in due {
            let handler = self.handlers.get(outgoing.handler.as_str()).map(|(h, _)| h.clone());
            let timeout = self.options.timeout;
            let (key, payload) = (outgoing.id, outgoing.payload.clone());
            let task = deliveries.spawn(async move {
                let Some(handler) = handler else { return Err(None) };
                match tokio::time::timeout(timeout, handler.deliver_bytes(key, payload)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err(Some(crate::process::worker::error_chain(&*error))),
                    Err(_) => Err(Some(format!("no answer within {timeout:?}"))),
                }
            });
            in_flight.insert(task.id(), outgoing);
        }
        let mut dispatched = Dispatched::default();
        // Every delivery runs to its end and every outcome is recorded: a
        // failure to record one does not cut short the others.
        let mut first_error = None;
        while let Some(joined) = deliveries.join_next_with_id().await {
            let (task, result) = match joined {
                Ok(done) => done,
                Err(error) => (error.id(), Err(Some("the handler panicked".to_owned()))),
            };
            let Some(outgoing) = in_flight.remove(&task) else {
                continue;
            };
            match self.record(&outgoing, result).await {
                Ok(Outcome::Delivered) => dispatched.delivered += 1,
                Ok(Outcome::Failed) => dispatched.failed += 1,
                Ok(Outcome::Parked) => dispatched.parked += 1,
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(dispatched), Err)
    }

    /// Takes each effect of `listed` for one delivery by this dispatcher
    /// ([`OutgoingChange::Claim`]), all at once (a SQLite store commits
    /// claims that wait together in one transaction), and answers those it
    /// took: other dispatchers took the others first. An effect taken is
    /// due again only after the delivery's timeout, should this dispatcher
    /// stop before it records how the delivery went.
    async fn claim(&self, listed: Vec<Outgoing>) -> Result<Vec<Outgoing>> {
        let until = later(self.options.timeout.saturating_add(CLAIM_MARGIN));
        let mut claims = JoinSet::new();
        for outgoing in listed {
            let recorder = self.recorder.clone();
            claims.spawn(async move {
                let change = OutgoingChange::Claim {
                    id: outgoing.id,
                    seen: outgoing.due_at,
                    until,
                };
                Ok::<_, Error>(recorder.change_outgoing(change).await?.then_some(outgoing))
            });
        }
        let mut taken = Vec::new();
        while let Some(claimed) = claims.join_next().await {
            let claimed = claimed.map_err(|error| Error::Runner {
                reason: format!("taking an effect for delivery stopped: {error}"),
            })??;
            taken.extend(claimed);
        }
        taken.sort_by_key(|o| (o.due_at, o.id));
        Ok(taken)
    }

    /// Records how the delivery of `outgoing` went: `Err(None)` for an
    /// effect with no handler here.
    async fn record(&self, outgoing: &Outgoing, result: Result<(), Option<String>>) -> Result<Outcome> {
        let error = match result {
            Ok(()) => {
                self.recorder
                    .change_outgoing(OutgoingChange::Complete(outgoing.id))
                    .await?;
                return Ok(Outcome::Delivered);
            }
            Err(Some(error)) => error,
            Err(None) => format!(
                "no handler named `{}` in this dispatcher; give it one (an effect's with `Dispatcher::handler`, an entity message's with `Entities::with_message` and `Entities::dispatcher`), then retry the effect",
                outgoing.handler
            ),
        };
        let attempts = outgoing.attempts.saturating_add(1);
        let park = attempts >= self.options.max_attempts || !self.handlers.contains_key(outgoing.handler.as_str());
        let due_at = (!park).then(|| later(self.options.backoff_after(attempts)));
        tracing::warn!(
            effect = %outgoing.id,
            handler = %outgoing.handler,
            attempts,
            parked = park,
            %error,
            "an effect's delivery failed"
        );
        self.recorder
            .change_outgoing(OutgoingChange::Fail {
                id: outgoing.id,
                attempts,
                error,
                due_at,
            })
            .await?;
        Ok(if park { Outcome::Parked } else { Outcome::Failed })
    }

    /// Delivers due effects every [`DispatchOptions::poll_interval`] until
    /// stopped, on a task of its own. A pass that fails (the store is
    /// unreachable) is logged and tried again at the next interval.
    ///
    /// Fails with [`Error::HandlerClash`] if two of its handlers share a
    /// name.
    pub fn start(self) -> Result<Dispatching> {
        self.check_names()?;
        let interval = self.options.poll_interval;
        let task = tokio::spawn(async move {
            loop {
                match self.dispatch_due().await {
                    Ok(pass) if pass.delivered + pass.failed + pass.parked > 0 => {
                        tracing::debug!(?pass, "dispatched effects");
                        // More may be due at once: look again without waiting.
                        if pass.delivered + pass.failed + pass.parked >= self.options.batch {
                            continue;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "a dispatch pass failed; trying again"),
                }
                tokio::time::sleep(interval).await;
            }
        });
        Ok(Dispatching { task })
    }

    /// The parked effects, oldest first.
    pub async fn parked(&self) -> Result<Vec<Outgoing>> {
        self.recorder.parked_outgoing().await
    }

    /// Makes a parked effect due now, with its attempts as they are.
    /// Returns whether it was parked.
    pub async fn retry(&self, id: Uuid) -> Result<bool> {
        let due_at = Timestamp::now();
        self.recorder
            .change_outgoing(OutgoingChange::Unpark { id, due_at })
            .await
    }

    /// Drops an effect without delivering it. Returns whether it was there.
    pub async fn discard(&self, id: Uuid) -> Result<bool> {
        self.recorder.change_outgoing(OutgoingChange::Complete(id)).await
    }
}

enum Outcome {
    Delivered,
    Failed,
    Parked,
}

/// A dispatcher running on its own task; stopped when dropped or with
/// [`stop`](Self::stop).
#[derive(Debug)]
pub struct Dispatching {
    task: tokio::task::JoinHandle<()>,
}

impl Dispatching {
    /// Stops the dispatcher (between two deliveries' records or during a
    /// pause: an effect whose delivery was cut short is delivered again).
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Dispatching {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A reliable effect a command asked for, until its commit.
pub(super) struct PendingEffect {
    pub(super) handler: &'static str,
    pub(super) payload: std::result::Result<Vec<u8>, crate::codec::CodecError>,
}

impl PendingEffect {
    pub(super) fn new<H: EffectHandler>(effect: &H::Effect) -> Self {
        Self {
            handler: H::NAME,
            payload: crate::codec::encode(effect),
        }
    }
}
