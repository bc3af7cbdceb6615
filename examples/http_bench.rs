//! Reading a notification log over HTTP against reading it locally: the
//! same SQLite log, read from its recorder, and read from a `LogServer` on
//! localhost with `HttpLog` (sections of 1,000), with and without reading
//! ahead. Server and reader share this process and its cores.
//!
//! ```text
//! cargo run --release --example http_bench
//! cargo run --release --example http_bench -- --notifications 500000 --runs 5
//! ```

use std::time::Instant;

use eventsourcing::http::{HttpLog, LogServer};
use eventsourcing::{AppName, NotificationSource, Recorder, Store, StoredEvent, Timestamp};
use uuid::Uuid;

const SECTION: u64 = 1_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut notifications, mut runs) = (200_000u64, 3usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--notifications" => notifications = value.parse()?,
            "--runs" => runs = value.parse()?,
            other => return Err(format!("unknown option `{other}`; use --notifications N, --runs N").into()),
        }
    }
    let path = std::env::temp_dir().join(format!("http_bench-{}.db", Uuid::new_v4().simple()));
    let store = Store::open(&format!("sqlite://{}", path.display())).await?;
    let app = AppName::new("Orders")?;
    let recorder = store.recorder(&app).await?;
    for start in (0..notifications).step_by(1_000) {
        let events = (start..(start + 1_000).min(notifications))
            .map(|n| StoredEvent {
                originator_id: Uuid::now_v7(),
                originator_version: 1,
                timestamp: Timestamp::now(),
                topic: "Order.Created".into(),
                state_version: 1,
                state: format!(
                    "{{\"customer\":\"c{n}\",\"lines\":[{{\"sku\":\"s{}\",\"qty\":2}}]}}",
                    n % 97
                )
                .into_bytes(),
            })
            .collect();
        recorder.insert(0, events, None).await?;
    }
    let server = LogServer::open(&store, [app.clone()])
        .await?
        .with_section_size(SECTION)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(server.serve(listener));

    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!("{notifications} notifications of ~80 bytes, sections of {SECTION}, {cores} cores, {runs} runs");
    let mut rows: Vec<(&str, Vec<f64>)> = vec![
        ("local (recorder)", Vec::new()),
        ("HTTP, read-ahead 1", Vec::new()),
        ("HTTP, read-ahead 4", Vec::new()),
    ];
    for _ in 0..runs {
        rows[0].1.push(read_all(&recorder, notifications).await?);
        for (row, ahead) in [(1, 1), (2, 4)] {
            let log = HttpLog::new(&url, app.clone())?.with_read_ahead(ahead);
            rows[row].1.push(read_all(&log, notifications).await?);
        }
    }
    for (name, rates) in &rows {
        let (low, high) = rates.iter().fold((f64::MAX, 0f64), |(l, h), &r| (l.min(r), h.max(r)));
        println!("{name:<20} {low:>10.0} – {high:>10.0} notifications/s");
    }
    drop(recorder);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(())
}

/// Reads the whole log a section at a time; returns notifications per second.
async fn read_all(log: &impl NotificationSource, expected: u64) -> eventsourcing::Result<f64> {
    let started = Instant::now();
    let mut next = 1;
    loop {
        let page = log.select_notifications(0, next, SECTION as usize).await?;
        let Some(last) = page.last() else { break };
        next = last.id + 1;
    }
    assert_eq!(next - 1, expected, "every notification read");
    Ok(expected as f64 / started.elapsed().as_secs_f64())
}
