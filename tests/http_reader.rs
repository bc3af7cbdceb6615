//! The remote reader: a log served by a real `LogServer` on a local port,
//! read with `HttpLog`, and followed by a process application in another
//! store.

use std::net::SocketAddr;
use std::time::Duration;

use eventsourcing::http::{HttpLog, LogServer, Upstream};
use eventsourcing::prelude::*;
use eventsourcing::{
    AnyRecorder, AppName, Error, Notification, NotificationLog, NotificationSource, Recorder, RunnerKind, StoredEvent,
    Timestamp,
};
use eventsourcing_tests::{TempSqlite, unique_app};

/// Records `count` events of fresh aggregates in `partition`, 50 per
/// transaction.
async fn record(recorder: &AnyRecorder, partition: u32, count: u64) {
    let mut left = count;
    while left > 0 {
        let events: Vec<StoredEvent> = (0..left.min(50))
            .map(|i| StoredEvent {
                originator_id: Uuid::new_v4(),
                originator_version: 1,
                timestamp: Timestamp::now(),
                topic: "Item.Added".into(),
                state_version: 1 + (i % 3) as u32,
                state: format!("{{\"n\":{i}}}").into_bytes(),
            })
            .collect();
        left -= events.len() as u64;
        recorder.insert(partition, events, None).await.unwrap();
    }
}

/// Serves `server` on a free local port; returns its URL.
async fn serve(server: LogServer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server.serve(listener));
    url
}

/// Every notification of a partition, read locally in one go.
async fn local(recorder: &AnyRecorder, partition: u32) -> Vec<Notification> {
    recorder.select_notifications(partition, 1, 1_000_000).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_follows_the_sections_and_gets_what_a_local_reader_gets() {
    let file = TempSqlite::new();
    let store = file.open().await;
    let app = unique_app("remote");
    let recorder = store.recorder(&app).await.unwrap();
    record(&recorder, 0, 1_234).await;
    let url = serve(
        LogServer::open(&store, [app.clone()])
            .await
            .unwrap()
            .with_section_size(100)
            .unwrap(),
    )
    .await;

    // Small read-ahead and a batch that is not a section: reads straddle
    // sections, and come from kept sections and fresh ones alike.
    let log = HttpLog::new(&url, app.clone()).unwrap().with_read_ahead(2);
    assert_eq!(log.max_notification_id(0).await.unwrap(), 1_234);
    let mut read = Vec::new();
    loop {
        let batch = log.select_notifications(0, read.len() as u64 + 1, 37).await.unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 37);
        read.extend(batch);
    }
    assert_eq!(read, local(&recorder, 0).await, "the same notifications, byte for byte");

    // A log reader on it, resumed from a position.
    let mut reader = NotificationLog::new(HttpLog::new(&url, app.clone()).unwrap()).reader();
    reader.seek(1_150).unwrap();
    let rest = reader.read_to_end().await.unwrap();
    assert_eq!(rest.first().map(|n| n.id), Some(1_151));
    assert_eq!(rest.last().map(|n| n.id), Some(1_234));

    // What lands later is read on the next call.
    record(&recorder, 0, 3).await;
    let more = log.select_notifications(0, 1_235, 100).await.unwrap();
    assert_eq!(more.iter().map(|n| n.id).collect::<Vec<_>>(), [1_235, 1_236, 1_237]);
    assert!(log.select_notifications(0, 1_238, 100).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_reads_each_partition_and_refuses_a_log_with_other_partitions() {
    let store = Store::open("memory:").await.unwrap();
    let app = unique_app("parts");
    let recorder = store.partitioned_recorder(&app, 3).await.unwrap();
    for partition in 0..3 {
        record(&recorder, partition, 10 + u64::from(partition)).await;
    }
    let url = serve(LogServer::open(&store, [app.clone()]).await.unwrap()).await;

    let log = HttpLog::new(&url, app.clone()).unwrap().with_partitions(3);
    for partition in 0..3 {
        let read = log.select_notifications(partition, 1, 100).await.unwrap();
        assert_eq!(read, local(&recorder, partition).await);
        assert!(read.iter().all(|n| n.partition == partition));
    }

    let expecting_one = HttpLog::new(&url, app.clone()).unwrap();
    let error = expecting_one.select_notifications(0, 1, 10).await.unwrap_err();
    assert!(
        matches!(&error, Error::Remote { reason, .. } if reason.contains("3 partition(s)")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_comes_up_late_is_waited_for_within_the_retry_budget() {
    let store = Store::open("memory:").await.unwrap();
    let app = unique_app("late");
    record(&store.recorder(&app).await.unwrap(), 0, 5).await;
    // A free port, with nothing listening on it for now.
    let addr: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let url = format!("http://{addr}");

    let impatient = HttpLog::new(&url, app.clone())
        .unwrap()
        .with_retry_budget(Duration::from_millis(200));
    let error = impatient.select_notifications(0, 1, 10).await.unwrap_err();
    match &error {
        Error::RemoteUnavailable {
            app: name, url: asked, ..
        } => {
            assert_eq!(name, app.as_str());
            assert!(asked.starts_with(&url), "{asked}");
        }
        other => panic!("expected RemoteUnavailable, got {other}"),
    }

    let patient = HttpLog::new(&url, app.clone()).unwrap();
    let server = LogServer::open(&store, [app.clone()]).await.unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        server.serve(listener).await
    });
    let read = patient.select_notifications(0, 1, 10).await.unwrap();
    assert_eq!(read.len(), 5, "read once the server came up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_sends_its_token_and_a_refusal_is_not_retried() {
    let store = Store::open("memory:").await.unwrap();
    let app = unique_app("guarded");
    record(&store.recorder(&app).await.unwrap(), 0, 4).await;
    let server = LogServer::open(&store, [app.clone()])
        .await
        .unwrap()
        .with_bearer_token("s3cret", [app.clone()])
        .unwrap();
    let url = serve(server).await;

    let allowed = HttpLog::new(&url, app.clone()).unwrap().with_bearer_token("s3cret");
    assert_eq!(allowed.select_notifications(0, 1, 10).await.unwrap().len(), 4);

    let started = std::time::Instant::now();
    let error = HttpLog::new(&url, app.clone())
        .unwrap()
        .select_notifications(0, 1, 10)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Remote { reason, .. } if reason.contains("401")),
        "{error}"
    );
    assert!(
        started.elapsed() < eventsourcing::http::DEFAULT_RETRY_BUDGET,
        "a 401 is final: not retried for the whole budget"
    );
}

/// A server that is not a `LogServer`: it serves a log with a hole (id 3
/// missing), as a broken or tampered peer might.
async fn serve_a_log_with_a_hole(app: &AppName) -> String {
    use axum::routing::get;
    let item = |id: u64| {
        serde_json::json!({
            "id": id, "originator_id": Uuid::from_u128(u128::from(id)).simple().to_string(),
            "originator_version": 1, "topic": "Item.Added", "state": "", "partition": 0
        })
    };
    let section = serde_json::json!({"id": "1,10", "next_id": null, "items": [item(1), item(2), item(4), item(5)]});
    let info = serde_json::json!({"app": app.as_str(), "partitions": 1, "section_size": 10, "heads": [5]});
    let head = serde_json::json!({"partition": 0, "after": 0, "head": 5, "items": []});
    let json = |value: serde_json::Value| {
        let body = value.to_string();
        get(move || async move { ([("content-type", "application/json")], body) })
    };
    let router = axum::Router::new()
        .route(&format!("/{app}"), json(info))
        .route(&format!("/{app}/partitions/0/sections/{{id}}"), json(section))
        .route(&format!("/{app}/notifications"), json(head));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hole_in_a_remote_log_is_reported_not_skipped() {
    let app = unique_app("holed");
    let url = serve_a_log_with_a_hole(&app).await;
    let log = HttpLog::new(&url, app.clone()).unwrap();
    let error = log.select_notifications(0, 1, 10).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::LogGap {
                position: 2,
                found: 4,
                ..
            }
        ),
        "expected a gap after 2, got {error}"
    );
    // From past the hole, the rest reads.
    let rest = log.select_notifications(0, 4, 10).await.unwrap();
    assert_eq!(rest.iter().map(|n| n.id).collect::<Vec<_>>(), [4, 5]);
}

// A system split over two stores: Pinger in one, served over HTTP; Ponger
// in the other, following it.

#[aggregate]
#[derive(Debug, Default)]
pub struct Ping {}

#[aggregate]
impl Ping {
    #[event(Sent)]
    pub fn send() -> Self {
        Self {}
    }
}

#[aggregate]
#[derive(Debug, Default)]
pub struct Pong {
    pub ping: Uuid,
}

#[aggregate]
impl Pong {
    #[event(Sent)]
    pub fn reply(ping: Uuid) -> Self {
        Self { ping }
    }
}

#[derive(Default)]
pub struct Pinger;

#[policy(aggregates(Ping))]
impl Pinger {}

#[derive(Default)]
pub struct Ponger;

#[policy(aggregates(Pong))]
impl Ponger {
    async fn ping_sent(&self, ping: &Notified<PingSent>, repo: &mut Repo<Self>) -> Result<()> {
        repo.add(Pong::reply(ping.originator_id));
        Ok(())
    }
}

/// The pings each pong answers, from Ponger's log.
async fn pongs(store: &Store) -> Vec<Uuid> {
    let recorder = store.recorder(&AppName::new("Ponger").unwrap()).await.unwrap();
    let mut pongs = Vec::new();
    for n in recorder.select_notifications(0, 1, 100_000).await.unwrap() {
        let pong: serde_json::Value = serde_json::from_slice(&n.event.state).unwrap();
        pongs.push(pong["ping"].as_str().unwrap().parse().unwrap());
    }
    pongs
}

/// Pinger in a SQLite file, served over HTTP; Ponger in `ponger_store`,
/// run by a runner of `kind`, following it.
async fn follow_over_http(kind: RunnerKind, ponger_store: Store) {
    let pinger_file = TempSqlite::new();
    let pinger_store = pinger_file.open().await;
    let pinger = Application::open(&pinger_store, "Pinger").await.unwrap();
    let url = serve(
        LogServer::open(&pinger_store, [AppName::new("Pinger").unwrap()])
            .await
            .unwrap(),
    )
    .await;
    // Polling so rare that only the server's long poll can wake Ponger.
    let options = ProcessOptions::default()
        .poll_interval(Duration::from_secs(600))
        .upstream::<Pinger>(Upstream::http(&url));

    let mut sent = Vec::new();
    for _ in 0..30 {
        let mut ping = Ping::send();
        pinger.save(&mut ping).await.unwrap();
        sent.push(ping.id());
    }
    let runner = Runner::start(kind, system!(Pinger => Ponger), &ponger_store, options.clone())
        .await
        .unwrap();
    runner.wait_until_quiet().await.unwrap();
    assert_eq!(pongs(&ponger_store).await, sent, "one pong per ping, in order");

    // Pings saved while the follower runs are answered without a poll.
    for _ in 0..20 {
        let mut ping = Ping::send();
        pinger.save(&mut ping).await.unwrap();
        sent.push(ping.id());
    }
    if kind != RunnerKind::SingleThreaded {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while pongs(&ponger_store).await.len() < sent.len() {
            assert!(std::time::Instant::now() < deadline, "the long poll woke Ponger");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else {
        runner.wait_until_quiet().await.unwrap();
    }
    let error = runner.app::<Pinger>().unwrap_err();
    assert!(error.to_string().contains("runs in another process"), "{error}");
    runner.shutdown().await.unwrap();

    // Started again, it resumes from the tracking in its own store.
    let runner = Runner::start(kind, system!(Pinger => Ponger), &ponger_store, options)
        .await
        .unwrap();
    runner.wait_until_quiet().await.unwrap();
    runner.shutdown().await.unwrap();
    assert_eq!(pongs(&ponger_store).await, sent, "nothing processed twice");
    let tracking = ponger_store
        .recorder(&AppName::new("Ponger").unwrap())
        .await
        .unwrap()
        .tracking_position(&AppName::new("Pinger").unwrap(), 0)
        .await
        .unwrap();
    assert_eq!(tracking, 50, "the position is kept in the follower's store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_task_runner_follows_a_log_over_http_exactly_once() {
    let file = TempSqlite::new();
    follow_over_http(RunnerKind::MultiTask, file.open().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_threaded_runner_follows_a_log_over_http_exactly_once() {
    let file = TempSqlite::new();
    follow_over_http(RunnerKind::SingleThreaded, file.open().await).await;
}

/// Workers (on PostgreSQL, under leases) follow a log over HTTP too, woken
/// by its long poll, with their tracking in their own database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_follow_a_log_over_http_exactly_once() {
    let Some(store) = eventsourcing_tests::fresh_postgres_store().await else {
        return;
    };
    follow_over_http(RunnerKind::Worker, store).await;
}

/// A worker with nothing to process here says so: when every application
/// runs elsewhere, and when only one that follows nothing runs here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_nothing_to_process_here_is_refused() {
    let Some(store) = eventsourcing_tests::fresh_postgres_store().await else {
        return;
    };
    let elsewhere = || Upstream::http("http://127.0.0.1:9");
    for options in [
        ProcessOptions::default()
            .upstream::<Pinger>(elsewhere())
            .upstream::<Ponger>(elsewhere()),
        ProcessOptions::default().upstream::<Ponger>(elsewhere()),
    ] {
        let error = Runner::worker(system!(Pinger => Ponger), &store, options)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("nothing to process"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_refuses_an_upstream_log_shorter_than_what_it_processed() {
    let ponger_store = Store::open("memory:").await.unwrap();
    let first = Store::open("memory:").await.unwrap();
    let pinger = Application::open(&first, "Pinger").await.unwrap();
    for _ in 0..30 {
        pinger.save(&mut Ping::send()).await.unwrap();
    }
    let serve_pinger =
        async |store: &Store| serve(LogServer::open(store, [AppName::new("Pinger").unwrap()]).await.unwrap()).await;
    let options = |url: &str| ProcessOptions::default().upstream::<Pinger>(Upstream::http(url));
    let url = serve_pinger(&first).await;
    let runner = Runner::single_threaded(system!(Pinger => Ponger), &ponger_store, options(&url))
        .await
        .unwrap();
    runner.shutdown().await.unwrap();
    assert_eq!(pongs(&ponger_store).await.len(), 30);

    // Pinger's store replaced by a fresh one with fewer pings: the
    // follower's position (30) is past its end (5).
    let replaced = Store::open("memory:").await.unwrap();
    let pinger = Application::open(&replaced, "Pinger").await.unwrap();
    for _ in 0..5 {
        pinger.save(&mut Ping::send()).await.unwrap();
    }
    let url = serve_pinger(&replaced).await;
    let error = Runner::single_threaded(system!(Pinger => Ponger), &ponger_store, options(&url))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            Error::UpstreamRewound {
                position: 30,
                head: 5,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(pongs(&ponger_store).await.len(), 30, "nothing more processed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_of_an_application_that_runs_elsewhere_is_refused() {
    let store = Store::open("memory:").await.unwrap();
    let options = ProcessOptions::default()
        .upstream::<Pinger>(Upstream::http("http://127.0.0.1:9"))
        .instance(Pinger);
    let error = Runner::single_threaded(system!(Pinger => Ponger), &store, options)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("runs in another process"), "{error}");
}
