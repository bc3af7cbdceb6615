//! Entities and reliable effects: counters that "always exist", each
//! increased to ten by commands sent by id; the tenth increase of each
//! sends the admin a notice. The notice is a reliable effect: recorded in
//! the outbox with the tenth event, and POSTed by a dispatcher to the
//! admin's HTTP endpoint (an axum server in this program, or `--admin-url`)
//! with the effect's id as its `Idempotency-Key`, until it is accepted.
//! Then pairs of accounts pay each other: each transfer withdraws from one
//! account and sends the other a deposit, a message between entities
//! delivered exactly once.
//!
//! ```text
//! cargo run --release --example entities
//! cargo run --release --example entities -- --counters 1000 --fresh
//! ```
//!
//! Options: `--counters N` (100), `--pairs N` of accounts (50), `--url URL`
//! (the SQLite file `entities.db`), `--fresh` (delete it first),
//! `--admin-url URL` (post to an endpoint elsewhere instead of starting
//! one).
//!
//! Kill it at any moment and run it again: it increases only counters not
//! yet at ten, pays only what is left to pay, and delivers what is still in
//! the outbox. Every counter ends at ten, the admin sees one notice per
//! counter (a notice posted again after a crash carries the same key), and
//! every paid account ends with exactly what its payer paid.

#[path = "accounts.rs"]
mod accounts;
#[path = "admin.rs"]
mod admin;

use std::time::{Duration, Instant};

use eventsourcing::entities::{DispatchOptions, EffectHandler, Entities, Entity};
use eventsourcing::prelude::*;
use eventsourcing::{HandlerError, Recorder, Timestamp};
use serde::{Deserialize, Serialize};

/// Increases until this, then refuses.
const FULL: u64 = 10;

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

/// What the admin is told when a counter is full.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Notice {
    pub counter: Uuid,
    pub count: u64,
}

/// Posts notices to the admin's endpoint.
struct PostToAdmin {
    client: reqwest::Client,
    url: String,
}

impl EffectHandler for PostToAdmin {
    type Effect = Notice;
    const NAME: &'static str = "notify_admin";

    async fn deliver(&self, key: Uuid, notice: Notice) -> Result<(), HandlerError> {
        let body = format!("{{\"counter\":\"{}\",\"count\":{}}}", notice.counter, notice.count);
        let response = self
            .client
            .post(&self.url)
            .header("idempotency-key", key.to_string())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the admin's endpoint answered {}", response.status()).into())
        }
    }
}

/// Increases the counter, unless it is full; the increase that fills it
/// notifies the admin.
fn increase(counter: &mut Entity<Counter>) -> Result<u64, &'static str> {
    if counter.count >= FULL {
        return Err("full");
    }
    counter.increase(1);
    if counter.count == FULL {
        let notice = Notice {
            counter: counter.id(),
            count: counter.count,
        };
        counter.reliable::<PostToAdmin>(notice);
    }
    Ok(counter.count)
}

/// The `n`-th counter's id: the same in every run.
fn counter_id(n: u64) -> Uuid {
    Uuid::from_u128(0x0193_a2f0_5c00_7000_8000_0000_0000_0000 + u128::from(n))
}

struct Options {
    counters: u64,
    pairs: u64,
    url: String,
    fresh: bool,
    admin_url: Option<String>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        counters: 100,
        pairs: 50,
        url: "sqlite://entities.db".to_owned(),
        fresh: false,
        admin_url: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--counters" => options.counters = value()?.parse().map_err(|e| format!("--counters: {e}"))?,
            "--pairs" => options.pairs = value()?.parse().map_err(|e| format!("--pairs: {e}"))?,
            "--url" => options.url = value()?,
            "--fresh" => options.fresh = true,
            "--admin-url" => options.admin_url = Some(value()?),
            other => {
                return Err(format!(
                    "unknown option `{other}`; see the top of examples/entities/main.rs"
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
            eprintln!("entities: {error}");
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
    // The admin's endpoint: elsewhere, or here.
    let local_admin = admin::Admin::default();
    let admin_url = match &options.admin_url {
        Some(url) => url.clone(),
        None => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let url = format!("http://{}/notices", listener.local_addr()?);
            local_admin.serve(listener);
            url
        }
    };

    let store = Store::open(&options.url).await?;
    let entities = Entities::open(&store, "entities")
        .await?
        .with_message::<accounts::Deposit>();
    let dispatching = entities
        .dispatcher()
        .handler(PostToAdmin {
            client: reqwest::Client::new(),
            url: admin_url,
        })
        .with_options(
            DispatchOptions::default()
                .poll_interval(Duration::from_millis(20))
                .backoff(Duration::from_millis(50), Duration::from_secs(2))
                // The admin endpoint is near: after a crash, what the
                // killed process was delivering is delivered again soon.
                .timeout(Duration::from_secs(2)),
        )
        .start()?;

    // Every counter to ten, ten clients at a time: each sends to its own
    // counters, one increase after another, until it refuses.
    let started = Instant::now();
    let clients: Vec<_> = (0..10)
        .map(|client| {
            let entities = entities.clone();
            let counters = options.counters;
            tokio::spawn(async move {
                let mut sends = 0u64;
                for n in (client..counters).step_by(10) {
                    loop {
                        sends += 1;
                        match entities.send(counter_id(n), increase).await {
                            Ok(_) => {}
                            Err(eventsourcing::Error::Refused { .. }) => break,
                            Err(error) => return Err(error),
                        }
                    }
                }
                Ok(sends)
            })
        })
        .collect();
    let mut sends = 0;
    for client in clients {
        sends += client.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{} counters at {FULL}: {sends} sends in {seconds:.2} s ({:.0} sends/s)",
        options.counters,
        sends as f64 / seconds
    );

    // Each payer pays its payee in transfers until it is empty.
    let started = Instant::now();
    let payers: Vec<_> = (0..10)
        .map(|client| {
            let entities = entities.clone();
            let pairs = options.pairs;
            tokio::spawn(async move {
                let mut transfers = 0u64;
                for n in (client..pairs).step_by(10) {
                    let (payer, payee) = accounts::pair(n);
                    entities
                        .send(payer, |a: &mut Entity<accounts::Account>| {
                            a.open(accounts::OPENING);
                            Ok::<_, &str>(())
                        })
                        .await?;
                    loop {
                        match entities
                            .send(payer, move |a: &mut Entity<_>| accounts::pay(a, payee))
                            .await
                        {
                            Ok(_) => transfers += 1,
                            Err(eventsourcing::Error::Refused { .. }) => break,
                            Err(error) => return Err(error),
                        }
                    }
                }
                Ok(transfers)
            })
        })
        .collect();
    let mut transfers = 0;
    for payer in payers {
        transfers += payer.await??;
    }
    println!(
        "{} payers paid out: {transfers} transfers in {:.2} s",
        options.pairs,
        started.elapsed().as_secs_f64()
    );

    // Then until every notice and deposit is out of the outbox.
    let outbox = entities.app().recorder().clone();
    loop {
        let due = outbox.due_outgoing(Timestamp::from_micros(i64::MAX), 1).await?;
        let parked = outbox.parked_outgoing().await?;
        if due.is_empty() && parked.is_empty() {
            break;
        }
        if !parked.is_empty() {
            return Err(format!(
                "{} notices parked; the last error: {:?}",
                parked.len(),
                parked[0].last_error
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    dispatching.stop().await;
    println!("all {} notices delivered", options.counters);
    for n in 0..options.pairs {
        let (payer, payee) = accounts::pair(n);
        let (payer, payee): (accounts::Account, accounts::Account) =
            (entities.load(payer).await?, entities.load(payee).await?);
        if (payer.balance, payee.balance) != (0, accounts::OPENING) {
            return Err(format!(
                "pair {n}: the payer has {} and the payee {}, not 0 and {}",
                payer.balance,
                payee.balance,
                accounts::OPENING
            )
            .into());
        }
    }
    println!(
        "all {} deposits delivered once: every payee holds {}",
        options.pairs * accounts::OPENING / accounts::TRANSFER,
        accounts::OPENING
    );
    if options.admin_url.is_none() {
        // Notices of counters filled by an earlier run went to its admin.
        println!(
            "the admin here received {} notices in {} deliveries",
            local_admin.unique(),
            local_admin.deliveries()
        );
        if let Some(body) = local_admin.bodies().iter().find(|b| !b.contains("\"count\":10")) {
            return Err(format!("a notice for a counter not at ten: {body}").into());
        }
    }
    Ok(())
}
