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
//! ```
//!
//! Options: `--orders N` (10,000), `--runner multi|single` (multi),
//! `--url URL` (`EVENTSOURCING_STORE_URL`, else the SQLite file
//! `orders.db`), `--batch-size N` notifications per transaction (500),
//! `--orders-per-commit N` orders created per transaction (100), `--rate N`
//! to create orders at N per second instead of as fast as possible (latency
//! at a steady load), `--fresh` to delete the SQLite file first.
//!
//! Order ids are the same in every run, so the program can be killed at any
//! moment and run again: orders already created are not created twice, and
//! processing resumes where it stopped.

mod domain;
// Shared with store_bench; a path, because the crash test builds this
// program in another crate.
#[path = "../src/plain_sqlite.rs"]
mod plain_sqlite;

use std::collections::HashMap;
use std::time::Instant;

use eventsourcing::prelude::*;
use eventsourcing::{Error, Recorder, RunnerKind, Timestamp, Versions};

use domain::{Order, Orders, Payment, Payments, Reservation, Reservations, order_id};

struct Options {
    orders: u64,
    runner: RunnerKind,
    url: String,
    batch_size: usize,
    orders_per_commit: u64,
    rate: Option<f64>,
    fresh: bool,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        orders: 10_000,
        runner: RunnerKind::MultiTask,
        url: std::env::var(eventsourcing::store::STORE_URL_ENV).unwrap_or_else(|_| "sqlite://orders.db".to_owned()),
        batch_size: 500,
        orders_per_commit: 100,
        rate: None,
        fresh: false,
    };
    let mut args = std::env::args().skip(1);
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
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = options()?;
    if options.fresh
        && let Some(path) = options.url.strip_prefix("sqlite://")
    {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    }
    let store = Store::open(&options.url).await?;
    let process = ProcessOptions::default().batch_size(options.batch_size);
    let runner = Runner::start(options.runner, domain::system(), &store, process).await?;
    eprintln!(
        "{} orders on {} ({} runner, batches of {}, {} orders per commit, {} cores)",
        options.orders,
        store.backend(),
        options.runner,
        options.batch_size,
        options.orders_per_commit,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );

    let events_before = events_recorded(&runner).await?;
    let started = Instant::now();
    // Orders are created in order, one commit at a time, so those an
    // earlier (stopped) run created are a prefix: skip past them.
    let orders_app = runner.app::<Orders>()?;
    let mut n = first_uncreated(orders_app, options.orders, options.orders_per_commit).await?;
    let before = n;
    while n < options.orders {
        if let Some(rate) = options.rate {
            let due = std::time::Duration::from_secs_f64((n - before) as f64 / rate);
            tokio::time::sleep_until((started + due).into()).await;
        }
        let end = (n + options.orders_per_commit).min(options.orders);
        let mut orders: Vec<Order> = (n..end).map(|i| Order::create(order_id(i))).collect();
        runner.save::<Orders>(&mut orders).await?.processed()?;
        n = end;
    }
    runner.wait_until_quiet().await?;
    let elapsed = started.elapsed();
    let events = events_recorded(&runner).await? - events_before;
    runner.shutdown().await?;

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

/// Events recorded so far in all three applications' logs.
async fn events_recorded(runner: &Runner) -> Result<u64, Error> {
    let mut total = 0;
    for app in [
        runner.app::<Orders>()?,
        runner.app::<Reservations>()?,
        runner.app::<Payments>()?,
    ] {
        total += app.recorder().max_notification_id(0).await?;
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
    let mut next = 1;
    loop {
        let page = log.select_notifications(0, next, 1000).await?;
        let Some(last) = page.last() else { break };
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
