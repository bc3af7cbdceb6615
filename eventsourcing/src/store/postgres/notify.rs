//! Commits announced to other processes with `NOTIFY`, and heard from them
//! with `LISTEN`, on one channel per database.
//!
//! A `NOTIFY` inside the writing transaction would serialise every commit
//! in the database behind PostgreSQL's notification lock, so commits are
//! announced after they commit, by a task of the store's own that coalesces
//! what piled up (the newest head of each partition) into one statement.
//! Each payload names the store that sent it, so that a store does not hear
//! its own commits twice.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::store::commits::{CommitFeed, Committed, Prompt};
use crate::{AppName, Namespace, Result};

/// The channel commits are announced on.
const CHANNEL: &str = "eventsourcing_commits";

/// Starts the task that announces the commits sent to the returned sender;
/// it ends when every sender is gone.
pub(super) fn start_announcer(pool: PgPool, origin: Uuid) -> mpsc::UnboundedSender<Committed> {
    let (sender, mut commits) = mpsc::unbounded_channel::<Committed>();
    tokio::spawn(async move {
        while let Some(first) = commits.recv().await {
            let mut newest: HashMap<(AppName, u32), u64> = HashMap::new();
            let mut note = |c: Committed| {
                let head = newest.entry((c.app, c.partition)).or_default();
                *head = (*head).max(c.head);
            };
            note(first);
            while let Ok(more) = commits.try_recv() {
                note(more);
            }
            let payloads: Vec<String> = newest
                .into_iter()
                .map(|((app, partition), head)| announcement(origin, &app, partition, head))
                .collect();
            let announced = sqlx::query("SELECT pg_notify($1, payload) FROM UNNEST($2::text[]) AS payload")
                .bind(CHANNEL)
                .bind(&payloads)
                .execute(&pool)
                .await;
            if let Err(error) = announced {
                // Followers elsewhere poll; they lose only promptness.
                tracing::debug!(%error, commits = payloads.len(), "could not announce commits");
            }
        }
    });
    sender
}

/// A listening task, stopped when the store that started it and every
/// subscription are gone.
#[derive(Debug)]
pub(super) struct Listener(tokio::task::JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Listens for the commits other stores announce and passes them on to
/// `feed`'s subscribers.
pub(super) async fn start_listener(pool: &PgPool, origin: Uuid, feed: CommitFeed) -> sqlx::Result<Listener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    let task = tokio::spawn(async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => match parse(notification.payload()) {
                    Some((sender, _)) if sender == origin => {}
                    Some((_, committed)) => feed.heard(Prompt::Committed(committed)),
                    None => tracing::debug!(payload = notification.payload(), "ignored a malformed announcement"),
                },
                // The connection dropped; the next call reconnects and
                // listens again, but what was announced meanwhile is lost.
                Ok(None) => feed.heard(Prompt::Missed),
                Err(error) => {
                    tracing::debug!(%error, "listening for commits failed; trying again");
                    feed.heard(Prompt::Missed);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(Listener(task))
}

/// `origin app partition head`, and the app's namespace if it has one.
fn announcement(origin: Uuid, app: &AppName, partition: u32, head: u64) -> String {
    match app.namespace() {
        Some(namespace) => format!("{origin} {} {partition} {head} {namespace}", app.as_str()),
        None => format!("{origin} {} {partition} {head}", app.as_str()),
    }
}

/// Reads an [`announcement`].
fn parse(payload: &str) -> Option<(Uuid, Committed)> {
    let mut words = payload.split(' ');
    let origin = words.next()?.parse().ok()?;
    let app = AppName::new(words.next()?).ok()?;
    let partition = words.next()?.parse().ok()?;
    let head = words.next()?.parse().ok()?;
    let app = match words.next() {
        Some(namespace) => app.in_namespace(Some(&Namespace::new(namespace).ok()?)).ok()?,
        None => app,
    };
    Some((origin, Committed { app, partition, head }))
}

/// Subscribes to the feed, starting the listener first if it is not
/// running.
pub(super) async fn subscribe(
    pool: &PgPool,
    origin: Uuid,
    feed: &CommitFeed,
    listener: &tokio::sync::OnceCell<std::sync::Arc<Listener>>,
    namespace: Option<&Namespace>,
) -> Result<crate::store::Commits> {
    // Subscribed before the listener starts, so that nothing it hears is
    // missed.
    let commits = feed.subscribe(namespace);
    let listener = listener
        .get_or_try_init(|| async {
            start_listener(pool, origin, feed.clone())
                .await
                .map(std::sync::Arc::new)
        })
        .await
        .map_err(|source| crate::Error::Store {
            store: super::connect::server(&pool.connect_options()),
            action: "listening for commits",
            source: source.into(),
        })?;
    Ok(commits.keeping(listener.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip() {
        let origin = Uuid::new_v4();
        let (from, committed) = parse(&format!("{origin} orders 3 42")).unwrap();
        assert_eq!(from, origin);
        assert_eq!(
            committed,
            Committed {
                app: AppName::new("orders").unwrap(),
                partition: 3,
                head: 42
            }
        );
        assert!(parse("not a payload").is_none());

        let shop = Namespace::new("shop").unwrap();
        let app = AppName::new("Orders").unwrap().in_namespace(Some(&shop)).unwrap();
        let (_, committed) = parse(&announcement(origin, &app, 1, 7)).unwrap();
        assert_eq!(committed.app, app);
        assert_eq!(committed.app.namespace(), Some(&shop));
    }
}
