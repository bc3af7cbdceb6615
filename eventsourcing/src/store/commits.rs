//! The commit feed: what a store says when events commit, so that followers
//! read a log when it has grown instead of polling it.
//!
//! Every recorder of a store tells the store's feed of each commit of
//! events. Subscribers in the same process hear of it at once. On
//! PostgreSQL the feed also crosses processes and machines: commits are
//! announced with `NOTIFY` (after the commit, coalesced, off the commit's
//! path) and each subscribing store `LISTEN`s. A prompt can be lost (a
//! process killed between its commit and its announcement, a listener's
//! connection dropped), so followers keep polling as a fallback; the feed
//! says [`Prompt::Missed`] when it knows it may have lost some.

use tokio::sync::broadcast;

use crate::{AppName, Namespace};

/// How many prompts a subscriber may fall behind by before it is told it
/// missed some.
const CAPACITY: usize = 4096;

/// Events committed to one partition of an application's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The application whose log grew (with its namespace, if it has one).
    pub app: AppName,
    /// The partition.
    pub partition: u32,
    /// The partition's highest notification id after the commit.
    pub head: u64,
}

/// What a subscriber to a store's commits hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// A commit.
    Committed(Committed),
    /// Prompts may have been lost (the subscriber fell behind, or a
    /// listener's connection dropped): read every log you follow.
    Missed,
}

/// A subscription to a store's commits, from [`Store::commits`](crate::Store::commits).
#[derive(Debug)]
pub struct Commits {
    receiver: broadcast::Receiver<Prompt>,
    /// The namespace whose commits this subscription hears: a store's
    /// feed carries those of every namespace.
    namespace: Option<Namespace>,
    /// What must live while someone listens (the PostgreSQL listener),
    /// whether or not the store that started it still does.
    _keep_alive: Option<std::sync::Arc<dyn std::fmt::Debug + Send + Sync>>,
}

impl Commits {
    /// This subscription, keeping `what` alive as long as it lasts.
    #[cfg(feature = "postgres")]
    pub(crate) fn keeping(self, what: std::sync::Arc<dyn std::fmt::Debug + Send + Sync>) -> Self {
        Self {
            _keep_alive: Some(what),
            ..self
        }
    }

    /// The next prompt; `None` once the store is gone.
    pub async fn next(&mut self) -> Option<Prompt> {
        loop {
            match self.receiver.recv().await {
                // By table prefix: `EU` and `eu` are one namespace.
                Ok(Prompt::Committed(c))
                    if c.app.namespace().map(Namespace::table_prefix)
                        != self.namespace.as_ref().map(Namespace::table_prefix) =>
                {
                    continue;
                }
                Ok(prompt) => return Some(prompt),
                Err(broadcast::error::RecvError::Lagged(_)) => return Some(Prompt::Missed),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// The sending side, shared by a store and its recorders.
#[derive(Clone, Debug)]
pub(crate) struct CommitFeed {
    local: broadcast::Sender<Prompt>,
    /// Where commits go to be announced to other processes, if anywhere.
    announce: Option<tokio::sync::mpsc::UnboundedSender<Committed>>,
}

impl Default for CommitFeed {
    fn default() -> Self {
        Self {
            local: broadcast::channel(CAPACITY).0,
            announce: None,
        }
    }
}

impl CommitFeed {
    /// A feed that also hands each commit to `announce`.
    #[cfg(feature = "postgres")]
    pub(crate) fn announcing(announce: tokio::sync::mpsc::UnboundedSender<Committed>) -> Self {
        Self {
            announce: Some(announce),
            ..Self::default()
        }
    }

    /// Tells subscribers that `app`'s `partition` grew to `head`.
    pub(crate) fn committed(&self, app: &AppName, partition: u32, head: u64) {
        // On the commit path: nothing to build when no one would hear it.
        if self.announce.is_none() && self.local.receiver_count() == 0 {
            return;
        }
        let committed = Committed {
            app: app.clone(),
            partition,
            head,
        };
        if let Some(announce) = &self.announce {
            let _ = announce.send(committed.clone());
        }
        // No subscriber is not an error.
        let _ = self.local.send(Prompt::Committed(committed));
    }

    /// Passes on a prompt heard from elsewhere, to this process's
    /// subscribers only.
    #[cfg(feature = "postgres")]
    pub(crate) fn heard(&self, prompt: Prompt) {
        let _ = self.local.send(prompt);
    }

    /// A subscription to the commits of the applications in `namespace`
    /// (or in none).
    pub(crate) fn subscribe(&self, namespace: Option<&Namespace>) -> Commits {
        Commits {
            receiver: self.local.subscribe(),
            namespace: namespace.cloned(),
            _keep_alive: None,
        }
    }
}
