//! Validated application names: the only text that reaches SQL as an identifier.

use std::fmt;

use crate::{Error, Result};

/// The longest application name: table names add a suffix, and PostgreSQL
/// identifiers are limited to 63 bytes.
pub const MAX_APP_NAME_LEN: usize = 40;

/// The name of an application, checked so that it can name tables.
///
/// A name is 1 to 40 ASCII letters, digits or underscores, starting with a
/// letter. Tables are named from its lowercase form, so `Orders` and `orders`
/// share tables.
///
/// ```
/// use eventsourcing::AppName;
///
/// let name = AppName::new("Orders")?;
/// assert_eq!(name.as_str(), "Orders");
/// assert_eq!(name.table_prefix(), "orders");
/// assert!(AppName::new("orders; drop table x").is_err());
/// # Ok::<(), eventsourcing::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppName {
    name: String,
    prefix: String,
}

impl AppName {
    /// Checks `name` and keeps it.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > MAX_APP_NAME_LEN {
            Some("it is longer than 40 characters")
        } else if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            Some("it does not start with a letter")
        } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            Some("it contains a character other than a letter, digit or underscore")
        } else if is_reserved(&name) {
            Some(
                "its tables would start with `sqlite_`, which SQLite reserves for itself, so choose a name that does not start with `sqlite`",
            )
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidAppName { name, reason }),
            None => {
                let prefix = name.to_ascii_lowercase();
                Ok(Self { name, prefix })
            }
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The lowercase form that prefixes the application's table names.
    pub fn table_prefix(&self) -> &str {
        &self.prefix
    }
}

/// Whether tables named from `name` (`{name}_events`, …) would take a
/// prefix a database keeps for itself: SQLite refuses to create tables whose
/// names start with `sqlite_`, in any case.
fn is_reserved(name: &str) -> bool {
    name.get(..6).is_some_and(|start| start.eq_ignore_ascii_case("sqlite"))
        && matches!(name.as_bytes().get(6), None | Some(b'_'))
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl TryFrom<&str> for AppName {
    type Error = Error;

    fn try_from(name: &str) -> Result<Self> {
        Self::new(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_identifiers_and_rejects_everything_else() {
        for good in ["a", "Orders", "orders_2", &"x".repeat(40), "sqlitex", "my_sqlite"] {
            assert!(AppName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "2orders",
            "_x",
            "or-ders",
            "or ders",
            "ordérs",
            "a;b",
            &"x".repeat(41),
            "sqlite",
            "sqlite_x",
            "SQLite_Orders",
        ] {
            let err = AppName::new(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
        let reserved = AppName::new("sqlite_x").unwrap_err().to_string();
        assert!(reserved.contains("SQLite reserves"), "{reserved}");
    }
}
