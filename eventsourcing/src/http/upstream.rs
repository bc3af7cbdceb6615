//! Telling a runner that an application of its system runs in another
//! process, and where that process serves its log.

use super::HttpLog;
use crate::{AppName, Result};

/// Where an application that runs elsewhere serves its log: given to a
/// runner with [`ProcessOptions::upstream`](crate::ProcessOptions::upstream).
/// The runner does not run that application; the applications that follow
/// it read its log over HTTP, and keep their tracking in their own store,
/// so they process it exactly once.
#[derive(Clone, PartialEq, Eq)]
pub struct Upstream {
    url: String,
    token: Option<String>,
}

impl Upstream {
    /// The log served by a [`LogServer`](super::LogServer) at `url`, such
    /// as `http://10.0.0.5:8080`.
    pub fn http(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
        }
    }

    /// Sends `Authorization: Bearer {token}` with every request.
    pub fn with_bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A reader of `app`'s log there, with `partitions` partitions.
    pub(crate) fn log(&self, app: AppName, partitions: u32) -> Result<HttpLog> {
        let log = HttpLog::new(&self.url, app)?.with_partitions(partitions);
        Ok(match &self.token {
            Some(token) => log.with_bearer_token(token.clone()),
            None => log,
        })
    }
}

/// Shows the URL, never the token.
impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}
