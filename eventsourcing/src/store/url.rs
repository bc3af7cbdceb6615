//! Choosing a backend from a URL.

use crate::{Error, Result, Store};

/// The environment variable [`Store::from_env`] reads.
pub const STORE_URL_ENV: &str = "EVENTSOURCING_STORE_URL";

/// The store used when [`STORE_URL_ENV`] is unset: a SQLite file in the
/// working directory.
pub const DEFAULT_STORE_URL: &str = "sqlite://eventsourcing.db";

pub(super) async fn open(url: &str) -> Result<Store> {
    let unsupported = |reason| Error::StoreUrl {
        url: redact(url),
        reason,
    };
    let scheme = url.split_once(':').map(|(scheme, _)| scheme).unwrap_or_default();
    match scheme {
        "memory" if matches!(url, "memory:" | "memory://") => Ok(Store::Memory(super::memory::MemoryStore::new())),
        "memory" => Err(unsupported("an in-memory store takes no path")),
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(Store::Sqlite(super::sqlite::SqliteStore::open(url).await?)),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Store::Postgres(super::postgres::PostgresStore::open(url).await?)),
        #[cfg(not(feature = "sqlite"))]
        "sqlite" => Err(unsupported("the `sqlite` feature of eventsourcing is disabled")),
        #[cfg(not(feature = "postgres"))]
        "postgres" | "postgresql" => Err(unsupported("the `postgres` feature of eventsourcing is disabled")),
        _ => Err(unsupported("unknown scheme")),
    }
}

/// The URL with any password replaced, fit for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_passwords() {
        assert_eq!(redact("postgres://me:secret@db:5432/x"), "postgres://me:***@db:5432/x");
        assert_eq!(redact("postgres://me@db/x"), "postgres://me@db/x");
        assert_eq!(redact("sqlite://a.db"), "sqlite://a.db");
    }

    #[tokio::test]
    async fn rejects_unknown_schemes_naming_the_url() {
        let err = open("mysql://me:pw@host/db").await.unwrap_err();
        let message = err.to_string();
        assert!(message.contains("`mysql://me:***@host/db`"), "{message}");
        assert!(message.contains("unknown scheme"), "{message}");
        assert!(open("memory:/x").await.is_err());
        assert!(open("").await.is_err());
    }
}
