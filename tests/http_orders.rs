//! The orders system split over two OS processes, each with its own SQLite
//! file, following each other's logs over HTTP (`examples/orders_http`):
//! the warehouse (Reservations) and the shop (Orders, Payments) are each
//! killed with SIGKILL mid-run, at random moments, and started again on the
//! same port. Afterwards every order is reserved once and paid once, and
//! every log is gapless: the same end as a run that never stopped.

#[path = "../examples/orders/domain.rs"]
#[allow(dead_code)]
mod domain;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eventsourcing::{AppName, Notification, NotificationSource, Recorder, Store, Versions};
use eventsourcing_tests::TempSqlite;
use uuid::Uuid;

const ORDERS: u64 = 1_500;
/// Orders per second the shop creates: slow enough that both sides are
/// killed while orders are still being created.
const RATE: u64 = 250;
/// Kills of each side.
const KILLS: usize = 3;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free local port")
        .port()
}

/// One side: its role, its SQLite file, its port and its peer's.
struct Side {
    role: &'static str,
    file: TempSqlite,
    port: u16,
    peer: u16,
    child: Option<Child>,
    /// The lines it prints, read on a thread.
    lines: Option<mpsc::Receiver<String>>,
}

impl Side {
    fn new(role: &'static str, port: u16, peer: u16) -> Self {
        Self {
            role,
            file: TempSqlite::new(),
            port,
            peer,
            child: None,
            lines: None,
        }
    }

    fn start(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orders_http"))
            .arg(self.role)
            .args(["--url", &self.file.url()])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--peer", &format!("http://127.0.0.1:{}", self.peer)])
            .args(["--orders", &ORDERS.to_string(), "--orders-per-commit", "10"])
            .args(["--rate", &RATE.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the orders_http program starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (send, receive) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        self.child = Some(child);
        self.lines = Some(receive);
    }

    fn kill(&mut self) {
        let mut child = self.child.take().expect("the side runs");
        assert!(
            child.try_wait().expect("the side can be waited for").is_none(),
            "the {} ended before it was killed",
            self.role
        );
        child.kill().expect("SIGKILL reaches the side");
        child.wait().expect("the killed side is reaped");
    }

    /// Waits for a line that says `what`.
    fn wait_for_line(&mut self, what: &str, within: Duration) {
        let lines = self.lines.as_ref().expect("the side runs");
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(what) => return,
                Ok(_) => {}
                Err(_) => panic!("the {} did not say `{what}` within {within:?}", self.role),
            }
        }
    }

    /// Closes its standard input, which stops it, and checks that it ended well.
    fn stop(&mut self) {
        let mut child = self.child.take().expect("the side runs");
        drop(child.stdin.take());
        let status = child.wait().expect("the side ends");
        assert!(status.success(), "the {} ended with {status}", self.role);
    }
}

/// Every notification of an application's log in a store, checking that
/// the ids run 1, 2, 3, … with no gap.
async fn read_log(store: &Store, app: &str) -> Vec<Notification> {
    let recorder = store.recorder(&AppName::new(app).unwrap()).await.unwrap();
    let log = recorder.select_notifications(0, 1, 1_000_000).await.unwrap();
    for (i, n) in log.iter().enumerate() {
        assert_eq!(n.id, i as u64 + 1, "the log of {app} is gapless");
    }
    log
}

/// The order each event of `topic` in a log is for, counted.
fn count_by_order(log: &[Notification], topic: &str) -> HashMap<Uuid, u32> {
    let mut counts = HashMap::new();
    for n in log.iter().filter(|n| n.event.topic.as_str() == topic) {
        let state: serde_json::Value = serde_json::from_slice(&n.event.state).unwrap();
        let order: Uuid = state["order_id"].as_str().unwrap().parse().unwrap();
        *counts.entry(order).or_default() += 1;
    }
    counts
}

#[test]
fn killed_on_either_side_the_split_orders_system_ends_as_if_never_stopped() {
    let mut random = eventsourcing_tests::Random::from_clock("split crash test");

    let (shop_port, warehouse_port) = (free_port(), free_port());
    let mut warehouse = Side::new("warehouse", warehouse_port, shop_port);
    let mut shop = Side::new("shop", shop_port, warehouse_port);
    warehouse.start();
    shop.start();

    // Creating the orders takes ORDERS / RATE seconds (6 s): each side is
    // killed in turn within that time, at a random moment, and started
    // again on its port after a random pause.
    for _ in 0..KILLS {
        for side in [&mut warehouse, &mut shop] {
            std::thread::sleep(Duration::from_millis(200 + random.below(600)));
            side.kill();
            std::thread::sleep(Duration::from_millis(random.below(300)));
            side.start();
        }
    }
    shop.wait_for_line(&format!("all {ORDERS} orders paid"), Duration::from_secs(90));
    shop.stop();
    warehouse.stop();

    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let shop_store = shop.file.open().await;
            let warehouse_store = warehouse.file.open().await;
            let reservations = read_log(&warehouse_store, "Reservations").await;
            let payments = read_log(&shop_store, "Payments").await;
            read_log(&shop_store, "Orders").await;
            let reserved = count_by_order(&reservations, "Reservation.Created");
            let paid = count_by_order(&payments, "Payment.Created");
            assert_eq!((reserved.len(), paid.len()), (ORDERS as usize, ORDERS as usize));
            let orders = shop_store.recorder(&AppName::new("Orders").unwrap()).await.unwrap();
            for n in 0..ORDERS {
                let id = domain::order_id(n);
                assert_eq!(reserved.get(&id), Some(&1), "order {id} reserved once");
                assert_eq!(paid.get(&id), Some(&1), "order {id} paid once");
                let topics: Vec<String> = orders
                    .select_events(id, Versions::ALL)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|e| e.topic.as_str().to_owned())
                    .collect();
                assert_eq!(topics, ["Order.Created", "Order.Reserved", "Order.Paid"], "order {id}");
            }
        });
}
