//! Connecting to PostgreSQL. One connection is made eagerly before the pool
//! is built, so that an unreachable server is reported at once, with its
//! address and the real reason ("connection refused", no answer within the
//! connect timeout, the server's own refusal), instead of as a pool timeout
//! half a minute later.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use super::PostgresRecorder;
use crate::store::url::redact;
use crate::{Error, Result};

/// How long to wait for a server to answer when the URL does not say.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The libpq URL parameter for the connect timeout, in whole seconds. sqlx
/// does not know it (it would warn and ignore it), so it is taken out of
/// the URL before sqlx reads the rest.
const CONNECT_TIMEOUT: &str = "connect_timeout";

/// Opens a pool on the database `url` names, after one connection has
/// shown that the server is there.
pub(super) async fn connect(url: &str, max_connections: u32, min_connections: u32) -> Result<PgPool> {
    let (url_for_sqlx, timeout) = take_connect_timeout(url)?;
    let options = PgConnectOptions::from_str(&url_for_sqlx).map_err(|source| Error::Store {
        store: redact(url),
        action: "reading the PostgreSQL URL",
        source: source.into(),
    })?;
    let failed = |reason: String, source: Option<sqlx::Error>| Error::Connect {
        server: server(&options),
        url: redact(url),
        reason,
        source: source.map(Into::into),
    };
    match tokio::time::timeout(timeout, PgConnection::connect_with(&options)).await {
        Err(_) => {
            return Err(failed(
                format!(
                    "no answer within {} s (the connect timeout; set `{CONNECT_TIMEOUT}=SECONDS` in the URL to wait longer)",
                    timeout.as_secs()
                ),
                None,
            ));
        }
        Ok(Err(source)) => return Err(failed(reason(&source), Some(source))),
        Ok(Ok(probe)) => {
            // Said goodbye properly, so the server logs no lost client.
            let _ = tokio::time::timeout(timeout, probe.close()).await;
        }
    }
    PgPoolOptions::new()
        .max_connections(max_connections)
        // Ready before the first burst of work, not opened during it.
        .min_connections(min_connections)
        // Also how long a query waits for a connection while the server is
        // away; a runner rides that out within its outage budget.
        .acquire_timeout(timeout)
        .connect_with(options.clone())
        .await
        .map_err(|source| failed(reason(&source), Some(source)))
}

/// `url` without its `connect_timeout` parameter, and the timeout.
fn take_connect_timeout(url: &str) -> Result<(String, Duration)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), DEFAULT_CONNECT_TIMEOUT));
    };
    let mut timeout = DEFAULT_CONNECT_TIMEOUT;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((CONNECT_TIMEOUT, value)) => {
                timeout = match value.parse::<u64>() {
                    Ok(seconds) if seconds > 0 => Duration::from_secs(seconds),
                    _ => {
                        return Err(Error::StoreUrl {
                            url: redact(url),
                            reason: "`connect_timeout` must be a whole number of seconds, at least 1",
                        });
                    }
                }
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, timeout))
}

/// Why a connection failed, in a few words.
fn reason(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Database(db) => format!("the server refused: {}", db.message()),
        sqlx::Error::PoolTimedOut => "no connection within the connect timeout".to_owned(),
        other => other.to_string(),
    }
}

/// The server's address as `host:port` (the socket file for a Unix socket).
pub(super) fn server(options: &PgConnectOptions) -> String {
    let port = options.get_port();
    match options.get_socket() {
        Some(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
        None if options.get_host().contains(':') => format!("[{}]:{port}", options.get_host()),
        None => format!("{}:{port}", options.get_host()),
    }
}

impl PostgresRecorder {
    /// The server's `host:port`, for messages.
    pub(crate) fn server(&self) -> String {
        server(&self.0.handle.connect_options())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_timeout_is_taken_out_of_the_url() {
        let (url, timeout) = take_connect_timeout("postgres://me@db/x?connect_timeout=3&sslmode=disable").unwrap();
        assert_eq!(
            (url.as_str(), timeout),
            ("postgres://me@db/x?sslmode=disable", Duration::from_secs(3))
        );
        let (url, timeout) = take_connect_timeout("postgres://me@db/x?connect_timeout=1").unwrap();
        assert_eq!((url.as_str(), timeout), ("postgres://me@db/x", Duration::from_secs(1)));
        let (url, timeout) = take_connect_timeout("postgres://me@db/x").unwrap();
        assert_eq!((url.as_str(), timeout), ("postgres://me@db/x", DEFAULT_CONNECT_TIMEOUT));
    }

    #[test]
    fn a_bad_connect_timeout_is_refused_without_the_password() {
        for value in ["0", "-1", "2.5", "soon", ""] {
            let url = format!("postgres://me:secret@db/x?connect_timeout={value}");
            let message = take_connect_timeout(&url).unwrap_err().to_string();
            assert!(message.contains("`connect_timeout` must be"), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn servers_are_named_by_host_and_port() {
        let named = |url: &str| server(&PgConnectOptions::from_str(url).unwrap());
        assert_eq!(named("postgres://me:secret@db.example:6543/x"), "db.example:6543");
        assert_eq!(named("postgres://me@127.0.0.1/x"), "127.0.0.1:5432");
    }
}
