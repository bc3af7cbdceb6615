//! The baseline the SQLite store is measured against: a plain program that
//! inserts rows shaped like the orders flow's events into a fresh SQLite
//! file through sqlx, in one large transaction.
//!
//! It uses what the store uses for an application's events: the same
//! table and index, the same connection settings (WAL, the same cache and
//! checkpoint pragmas; `synchronous=FULL`, so that its `COMMIT` flushes the
//! log, where the store's writer commits with `NORMAL` and flushes the log
//! on a thread of its own before answering: with one commit, the same
//! flush), and rows of the same sizes: for
//! each order, the five events of the orders flow with their topics and
//! the lengths of their JSON states. Rows go 100 to a prepared multi-row
//! `INSERT` (a statement per row costs a round trip to sqlx's SQLite
//! thread each, and runs at a tenth of the rate); the one `COMMIT` waits
//! for the disk once.

use std::path::Path;
use std::time::Instant;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqlSafeStr};
use uuid::Uuid;

/// The orders flow's events, per order: topic and encoded state length.
const ORDER_EVENTS: [(&str, usize); 5] = [
    ("Order.Created", 2),
    ("Reservation.Created", 51),
    ("Order.Reserved", 57),
    ("Payment.Created", 51),
    ("Order.Paid", 53),
];

/// Rows per `INSERT` statement: the fastest of 1, 10, 100 and 256 here.
const ROWS_PER_STATEMENT: usize = 100;

/// Inserts `rows` event-shaped rows into a fresh SQLite file at `path` in
/// one transaction, and returns rows per second (from `BEGIN` to the end
/// of `COMMIT`). The file is removed afterwards.
pub async fn insert_rows_per_second(path: &Path, rows: usize) -> Result<f64, sqlx::Error> {
    remove(path);
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .pragma("cache_size", "-65536")
        .pragma("wal_autocheckpoint", "8192")
        .connect()
        .await?;
    sqlx::query(
        "CREATE TABLE events (
            partition_id INTEGER NOT NULL,
            notification_id INTEGER NOT NULL,
            originator_id BLOB NOT NULL,
            originator_version INTEGER NOT NULL,
            recorded_at INTEGER NOT NULL,
            topic TEXT NOT NULL,
            state_version INTEGER NOT NULL DEFAULT 1,
            state BLOB NOT NULL,
            PRIMARY KEY (partition_id, notification_id)
        ) WITHOUT ROWID",
    )
    .execute(&mut conn)
    .await?;
    sqlx::query("CREATE UNIQUE INDEX events_aggregate ON events (originator_id, originator_version)")
        .execute(&mut conn)
        .await?;

    let states: Vec<Vec<u8>> = ORDER_EVENTS.iter().map(|(_, len)| vec![b'x'; *len]).collect();
    let per_statement = ROWS_PER_STATEMENT;
    let columns =
        "partition_id, notification_id, originator_id, originator_version, recorded_at, topic, state_version, state";
    let statement = |rows: usize| {
        let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
        sqlx::AssertSqlSafe(format!("INSERT INTO events ({columns}) VALUES {values}"))
    };
    let full = statement(per_statement).into_sql_str();
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    let mut ids = [Uuid::nil(); 3];
    let mut n = 0;
    while n < rows {
        let chunk = per_statement.min(rows - n);
        let mut query = if chunk == per_statement {
            sqlx::query(full.clone())
        } else {
            sqlx::query(statement(chunk))
        };
        for n in n..n + chunk {
            let kind = n % ORDER_EVENTS.len();
            if kind == 0 {
                ids = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
            }
            // Order, reservation, order, payment, order: versions 1, 1, 2, 1, 3.
            let (id, version) = [(ids[0], 1), (ids[1], 1), (ids[0], 2), (ids[2], 1), (ids[0], 3)][kind];
            let micros = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64);
            query = query
                .bind(0_i64)
                .bind(n as i64 + 1)
                .bind(id.as_bytes().to_vec())
                .bind(version)
                .bind(micros)
                .bind(ORDER_EVENTS[kind].0)
                .bind(1_i64)
                .bind(states[kind].as_slice());
        }
        query.execute(&mut *tx).await?;
        n += chunk;
    }
    tx.commit().await?;
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    conn.close().await?;
    remove(path);
    Ok(rate)
}

fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}
