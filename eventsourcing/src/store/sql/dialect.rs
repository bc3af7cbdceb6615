//! What differs between the SQL databases: column types, placeholders, how
//! to ask whether a table or column exists, and how a write reaches the
//! database (SQLite's single writer with group commit; PostgreSQL's pool
//! and one-statement write). Everything else is in the generic recorder.

use std::fmt::Debug;
use std::future::Future;

use super::{SqlRecorder, Write};
use crate::Result;

/// The column types of one database, by what they hold.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ColumnTypes {
    /// A 32-bit integer: partitions, state versions, attempts.
    pub(crate) int: &'static str,
    /// A 64-bit integer: notification ids, versions, timestamps.
    pub(crate) bigint: &'static str,
    /// An aggregate id.
    pub(crate) uuid: &'static str,
    /// Text: topics, names, errors.
    pub(crate) text: &'static str,
    /// Bytes: event state.
    pub(crate) bytes: &'static str,
    /// After a table's closing parenthesis, for tables keyed by their
    /// primary key alone (SQLite's `WITHOUT ROWID`).
    pub(crate) clustered: &'static str,
}

/// A SQL database the recorder runs on: SQLite or PostgreSQL.
pub(crate) trait Dialect: Debug + Send + Sync + Sized + 'static {
    /// The driver's database type.
    type Db: sqlx::Database;
    /// What a recorder holds to reach the database: connections, queues.
    type Handle: Clone + Debug + Send + Sync + 'static;

    /// The database's name, for messages.
    const NAME: &'static str;
    /// The column types.
    const TYPES: ColumnTypes;
    /// Whether parameters are numbered (`$1`, `$2`, …) rather than `?`.
    const NUMBERED_PARAMETERS: bool;
    /// One parameter, a table name; answers one row if the table exists.
    const TABLE_EXISTS: &'static str;
    /// Two parameters, a table and a column name; answers one row if the
    /// column exists.
    const COLUMN_EXISTS: &'static str;

    /// Statements of this database only, made once per application.
    type Statements: Debug + Send + Sync + 'static;

    /// This database's own statements for the tables prefixed `prefix`.
    fn statements(prefix: &str) -> Self::Statements;

    /// The pool for reads that need no transaction.
    fn readers(handle: &Self::Handle) -> &sqlx::Pool<Self::Db>;

    /// Waits until everything a read from [`readers`](Self::readers) may
    /// have seen is durable. SQLite makes a commit visible before it
    /// reaches the disk (`sqlite/flush.rs`); PostgreSQL only after.
    fn after_read(recorder: &SqlRecorder<Self>) -> impl Future<Output = Result<()>> + Send {
        let _ = recorder;
        std::future::ready(Ok(()))
    }

    /// The rows a statement changed.
    fn rows_affected(result: &<Self::Db as sqlx::Database>::QueryResult) -> u64;

    /// Records a write in one transaction and answers its notification ids
    /// (or, for a failed retry of a dead letter, the attempts now recorded).
    fn write(recorder: &SqlRecorder<Self>, write: Write) -> impl Future<Output = Result<Vec<u64>>> + Send;

    /// Up to `limit` notifications of `partition` from id `start` on, in id
    /// order.
    fn select_notifications(
        recorder: &SqlRecorder<Self>,
        partition: u32,
        start: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<crate::Notification>>> + Send;

    /// Inserts the write's events in the open transaction on `conn`,
    /// numbering them from the head of its partition, which it advances.
    fn insert_events(
        recorder: &SqlRecorder<Self>,
        conn: &mut <Self::Db as sqlx::Database>::Connection,
        write: &Write,
    ) -> impl Future<Output = Result<Vec<u64>, super::Abort>> + Send;
}
