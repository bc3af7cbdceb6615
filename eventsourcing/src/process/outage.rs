//! Riding out database outages: which failures are the connection's (and
//! worth waiting out) rather than the data's, and the backoff loop that
//! waits them out within [`ProcessOptions::outage_budget`].
//!
//! Restarting PostgreSQL 15 with `pg_ctl restart -m immediate` under a
//! running system gives, on the connections that were open, I/O errors
//! (`Connection reset by peer`, `expected to read 5 bytes, got 0 bytes at
//! EOF`), then pool timeouts while the server is down (sqlx's pool itself
//! retries refused connections and 57P03 "starting up" until its acquire
//! timeout). A smart or fast shutdown says 57P01 first. None of that says
//! anything about the data, so a runner waits it out for as long as the
//! budget allows, without counting it toward
//! [`ProcessOptions::retries`].
//!
//! [`ProcessOptions::outage_budget`]: crate::ProcessOptions::outage_budget
//! [`ProcessOptions::retries`]: crate::ProcessOptions::retries

use std::time::{Duration, Instant};

use crate::{AnyRecorder, Error, Result};

/// The first wait after a connection failure.
const FIRST_DELAY: Duration = Duration::from_millis(50);

/// The longest wait between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Whether `error` (or an error it wraps, such as a handler's) is a lost or
/// refused connection rather than something wrong with the data or the
/// request: I/O errors (reset, end of file, refused), pool timeouts, and
/// SQLSTATE class 08 (connection exception), 57P01, 57P02 and 57P03 (the
/// server shutting down, crashing, or starting up).
pub(crate) fn is_transient(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        match error.downcast_ref::<Error>() {
            // Already the verdict that an outage lasted too long.
            Some(Error::Outage { .. }) => return false,
            // An upstream served by another process, gone for a moment.
            Some(Error::RemoteUnavailable { .. }) => return true,
            _ => {}
        }
        if let Some(source) = error.downcast_ref::<sqlx::Error>() {
            return is_transient_sqlx(source);
        }
        next = error.source();
    }
    false
}

fn is_transient_sqlx(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(error) => error
            .code()
            .is_some_and(|code| code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// The database error inside `error`, if any: which application's tables
/// were being used, and for what.
fn database_context<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<(&'a str, &'static str)> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(Error::Database { app, action, .. }) = error.downcast_ref::<Error>() {
            return Some((app, action));
        }
        next = error.source();
    }
    None
}

/// Where a recorder's data lives, for messages: `PostgreSQL at host:port`.
pub(crate) fn server_of(recorder: &AnyRecorder) -> String {
    match recorder {
        #[cfg(feature = "postgres")]
        AnyRecorder::Postgres(recorder) => format!("PostgreSQL at {}", recorder.server()),
        #[cfg(feature = "sqlite")]
        AnyRecorder::Sqlite(_) => "the SQLite database".to_owned(),
        AnyRecorder::Memory(_) => "the in-memory store".to_owned(),
        AnyRecorder::Faulty(recorder) => server_of(recorder.inner()),
    }
}

/// One loop's view of an outage: when it began, and how long to wait
/// before the next attempt.
#[derive(Debug)]
pub(crate) struct Outage {
    /// Who is waiting: the process application, or `None` for the runner
    /// itself (the database error then names the application).
    app: Option<&'static str>,
    server: String,
    budget: Duration,
    since: Option<Instant>,
    delay: Duration,
    attempts: u32,
}

impl Outage {
    pub(crate) fn new(app: Option<&'static str>, recorder: &AnyRecorder, budget: Duration) -> Self {
        Self {
            app,
            server: server_of(recorder),
            budget,
            since: None,
            delay: FIRST_DELAY,
            attempts: 0,
        }
    }

    /// Waits before trying again after `error`, if it is a connection
    /// failure and the outage is within its budget. Otherwise returns the
    /// error: as it is if it is not a connection failure, or as
    /// [`Error::Outage`] once the outage has lasted longer than the budget.
    pub(crate) async fn wait(&mut self, error: Error) -> Result<()> {
        if !is_transient(&error) {
            return Err(error);
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        let waited = since.elapsed();
        let (db_app, action) = database_context(&error).unwrap_or(("", "using the database"));
        let app = self.app.unwrap_or(db_app).to_owned();
        let action = if db_app.is_empty() || db_app == app {
            action.to_owned()
        } else {
            format!("{action} of `{db_app}`")
        };
        if waited >= self.budget {
            tracing::error!(
                app,
                action,
                server = %self.server,
                waited_ms = waited.as_millis() as u64,
                attempts = self.attempts,
                "database unreachable for longer than the outage budget; stopping"
            );
            return Err(Error::Outage {
                app,
                action,
                server: self.server.clone(),
                waited,
                budget: self.budget,
                source: Box::new(error),
            });
        }
        self.attempts += 1;
        // Never sleep past the end of the budget by more than one attempt.
        let delay = self.delay.min(self.budget - waited);
        tracing::warn!(
            app,
            action,
            server = %self.server,
            attempt = self.attempts,
            retry_in_ms = delay.as_millis() as u64,
            error = %crate::process::worker::error_chain(&error),
            "database unreachable; retrying"
        );
        tokio::time::sleep(delay).await;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        Ok(())
    }

    /// The database answered: the outage, if there was one, is over.
    pub(crate) fn over(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                app = self.app.unwrap_or("runner"),
                server = %self.server,
                after_ms = since.elapsed().as_millis() as u64,
                attempts = self.attempts,
                "database reachable again"
            );
        }
        self.delay = FIRST_DELAY;
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(source: sqlx::Error) -> Error {
        Error::Database {
            app: "Orders".to_owned(),
            action: "reading notifications",
            source: source.into(),
        }
    }

    fn io(kind: std::io::ErrorKind) -> Error {
        database(sqlx::Error::Io(std::io::Error::from(kind)))
    }

    #[test]
    fn connection_failures_are_transient() {
        for kind in [
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::UnexpectedEof,
            std::io::ErrorKind::ConnectionRefused,
            std::io::ErrorKind::BrokenPipe,
        ] {
            assert!(is_transient(&io(kind)), "{kind:?}");
        }
        assert!(is_transient(&database(sqlx::Error::PoolTimedOut)));
    }

    #[test]
    fn data_and_handler_failures_are_not() {
        assert!(!is_transient(&database(sqlx::Error::RowNotFound)));
        assert!(!is_transient(&database(sqlx::Error::PoolClosed)));
        assert!(!is_transient(&Error::Concurrency {
            app: "Orders".to_owned(),
            originator_id: uuid::Uuid::nil(),
            version: 1,
        }));
        let handler = Error::Processing {
            app: "Orders".to_owned(),
            upstream: "Payments".to_owned(),
            partition: 0,
            notification_id: 7,
            topic: "Payment.Created".to_owned(),
            source: "no such order".into(),
        };
        assert!(!is_transient(&handler));
    }

    #[test]
    fn a_handler_failing_on_the_connection_is_transient() {
        let handler = Error::Processing {
            app: "Orders".to_owned(),
            upstream: "Payments".to_owned(),
            partition: 0,
            notification_id: 7,
            topic: "Payment.Created".to_owned(),
            source: Box::new(io(std::io::ErrorKind::UnexpectedEof)),
        };
        assert!(is_transient(&handler));
    }

    #[tokio::test]
    async fn an_outage_longer_than_the_budget_surfaces() {
        let recorder = AnyRecorder::Memory(
            crate::store::memory::MemoryStore::new()
                .recorder(&crate::AppName::new("Orders").unwrap())
                .unwrap(),
        );
        let budget = Duration::from_millis(400);
        let mut outage = Outage::new(Some("Reservations"), &recorder, budget);
        let started = Instant::now();
        let mut attempts = 0;
        let error = loop {
            match outage.wait(io(std::io::ErrorKind::ConnectionRefused)).await {
                Ok(()) => attempts += 1,
                Err(error) => break error,
            }
        };
        // Waits of 50, 100, 200 ms, then the rest of the budget.
        assert!((2..=4).contains(&attempts), "{attempts} attempts");
        assert!(started.elapsed() >= budget);
        let message = error.to_string();
        assert!(matches!(error, Error::Outage { .. }), "{message}");
        assert!(message.contains("`Reservations`"), "{message}");
        assert!(message.contains("reading notifications of `Orders`"), "{message}");

        // Once the database answers, a new outage gets a whole budget.
        outage.over();
        assert!(outage.wait(io(std::io::ErrorKind::ConnectionReset)).await.is_ok());
        let not_transient = outage.wait(database(sqlx::Error::RowNotFound)).await.unwrap_err();
        assert!(matches!(not_transient, Error::Database { .. }));
    }
}
