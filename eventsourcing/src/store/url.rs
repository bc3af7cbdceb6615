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

/// The URL with any password replaced, fit for messages and logs: the one
/// in the user info (even one holding a `/` or `@`, which a hand-written URL
/// may leave unescaped) and any `password=` query parameter.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    // The user info ends at the last `@`: a database name has none, but a
    // password may.
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, host_and_path)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host_and_path}"),
            None => rest.to_owned(),
        },
        None => rest.to_owned(),
    };
    let mut redacted = format!("{scheme}://{rest}");
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => param.to_owned(),
            })
            .collect();
        redacted.push('?');
        redacted.push_str(&params.join("&"));
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_passwords() {
        assert_eq!(redact("postgres://me:secret@db:5432/x"), "postgres://me:***@db:5432/x");
        assert_eq!(redact("postgres://me@db/x"), "postgres://me@db/x");
        assert_eq!(redact("sqlite://a.db"), "sqlite://a.db");
        assert_eq!(redact("postgres://me:se/cret@host/db"), "postgres://me:***@host/db");
        assert_eq!(redact("postgres://me:p@ss@host:5/db"), "postgres://me:***@host:5/db");
        assert_eq!(
            redact("postgres://me@host/db?sslmode=disable&password=secret"),
            "postgres://me@host/db?sslmode=disable&password=***"
        );
        assert_eq!(
            redact("postgres://host/db?PASSWORD=secret"),
            "postgres://host/db?PASSWORD=***"
        );
    }

    #[tokio::test]
    async fn never_prints_a_password() {
        for url in [
            "mysql://me:se/cret@host/db",
            "mysql://me@host/db?password=secret",
            "memory://me:secret@x",
        ] {
            let message = open(url).await.unwrap_err().to_string();
            assert!(!message.contains("secret"), "{message}");
        }
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

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn rejects_sqlite_urls_without_a_path_when_opening() {
        for url in ["sqlite://", "sqlite:", "sqlite://?mode=rwc"] {
            let message = open(url).await.unwrap_err().to_string();
            assert!(message.contains("needs a file path"), "{url}: {message}");
        }
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn names_the_sqlite_file_that_does_not_open() {
        let dir = std::env::temp_dir().join(format!("eventsourcing-missing-{}", uuid::Uuid::new_v4().simple()));
        let path = dir.join("x.db");
        let message = open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap_err()
            .to_string();
        assert!(message.contains(&format!("`{}`", path.display())), "{message}");
        assert!(message.contains("does not exist"), "{message}");
    }
}
