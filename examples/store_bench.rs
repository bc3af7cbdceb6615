//! Measures the recorder on each backend: events appended per second at 1
//! and 10 events per transaction (one writer, and eight at once), and
//! notifications read per second (from the database, through a store that
//! did not write them). Then the baseline for SQLite: a plain
//! program inserting 50,000 rows of the same shape into a fresh file in
//! one transaction (`examples/src/plain_sqlite.rs`).
//!
//! ```text
//! cargo run --release --example store_bench                 # memory and SQLite
//! scripts/with-postgres.sh cargo run --release --example store_bench   # and PostgreSQL
//! ```
//!
//! PostgreSQL is measured when `EVENTSOURCING_TEST_POSTGRES_URL` (or
//! `--postgres URL`) names a database; tables are made per run.

#[path = "src/plain_sqlite.rs"]
mod plain_sqlite;

use std::time::{Duration, Instant};

use eventsourcing::{AnyRecorder, AppName, NotificationSource, Recorder, Store, StoredEvent, Timestamp};
use uuid::Uuid;

/// Transactions per measurement, per backend (memory is far faster).
fn transactions(backend: &str) -> usize {
    match backend {
        "memory" => 100_000,
        _ => 4_000,
    }
}

fn events(count: usize) -> Vec<StoredEvent> {
    let id = Uuid::new_v4();
    (1..=count as u64)
        .map(|version| StoredEvent {
            originator_id: id,
            originator_version: version,
            timestamp: Timestamp::now(),
            topic: "Order.Created".into(),
            state_version: 1,
            state: br#"{"customer":"c-1042","lines":[{"sku":"A-7","qty":2}]}"#.to_vec(),
        })
        .collect()
}

/// Appends `txns` transactions of `per_txn` events from `writers` concurrent
/// tasks; returns events per second.
async fn append(recorder: &AnyRecorder, txns: usize, per_txn: usize, writers: usize) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let recorder = recorder.clone();
            tokio::spawn(async move {
                for _ in 0..txns / writers {
                    recorder.insert(0, events(per_txn), None).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer task");
    }
    (txns / writers * writers * per_txn) as f64 / started.elapsed().as_secs_f64()
}

/// Reads the whole log in pages of 1,000; returns notifications per second.
async fn read(recorder: &AnyRecorder) -> f64 {
    let started = Instant::now();
    let (mut position, mut count) = (0, 0usize);
    loop {
        let page = recorder
            .select_notifications(0, position + 1, 1000)
            .await
            .expect("read");
        let Some(last) = page.last() else { break };
        position = last.id;
        count += page.len();
    }
    count as f64 / started.elapsed().as_secs_f64()
}

async fn bench(url: &str, label: &str) {
    let store = Store::open(url).await.expect("store opens");
    let txns = transactions(store.backend());
    let app = AppName::new(format!("bench_{}", &Uuid::new_v4().simple().to_string()[..8])).expect("valid name");
    let recorder = store.recorder(&app).await.expect("recorder opens");
    let one = append(&recorder, txns, 1, 1).await;
    let one_eight = append(&recorder, txns, 1, 8).await;
    let ten = append(&recorder, txns, 10, 1).await;
    let ten_eight = append(&recorder, txns, 10, 8).await;
    // Read through a second store on the same database, so that SQLite
    // reads the file rather than the notifications its writer keeps in
    // memory for followers in the same process.
    let reads = match store.backend() {
        "memory" => read(&recorder).await,
        _ => {
            let readers = Store::open(url).await.expect("store opens again");
            read(&readers.recorder(&app).await.expect("recorder opens")).await
        }
    };
    println!("| {label:<10} | {one:>12.0} | {one_eight:>12.0} | {ten:>12.0} | {ten_eight:>12.0} | {reads:>12.0} |");
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut postgres = std::env::var("EVENTSOURCING_TEST_POSTGRES_URL").ok();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--postgres" => postgres = args.next(),
            other => {
                eprintln!("unknown argument `{other}`; usage: store_bench [--postgres URL]");
                std::process::exit(2);
            }
        }
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("Recorder throughput on {cores} cores (events/s appended, notifications/s read)\n");
    println!("| backend    | 1/txn, 1 w   | 1/txn, 8 w   | 10/txn, 1 w  | 10/txn, 8 w  | read         |");
    println!("|------------|--------------|--------------|--------------|--------------|--------------|");
    bench("memory:", "memory").await;

    let dir = std::env::temp_dir().join(format!("eventsourcing-bench-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    bench(&format!("sqlite://{}", dir.join("bench.db").display()), "sqlite").await;

    match postgres {
        Some(url) => bench(&url, "postgres").await,
        None => println!("| postgres   | (skipped: set EVENTSOURCING_TEST_POSTGRES_URL or pass --postgres URL)      |"),
    }

    const BASELINE_ROWS: usize = 50_000;
    let plain = plain_sqlite::insert_rows_per_second(&dir.join("plain.db"), BASELINE_ROWS)
        .await
        .expect("plain SQLite insert");
    println!("\nPlain SQLite baseline: {BASELINE_ROWS} event rows inserted in one transaction at {plain:.0} rows/s");
    let _ = std::fs::remove_dir_all(&dir);
    tokio::time::sleep(Duration::from_millis(10)).await;
}
