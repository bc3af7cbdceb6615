//! The runner's dead-letter API: list the notifications an application
//! parked, retry one, or discard one.

use super::{Runner, index_of};
use crate::process::dead_letters;
use crate::{Application, DeadLetter, Error, Process, Recorder, Result};

impl Runner {
    /// The notifications the application `P` parked (see
    /// [`OnFailure::Park`](crate::OnFailure::Park)), by upstream, partition
    /// and notification id.
    pub async fn dead_letters<P: Process>(&self) -> Result<Vec<DeadLetter>> {
        self.app::<P>()?.recorder().dead_letters().await
    }

    /// Processes a parked notification again, once its cause is fixed: its
    /// handler runs, and its events and the removal of the dead letter are
    /// recorded in one transaction. Returns the events' notification ids.
    ///
    /// Exactly once: of two retries of one dead letter (here or in another
    /// process), one records its events and the other fails with
    /// [`Error::DeadLetterNotFound`], recording nothing. A handler that
    /// fails again records nothing and leaves the notification parked, its
    /// attempts and error updated: [`Error::RetryFailed`].
    ///
    /// The multi-task runner processes what the retry recorded in the
    /// background; the single-threaded one at the next
    /// [`save`](Runner::save) or [`wait_until_quiet`](Runner::wait_until_quiet).
    pub async fn retry_dead_letter(&self, letter: &DeadLetter) -> Result<Vec<u64>> {
        let (index, app) = self.app_of(letter)?;
        let spec = &self.system.app_specs()[index];
        let Some(upstream_name) = self
            .system
            .upstreams(spec.name)
            .find(|up| *up == letter.upstream.as_str())
        else {
            return Err(Error::Runner {
                reason: format!(
                    "`{}` does not follow `{}` in this system, so its parked notification {} (`{}`) cannot be retried here",
                    letter.app, letter.upstream, letter.notification_id, letter.topic
                ),
            });
        };
        let upstream = index_of(&self.system, upstream_name)
            .map(|u| &self.logs[u])
            .ok_or_else(|| letter.not_found())?;
        let policy = self.policies[index].as_ref().ok_or_else(|| letter.not_found())?.make();
        let warm = self.warm[index].get(letter.partition as usize).map(|warm| &**warm);
        dead_letters::retry(app, &*policy, upstream_name, upstream, letter, warm).await
    }

    /// Drops a parked notification: it is removed from the dead letters and
    /// nothing else is recorded. Fails with [`Error::DeadLetterNotFound`] if
    /// it was retried or discarded already.
    pub async fn discard_dead_letter(&self, letter: &DeadLetter) -> Result<()> {
        let (_, app) = self.app_of(letter)?;
        app.recorder().resolve_dead_letter(letter, Vec::new()).await?;
        tracing::info!(
            app = %letter.app,
            upstream = %letter.upstream,
            partition = letter.partition,
            notification_id = letter.notification_id,
            topic = %letter.topic,
            "discarded a parked notification"
        );
        Ok(())
    }

    /// The application that parked `letter`, and its index.
    fn app_of(&self, letter: &DeadLetter) -> Result<(usize, &Application)> {
        let i = index_of(&self.system, letter.app.as_str()).ok_or_else(|| Error::Runner {
                reason: format!(
                    "`{}` is not an application of this system, so its parked notification {} (`{}`) of `{}` is not handled here",
                    letter.app, letter.notification_id, letter.topic, letter.upstream
                ),
            })?;
        Ok((i, self.here(i)?))
    }
}
