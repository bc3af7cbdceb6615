//! The log server: applications' notification logs over HTTP, as the routes
//! in [`crate::http`] say.
//!
//! One file per concern: `auth.rs` (bearer tokens and which applications a
//! client may see), `respond.rs` (status codes, JSON bodies, cache headers),
//! `sections.rs` (the section and log routes), `long_poll.rs` (the
//! notifications route and the commit feed that wakes it).

mod auth;
mod long_poll;
mod respond;
mod sections;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::log::NotificationLog;
use crate::{AnyRecorder, AppName, Error, NotificationSource, Result, Store};

use auth::Tokens;
use long_poll::Wakers;
use respond::ApiError;

/// Notifications per section unless chosen otherwise.
const DEFAULT_SECTION_SIZE: u64 = 1000;
/// The largest section size a server may be given.
const MAX_SECTION_SIZE: u64 = 10_000;
/// The longest a long poll waits unless chosen otherwise.
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(30);

/// Serves the notification logs of some applications of a store over HTTP.
///
/// ```no_run
/// # async fn run() -> eventsourcing::Result<()> {
/// use eventsourcing::http::LogServer;
/// use eventsourcing::{AppName, Store};
///
/// let store = Store::open("sqlite://orders.db").await?;
/// let server = LogServer::open(&store, [AppName::new("orders")?])
///     .await?
///     .with_bearer_token("s3cret", [AppName::new("orders")?])?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.expect("port is free");
/// server.serve(listener).await
/// # }
/// ```
#[derive(Clone)]
pub struct LogServer {
    /// The recorders of the applications served, by name.
    apps: Arc<BTreeMap<String, AnyRecorder>>,
    tokens: Tokens,
    section_size: u64,
    max_wait: Duration,
    wakers: Wakers,
}

impl std::fmt::Debug for LogServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens themselves.
        f.debug_struct("LogServer")
            .field("apps", &self.apps.keys().collect::<Vec<_>>())
            .field("tokens", &self.tokens.len())
            .field("section_size", &self.section_size)
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

impl LogServer {
    /// Serves the logs of `apps` kept in `store`: opens each application's
    /// recorder, and subscribes to the store's commits to wake long polls.
    pub async fn open(store: &Store, apps: impl IntoIterator<Item = AppName>) -> Result<Self> {
        let mut served = BTreeMap::new();
        for app in apps {
            let recorder = store.recorder(&app).await?;
            served.insert(app.as_str().to_owned(), recorder);
        }
        let wakers = Wakers::start(&served, store.commits().await?);
        Ok(Self {
            apps: Arc::new(served),
            tokens: Tokens::default(),
            section_size: DEFAULT_SECTION_SIZE,
            max_wait: DEFAULT_MAX_WAIT,
            wakers,
        })
    }

    /// Sets the number of notifications per section (1 to 10,000; 1,000
    /// unless set). Requests
    /// for wider sections, or for more notifications at once, are refused.
    pub fn with_section_size(mut self, size: u64) -> Result<Self> {
        if size == 0 || size > MAX_SECTION_SIZE {
            return Err(Error::LogServer {
                reason: format!("section size {size} is not between 1 and {MAX_SECTION_SIZE}"),
            });
        }
        self.section_size = size;
        Ok(self)
    }

    /// Requires a bearer token of every request, and lets `token` read the
    /// logs of `apps`. Call once per token. A client without a known token
    /// gets 401; a client whose token may not read an application gets the
    /// same 404 as for an application that is not served.
    ///
    /// Fails if the token is empty or has spaces, or if an application is
    /// not served by this server.
    pub fn with_bearer_token(
        mut self,
        token: impl Into<String>,
        apps: impl IntoIterator<Item = AppName>,
    ) -> Result<Self> {
        let token = token.into();
        if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::LogServer {
                reason: "a bearer token must be non-empty, without spaces or control characters".to_owned(),
            });
        }
        let mut readable = Vec::new();
        for app in apps {
            if !self.apps.contains_key(app.as_str()) {
                return Err(Error::LogServer {
                    reason: format!(
                        "a token is given for application `{app}`, which this server does not serve; add it to `LogServer::open` (served: {})",
                        self.served_names()
                    ),
                });
            }
            readable.push(app.as_str().to_owned());
        }
        self.tokens = self.tokens.with(token, readable);
        Ok(self)
    }

    /// Caps how long a long poll (`wait=MS`) waits (30 s unless set).
    pub fn with_max_wait(mut self, max: Duration) -> Self {
        self.max_wait = max;
        self
    }

    /// The routes, for mounting in an axum application of one's own.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(sections::apps))
            .route("/{app}", get(sections::log_info))
            .route("/{app}/sections/{id}", get(sections::section))
            .route(
                "/{app}/partitions/{partition}/sections/{id}",
                get(sections::partition_section),
            )
            .route("/{app}/notifications", get(long_poll::notifications))
            .fallback(respond::unknown_route)
            .method_not_allowed_fallback(respond::method_not_allowed)
            .layer(axum::middleware::from_fn(respond::log_request))
            .with_state(self.clone())
    }

    /// Serves the routes on `listener` until it fails.
    pub async fn serve(self, listener: TcpListener) -> Result<()> {
        let address = listener
            .local_addr()
            .map_or_else(|_| "an unknown address".to_owned(), |a| a.to_string());
        tracing::info!(%address, apps = %self.served_names(), "serving notification logs");
        axum::serve(listener, self.router())
            .await
            .map_err(|e| Error::LogServer {
                reason: format!("serving on {address} failed: {e}"),
            })
    }

    fn served_names(&self) -> String {
        let names: Vec<&str> = self.apps.keys().map(String::as_str).collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    }

    /// The recorder of `app` if this request may read it: 401 without a
    /// known token, and the same 404 for an application not served as for
    /// one the token may not read.
    fn readable(&self, headers: &axum::http::HeaderMap, app: &str) -> Result<&AnyRecorder, ApiError> {
        let client = self.tokens.client(headers)?;
        match self.apps.get(app) {
            Some(recorder) if client.may_read(app) => Ok(recorder),
            _ => Err(ApiError::unknown_app(app)),
        }
    }

    /// `recorder`'s log of `partition`, in this server's section size.
    fn log(&self, recorder: &AnyRecorder, partition: u32) -> Result<NotificationLog<AnyRecorder>, ApiError> {
        NotificationLog::new(recorder.clone())
            .with_partition(partition)
            .and_then(|log| log.with_max_section_size(self.section_size.max(crate::log::DEFAULT_SECTION_SIZE)))
            .and_then(|log| log.with_section_size(self.section_size))
            .and_then(|log| log.with_max_section_size(self.section_size))
            .map_err(ApiError::from)
    }

    /// Checks that `recorder`'s log has `partition`.
    fn check_partition(recorder: &AnyRecorder, partition: u32) -> Result<(), ApiError> {
        let partitions = recorder.partitions();
        if partition >= partitions {
            return Err(ApiError::from(Error::UnknownPartition {
                app: recorder.app().to_string(),
                partition,
                partitions,
            }));
        }
        Ok(())
    }
}
