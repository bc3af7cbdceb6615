//! The orders system, end to end: each order is created, reserved by
//! Reservations, marked reserved by Orders, paid by Payments and marked paid
//! by Orders: five events through three applications that follow each
//! other. Prints orders per second for the whole flow, events written per
//! second (in all three applications), and each order's latency from
//! created to paid, taken from the events' timestamps. On SQLite it then
//! inserts as many rows of the same shape into a fresh file beside the
//! store with a plain program (one transaction, see
//! `examples/src/plain_sqlite.rs`) and prints the ratio of the two rates.
//!
//! ```text
//! cargo run --release --example orders
//! cargo run --release --example orders -- --orders 20000 --runner single --batch-size 500
//! cargo run --release --example orders -- --url postgres://postgres@127.0.0.1:5432/postgres
//! cargo run --release --example orders -- --url postgres://… --partitions 4 --workers 2
//! ```
//!
//! Options: `--orders N` (10,000), `--runner multi|single` (multi),
//! `--url URL` (`EVENTSOURCING_STORE_URL`, else the SQLite file
//! `orders.db`), `--batch-size N` notifications per transaction (500),
//! `--orders-per-commit N` orders created per transaction (100), `--rate N`
//! to create orders at N per second instead of as fast as possible (latency
//! at a steady load), `--fresh` to delete the SQLite file first,
//! `--partitions P` partitions per log (1), `--poll-interval-ms N` (100),
//! `--clients N` concurrent clients creating the orders (1; each creates
//! every N-th commit of orders).
//!
//! `--workers W` (PostgreSQL) starts W worker OS processes, this program
//! run as `orders worker --url URL --partitions P …`, which share the
//! system through leases (`Runner::worker`; `--lease-ttl-ms N`, 10,000);
//! this process only creates the orders, waits for them to be paid, stops
//! the workers and prints each one's share of the work. A worker runs until
//! its standard input closes.
//!
//! Order ids are the same in every run, so the program can be killed at any
//! moment and run again: orders already created are not created twice, and
//! processing resumes where it stopped.

mod domain;
mod workers;
// Shared with store_bench; a path, because the crash test builds this
// program in another crate.
#[path = "../src/plain_sqlite.rs"]
mod plain_sqlite;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use eventsourcing::prelude::*;
use eventsourcing::{AppName, Error, NotificationSource, Recorder, RunnerKind, Saved, Timestamp, Versions};

use domain::{Order, Orders, Payment, Reservation, order_id};

struct Options {
    /// Run as one worker of a shared system (`orders worker …`).
    worker: bool,
    orders: u64,
    runner: RunnerKind,
    url: String,
    batch_size: usize,
    orders_per_commit: u64,
    rate: Option<f64>,
    fresh: bool,
    /// Concurrent clients creating orders.
    clients: u64,
    partitions: u32,
    workers: u32,
    lease_ttl_ms: u64,
    poll_interval_ms: u64,
}

impl Options {
    fn process(&self) -> ProcessOptions {
        ProcessOptions::default()
            .batch_size(self.batch_size)
            .partitions(self.partitions)
            .lease_ttl(std::time::Duration::from_millis(self.lease_ttl_ms))
            .poll_interval(std::time::Duration::from_millis(self.poll_interval_ms))
    }
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        worker: false,
        orders: 10_000,
        runner: RunnerKind::MultiTask,
        url: std::env::var(eventsourcing::store::STORE_URL_ENV).unwrap_or_else(|_| "sqlite://orders.db".to_owned()),
        batch_size: 500,
        orders_per_commit: 100,
        rate: None,
        fresh: false,
        clients: 1,
        partitions: 1,
        workers: 0,
        lease_ttl_ms: 10_000,
        poll_interval_ms: 100,
    };
    let mut args = std::env::args().skip(1).peekable();
    options.worker = args.next_if(|arg| arg == "worker").is_some();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |text: String| text.parse::<u64>().map_err(|e| format!("{arg}: {e}"));
        match arg.as_str() {
            "--orders" => options.orders = number(value()?)?,
            "--runner" => options.runner = value()?.parse().map_err(|e: Error| e.to_string())?,
            "--url" => options.url = value()?,
            "--batch-size" => options.batch_size = number(value()?)? as usize,
            "--orders-per-commit" => options.orders_per_commit = number(value()?)?.max(1),
            "--rate" => options.rate = Some(number(value()?)?.max(1) as f64),
            "--fresh" => options.fresh = true,
            "--partitions" => options.partitions = number(value()?)? as u32,
            "--clients" => options.clients = number(value()?)?.max(1),
            "--workers" => options.workers = number(value()?)? as u32,
            "--lease-ttl-ms" => options.lease_ttl_ms = number(value()?)?,
            "--poll-interval-ms" => options.poll_interval_ms = number(value()?)?,
            other => {
                return Err(format!(
                    "unknown option `{other}`; see the top of examples/orders/main.rs"
                ));
            }
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("orders: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let options = options()?;
    if options.fresh
        && let Some(path) = options.url.strip_prefix("sqlite://")
    {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    }
    let store = Store::open(&options.url).await?;
    if options.worker {
        return run_worker(&store, &options).await;
    }
    let system = domain::system();
    // With workers, this process only creates orders: the workers process.
    let (runner, workers) = if options.workers > 0 {
        // Three applications follow another, in each partition.
        (None, workers::start(&options, 3 * options.partitions)?)
    } else {
        let runner = Runner::start(options.runner, system.clone(), &store, options.process()).await?;
        (Some(runner), Vec::new())
    };
    let mut apps = Vec::new();
    for app in system.apps() {
        let recorder = store
            .partitioned_recorder(&AppName::new(app)?, options.partitions)
            .await?;
        apps.push(Application::new(recorder)?);
    }
    eprintln!(
        "{} orders on {} ({}, {} partition(s), batches of {}, {} orders per commit, {} cores)",
        options.orders,
        store.backend(),
        match options.workers {
            0 => format!("{} runner", options.runner),
            w => format!("{w} worker processes"),
        },
        options.partitions,
        options.batch_size,
        options.orders_per_commit,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );

    let events_before = events_recorded(&apps).await?;
    let started = Instant::now();
    // Orders are created in order, one commit at a time, so those an
    // earlier (stopped) run created are a prefix: skip past them.
    let orders_app = &apps[0];
    let before = first_uncreated(orders_app, options.orders, options.orders_per_commit).await?;
    let runner = runner.map(Arc::new);
    let mut creating = tokio::task::JoinSet::new();
    for client in 0..options.clients {
        let (runner, orders_app) = (runner.clone(), orders_app.clone());
        let (count, per_commit, clients, rate) =
            (options.orders, options.orders_per_commit, options.clients, options.rate);
        creating.spawn(async move {
            // Client `client` creates the commits `client`, `client + clients`, …
            let commits = (before..count)
                .step_by(per_commit as usize)
                .skip(client as usize)
                .step_by(clients as usize);
            for (k, n) in commits.enumerate() {
                if let Some(rate) = rate {
                    let due = std::time::Duration::from_secs_f64((k as u64 * per_commit * clients) as f64 / rate);
                    tokio::time::sleep_until((started + due).into()).await;
                }
                let end = (n + per_commit).min(count);
                let orders: Vec<Order> = (n..end).map(|i| Order::create(order_id(i))).collect();
                create(runner.as_deref(), &orders_app, orders).await?;
            }
            Ok::<(), Error>(())
        });
    }
    while let Some(created) = creating.join_next().await {
        created??;
    }
    let runner = runner.map(|runner| Arc::into_inner(runner).expect("the clients are done"));
    match &runner {
        Some(runner) => runner.wait_until_quiet().await?,
        // Each order ends with its third event in the Orders log.
        None => {
            while events_in(orders_app).await? < 3 * options.orders {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
    let elapsed = started.elapsed();
    let events = events_recorded(&apps).await? - events_before;
    if let Some(runner) = runner {
        runner.shutdown().await?;
    }
    let shares = workers::stop(workers)?;

    let latencies = check_and_measure(&store, options.orders).await?;
    let created = options.orders - before;
    println!(
        "{created} orders created in this run ({before} before); all {} reserved and paid {:.2} s after the run began",
        options.orders,
        elapsed.as_secs_f64(),
    );
    if created > 0 {
        println!(
            "throughput: {:.0} orders/s through all five steps",
            created as f64 / elapsed.as_secs_f64()
        );
    }
    print_latency(latencies);
    workers::print_shares(&shares);
    if events > 0 {
        let events_per_second = events as f64 / elapsed.as_secs_f64();
        println!("events: {events} written at {events_per_second:.0} events/s (all applications)");
        if let Some(path) = options.url.strip_prefix("sqlite://") {
            let baseline = format!("{path}.baseline");
            let rows_per_second = plain_sqlite::insert_rows_per_second(baseline.as_ref(), events as usize).await?;
            println!(
                "plain SQLite: {events} rows like these inserted in one transaction at {rows_per_second:.0} rows/s; \
                 the orders flow wrote at {:.0}% of that rate",
                100.0 * events_per_second / rows_per_second
            );
        }
    }
    Ok(())
}

/// Runs as one worker of the system until standard input closes, then
/// prints what it processed: `worker NAME processed N notifications`.
async fn run_worker(store: &Store, options: &Options) -> Result<(), Box<dyn std::error::Error>> {
    let runner = Runner::worker(domain::system(), store, options.process()).await?;
    let (closed, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = closed.send(());
    });
    println!("worker {} started", std::process::id());
    // Says how many leases it holds whenever that changes, so that the
    // process that started it can tell when the shares have settled.
    let mut stdin_closed = std::pin::pin!(stdin_closed);
    let mut held = None;
    loop {
        tokio::select! {
            _ = &mut stdin_closed => break,
            () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {
                let leases = runner.leases();
                let now: Vec<String> = leases.iter().map(|l| format!("{}/{}@{}", l.app, l.partition, l.epoch)).collect();
                if held.as_ref() != Some(&now) {
                    println!("worker {} holds {} leases {}", std::process::id(), now.len(), now.join(","));
                    held = Some(now);
                }
            }
        }
    }
    let processed = runner.processed();
    runner.shutdown().await?;
    println!("worker {} processed {processed} notifications", std::process::id());
    Ok(())
}

/// Creates `orders` in one commit. With concurrent clients, a run that was
/// stopped may have left commits after the first one missing: orders that
/// exist already are passed over one by one.
async fn create(runner: Option<&Runner>, orders_app: &Application, mut orders: Vec<Order>) -> Result<(), Error> {
    let saved = match runner {
        Some(runner) => runner.save::<Orders>(&mut orders).await.and_then(Saved::processed),
        None => orders_app.save(&mut orders).await,
    };
    match saved {
        Err(Error::Concurrency { .. }) => {
            for mut order in orders {
                let saved = match runner {
                    Some(runner) => runner.save::<Orders>(&mut order).await.and_then(Saved::processed),
                    None => orders_app.save(&mut order).await,
                };
                match saved {
                    Ok(_) | Err(Error::Concurrency { .. }) => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(())
        }
        other => other.map(drop),
    }
}

/// Events in every partition of one application's log.
async fn events_in(app: &Application) -> Result<u64, Error> {
    let mut total = 0;
    for partition in 0..app.recorder().partitions() {
        total += app.recorder().max_notification_id(partition).await?;
    }
    Ok(total)
}

/// Events recorded so far in all three applications' logs.
async fn events_recorded(apps: &[Application]) -> Result<u64, Error> {
    let mut total = 0;
    for app in apps {
        total += events_in(app).await?;
    }
    Ok(total)
}

fn print_latency(mut latencies: Vec<i64>) {
    if latencies.is_empty() {
        return;
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "latency created -> paid: min {:.1} ms, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(latencies[0]),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(latencies[latencies.len() - 1]),
    );
}

/// The first order (at a commit boundary) that does not exist yet.
async fn first_uncreated(orders: &Application, count: u64, per_commit: u64) -> Result<u64, Error> {
    let exists = async |i: u64| -> Result<bool, Error> {
        let events = orders
            .recorder()
            .select_events(order_id(i), Versions::from_range(..=1))
            .await?;
        Ok(!events.is_empty())
    };
    let (mut low, mut high) = (0, count.div_ceil(per_commit));
    while low < high {
        let middle = (low + high) / 2;
        if exists(middle * per_commit).await? {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    Ok((low * per_commit).min(count))
}

fn ms(micros: i64) -> f64 {
    micros as f64 / 1000.0
}

/// Reads the Orders log: checks that each of the first `orders` orders was
/// created, reserved and paid exactly once, and returns the latencies from
/// created to paid in microseconds, unsorted.
async fn check_and_measure(store: &Store, orders: u64) -> Result<Vec<i64>, Box<dyn std::error::Error>> {
    let orders_app = Application::open(store, "Orders").await?;
    let log = orders_app.recorder();
    let mut created: HashMap<Uuid, Timestamp> = HashMap::new();
    let mut reserved: HashMap<Uuid, u32> = HashMap::new();
    let mut paid: HashMap<Uuid, Timestamp> = HashMap::new();
    let pages = async |partition: u32, next: u64| log.select_notifications(partition, next, 1000).await;
    let (mut partition, mut next) = (0, 1);
    while partition < log.partitions() {
        let page = pages(partition, next).await?;
        let Some(last) = page.last() else {
            (partition, next) = (partition + 1, 1);
            continue;
        };
        next = last.id + 1;
        for n in &page {
            let e = &n.event;
            match e.topic.as_str() {
                "Order.Created" => {
                    created.insert(e.originator_id, e.timestamp);
                }
                "Order.Reserved" => *reserved.entry(e.originator_id).or_default() += 1,
                "Order.Paid" => {
                    if paid.insert(e.originator_id, e.timestamp).is_some() {
                        return Err(format!("order {} was paid twice", e.originator_id).into());
                    }
                }
                other => return Err(format!("unexpected topic {other} in the Orders log").into()),
            }
        }
    }
    let reservations = Application::open(store, "Reservations").await?;
    let payments = Application::open(store, "Payments").await?;
    let mut latencies = Vec::with_capacity(orders as usize);
    for i in 0..orders {
        if i % 100 == 0 {
            // A sample of orders, followed to their reservation and payment.
            let order: Order = orders_app.load(order_id(i)).await?;
            let reservation: Reservation = reservations.load(order.reservation_id.unwrap_or_default()).await?;
            let payment: Payment = payments.load(order.payment_id.unwrap_or_default()).await?;
            if (reservation.order_id, payment.order_id) != (order.id(), order.id()) {
                return Err(format!("order {i} has another order's reservation or payment").into());
            }
        }
        let id = order_id(i);
        let (Some(created), Some(paid)) = (created.get(&id), paid.get(&id)) else {
            return Err(format!("order {i} ({id}) was not created and paid").into());
        };
        if reserved.get(&id) != Some(&1) {
            return Err(format!("order {i} ({id}) was reserved {:?} times", reserved.get(&id)).into());
        }
        latencies.push(paid.as_micros() - created.as_micros());
    }
    Ok(latencies)
}
