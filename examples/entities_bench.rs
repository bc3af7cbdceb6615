//! Sends to entities per second, and their latency: on one hot entity, and
//! across 10,000 entities, with as many sends in flight as there are
//! clients; then at a steady 1,000 sends/s across the 10,000. On memory, a
//! SQLite file, and PostgreSQL when a URL is given (durable commits; the
//! recorders group concurrent commits).
//!
//! ```text
//! cargo run --release --example entities_bench
//! cargo run --release --example entities_bench -- --postgres postgres://postgres@127.0.0.1:5432/bench
//! ```
//!
//! Options: `--sends N` per measurement (20,000), `--clients N` (64),
//! `--partitions P` of the entities' log (1: commits to one partition wait
//! for each other, to keep it gapless), `--postgres URL` (or
//! `EVENTSOURCING_TEST_POSTGRES_URL`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsourcing::AppName;
use eventsourcing::entities::{Entities, Entity};
use eventsourcing::prelude::*;

#[aggregate]
#[derive(Debug, Default)]
pub struct Counter {
    pub count: u64,
}

#[aggregate(entity)]
impl Counter {
    #[event(Increased)]
    pub fn increase(&mut self, by: u64) {
        self.count += by;
    }
}

fn increase(counter: &mut Entity<Counter>) -> Result<u64, &'static str> {
    counter.increase(1);
    Ok(counter.count)
}

const ENTITIES: usize = 10_000;

struct Options {
    sends: usize,
    clients: usize,
    partitions: u32,
    postgres: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut options = Options {
        sends: 20_000,
        clients: 64,
        partitions: 1,
        postgres: std::env::var("EVENTSOURCING_TEST_POSTGRES_URL").ok(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--sends" => options.sends = value.parse()?,
            "--clients" => options.clients = value.parse()?,
            "--partitions" => options.partitions = value.parse()?,
            "--postgres" => options.postgres = Some(value),
            other => return Err(format!("unknown option `{other}`; see the top of examples/entities_bench.rs").into()),
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "{} sends per measurement, {} clients, {ENTITIES} entities, {} partition(s), {cores} cores",
        options.sends, options.clients, options.partitions
    );
    println!(
        "{:<11} {:<24} {:>10} {:>9} {:>9}",
        "store", "load", "sends/s", "p50 ms", "p99 ms"
    );

    let sqlite_path = std::env::temp_dir().join(format!("entities_bench-{}.db", Uuid::new_v4().simple()));
    let mut stores = vec![
        ("memory", "memory:".to_owned()),
        ("sqlite", format!("sqlite://{}", sqlite_path.display())),
    ];
    if let Some(url) = &options.postgres {
        stores.push(("postgres", url.clone()));
    }
    for (name, url) in stores {
        let store = Store::open(&url).await?;
        let app = AppName::new(&format!("bench_{}", Uuid::new_v4().simple())[..20])?;
        let recorder = store.partitioned_recorder(&app, options.partitions).await?;
        let entities = Entities::new(Application::new(recorder)?);
        let hot = Uuid::new_v4();
        let many: Arc<Vec<Uuid>> = Arc::new((0..ENTITIES).map(|_| Uuid::new_v4()).collect());
        let runs = [
            (
                "one hot entity",
                measure(&entities, options.sends, options.clients, move |_| hot).await?,
            ),
            ("10,000 entities", {
                let many = many.clone();
                measure(&entities, options.sends, options.clients, move |n| many[n % ENTITIES]).await?
            }),
            (
                "10,000 at 1,000 sends/s",
                paced(&entities, &many, 1_000.0, Duration::from_secs(3)).await?,
            ),
        ];
        for (load, (rate, latencies)) in runs {
            println!(
                "{name:<11} {load:<24} {rate:>10.0} {:>9.2} {:>9.2}",
                percentile(&latencies, 0.50),
                percentile(&latencies, 0.99)
            );
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", sqlite_path.display()));
    }
    Ok(())
}

/// `sends` sends from `clients` concurrent clients, the `n`-th to
/// `target(n)`; returns sends per second and each send's latency.
async fn measure(
    entities: &Entities,
    sends: usize,
    clients: usize,
    target: impl Fn(usize) -> Uuid + Send + Sync + 'static,
) -> eventsourcing::Result<(f64, Vec<Duration>)> {
    let target = Arc::new(target);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (entities, target) = (entities.clone(), target.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for n in (client..sends).step_by(clients) {
                    let sent = Instant::now();
                    entities.send(target(n), increase).await?;
                    latencies.push(sent.elapsed());
                }
                Ok::<_, eventsourcing::Error>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(sends);
    for task in tasks {
        latencies.extend(task.await.expect("a client task ends")?);
    }
    Ok((sends as f64 / started.elapsed().as_secs_f64(), latencies))
}

/// Sends at `rate` per second for `length`, each to a random one of
/// `many`; returns the rate reached and each send's latency.
async fn paced(
    entities: &Entities,
    many: &Arc<Vec<Uuid>>,
    rate: f64,
    length: Duration,
) -> eventsourcing::Result<(f64, Vec<Duration>)> {
    let count = (rate * length.as_secs_f64()) as usize;
    let started = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|n| {
            let (entities, many) = (entities.clone(), many.clone());
            let due = started + Duration::from_secs_f64(n as f64 / rate);
            tokio::spawn(async move {
                tokio::time::sleep_until(due.into()).await;
                let sent = Instant::now();
                let id = many[(Uuid::new_v4().as_u128() % ENTITIES as u128) as usize];
                entities.send(id, increase).await?;
                Ok::<_, eventsourcing::Error>(sent.elapsed())
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(count);
    for task in tasks {
        latencies.push(task.await.expect("a send task ends")?);
    }
    Ok((count as f64 / started.elapsed().as_secs_f64(), latencies))
}

fn percentile(latencies: &[Duration], q: f64) -> f64 {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    let at = ((sorted.len().max(1) - 1) as f64 * q).round() as usize;
    sorted.get(at).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}
