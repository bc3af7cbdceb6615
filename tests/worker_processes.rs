//! Worker OS processes sharing the orders system through leases in a real
//! PostgreSQL server: the orders program run as `orders worker`, killed
//! (SIGKILL) or paused (SIGSTOP) mid-run, and two of them woken by
//! LISTEN/NOTIFY alone. Each test ends with every order reserved and paid
//! once, and every partition of every log gapless.

#[path = "../examples/orders/domain.rs"]
#[allow(dead_code)]
mod domain;
#[path = "common/orders_check.rs"]
mod orders_check;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use eventsourcing::{Aggregate, AppName, Application, NotificationSource, Store};
use uuid::Uuid;

use domain::Order;
use orders_check::assert_each_order_reserved_and_paid_once;

const PARTITIONS: u32 = 4;
/// Orders, Reservations and Payments each follow another, per partition.
const UNITS: usize = 3 * PARTITIONS as usize;
const LEASE_TTL: Duration = Duration::from_millis(1500);

/// One `orders worker` process, and the lines it prints.
struct WorkerProcess {
    child: Child,
    lines: Receiver<String>,
    /// How many leases it said it holds, last.
    held: usize,
    /// The leases it said it holds (`App/partition@epoch`), last.
    leases: Vec<String>,
}

impl WorkerProcess {
    fn start(url: &str, poll_interval: Duration) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orders"))
            .arg("worker")
            .args([
                "--url",
                url,
                "--partitions",
                &PARTITIONS.to_string(),
                "--batch-size",
                "20",
            ])
            .args(["--lease-ttl-ms", &LEASE_TTL.as_millis().to_string()])
            .args(["--poll-interval-ms", &poll_interval.as_millis().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the orders program starts as a worker");
        let stdout = child.stdout.take().expect("piped");
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            held: 0,
            leases: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads what it printed since last asked.
    fn read(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            // `worker PID holds N leases App/0@1,App/1@3`
            if let Some(rest) = line.split(" holds ").nth(1) {
                let mut words = rest.split(' ');
                self.held = words.next().and_then(|n| n.parse().ok()).expect("a count of leases");
                self.leases = words
                    .nth(1)
                    .map(|list| list.split(',').map(str::to_owned).collect())
                    .unwrap_or_default();
            }
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {}", self.pid());
    }

    /// Closes its standard input, and waits for it to stop by itself.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let status = self.child.wait().expect("the worker ends");
        assert!(status.success(), "the worker stopped cleanly: {status}");
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `check` holds, reading the workers' lines, for at most
/// `within`; returns how long it took.
fn eventually(
    workers: &mut [WorkerProcess],
    within: Duration,
    what: &str,
    mut check: impl FnMut(&[WorkerProcess]) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        workers.iter_mut().for_each(WorkerProcess::read);
        if check(workers) {
            return start.elapsed();
        }
        let held: Vec<_> = workers.iter().map(|w| w.held).collect();
        assert!(
            start.elapsed() < within,
            "{what} within {within:?} (leases held: {held:?})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `count` live workers hold the system's leases evenly.
fn evenly_shared(workers: &[WorkerProcess], live: &[usize]) -> bool {
    let held: Vec<usize> = live.iter().map(|&i| workers[i].held).collect();
    let (low, high) = (UNITS / live.len(), UNITS.div_ceil(live.len()));
    held.iter().sum::<usize>() == UNITS && held.iter().all(|&n| (low..=high).contains(&n))
}

/// The Orders application, for creating orders as a customer would.
async fn orders_app(store: &Store) -> Application {
    let recorder = store
        .partitioned_recorder(&AppName::new("Orders").unwrap(), PARTITIONS)
        .await
        .unwrap();
    Application::new(recorder).unwrap()
}

async fn create_orders(orders: &Application, count: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let mut order = Order::create(Uuid::new_v4());
        orders.save(&mut order).await.unwrap();
        ids.push(order.id());
    }
    ids
}

/// Waits until every order of `ids` is paid (its third event is in the
/// Orders log).
async fn wait_until_paid(orders: &Application, ids: &[Uuid], within: Duration) {
    let start = Instant::now();
    loop {
        let mut events = 0;
        for partition in 0..PARTITIONS {
            events += orders.recorder().max_notification_id(partition).await.unwrap();
        }
        if events == 3 * ids.len() as u64 {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{} orders paid within {within:?} ({events} events of {})",
            ids.len(),
            3 * ids.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The live leases of the orders system, by owner, read from the tables.
async fn live_lease_owners(url: &str) -> Vec<String> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let mut owners = Vec::new();
    for app in ["orders", "reservations", "payments"] {
        let mut found: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT owner FROM {app}_leases
             WHERE expires_at > (extract(epoch from clock_timestamp()) * 1000000)::bigint"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        owners.append(&mut found);
    }
    pool.close().await;
    owners
}

/// A test's database, its Orders application, and its worker processes.
struct Run {
    url: String,
    store: Store,
    orders: Application,
    workers: Vec<WorkerProcess>,
}

/// A fresh database, its Orders application, and `count` worker processes
/// polling every `poll`, once they share the partitions evenly; `None`
/// without a PostgreSQL server.
async fn start_workers(count: usize, poll: Duration) -> Option<Run> {
    let url = eventsourcing_tests::fresh_postgres_url().await?;
    let store = Store::open(&url).await.unwrap();
    let orders = orders_app(&store).await;
    let mut workers: Vec<WorkerProcess> = (0..count).map(|_| WorkerProcess::start(&url, poll)).collect();
    let all: Vec<usize> = (0..count).collect();
    eventually(
        &mut workers,
        Duration::from_secs(60),
        &format!("{count} workers share the partitions"),
        |w| evenly_shared(w, &all),
    );
    Some(Run {
        url,
        store,
        orders,
        workers,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_partitions_are_taken_over_and_each_order_is_processed_once() {
    let Some(Run {
        url,
        store,
        orders,
        mut workers,
    }) = start_workers(3, Duration::from_millis(100)).await
    else {
        return;
    };

    let mut ids = create_orders(&orders, 150).await;
    let killed = workers[1].pid();
    workers[1].signal("-KILL");
    let killed_at = Instant::now();
    ids.extend(create_orders(&orders, 150).await);

    // Its leases expire and the two others take them, within the lease
    // period and a few seconds.
    let tag = format!("-{killed}-");
    loop {
        let owners = live_lease_owners(&url).await;
        if owners.len() == UNITS && !owners.iter().any(|owner| owner.contains(&tag)) {
            break;
        }
        assert!(
            killed_at.elapsed() < LEASE_TTL + Duration::from_secs(5),
            "the killed worker's partitions taken over within the lease period plus 5 s: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually(
        &mut workers,
        Duration::from_secs(30),
        "the two others share everything",
        |w| evenly_shared(w, &[0, 2]),
    );
    wait_until_paid(&orders, &ids, Duration::from_secs(60)).await;
    let mut workers = workers.into_iter();
    let (first, _killed, third) = (workers.next().unwrap(), workers.next(), workers.next().unwrap());
    first.stop();
    third.stop();
    assert_each_order_reserved_and_paid_once(&store, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_cannot_commit_and_rejoins_when_it_resumes() {
    let Some(Run {
        store,
        orders,
        mut workers,
        ..
    }) = start_workers(2, Duration::from_millis(100)).await
    else {
        return;
    };
    let mut ids = create_orders(&orders, 50).await;
    wait_until_paid(&orders, &ids, Duration::from_secs(60)).await;

    // Paused past its lease: the other takes everything, and processes the
    // orders that arrive meanwhile.
    workers[0].signal("-STOP");
    ids.extend(create_orders(&orders, 100).await);
    wait_until_paid(&orders, &ids, Duration::from_secs(60)).await;
    eventually(
        &mut workers,
        Duration::from_secs(30),
        "the other worker holds everything",
        |w| w[1].held == UNITS,
    );

    // Resumed, it finds its leases gone: it drops them without committing
    // (its commits are fenced: `tests/workers.rs` pins that), rejoins, and
    // gets a share back, every lease of it taken anew at a higher epoch.
    let before = workers[0].leases.clone();
    assert_eq!(before.len(), UNITS / 2);
    workers[0].signal("-CONT");
    eventually(
        &mut workers,
        Duration::from_secs(30),
        "the resumed worker rejoins",
        |w| evenly_shared(w, &[0, 1]) && w[0].leases.iter().all(|lease| !before.contains(lease)),
    );
    ids.extend(create_orders(&orders, 50).await);
    wait_until_paid(&orders, &ids, Duration::from_secs(60)).await;
    for worker in workers {
        worker.stop();
    }
    assert_each_order_reserved_and_paid_once(&store, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_finish_woken_by_notify_alone() {
    // Polling every ten minutes: only prompts can finish this in time.
    let Some(Run {
        store, orders, workers, ..
    }) = start_workers(2, Duration::from_secs(600)).await
    else {
        return;
    };
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.extend(create_orders(&orders, 40).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until_paid(&orders, &ids, Duration::from_secs(60)).await;
    for worker in workers {
        worker.stop();
    }
    assert_each_order_reserved_and_paid_once(&store, &ids).await;
}
