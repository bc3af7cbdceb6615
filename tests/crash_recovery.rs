//! The crash test: the orders program on a SQLite file, killed with SIGKILL
//! at random moments while it creates and processes orders, then run to
//! completion. Afterwards every order is reserved and paid exactly once,
//! every log is contiguous, and no notification was processed twice: the
//! same end as a run that never stopped.

#[path = "../examples/orders/domain.rs"]
#[allow(dead_code)]
mod domain;
#[path = "common/orders_check.rs"]
mod orders_check;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eventsourcing::Store;

/// How many times the program is killed.
const KILLS: usize = 24;
/// Enough orders that the program is still busy after all the kills.
const ORDERS: u64 = 30_000;

fn orders_program(url: &str, runner: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orders"));
    command
        .args(["--url", url, "--orders", &ORDERS.to_string(), "--runner", runner])
        .args(["--batch-size", "50", "--orders-per-commit", "20"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

#[test]
fn killed_at_random_moments_the_orders_program_ends_as_if_never_stopped() {
    let file = eventsourcing_tests::TempSqlite::new();
    let mut random = eventsourcing_tests::Random::from_clock("crash test");

    let started = Instant::now();
    let mut kills = 0;
    let mut runs = 0;
    while kills < KILLS {
        // Both runners take part: each restart may use the other one.
        let runner = if random.below(2) == 0 { "multi" } else { "single" };
        let mut child = orders_program(&file.url(), runner)
            .spawn()
            .expect("the orders program starts");
        runs += 1;
        std::thread::sleep(Duration::from_millis(30 + random.below(400)));
        if child.try_wait().expect("the program can be waited for").is_some() {
            panic!("the orders program finished after {kills} kills; raise ORDERS so that it is killed {KILLS} times");
        }
        child.kill().expect("SIGKILL reaches the program");
        child.wait().expect("the killed program is reaped");
        kills += 1;
    }
    eprintln!("{kills} kills in {runs} runs over {:?}", started.elapsed());

    // Then to completion: the program itself checks its orders, and exits
    // with an error if one is missing, unpaid or paid twice.
    let status = orders_program(&file.url(), "multi")
        .status()
        .expect("the orders program runs to completion");
    assert!(status.success(), "the final run of the orders program succeeds");

    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = Store::open(&file.url()).await.unwrap();
            let ids: Vec<_> = (0..ORDERS).map(domain::order_id).collect();
            orders_check::assert_each_order_reserved_and_paid_once(&store, &ids).await;
        });
}
