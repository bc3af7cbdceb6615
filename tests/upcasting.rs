//! Events written by older code, read after their type moved on: each
//! event is stored with the version of its type, and data stored at an
//! older version is upcast, step by step, by the user's functions, whether
//! an application loads the aggregate or a policy is notified of it.

use eventsourcing::codec;
use eventsourcing::prelude::*;
use eventsourcing::{Error, NotificationSource, Recorder, StoredEvent, Timestamp, Versions};
use serde::Serialize;
use serde_json::Value;

/// A product at the third version of its `Listed` event.
#[aggregate]
#[derive(Debug, Default, PartialEq)]
pub struct Product {
    name: String,
    price_cents: u64,
    currency: String,
    tags: Vec<String>,
}

#[aggregate]
impl Product {
    /// Version 1 had the price as a decimal `price`; version 2 made it
    /// whole cents; version 3 added the currency.
    #[event(Listed, version = 3, upcasters(listed_v1_to_v2, listed_v2_to_v3))]
    pub fn list(name: String, price_cents: u64, currency: String) -> Self {
        Self {
            name,
            price_cents,
            currency,
            tags: Vec::new(),
        }
    }

    #[event(Tagged)]
    pub fn tag(&mut self, tag: String) {
        self.tags.push(tag);
    }
}

fn listed_v1_to_v2(state: &mut Value) {
    let price = state["price"].as_f64().unwrap_or_default();
    state["price_cents"] = ((price * 100.0).round() as u64).into();
}

fn listed_v2_to_v3(state: &mut Value) {
    state["currency"] = "EUR".into();
}

/// `Product.Listed` as version 1 of the code wrote it.
#[derive(Serialize)]
struct ListedV1 {
    name: &'static str,
    price: f64,
}

/// `Product.Listed` as version 2 of the code wrote it.
#[derive(Serialize)]
struct ListedV2 {
    name: &'static str,
    price_cents: u64,
}

/// A stored event, as older code recorded it.
fn written_by_older_code(
    id: Uuid,
    aggregate_version: u64,
    topic: &str,
    state_version: u32,
    state: Vec<u8>,
) -> StoredEvent {
    StoredEvent {
        originator_id: id,
        originator_version: aggregate_version,
        timestamp: Timestamp::now(),
        topic: topic.into(),
        state_version,
        state,
    }
}

#[derive(Default)]
struct Catalogue;

#[policy(aggregates(Product))]
impl Catalogue {}

/// Keeps what it was told of each product listed.
#[derive(Default)]
struct Prices;

#[aggregate]
#[derive(Debug, Default)]
pub struct PriceRecord {
    price_cents: u64,
    currency: String,
}

#[aggregate]
impl PriceRecord {
    #[event(Recorded)]
    pub fn record(#[id] product: Uuid, price_cents: u64, currency: String) -> Self {
        Self { price_cents, currency }
    }
}

#[policy(aggregates(PriceRecord))]
impl Prices {
    async fn product_listed(&self, listed: &Notified<ProductListed>, repo: &mut Repo<Self>) -> Result<()> {
        repo.add(PriceRecord::record(
            listed.originator_id,
            listed.price_cents,
            listed.currency.clone(),
        ));
        Ok(())
    }
}

async fn events_written_at_versions_1_and_2_are_read_at_version_3(store: &Store) {
    let runner = Runner::single_threaded(system!(Catalogue => Prices), store, ProcessOptions::default())
        .await
        .unwrap();
    let catalogue = runner.app::<Catalogue>().unwrap();
    let (old, older) = (Uuid::now_v7(), Uuid::now_v7());
    catalogue
        .recorder()
        .insert(
            0,
            vec![
                written_by_older_code(
                    older,
                    1,
                    "Product.Listed",
                    1,
                    codec::encode(&ListedV1 {
                        name: "kettle",
                        price: 12.5,
                    })
                    .unwrap(),
                ),
                written_by_older_code(older, 2, "Product.Tagged", 1, br#"{"tag":"kitchen"}"#.to_vec()),
                written_by_older_code(
                    old,
                    1,
                    "Product.Listed",
                    2,
                    codec::encode(&ListedV2 {
                        name: "toaster",
                        price_cents: 2999,
                    })
                    .unwrap(),
                ),
            ],
            None,
        )
        .await
        .unwrap();

    // Loading upcasts each event from the version it was stored at.
    let kettle: Product = catalogue.load(older).await.unwrap();
    assert_eq!(
        (
            kettle.name.as_str(),
            kettle.price_cents,
            kettle.currency.as_str(),
            kettle.tags.as_slice()
        ),
        ("kettle", 1250, "EUR", ["kitchen".to_owned()].as_slice())
    );
    let toaster: Product = catalogue.load(old).await.unwrap();
    assert_eq!((toaster.price_cents, toaster.currency.as_str()), (2999, "EUR"));

    // A policy is notified of the upcast event.
    runner.wait_until_quiet().await.unwrap();
    let prices = runner.app::<Prices>().unwrap();
    let record: PriceRecord = prices.load(older).await.unwrap();
    assert_eq!((record.price_cents, record.currency.as_str()), (1250, "EUR"));
    let record: PriceRecord = prices.load(old).await.unwrap();
    assert_eq!((record.price_cents, record.currency.as_str()), (2999, "EUR"));

    // What this code writes is stored at the type's version now.
    let mut lamp = Product::list("lamp".to_owned(), 4500, "GBP".to_owned());
    lamp.tag("light".to_owned());
    runner.save::<Catalogue>(&mut lamp).await.unwrap().processed().unwrap();
    let stored = catalogue
        .recorder()
        .select_events(lamp.id(), Versions::ALL)
        .await
        .unwrap();
    let versions: Vec<(&str, u32)> = stored.iter().map(|e| (e.topic.as_str(), e.state_version)).collect();
    assert_eq!(versions, [("Product.Listed", 3), ("Product.Tagged", 1)]);
    assert_eq!(catalogue.load::<Product>(lamp.id()).await.unwrap(), lamp);
    let log = catalogue.recorder().select_notifications(0, 1, 10).await.unwrap();
    assert_eq!(
        log.iter().map(|n| n.event.state_version).collect::<Vec<_>>(),
        [1, 1, 2, 3, 1]
    );
    runner.shutdown().await.unwrap();
}

async fn data_from_a_newer_version_is_refused_clearly(store: &Store) {
    let catalogue = Application::open(store, "Catalogue").await.unwrap();
    let id = Uuid::now_v7();
    let newer = written_by_older_code(
        id,
        1,
        "Product.Listed",
        4,
        br#"{"name":"x","price_cents":1,"currency":"EUR","vat":20}"#.to_vec(),
    );
    catalogue.recorder().insert(0, vec![newer], None).await.unwrap();
    let error = catalogue.load::<Product>(id).await.unwrap_err();
    assert!(
        matches!(&error, Error::Decode { topic, .. } if topic == "Product.Listed"),
        "{error:?}"
    );
    let source = std::error::Error::source(&error)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(source.contains("stored at version 4"), "{source}");
    assert!(source.contains("type is at version 3"), "{source}");
}

eventsourcing_tests::on_every_fresh_backend!(
    events_written_at_versions_1_and_2_are_read_at_version_3,
    data_from_a_newer_version_is_refused_clearly
);

/// The events table as the code before stored event versions made it.
const TABLE_BEFORE_VERSIONS: &str = "CREATE TABLE catalogue_events (
    partition_id INTEGER NOT NULL,
    notification_id BIGINT NOT NULL,
    originator_id UUID_TYPE NOT NULL,
    originator_version BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    topic TEXT NOT NULL,
    state BYTES_TYPE NOT NULL,
    PRIMARY KEY (partition_id, notification_id)
)";

/// The tracking table that code made with it (later migrations change it).
const TRACKING_BEFORE_VERSIONS: &str = "CREATE TABLE catalogue_tracking (
    upstream TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    notification_id BIGINT NOT NULL,
    PRIMARY KEY (upstream, partition_id)
)";

/// A `Product.Listed` at version 1, in a table made before versions were
/// stored, is read as version 1 and upcast once the store opens.
async fn check_upgraded(store: &Store, id: Uuid) {
    let catalogue = Application::open(store, "Catalogue").await.unwrap();
    let product: Product = catalogue.load(id).await.unwrap();
    assert_eq!((product.price_cents, product.currency.as_str()), (1250, "EUR"));
    let mut more = Product::list("more".to_owned(), 1, "EUR".to_owned());
    catalogue.save(&mut more).await.unwrap();
    let log = catalogue.recorder().select_notifications(0, 1, 10).await.unwrap();
    assert_eq!(
        log.iter().map(|n| (n.id, n.event.state_version)).collect::<Vec<_>>(),
        [(1, 1), (2, 3)]
    );
}

#[tokio::test]
async fn a_sqlite_store_made_before_versions_were_stored_is_upgraded() {
    use sqlx::Connection;
    let file = eventsourcing_tests::TempSqlite::new();
    let id = Uuid::now_v7();
    {
        let mut conn = sqlx::SqliteConnection::connect(&format!("{}?mode=rwc", file.url()))
            .await
            .unwrap();
        let ddl = TABLE_BEFORE_VERSIONS
            .replace("UUID_TYPE", "BLOB")
            .replace("BYTES_TYPE", "BLOB");
        sqlx::query(sqlx::AssertSqlSafe(ddl)).execute(&mut conn).await.unwrap();
        sqlx::query(TRACKING_BEFORE_VERSIONS).execute(&mut conn).await.unwrap();
        sqlx::query("CREATE TABLE catalogue_log_heads (partition_id INTEGER PRIMARY KEY, head INTEGER NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO catalogue_log_heads VALUES (0, 1)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO catalogue_events VALUES (0, 1, ?, 1, 0, 'Product.Listed', ?)")
            .bind(id)
            .bind(br#"{"name":"kettle","price":12.5}"#.as_slice())
            .execute(&mut conn)
            .await
            .unwrap();
    }
    check_upgraded(&file.open().await, id).await;
}

#[tokio::test]
async fn a_postgres_store_made_before_versions_were_stored_is_upgraded() {
    use sqlx::Connection;
    let Some(url) = eventsourcing_tests::fresh_postgres_url().await else {
        return;
    };
    let id = Uuid::now_v7();
    {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let ddl = TABLE_BEFORE_VERSIONS
            .replace("UUID_TYPE", "uuid")
            .replace("BYTES_TYPE", "bytea");
        sqlx::query(sqlx::AssertSqlSafe(ddl)).execute(&mut conn).await.unwrap();
        sqlx::query(TRACKING_BEFORE_VERSIONS).execute(&mut conn).await.unwrap();
        sqlx::query("CREATE TABLE catalogue_log_heads (partition_id integer PRIMARY KEY, head bigint NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO catalogue_log_heads VALUES (0, 1)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO catalogue_events VALUES (0, 1, $1, 1, 0, 'Product.Listed', $2)")
            .bind(id)
            .bind(br#"{"name":"kettle","price":12.5}"#.as_slice())
            .execute(&mut conn)
            .await
            .unwrap();
    }
    check_upgraded(&Store::open(&url).await.unwrap(), id).await;
}
