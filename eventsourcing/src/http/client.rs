//! Reading a log that another process serves over HTTP.
//!
//! The reader asks for aligned sections and keeps the full ones, which
//! never change, so that a follower reading in batches smaller than a
//! section asks for each section once. It reads ahead: a read asks for the
//! next few sections the log has at once, so that throughput is not one
//! round trip per section. Failures that pass (no answer, 5xx, 429) are
//! retried with backoff for a while, then reported as
//! [`Error::RemoteUnavailable`], which a process application waits out like
//! a database outage; a hole in the ids is reported as [`Error::LogGap`],
//! never skipped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::try_join_all;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use super::wire::{ErrorJson, LogInfoJson, NotificationsJson, SectionJson};
use crate::{AppName, Error, Notification, NotificationSource, Result};

/// How many sections a read asks for at once, unless chosen otherwise.
pub const DEFAULT_READ_AHEAD: usize = 4;

/// How long failures that pass are retried before a read reports
/// [`Error::RemoteUnavailable`], unless chosen otherwise.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(5);

/// The first wait after a failure that passes; it doubles up to a second.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(20);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

/// How long a request may take beyond any wait it asks the server for.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An application's notification log served by a
/// [`LogServer`](super::LogServer) in another process, read over HTTP.
///
/// It is a [`NotificationSource`], so a [`NotificationLog`](crate::NotificationLog)
/// and its reader work on it as on a local recorder; and a process
/// application follows it when the runner is told where the application
/// lives ([`Upstream::http`](super::Upstream::http)).
///
/// ```no_run
/// # async fn run() -> eventsourcing::Result<()> {
/// use eventsourcing::http::HttpLog;
/// use eventsourcing::{AppName, NotificationLog, NotificationSource};
///
/// let log = HttpLog::new("http://127.0.0.1:8080", AppName::new("Orders")?)?;
/// let mut reader = NotificationLog::new(log).reader();
/// reader.seek(0)?;
/// while let Some(notification) = reader.next().await? {
///     println!("{} {}", notification.id, notification.event.topic);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct HttpLog {
    client: reqwest::Client,
    /// The server's base URL, without a trailing slash.
    base: Arc<str>,
    app: AppName,
    partitions: u32,
    token: Option<Arc<str>>,
    read_ahead: usize,
    retry_budget: Duration,
    shared: Arc<Shared>,
}

/// What clones of one reader share: what the server said of the log, and
/// the full sections read.
#[derive(Debug, Default)]
struct Shared {
    /// The log's section size, learned (and the log checked) at first contact.
    section_size: OnceCell<u64>,
    sections: Mutex<SectionCache>,
}

/// Full sections by (partition, first id), and each partition's newest
/// head seen. Bounded: sections behind a read are dropped.
#[derive(Debug, Default)]
struct SectionCache {
    full: BTreeMap<(u32, u64), Arc<[Notification]>>,
    heads: BTreeMap<u32, u64>,
}

impl HttpLog {
    /// The log of `app` served at `url` (such as `http://10.0.0.5:8080`),
    /// with one partition. Nothing is asked of the server until the first
    /// read, so a follower may start before the server does.
    pub fn new(url: &str, app: AppName) -> Result<Self> {
        let base = url.trim_end_matches('/');
        let refuse = |reason: &str| Error::Remote {
            app: app.to_string(),
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(refuse("the URL must start with http:// or https://"));
        }
        if base.starts_with("https://") && !cfg!(feature = "https") {
            return Err(refuse(
                "this build reads logs over plain HTTP only; enable the `https` feature of eventsourcing to read from https:// servers",
            ));
        }
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .map_err(|e| refuse(&format!("cannot make an HTTP client: {e}")))?;
        Ok(Self {
            client,
            base: Arc::from(base),
            app,
            partitions: 1,
            token: None,
            read_ahead: DEFAULT_READ_AHEAD,
            retry_budget: DEFAULT_RETRY_BUDGET,
            shared: Arc::default(),
        })
    }

    /// Expects the log to have `partitions` partitions: the first read
    /// fails with [`Error::Remote`] if the server's log has another number.
    pub fn with_partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions;
        self.shared = Arc::default();
        self
    }

    /// Sends `Authorization: Bearer {token}` with every request.
    pub fn with_bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Arc::from(token.into()));
        self
    }

    /// How many sections one read asks for at once (at least 1).
    pub fn with_read_ahead(mut self, sections: usize) -> Self {
        self.read_ahead = sections.max(1);
        self
    }

    /// How long failures that pass are retried within one read before it
    /// reports [`Error::RemoteUnavailable`].
    pub fn with_retry_budget(mut self, budget: Duration) -> Self {
        self.retry_budget = budget;
        self
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Waits up to `wait` (the server may cap it) for a notification of
    /// `partition` after `after`, and returns the partition's head then: a
    /// follower's long poll, so that it reads when the log grows rather
    /// than polling it.
    pub async fn wait_for_notifications(&self, partition: u32, after: u64, wait: Duration) -> Result<u64> {
        let path = format!(
            "/{}/notifications?partition={partition}&after={after}&limit=1&wait={}",
            self.app,
            wait.as_millis()
        );
        let answer: NotificationsJson = self.get(&path, wait).await?;
        self.saw_head(partition, answer.head);
        Ok(answer.head)
    }

    /// The section size, asking the server (and checking the log is the
    /// one expected) at first contact.
    async fn section_size(&self) -> Result<u64> {
        self.shared
            .section_size
            .get_or_try_init(|| async {
                let info: LogInfoJson = self.get(&format!("/{}", self.app), Duration::ZERO).await?;
                if info.app != self.app.as_str() {
                    return Err(self.refused(&format!("/{}", self.app), format!("the server sent the log of `{}`", info.app)));
                }
                if info.partitions != self.partitions {
                    return Err(self.refused(
                        &format!("/{}", self.app),
                        format!(
                            "the log has {} partition(s), and this reader expects {}; give the system the same `ProcessOptions::partitions` on both sides",
                            info.partitions, self.partitions
                        ),
                    ));
                }
                if info.section_size == 0 {
                    return Err(self.refused(&format!("/{}", self.app), "the server gave a section size of 0".to_owned()));
                }
                for (partition, head) in (0..).zip(info.heads) {
                    self.saw_head(partition, head);
                }
                Ok(info.section_size)
            })
            .await
            .copied()
    }

    fn saw_head(&self, partition: u32, head: u64) {
        let mut cache = self.cache();
        let known = cache.heads.entry(partition).or_default();
        *known = (*known).max(head);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, SectionCache> {
        self.shared.sections.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The notifications of the aligned section starting at `first`: from
    /// the cache if it is full, else from the server (kept if full).
    async fn section(&self, partition: u32, first: u64, size: u64) -> Result<Arc<[Notification]>> {
        if let Some(items) = self.cache().full.get(&(partition, first)) {
            return Ok(items.clone());
        }
        let last = first.saturating_add(size - 1);
        let path = format!("/{}/partitions/{partition}/sections/{first},{last}", self.app);
        let section: SectionJson = self.get(&path, Duration::ZERO).await?;
        let mut items = Vec::with_capacity(section.items.len());
        for item in section.items {
            let notification = item.into_notification().map_err(|reason| self.refused(&path, reason))?;
            if notification.partition != partition || notification.id < first || notification.id > last {
                return Err(self.refused(
                    &path,
                    format!(
                        "the section holds notification {} of partition {}, outside the ids asked for",
                        notification.id, notification.partition
                    ),
                ));
            }
            items.push(notification);
        }
        let items: Arc<[Notification]> = items.into();
        if let Some(newest) = items.last() {
            self.saw_head(partition, newest.id);
        }
        if items.len() as u64 == size {
            self.cache().full.insert((partition, first), items.clone());
        }
        Ok(items)
    }

    /// GETs `path` and decodes its JSON, retrying failures that pass
    /// within the retry budget. `wait` is how long the server may hold
    /// the request on purpose.
    async fn get<T: DeserializeOwned>(&self, path: &str, wait: Duration) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let started = std::time::Instant::now();
        let mut delay = FIRST_RETRY_DELAY;
        loop {
            let failure = match self.try_get(&url, wait).await {
                Ok(body) => {
                    return serde_json::from_slice(&body)
                        .map_err(|e| self.refused(path, format!("the answer is not the JSON expected: {e}")));
                }
                Err(Attempt::Refused(reason)) => return Err(self.refused(path, reason)),
                Err(Attempt::Passing(reason)) => reason,
            };
            if started.elapsed() + delay > self.retry_budget {
                return Err(Error::RemoteUnavailable {
                    app: self.app.to_string(),
                    url,
                    reason: failure,
                });
            }
            tracing::debug!(app = %self.app, %url, reason = %failure, "retrying a log read");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }

    async fn try_get(&self, url: &str, wait: Duration) -> Result<bytes::Bytes, Attempt> {
        let mut request = self.client.get(url).timeout(REQUEST_TIMEOUT + wait);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| Attempt::Passing(describe(&e)))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| Attempt::Passing(describe(&e)))?;
        if status.is_success() {
            return Ok(body);
        }
        let said = serde_json::from_slice::<ErrorJson>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
        let reason = format!("HTTP {status}: {said}");
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(Attempt::Passing(reason))
        } else {
            Err(Attempt::Refused(reason))
        }
    }

    fn refused(&self, path: &str, reason: String) -> Error {
        Error::Remote {
            app: self.app.to_string(),
            url: format!("{}{path}", self.base),
            reason,
        }
    }
}

/// How one request went wrong.
enum Attempt {
    /// Worth trying again: no answer, 5xx, 429.
    Passing(String),
    /// Not worth it: 4xx.
    Refused(String),
}

/// A reqwest error with its causes, which say what actually happened
/// (`Connection refused`).
fn describe(error: &reqwest::Error) -> String {
    crate::process::worker::error_chain(error)
}

impl NotificationSource for HttpLog {
    fn app(&self) -> &AppName {
        &self.app
    }

    fn partitions(&self) -> u32 {
        self.partitions
    }

    async fn select_notifications(&self, partition: u32, start: u64, limit: usize) -> Result<Vec<Notification>> {
        if limit == 0 || start == 0 {
            return Ok(Vec::new());
        }
        let size = self.section_size().await?;
        if start > self.known_head(partition) && start > self.max_notification_id(partition).await? {
            return Ok(Vec::new());
        }
        // A hole may be a race (a section read before a commit, the next
        // one after it): read again once before reporting it.
        match self.read(partition, start, limit, size).await? {
            Ok(notifications) => Ok(notifications),
            Err(_) => match self.read(partition, start, limit, size).await? {
                Ok(notifications) => Ok(notifications),
                Err((position, found)) => Err(Error::LogGap {
                    app: self.app.to_string(),
                    partition,
                    position,
                    found,
                }),
            },
        }
    }

    async fn max_notification_id(&self, partition: u32) -> Result<u64> {
        self.section_size().await?;
        let path = format!("/{}/notifications?partition={partition}&limit=0", self.app);
        let answer: NotificationsJson = self.get(&path, Duration::ZERO).await?;
        self.saw_head(partition, answer.head);
        Ok(answer.head)
    }
}

impl HttpLog {
    fn known_head(&self, partition: u32) -> u64 {
        self.cache().heads.get(&partition).copied().unwrap_or(0)
    }

    /// Up to `limit` notifications from `start` on, or the position
    /// before a hole and the id found after it.
    async fn read(
        &self,
        partition: u32,
        start: u64,
        limit: usize,
        size: u64,
    ) -> Result<Result<Vec<Notification>, (u64, u64)>> {
        let head = self.known_head(partition).max(start);
        let first = (start - 1) / size * size + 1;
        let wanted_last = start.saturating_add(limit as u64 - 1).min(head);
        // The sections the request spans, and those after it that the log
        // already has, up to the read-ahead: asked for at once.
        let spanned = (wanted_last - first) / size + 1;
        let behind_head = (head - first) / size + 1;
        let count = spanned.max((self.read_ahead as u64).min(behind_head));
        let sections = try_join_all((0..count).map(|k| self.section(partition, first + k * size, size))).await?;
        self.cache().full.retain(|&(p, f), _| p != partition || f >= first);

        let mut notifications = Vec::with_capacity(limit.min(count as usize * size as usize));
        let read = sections.iter().flat_map(|items| items.iter()).filter(|n| n.id >= start);
        for (expected, n) in (start..).zip(read).take(limit) {
            if n.id != expected {
                return Ok(Err((expected - 1, n.id)));
            }
            notifications.push(n.clone());
        }
        Ok(Ok(notifications))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_that_is_not_http_is_refused() {
        let app = AppName::new("Orders").unwrap();
        let error = HttpLog::new("ftp://example.org", app.clone()).unwrap_err();
        assert!(error.to_string().contains("must start with http://"), "{error}");
        let https = HttpLog::new("https://example.org/", app);
        if cfg!(feature = "https") {
            assert_eq!(https.unwrap().url(), "https://example.org");
        } else {
            let error = https.unwrap_err();
            assert!(error.to_string().contains("enable the `https` feature"), "{error}");
        }
    }
}
