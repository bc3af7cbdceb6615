//! The orders system split over two OS processes, each with its own SQLite
//! file, following each other's logs over HTTP. The shop runs Orders and
//! Payments; the warehouse runs Reservations. Each serves its own
//! applications' logs with a `LogServer` and is told where the other's
//! live (`ProcessOptions::upstream`); `system!` is the same on both sides.
//!
//! ```text
//! cargo run --release --example orders_http
//! cargo run --release --example orders_http -- --orders 20000 --fresh
//! ```
//!
//! Without a role it is the demo: it starts the warehouse as a child
//! process (this program run as `orders_http warehouse …`), runs the shop
//! itself, creates the orders, waits for every one to be paid, prints
//! orders per second, checks that each order was reserved once and paid
//! once (reading the warehouse's log over HTTP), and stops the warehouse.
//!
//! The roles, for running the two sides yourself:
//!
//! ```text
//! orders_http warehouse --url sqlite://warehouse.db --listen 127.0.0.1:8081 --peer http://127.0.0.1:8080
//! orders_http shop --url sqlite://shop.db --listen 127.0.0.1:8080 --peer http://127.0.0.1:8081 --orders 1000
//! ```
//!
//! Each serves at `--listen` and runs until its standard input closes; the
//! shop creates its orders (resuming after the last one it created, if it
//! was stopped), prints `all N orders paid` once they are, and goes on
//! serving. Options: `--orders N` (5,000), `--orders-per-commit N` (100),
//! `--rate N` orders per second (as fast as possible), `--fresh` (the demo
//! deletes its SQLite files first).

// The same domain as the orders example; this program reads the order ids
// of reservations and payments from their events, not from the aggregates.
#[path = "../orders/domain.rs"]
#[allow(dead_code)]
mod domain;

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eventsourcing::http::{HttpLog, LogServer, Upstream};
use eventsourcing::prelude::*;
use eventsourcing::{AppName, Error, NotificationLog, NotificationSource, Recorder, Versions};

use domain::{Order, Orders, Payments, Reservations, order_id};

type AnyError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Demo,
    Shop,
    Warehouse,
}

struct Options {
    role: Role,
    orders: u64,
    orders_per_commit: u64,
    rate: Option<f64>,
    fresh: bool,
    url: Option<String>,
    listen: String,
    peer: Option<String>,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1).peekable();
    let role = match args.next_if(|arg| !arg.starts_with("--")).as_deref() {
        None => Role::Demo,
        Some("shop") => Role::Shop,
        Some("warehouse") => Role::Warehouse,
        Some(other) => return Err(format!("unknown role `{other}`; use `shop` or `warehouse`, or none")),
    };
    let mut options = Options {
        role,
        orders: 5_000,
        orders_per_commit: 100,
        rate: None,
        fresh: false,
        url: None,
        listen: "127.0.0.1:0".to_owned(),
        peer: None,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |text: String| text.parse::<u64>().map_err(|e| format!("{arg}: {e}"));
        match arg.as_str() {
            "--orders" => options.orders = number(value()?)?,
            "--orders-per-commit" => options.orders_per_commit = number(value()?)?.max(1),
            "--rate" => options.rate = Some(number(value()?)?.max(1) as f64),
            "--fresh" => options.fresh = true,
            "--url" => options.url = Some(value()?),
            "--listen" => options.listen = value()?,
            "--peer" => options.peer = Some(value()?),
            other => {
                return Err(format!(
                    "unknown option `{other}`; see the top of examples/orders_http/main.rs"
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
            eprintln!("orders_http: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), AnyError> {
    let options = options()?;
    match options.role {
        Role::Warehouse => warehouse(&options).await,
        Role::Shop => {
            let shop = Shop::start(&options).await?;
            shop.create_and_wait(&options).await?;
            wait_for_stdin_to_close().await;
            shop.runner.shutdown().await?;
            Ok(())
        }
        Role::Demo => demo(options).await,
    }
}

/// The demo: the warehouse as a child process, the shop here.
async fn demo(mut options: Options) -> Result<(), AnyError> {
    let (shop_db, warehouse_db) = ("orders_http_shop.db", "orders_http_warehouse.db");
    if options.fresh {
        for file in [shop_db, warehouse_db] {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{file}{suffix}"));
            }
        }
    }
    // The shop's listener first, so that the warehouse can be told where
    // it is; then the warehouse says where it listens.
    let listener = tokio::net::TcpListener::bind(&options.listen).await?;
    let shop_url = format!("http://{}", listener.local_addr()?);
    let mut warehouse = Command::new(std::env::current_exe()?)
        .args([
            "warehouse",
            "--url",
            &format!("sqlite://{warehouse_db}"),
            "--peer",
            &shop_url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let warehouse_url = read_listening_line(&mut warehouse)?;
    println!("shop at {shop_url} (Orders, Payments), warehouse at {warehouse_url} (Reservations)");
    options.url = Some(format!("sqlite://{shop_db}"));
    options.peer = Some(warehouse_url.clone());

    let shop = Shop::start_on(&options, listener).await?;
    let (created, seconds) = shop.create_and_wait(&options).await?;
    if created > 0 {
        println!(
            "{created} orders created, reserved and paid across two processes in {seconds:.2} s: {:.0} orders/s",
            created as f64 / seconds
        );
    }
    check(&shop.store, &warehouse_url, options.orders).await?;
    shop.runner.shutdown().await?;
    drop(warehouse.stdin.take());
    let status = warehouse.wait()?;
    if !status.success() {
        return Err(format!("the warehouse process ended with {status}").into());
    }
    Ok(())
}

/// The warehouse's address, from the line it prints once it listens.
fn read_listening_line(child: &mut Child) -> Result<String, AnyError> {
    let stdout = child.stdout.take().ok_or("the warehouse's output is not piped")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    line.trim()
        .strip_prefix("listening on ")
        .map(str::to_owned)
        .ok_or_else(|| format!("the warehouse said `{}` instead of where it listens", line.trim()).into())
}

/// Runs Reservations, following Orders at the shop, and serves its log,
/// until standard input closes.
async fn warehouse(options: &Options) -> Result<(), AnyError> {
    let store = Store::open(options.url.as_deref().unwrap_or("sqlite://orders_http_warehouse.db")).await?;
    let peer = options
        .peer
        .as_deref()
        .ok_or("the warehouse needs --peer, the shop's URL")?;
    let process = ProcessOptions::default()
        .batch_size(500)
        .upstream::<Orders>(Upstream::http(peer))
        .upstream::<Payments>(Upstream::http(peer));
    let runner = Runner::multi_task(domain::system(), &store, process).await?;
    let listener = tokio::net::TcpListener::bind(&options.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let server = LogServer::open(&store, [AppName::new("Reservations")?]).await?;
    let serving = tokio::spawn(server.serve(listener));
    wait_for_stdin_to_close().await;
    serving.abort();
    runner.shutdown().await?;
    Ok(())
}

/// Orders and Payments, following Reservations at the warehouse, with their
/// logs served.
struct Shop {
    store: Store,
    runner: Runner,
    _serving: tokio::task::JoinHandle<eventsourcing::Result<()>>,
}

impl Shop {
    async fn start(options: &Options) -> Result<Self, AnyError> {
        let listener = tokio::net::TcpListener::bind(&options.listen).await?;
        Self::start_on(options, listener).await
    }

    async fn start_on(options: &Options, listener: tokio::net::TcpListener) -> Result<Self, AnyError> {
        let store = Store::open(options.url.as_deref().unwrap_or("sqlite://orders_http_shop.db")).await?;
        let peer = options
            .peer
            .as_deref()
            .ok_or("the shop needs --peer, the warehouse's URL")?;
        let process = ProcessOptions::default()
            .batch_size(500)
            .upstream::<Reservations>(Upstream::http(peer));
        let runner = Runner::multi_task(domain::system(), &store, process).await?;
        let server = LogServer::open(&store, [AppName::new("Orders")?, AppName::new("Payments")?]).await?;
        Ok(Self {
            store,
            runner,
            _serving: tokio::spawn(server.serve(listener)),
        })
    }

    /// Creates the orders not created yet, and waits until every order is
    /// paid: three events each in the Orders log. Returns how many it
    /// created and how long they took.
    async fn create_and_wait(&self, options: &Options) -> Result<(u64, f64), AnyError> {
        let orders = self.runner.app::<Orders>()?;
        let first = first_uncreated(orders.recorder(), options.orders, options.orders_per_commit).await?;
        let started = Instant::now();
        let mut next = first;
        while next < options.orders {
            let end = (next + options.orders_per_commit).min(options.orders);
            let mut batch: Vec<Order> = (next..end).map(|n| Order::create(order_id(n))).collect();
            match self.runner.save::<Orders>(&mut batch).await {
                Ok(_) | Err(Error::Concurrency { .. }) => {}
                Err(error) => return Err(error.into()),
            }
            next = end;
            if let Some(rate) = options.rate {
                let due = started + Duration::from_secs_f64((next - first) as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
        }
        let expected = 3 * options.orders;
        loop {
            let events = orders.recorder().max_notification_id(0).await?;
            if events >= expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        println!("all {} orders paid", options.orders);
        Ok((options.orders - first, seconds))
    }
}

/// The first order (at a commit boundary) that does not exist yet.
async fn first_uncreated(orders: &impl Recorder, count: u64, per_commit: u64) -> eventsourcing::Result<u64> {
    let (mut low, mut high) = (0, count.div_ceil(per_commit));
    while low < high {
        let middle = (low + high) / 2;
        let events = orders
            .select_events(order_id(middle * per_commit), Versions::from_range(..=1))
            .await?;
        if events.is_empty() {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Ok((low * per_commit).min(count))
}

/// Checks that each of the first `orders` orders was reserved once (in the
/// warehouse's log, read over HTTP) and paid once, and that it knows it.
async fn check(store: &Store, warehouse_url: &str, orders: u64) -> Result<(), AnyError> {
    let shop = |name: &'static str| async move { store.recorder(&AppName::new(name)?).await };
    let reservations = HttpLog::new(warehouse_url, AppName::new("Reservations")?)?;
    let reserved = count_by_order(reservations, "Reservation.Created").await?;
    let paid = count_by_order(shop("Payments").await?, "Payment.Created").await?;
    let orders_log = shop("Orders").await?;
    for n in 0..orders {
        let id = order_id(n);
        let events = orders_log.select_events(id, Versions::ALL).await?;
        let topics: Vec<&str> = events.iter().map(|e| e.topic.as_str()).collect();
        if topics != ["Order.Created", "Order.Reserved", "Order.Paid"] {
            return Err(format!("order {id} has the events {topics:?}").into());
        }
        if reserved.get(&id) != Some(&1) || paid.get(&id) != Some(&1) {
            return Err(format!(
                "order {id} was reserved {:?} and paid {:?} times",
                reserved.get(&id),
                paid.get(&id)
            )
            .into());
        }
    }
    if reserved.len() as u64 != orders || paid.len() as u64 != orders {
        return Err(format!(
            "{} orders reserved and {} paid, of {orders}",
            reserved.len(),
            paid.len()
        )
        .into());
    }
    println!("checked: each of {orders} orders reserved once and paid once; every log gapless");
    Ok(())
}

/// How many `topic` events each order has in a log, read in order by a log
/// reader (which fails on a gap). The events' state holds the order id.
async fn count_by_order(log: impl NotificationSource, topic: &str) -> Result<HashMap<Uuid, u32>, AnyError> {
    #[derive(serde::Deserialize)]
    struct ForOrder {
        order_id: Uuid,
    }
    let mut reader = NotificationLog::new(log).reader();
    let mut counts = HashMap::new();
    while let Some(n) = reader.next().await? {
        if n.event.topic.as_str() == topic {
            let state: ForOrder = serde_json::from_slice(&n.event.state)?;
            *counts.entry(state.order_id).or_default() += 1;
        }
    }
    Ok(counts)
}

/// Returns when this process's standard input closes: how the demo (or a
/// test) stops a side.
async fn wait_for_stdin_to_close() {
    let closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().lock().read_line(&mut sink).is_ok_and(|read| read > 0) {
            sink.clear();
        }
    });
    let _ = closed.await;
}
