//! The schema's versions: stores written before versions were kept are
//! upgraded with their events intact, concurrent openers of a fresh
//! database take turns, and tables a newer build wrote are refused.
//!
//! The fixtures in `fixtures/schema-before-versions/` were written by the
//! code before schema versions (the orders example with 12 orders, and a
//! notification parked by an application `auditor`).

use std::path::Path;

use eventsourcing::store::SCHEMA_VERSION;
use eventsourcing::{AppName, Error, NotificationSource, Recorder, Store, StoredEvent, Timestamp, Tracking, Versions};
use eventsourcing_tests::{TempSqlite, fresh_postgres_url, unique_app};
use sqlx::{AssertSqlSafe, Connection, Row};
use uuid::Uuid;

/// A notification as the fixture's tables hold it: id, aggregate id,
/// version, topic, state version, state.
type RawEvent = (u64, Uuid, u64, String, u32, Vec<u8>);

/// The applications in the fixtures, and how many events each has.
const FIXTURE_APPS: [(&str, usize); 4] = [("orders", 36), ("reservations", 12), ("payments", 12), ("auditor", 0)];

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/schema-before-versions")
        .join(name)
}

/// The fixture's rows of `app`'s events, as the old code wrote them.
fn raw_events(app: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(format!(
        "SELECT notification_id, originator_id, originator_version, topic, state_version, state
         FROM {app}_events ORDER BY notification_id"
    ))
}

async fn raw_sqlite_events(url: &str, app: &str) -> Vec<RawEvent> {
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    let rows = sqlx::query(raw_events(app)).fetch_all(&mut conn).await.unwrap();
    rows.iter()
        .map(|row| {
            let id: Vec<u8> = row.get(1);
            (
                row.get::<i64, _>(0) as u64,
                Uuid::from_slice(&id).unwrap(),
                row.get::<i64, _>(2) as u64,
                row.get(3),
                row.get::<i64, _>(4) as u32,
                row.get(5),
            )
        })
        .collect()
}

async fn raw_postgres_events(url: &str, app: &str) -> Vec<RawEvent> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let rows = sqlx::query(raw_events(app)).fetch_all(&mut conn).await.unwrap();
    rows.iter()
        .map(|row| {
            (
                row.get::<i64, _>(0) as u64,
                row.get(1),
                row.get::<i64, _>(2) as u64,
                row.get(3),
                row.get::<i32, _>(4) as u32,
                row.get(5),
            )
        })
        .collect()
}

/// Opens the upgraded store and checks that everything the old code wrote
/// reads back the same, that writing goes on where it stopped, and that the
/// schema version is recorded.
async fn check_upgraded(url: &str, before: &[(AppName, Vec<RawEvent>)]) {
    let store = Store::open(url).await.unwrap();
    for (app, raw) in before {
        let recorder = store.recorder(app).await.unwrap();
        let notifications = recorder.select_notifications(0, 1, 1_000).await.unwrap();
        let read: Vec<RawEvent> = notifications
            .iter()
            .map(|n| {
                let e = &n.event;
                (
                    n.id,
                    e.originator_id,
                    e.originator_version,
                    e.topic.to_string(),
                    e.state_version,
                    e.state.to_vec(),
                )
            })
            .collect();
        assert_eq!(&read, raw, "`{app}`'s log after the upgrade");
        assert_eq!(recorder.max_notification_id(0).await.unwrap(), raw.len() as u64);
        if let Some((_, id, version, ..)) = raw.last() {
            let history = recorder.select_events(*id, Versions::ALL).await.unwrap();
            assert_eq!(history.last().map(|e| e.originator_version), Some(*version));
        }
    }

    let orders = store.recorder(&AppName::new("orders").unwrap()).await.unwrap();
    let payments = AppName::new("payments").unwrap();
    let reservations = AppName::new("reservations").unwrap();
    assert_eq!(orders.tracking_position(&payments, 0).await.unwrap(), 12);
    assert_eq!(orders.tracking_position(&reservations, 0).await.unwrap(), 12);

    let auditor = store.recorder(&AppName::new("auditor").unwrap()).await.unwrap();
    let letters = auditor.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1, "the parked notification survives: {letters:?}");
    assert_eq!(
        (
            letters[0].notification_id,
            letters[0].attempts,
            letters[0].error.as_str()
        ),
        (1, 3, "the auditor was not ready")
    );

    // Writing goes on where the old code stopped: ids and tracking.
    let id = Uuid::now_v7();
    let event = StoredEvent {
        originator_id: id,
        originator_version: 1,
        timestamp: Timestamp::now(),
        topic: "Order.Created".into(),
        state_version: 1,
        state: b"{}".to_vec(),
    };
    let tracking = Tracking {
        upstream: payments.clone(),
        partition: 0,
        previous: 12,
        position: 13,
        lease_epoch: None,
    };
    assert_eq!(orders.insert(0, vec![event], Some(&tracking)).await.unwrap(), vec![37]);
}

#[tokio::test]
async fn a_sqlite_store_from_before_versions_is_upgraded_with_its_events_intact() {
    let file = TempSqlite::new();
    let path = file.url().trim_start_matches("sqlite://").to_owned();
    std::fs::copy(fixture("sqlite.db"), &path).unwrap();
    let mut before = Vec::new();
    for (app, count) in FIXTURE_APPS {
        let raw = raw_sqlite_events(&file.url(), app).await;
        assert_eq!(raw.len(), count, "the fixture's `{app}` events");
        before.push((AppName::new(app).unwrap(), raw));
    }
    check_upgraded(&file.url(), &before).await;
    assert_eq!(
        sqlite_schema_version(&file.url(), "orders").await,
        Some(SCHEMA_VERSION as i64)
    );
}

#[tokio::test]
async fn a_postgres_store_from_before_versions_is_upgraded_with_its_events_intact() {
    let Some(url) = fresh_postgres_url().await else { return };
    let dump = std::fs::read_to_string(fixture("postgres.sql")).unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(dump)).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let mut before = Vec::new();
    for (app, count) in FIXTURE_APPS {
        let raw = raw_postgres_events(&url, app).await;
        assert_eq!(raw.len(), count, "the fixture's `{app}` events");
        before.push((AppName::new(app).unwrap(), raw));
    }
    check_upgraded(&url, &before).await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let version: i32 = sqlx::query_scalar("SELECT schema_version FROM eventsourcing_applications WHERE app = 'orders'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(version as u32, SCHEMA_VERSION);
}

async fn sqlite_schema_version(url: &str, app: &str) -> Option<i64> {
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT schema_version FROM eventsourcing_applications WHERE app = ?")
        .bind(app)
        .fetch_optional(&mut conn)
        .await
        .unwrap()
}

/// Opens `app`'s recorder, marks its tables as written by a newer build,
/// and checks that opening them again is refused, saying what to do.
async fn check_newer_schema_is_refused(url: &str, bump: &str) {
    let app = unique_app("future");
    let store = Store::open(url).await.unwrap();
    store.recorder(&app).await.unwrap();
    let newer = SCHEMA_VERSION + 1;
    let sql = bump
        .replace("{version}", &newer.to_string())
        .replace("{app}", app.table_prefix());
    if url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
    let error = Store::open(url).await.unwrap().recorder(&app).await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, Error::SchemaTooNew { found, supported, .. } if found == newer && supported == SCHEMA_VERSION),
        "{message}"
    );
    assert!(message.contains(&format!("`{app}`")), "{message}");
    assert!(message.contains("a newer version wrote them"), "{message}");
}

const BUMP: &str = "UPDATE eventsourcing_applications SET schema_version = {version} WHERE app = '{app}'";

#[tokio::test]
async fn sqlite_tables_of_a_newer_schema_are_refused() {
    let file = TempSqlite::new();
    check_newer_schema_is_refused(&file.url(), BUMP).await;
}

#[tokio::test]
async fn postgres_tables_of_a_newer_schema_are_refused() {
    let Some(url) = fresh_postgres_url().await else { return };
    check_newer_schema_is_refused(&url, BUMP).await;
}

/// Stores opened at once on one fresh database (as separate processes
/// would: each its own connections) all open the same applications'
/// recorders, and the tables are made once.
async fn check_concurrent_openers(url: &str) {
    let apps: Vec<AppName> = ["orders", "reservations", "payments"]
        .into_iter()
        .map(|name| AppName::new(name).unwrap())
        .collect();
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let (url, apps) = (url.to_owned(), apps.clone());
            tokio::spawn(async move {
                let store = Store::open(&url).await?;
                for app in &apps {
                    store.recorder(app).await?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    for opener in openers {
        opener.await.unwrap().unwrap();
    }
    let store = Store::open(url).await.unwrap();
    for app in &apps {
        let recorder = store.recorder(app).await.unwrap();
        assert_eq!(recorder.max_notification_id(0).await.unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_openers_of_a_fresh_sqlite_file_all_succeed() {
    let file = TempSqlite::new();
    check_concurrent_openers(&file.url()).await;
    assert_eq!(
        sqlite_schema_version(&file.url(), "payments").await,
        Some(SCHEMA_VERSION as i64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_openers_of_a_fresh_postgres_database_all_succeed() {
    let Some(url) = fresh_postgres_url().await else { return };
    check_concurrent_openers(&url).await;
}
