//! The orders system rides out a real PostgreSQL server restarted in
//! immediate mode mid-run, and its connections terminated again and again,
//! and stops with a clear error when the server is away for longer than
//! the outage budget; and commits are heard across processes again after a
//! restart.
//!
//! These tests stop the test server, so they live in a binary of their own
//! (cargo runs test binaries one after another) and take turns within it.
//! They need `scripts/with-postgres.sh`, which says how to control the
//! server; without it they print SKIPPED (under `CI=true` they fail).

#[path = "../examples/orders/domain.rs"]
#[allow(dead_code)]
mod domain;
#[path = "common/orders_check.rs"]
mod orders_check;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use eventsourcing::{Aggregate, Error, ProcessOptions, Runner, RunnerKind, Store};
use sqlx::Connection;
use uuid::Uuid;

use domain::{Order, Orders};
use orders_check::assert_each_order_reserved_and_paid_once;

/// What `scripts/with-postgres.sh` sets to a `pg_ctl` for its server.
const CTL_ENV: &str = "EVENTSOURCING_TEST_POSTGRES_CTL";

/// One test at a time stops or restarts the server.
static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The test server and how to stop and start it.
struct Server {
    url: String,
    ctl: PathBuf,
}

impl Server {
    /// The server of `scripts/with-postgres.sh`, or `None` (skipped) when
    /// the tests run without it; under `CI=true` that fails.
    fn from_env() -> Option<Self> {
        let url = eventsourcing_tests::postgres_url()?;
        match std::env::var(CTL_ENV) {
            Ok(ctl) if !ctl.is_empty() => Some(Self {
                url,
                ctl: PathBuf::from(ctl),
            }),
            _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
                panic!("{CTL_ENV} is not set under CI=true; run the tests through scripts/with-postgres.sh")
            }
            _ => {
                eprintln!(
                    "SKIPPED: PostgreSQL restart test, because {CTL_ENV} is not set (scripts/with-postgres.sh sets it)"
                );
                None
            }
        }
    }

    /// The server's `host:port`.
    fn address(&self) -> &str {
        let after_user = self.url.rsplit_once('@').map_or(self.url.as_str(), |(_, rest)| rest);
        after_user.split_once('/').map_or(after_user, |(address, _)| address)
    }

    /// Runs `pg_ctl` with `args` (it waits for the server to stop or start).
    async fn ctl(&self, args: &'static [&'static str]) {
        let ctl = self.ctl.clone();
        let status = tokio::task::spawn_blocking(move || Command::new(&ctl).args(args).status())
            .await
            .expect("pg_ctl ran")
            .expect("pg_ctl started");
        assert!(status.success(), "pg_ctl {args:?} failed: {status}");
    }

    /// When the server's postmaster started: changes with each restart.
    async fn started_at(&self) -> String {
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .expect("the test server accepts connections");
        sqlx::query_scalar("SELECT pg_postmaster_start_time()::text")
            .fetch_one(&mut conn)
            .await
            .expect("the server says when it started")
    }
}

/// Starts the server again when dropped, so that a test that fails while
/// the server is stopped leaves it running for the tests after it.
struct StartAgain<'a>(&'a Server);

impl Drop for StartAgain<'_> {
    fn drop(&mut self) {
        // Fails harmlessly if the server is already running.
        let _ = Command::new(&self.0.ctl)
            .arg("start")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Saves `orders` through the runner, trying again while the server is
/// away (the save's own database error; anything else fails the test). A
/// save that landed but whose reply was lost comes back as a concurrency
/// conflict: it is done. Returns how many attempts failed.
async fn save_until_done(runner: &Runner, orders: &mut Vec<Order>) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut failed = 0;
    loop {
        match runner.save::<Orders>(&mut *orders).await {
            Ok(_) | Err(Error::Concurrency { .. }) => return failed,
            Err(error @ Error::Database { .. }) if Instant::now() < deadline => {
                failed += 1;
                eprintln!("save failed (server away?), trying again: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("orders could not be saved: {error}"),
        }
    }
}

/// Creates orders five at a time, paced, and returns their ids.
async fn create_orders(runner: &Runner, count: usize, failed_saves: &mut u32) -> Vec<Uuid> {
    let mut ids = Vec::new();
    while ids.len() < count {
        let mut orders: Vec<Order> = (0..5).map(|_| Order::create(Uuid::new_v4())).collect();
        ids.extend(orders.iter().map(Aggregate::id));
        *failed_saves += save_until_done(runner, &mut orders).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_run_loses_nothing_and_repeats_nothing() {
    let Some(server) = Server::from_env() else { return };
    let _turn = SERVER.lock().await;
    let _start_again = StartAgain(&server);
    for kind in [RunnerKind::MultiTask, RunnerKind::SingleThreaded, RunnerKind::Worker] {
        restart_mid_run(&server, kind).await;
    }
}

/// Runs the orders system with the runner `kind` while the server is
/// restarted in immediate mode.
async fn restart_mid_run(server: &Server, kind: RunnerKind) {
    let url = eventsourcing_tests::fresh_postgres_url().await.expect("a server");
    let store = Store::open(&url).await.unwrap();
    // No retries: an outage must not count as a failure. Small batches, so
    // that processing spans many transactions.
    // Two partitions, and for the worker leases short enough to lapse while
    // the server is away: it takes them up again afterwards.
    let options = ProcessOptions::default()
        .batch_size(5)
        .poll_interval(Duration::from_millis(20))
        .partitions(2)
        .lease_ttl(Duration::from_secs(1));
    assert_eq!(options.retries, 0);
    let runner = Runner::start(kind, domain::system(), &store, options).await.unwrap();
    let started_before = server.started_at().await;

    let mut failed_saves = 0;
    let mut ids = create_orders(&runner, 100, &mut failed_saves).await;
    // Orders keep coming, and all three applications keep processing,
    // while the server is killed and started again.
    let ctl = server.ctl.clone();
    let restart = tokio::task::spawn_blocking(move || Command::new(ctl).args(["restart", "-m", "immediate"]).status());
    while !restart.is_finished() {
        ids.extend(create_orders(&runner, 5, &mut failed_saves).await);
    }
    let status = restart.await.unwrap().expect("pg_ctl started");
    assert!(status.success(), "pg_ctl restart failed: {status}");
    let mut after = 0;
    ids.extend(create_orders(&runner, 50, &mut after).await);
    failed_saves += after;

    tokio::time::timeout(Duration::from_secs(120), runner.wait_until_quiet())
        .await
        .expect("the runner caught up within two minutes of the restart")
        .expect("the runner rode out the restart");
    runner.shutdown().await.expect("no application stopped");

    assert_ne!(server.started_at().await, started_before, "the server was restarted");
    eprintln!("{kind:?}: {} orders, {failed_saves} saves tried again", ids.len());
    assert_each_order_reserved_and_paid_once(&store, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_budget_stops_the_runner_naming_the_server() {
    let Some(server) = Server::from_env() else { return };
    let _turn = SERVER.lock().await;
    let url = eventsourcing_tests::fresh_postgres_url().await.expect("a server");
    // Connections are given up on after a second while the server is away.
    let store = Store::open(&format!("{url}?connect_timeout=1")).await.unwrap();
    let budget = Duration::from_secs(2);
    let options = ProcessOptions::default()
        .poll_interval(Duration::from_millis(20))
        .outage_budget(budget);
    let runner = Runner::multi_task(domain::system(), &store, options.clone())
        .await
        .unwrap();
    let mut failed_saves = 0;
    let mut ids = create_orders(&runner, 10, &mut failed_saves).await;
    runner.wait_until_quiet().await.unwrap();

    let start_again = StartAgain(&server);
    server.ctl(&["stop", "-m", "immediate"]).await;
    let stopped = Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(60), runner.wait_until_quiet())
        .await
        .expect("the outage surfaced within a minute")
        .expect_err("the server stayed away for longer than the budget");
    let waited = stopped.elapsed();
    let message = error.to_string();
    assert!(matches!(error, Error::Outage { .. }), "{message}");
    assert!(waited >= budget, "surfaced after {waited:?}, within the budget");
    assert!(waited < Duration::from_secs(30), "surfaced only after {waited:?}");
    assert!(message.contains(server.address()), "{message}");
    assert!(message.contains("outage budget of 2.0 s"), "{message}");
    assert!(message.contains("ProcessOptions::outage_budget"), "{message}");
    // Each application stopped with the same verdict, or (if its own
    // budget had not run out yet) stops now without another error.
    match runner.shutdown().await {
        Ok(()) | Err(Error::Outage { .. }) => {}
        Err(other) => panic!("shutdown failed otherwise: {other}"),
    }

    // Once the server is back, a new runner on the same store finishes
    // the work, each order once.
    drop(start_again);
    let runner = Runner::multi_task(domain::system(), &store, options).await.unwrap();
    ids.extend(create_orders(&runner, 10, &mut failed_saves).await);
    runner.wait_until_quiet().await.unwrap();
    runner.shutdown().await.unwrap();
    assert_each_order_reserved_and_paid_once(&store, &ids).await;
}

/// Connections dropped by the server again and again (the 57P01 "terminating
/// connection due to administrator command" a fast shutdown or a failover
/// sends) while orders flow: reads and commits fail mid-flight, some after
/// they landed, and every order is still processed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_mid_run_lose_nothing_and_repeat_nothing() {
    let Some(server) = Server::from_env() else { return };
    let _turn = SERVER.lock().await;
    let url = eventsourcing_tests::fresh_postgres_url().await.expect("a server");
    let database = url.rsplit_once('/').map(|(_, name)| name.to_owned()).unwrap();
    let store = Store::open(&url).await.unwrap();
    let options = ProcessOptions::default()
        .batch_size(5)
        .poll_interval(Duration::from_millis(20));
    let runner = Runner::multi_task(domain::system(), &store, options).await.unwrap();

    // Every 5 ms, for two seconds or more, every connection to the test's
    // database is terminated, from a connection to another database.
    let killer = tokio::spawn({
        let admin_url = server.url.clone();
        async move {
            let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            let mut killed = 0;
            for _ in 0..400 {
                let count: i64 = sqlx::query_scalar(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
                )
                .bind(&database)
                .fetch_one(&mut admin)
                .await
                .unwrap();
                killed += count;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            killed
        }
    });
    let mut failed_saves = 0;
    let mut ids = Vec::new();
    while !killer.is_finished() {
        ids.extend(create_orders(&runner, 5, &mut failed_saves).await);
    }
    let killed = killer.await.unwrap();
    assert!(killed > 20, "only {killed} connections were terminated");

    tokio::time::timeout(Duration::from_secs(120), runner.wait_until_quiet())
        .await
        .expect("the runner caught up within two minutes")
        .expect("the runner rode out the dropped connections");
    runner.shutdown().await.expect("no application stopped");
    eprintln!(
        "{} orders, {killed} connections terminated, {failed_saves} saves tried again",
        ids.len()
    );
    assert_each_order_reserved_and_paid_once(&store, &ids).await;
}

/// Commits by another process are heard again after the server restarts:
/// the listener says it may have missed some, reconnects and listens again,
/// and the announcer's connections come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_heard_across_processes_again_after_a_restart() {
    use eventsourcing::store::Prompt;
    use eventsourcing::{AppName, Recorder, StoredEvent, Timestamp};

    let Some(server) = Server::from_env() else { return };
    let _turn = SERVER.lock().await;
    let url = eventsourcing_tests::fresh_postgres_url().await.expect("a server");
    let here = Store::open(&url).await.unwrap();
    let mut heard = here.commits().await.unwrap();
    let app = AppName::new("orders").unwrap();
    let elsewhere = Store::open(&url).await.unwrap().recorder(&app).await.unwrap();

    server.ctl(&["restart", "-m", "immediate"]).await;
    let _start_again = StartAgain(&server);

    // Write until a commit is heard: the first writes after the restart may
    // fail, and so may their announcements.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut missed = false;
    let mut version = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "no commit heard within a minute of the restart"
        );
        version += 1;
        let event = StoredEvent {
            originator_id: Uuid::nil(),
            originator_version: version,
            timestamp: Timestamp::now(),
            topic: "Order.Created".into(),
            state_version: 1,
            state: b"{}".to_vec(),
        };
        if elsewhere.insert(0, vec![event], None).await.is_err() {
            version -= 1;
        }
        match tokio::time::timeout(Duration::from_millis(300), heard.next()).await {
            Ok(Some(Prompt::Missed)) => missed = true,
            Ok(Some(Prompt::Committed(committed))) if committed.app == app => break,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => {}
        }
    }
    assert!(
        missed,
        "the listener said it may have missed commits while the server was away"
    );
}
