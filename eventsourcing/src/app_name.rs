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
    /// The lowercase name: how other applications' tracking rows name it.
    key: String,
    /// The namespace its tables are in, if any (see [`Namespace`]).
    namespace: Option<Namespace>,
    /// `key`, after `namespace__` if it has one.
    prefix: String,
}

impl AppName {
    /// Checks `name` and keeps it.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        match identifier_fault(&name, MAX_APP_NAME_LEN, "it is longer than 40 characters") {
            Some(reason) => Err(Error::InvalidAppName { name, reason }),
            None => {
                let key = name.to_ascii_lowercase();
                Ok(Self {
                    name,
                    prefix: key.clone(),
                    key,
                    namespace: None,
                })
            }
        }
    }

    /// This application's tables in `namespace` (or outside any, for
    /// `None`). Fails if the table names would be too long for PostgreSQL.
    pub(crate) fn in_namespace(&self, namespace: Option<&Namespace>) -> Result<Self> {
        let Some(namespace) = namespace else {
            return Ok(self.without_namespace());
        };
        let prefix = format!("{}{NAMESPACE_SEPARATOR}{}", namespace.prefix, self.key);
        if prefix.len() > MAX_TABLE_PREFIX_LEN {
            return Err(Error::InvalidNamespace {
                namespace: namespace.as_str().to_owned(),
                reason: format!(
                    "with application `{}` its tables would be named `{prefix}_…`, {} characters before the suffix, and PostgreSQL allows {MAX_TABLE_PREFIX_LEN}: use a shorter namespace",
                    self.name,
                    prefix.len()
                ),
            });
        }
        Ok(Self {
            prefix,
            namespace: Some(namespace.clone()),
            ..self.clone()
        })
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The lowercase form that prefixes the application's table names:
    /// after its namespace and two underscores, if it has one.
    pub fn table_prefix(&self) -> &str {
        &self.prefix
    }

    /// This application outside any namespace: how a follower names it
    /// as its upstream.
    pub(crate) fn without_namespace(&self) -> Self {
        Self {
            prefix: self.key.clone(),
            namespace: None,
            ..self.clone()
        }
    }

    /// The namespace of this application's tables, if any. Recorders
    /// opened from a [`Store::namespaced`](crate::Store::namespaced) have
    /// one.
    pub fn namespace(&self) -> Option<&Namespace> {
        self.namespace.as_ref()
    }

    /// The lowercase name, without namespace: how tracking positions and
    /// dead letters of a follower name this application as their upstream.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }
}

/// What separates a namespace from an application's name in table names.
/// A namespace may not contain it, so that no two namespaced applications
/// share tables; an application outside any namespace whose name contains
/// it (`eu__orders`) is told apart from `orders` in `eu` by the store's
/// table of owners.
const NAMESPACE_SEPARATOR: &str = "__";

/// The longest table prefix: PostgreSQL identifiers are at most 63 bytes,
/// and the longest name made from a prefix adds `_events_aggregate`.
const MAX_TABLE_PREFIX_LEN: usize = 63 - "_events_aggregate".len();

/// The longest namespace.
pub const MAX_NAMESPACE_LEN: usize = 20;

/// A namespace: a set of applications' tables in a store, apart from those
/// of other namespaces, so that independent systems can share one database
/// ([`Store::namespaced`](crate::Store::namespaced)).
///
/// A namespace is 1 to 20 ASCII letters, digits or underscores, starting
/// with a letter, not ending with an underscore, and without two
/// underscores in a row (they separate it from the application's name in
/// table names: `shop__orders_events`). Like application names, it is
/// lowercased for tables.
///
/// ```
/// use eventsourcing::Namespace;
///
/// assert_eq!(Namespace::new("Shop")?.as_str(), "Shop");
/// assert!(Namespace::new("shop__eu").is_err());
/// # Ok::<(), eventsourcing::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Namespace {
    name: String,
    prefix: String,
}

impl Namespace {
    /// Checks `name` and keeps it.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let reason = identifier_fault(&name, MAX_NAMESPACE_LEN, "it is longer than 20 characters").or_else(|| {
            if name.contains(NAMESPACE_SEPARATOR) {
                Some("it contains two underscores in a row, which separate a namespace from an application's name in table names")
            } else {
                name.ends_with('_').then_some(
                    "it ends with an underscore, which would run into the two that separate it from an application's name",
                )
            }
        });
        match reason {
            Some(reason) => Err(Error::InvalidNamespace {
                namespace: name,
                reason: format!(
                    "{reason}; use 1 to {MAX_NAMESPACE_LEN} ASCII letters, digits or single underscores, starting with a letter"
                ),
            }),
            None => {
                let prefix = name.to_ascii_lowercase();
                Ok(Self { name, prefix })
            }
        }
    }

    /// The namespace as given.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The lowercase form that starts its tables' names.
    pub fn table_prefix(&self) -> &str {
        &self.prefix
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// What is wrong with `name` as the start of table names, if anything;
/// `too_long` if it is longer than `max_len`.
fn identifier_fault(name: &str, max_len: usize, too_long: &'static str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > max_len {
        Some(too_long)
    } else if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        Some("it does not start with a letter")
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Some("it contains a character other than a letter, digit or underscore")
    } else if is_reserved(name) {
        Some(
            "its tables would start with `sqlite_`, which SQLite reserves for itself, so choose a name that does not start with `sqlite`",
        )
    } else {
        None
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
        for good in [
            "a",
            "Orders",
            "orders_2",
            &"x".repeat(40),
            "sqlitex",
            "my_sqlite",
            "order__lines",
        ] {
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

    #[test]
    fn a_namespace_prefixes_the_tables_only() {
        let shop = Namespace::new("Shop").unwrap();
        let orders = AppName::new("Orders").unwrap();
        let namespaced = orders.in_namespace(Some(&shop)).unwrap();
        assert_eq!(namespaced.table_prefix(), "shop__orders");
        assert_eq!(namespaced.as_str(), "Orders");
        assert_eq!(namespaced.key(), "orders");
        assert_eq!(namespaced.namespace(), Some(&shop));
        assert_ne!(namespaced, orders);
        assert_eq!(namespaced.in_namespace(None).unwrap(), orders);
        for good in ["a", "eu_west", "x1", &"n".repeat(20)] {
            assert!(Namespace::new(good).is_ok(), "{good}");
        }
        for bad in ["", "1eu", "eu_", "eu__west", "e-u", "sqlite", &"n".repeat(21)] {
            let err = Namespace::new(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
        // The longest prefix that fits PostgreSQL's identifiers.
        let long = Namespace::new("n".repeat(20)).unwrap();
        assert!(AppName::new("a".repeat(24)).unwrap().in_namespace(Some(&long)).is_ok());
        let err = AppName::new("a".repeat(25))
            .unwrap()
            .in_namespace(Some(&long))
            .unwrap_err();
        assert!(err.to_string().contains("47 characters"), "{err}");
    }
}
