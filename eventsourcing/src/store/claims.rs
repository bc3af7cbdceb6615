//! Who an application's tables belong to.
//!
//! - Their owner: the (namespace, application) that made them. An
//!   application outside any namespace named `eu__orders` has the table
//!   names of `orders` in the namespace `eu`; the second of the two to open
//!   them is refused.
//! - Their claim: which process application runs them. Two systems that
//!   each have an application of one name, in one store and namespace,
//!   would share its tables and tracking positions, and one of them would
//!   process nothing; the second to start is refused instead.

use crate::{AppName, Error};

/// What opening a recorder does to the claim on its application's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Nothing: an [`Application`](crate::Application) opened to write
    /// commands, or a reader.
    Leave,
    /// Fails with [`Error::SystemClash`] if a process application other
    /// than the one of this module path runs the tables; records nothing.
    Check(&'static str),
    /// Records that the process application of this module path runs the
    /// tables, or fails with [`Error::SystemClash`] if another one does.
    Take(&'static str),
    /// Forgets which process application runs them. (The memory store
    /// releases without opening a recorder.)
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    Release,
}

/// The refusal of `app`'s tables, which `owner` in `owner_namespace` (or
/// in none, for "") owns.
pub(crate) fn tables_taken(app: &AppName, owner: String, owner_namespace: String) -> Error {
    Error::TablesTaken {
        tables: app.table_prefix().to_owned(),
        owner,
        owner_namespace: (!owner_namespace.is_empty()).then_some(owner_namespace),
        app: app.as_str().to_owned(),
        namespace: app.namespace().map(|ns| ns.as_str().to_owned()),
    }
}

/// The error for `claimant`, refused because `claimed_by` runs `app`.
pub(crate) fn clash(app: &AppName, claimed_by: String, claimant: &str) -> Error {
    Error::SystemClash {
        app: app.as_str().to_owned(),
        namespace: app.namespace().map(|ns| ns.as_str().to_owned()),
        claimed_by,
        claimant: claimant.to_owned(),
    }
}
