//! The crash test of reliable effects and messages: the entities example,
//! which fills counters and notifies an admin endpoint (served here) of
//! each full one, then has accounts pay each other with messages, killed
//! with SIGKILL at random moments, then run to completion; on SQLite and on
//! PostgreSQL. Every notice reaches the endpoint at least once, and the
//! endpoint, keeping each idempotency key once, sees exactly one per
//! counter, for a counter at ten; every deposit is applied exactly once.

// The accounts of the program, read back here: it uses the rest.
#[path = "../examples/entities/accounts.rs"]
#[allow(dead_code)]
mod accounts;
#[path = "../examples/entities/admin.rs"]
mod admin;

use std::process::{Command, Stdio};
use std::time::Duration;

const COUNTERS: u64 = 1_000;
const PAIRS: u64 = 100;
const KILLS: usize = 8;

fn program(url: &str, admin_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_entities"));
    command
        .args([
            "--url",
            url,
            "--counters",
            &COUNTERS.to_string(),
            "--admin-url",
            admin_url,
        ])
        .args(["--pairs", &PAIRS.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

#[test]
fn killed_at_random_moments_on_sqlite_the_entities_program_notifies_and_pays_once() {
    let file = eventsourcing_tests::TempSqlite::new();
    killed_at_random_moments(&file.url());
}

#[test]
fn killed_at_random_moments_on_postgres_the_entities_program_notifies_and_pays_once() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(url) = runtime.block_on(eventsourcing_tests::fresh_postgres_url()) else {
        return;
    };
    killed_at_random_moments(&url);
}

fn killed_at_random_moments(url: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let admin = admin::Admin::default();
    let admin_url = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/notices", listener.local_addr().unwrap());
        admin.serve(listener);
        url
    });
    let mut random = eventsourcing_tests::Random::from_clock("effects crash test");

    let mut finished_early = 0;
    for _ in 0..KILLS {
        let mut child = program(url, &admin_url).spawn().expect("the program starts");
        std::thread::sleep(Duration::from_millis(20 + random.below(500)));
        if child.try_wait().expect("the program can be waited for").is_some() {
            finished_early += 1;
            continue;
        }
        child.kill().expect("SIGKILL reaches the program");
        child.wait().expect("the killed program is reaped");
    }
    eprintln!(
        "{} kills, {finished_early} runs finished before their kill",
        KILLS - finished_early
    );
    assert!(
        finished_early < KILLS,
        "raise COUNTERS so that the program is killed mid-run"
    );

    let status = program(url, &admin_url)
        .status()
        .expect("the program runs to completion");
    assert!(
        status.success(),
        "the final run fills every counter and empties the outbox"
    );

    assert_eq!(admin.unique() as u64, COUNTERS, "one notice per counter");
    assert!(admin.deliveries() as u64 >= COUNTERS);
    let mut counters: Vec<String> = admin
        .bodies()
        .iter()
        .map(|body| {
            assert!(body.contains("\"count\":10"), "a notice for a full counter: {body}");
            body.split('"').nth(3).unwrap_or_default().to_owned()
        })
        .collect();
    counters.sort_unstable();
    counters.dedup();
    assert_eq!(counters.len() as u64, COUNTERS, "for every counter, once");
    eprintln!("{} deliveries for {} notices", admin.deliveries(), admin.unique());

    // Every deposit applied once: each payee holds what its payer had.
    runtime.block_on(async {
        let store = eventsourcing::Store::open(url).await.unwrap();
        let entities = eventsourcing::entities::Entities::open(&store, "entities")
            .await
            .unwrap();
        for n in 0..PAIRS {
            let (payer, payee) = accounts::pair(n);
            let payer: accounts::Account = entities.load(payer).await.unwrap();
            let payee: accounts::Account = entities.load(payee).await.unwrap();
            assert_eq!((payer.balance, payee.balance), (0, accounts::OPENING), "pair {n}");
        }
    });
    drop(runtime);
}
