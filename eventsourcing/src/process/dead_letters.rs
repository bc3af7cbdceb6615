//! Retrying a parked notification: its handler runs again, and its events
//! and the removal of its dead letter commit in one transaction, so that
//! it is processed exactly once however many retries race.

use super::repo::{Cache, RepoCore};
use super::upstream_log::UpstreamLog;
use super::warm::WarmHistories;
use super::worker::{DynProcess, error_chain, run_handler};
use crate::{Application, DeadLetter, Error, NotificationSource, Recorder, Result, Timestamp};

/// Runs `app`'s policy on the notification `letter` names, read from
/// `upstream` (named `upstream_name` in the system), and commits its events
/// with the removal of the dead letter. Returns the events' notification
/// ids.
///
/// A handler that fails again leaves the dead letter parked, with its
/// error and one more attempt recorded: [`Error::RetryFailed`]. A dead
/// letter already removed (by another retry, or a discard) is
/// [`Error::DeadLetterNotFound`], and nothing is recorded.
pub(crate) async fn retry(
    app: &Application,
    policy: &dyn DynProcess,
    upstream_name: &'static str,
    upstream: &UpstreamLog,
    letter: &DeadLetter,
    warm: Option<&WarmHistories>,
) -> Result<Vec<u64>> {
    // The removal at commit decides; asking first saves running the handler
    // for a dead letter that is gone.
    let parked = app.recorder().dead_letters().await?;
    if !parked.iter().any(|parked| same_notification(parked, letter)) {
        return Err(letter.not_found());
    }
    let notification = upstream
        .select_notifications(letter.partition, letter.notification_id, 1)
        .await?
        .into_iter()
        .find(|n| n.id == letter.notification_id);

    // Nothing cached: what the handler reads comes from the store. Marks
    // of stale aggregates in the application's warm histories belong to its
    // process, so this repository leaves them alone.
    let mut repo = RepoCore::with_cache(
        app.name().clone(),
        Some(app.recorder().clone()),
        Cache::new(0),
        None,
        None,
    );
    let mut events = Vec::new();
    let outcome = match &notification {
        // A topic the policy no longer handles has nothing left to do.
        Some(notification) => run_handler(policy, upstream_name, notification, &mut repo)
            .await
            .unwrap_or(Ok(()))
            .and_then(|()| Ok(repo.collect_new_events(&mut events)?)),
        None => Err(format!(
            "the log of `{}` partition {} has no notification {}",
            letter.upstream, letter.partition, letter.notification_id
        )
        .into()),
    };

    match outcome {
        Ok(()) => {
            let for_process = warm.map(|warm| (warm, events.clone()));
            let ids = app.recorder().resolve_dead_letter(letter, events).await?;
            // The process may have cached aggregates these events changed.
            if let Some((warm, events)) = for_process {
                warm.put_new(events);
            }
            tracing::info!(
                app = %letter.app,
                upstream = %letter.upstream,
                partition = letter.partition,
                notification_id = letter.notification_id,
                topic = %letter.topic,
                events = ids.len(),
                "processed a parked notification"
            );
            Ok(ids)
        }
        Err(source) => {
            let failed = DeadLetter {
                error: error_chain(source.as_ref()),
                last_failed_at: Timestamp::now(),
                ..letter.clone()
            };
            let attempts = app.recorder().record_failed_retry(&failed).await?;
            tracing::warn!(
                app = %letter.app,
                upstream = %letter.upstream,
                partition = letter.partition,
                notification_id = letter.notification_id,
                topic = %letter.topic,
                attempts,
                error = %failed.error,
                "a parked notification failed again; it stays parked"
            );
            Err(Error::RetryFailed {
                app: letter.app.to_string(),
                upstream: letter.upstream.to_string(),
                partition: letter.partition,
                notification_id: letter.notification_id,
                topic: letter.topic.clone(),
                attempts,
                source,
            })
        }
    }
}

/// Whether two dead letters are about one notification.
fn same_notification(a: &DeadLetter, b: &DeadLetter) -> bool {
    (&a.upstream, a.partition, a.notification_id) == (&b.upstream, b.partition, b.notification_id)
}
