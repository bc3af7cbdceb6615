//! What the integration tests share: stores on every backend, and a small
//! hand-written aggregate.

use std::path::PathBuf;

use eventsourcing::{Aggregate, AggregateMeta, AppName, DomainEvent, NotApplicable, Store, codec};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The variable `scripts/with-postgres.sh` sets to the test database's URL.
pub const POSTGRES_URL_ENV: &str = "EVENTSOURCING_TEST_POSTGRES_URL";

/// A fresh in-memory store.
pub async fn memory_store() -> Store {
    Store::open("memory:").await.expect("memory store opens")
}

/// A SQLite file that is removed (with its WAL files) when dropped.
pub struct TempSqlite {
    path: PathBuf,
}

impl TempSqlite {
    /// A new, not yet existing, database file in the temp directory.
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("eventsourcing-test-{}.db", Uuid::new_v4().simple()));
        Self { path }
    }

    /// The file's `sqlite://` URL.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    /// Opens the store on this file.
    pub async fn open(&self) -> Store {
        Store::open(&self.url()).await.expect("SQLite store opens")
    }
}

impl Default for TempSqlite {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempSqlite {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The PostgreSQL test database's URL, or `None` (with a note on stderr)
/// when it is not set. Under `CI=true` a missing URL fails the test: CI
/// must never skip the PostgreSQL tests.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("{POSTGRES_URL_ENV} is not set under CI=true; run the tests through scripts/with-postgres.sh")
        }
        _ => {
            eprintln!(
                "SKIPPED: PostgreSQL test, because {POSTGRES_URL_ENV} is not set (scripts/with-postgres.sh sets it)"
            );
            None
        }
    }
}

/// A store on the PostgreSQL test database, or `None` when there is none.
pub async fn postgres_store() -> Option<Store> {
    let url = postgres_url()?;
    Some(
        Store::open(&url)
            .await
            .expect("PostgreSQL test database accepts connections"),
    )
}

/// A store on a new, empty PostgreSQL database made for one test, for tests
/// whose applications have fixed names; `None` when there is no server.
pub async fn fresh_postgres_store() -> Option<Store> {
    Some(
        Store::open(&fresh_postgres_url().await?)
            .await
            .expect("fresh database accepts connections"),
    )
}

/// The URL of a new, empty PostgreSQL database on the test server.
pub async fn fresh_postgres_url() -> Option<String> {
    use sqlx::Connection;
    let url = postgres_url()?;
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("PostgreSQL test database accepts connections");
    let name = format!("es_{}", Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("the test server makes databases");
    let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
    Some(format!("{base}/{name}"))
}

/// Runs each named `async fn check(store: &Store)` of the calling test file
/// as its own test on every backend: in memory, on a fresh SQLite file, and
/// on the PostgreSQL test database (skipped with a note when its URL is not
/// set, failing under `CI=true`).
#[macro_export]
macro_rules! on_every_backend {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test]
            async fn $check() {
                super::$check(&$crate::memory_store().await).await;
            })*
        }
        mod sqlite {
            $(#[tokio::test]
            async fn $check() {
                let file = $crate::TempSqlite::new();
                super::$check(&file.open().await).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $check() {
                let Some(store) = $crate::postgres_store().await else { return };
                super::$check(&store).await;
            })*
        }
    };
}

/// Runs each check `async fn(&Store, RunnerKind)` on every backend (a
/// database of its own on PostgreSQL) with both runners.
#[macro_export]
macro_rules! on_every_backend_and_runner {
    ($($check:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                for kind in [::eventsourcing::RunnerKind::SingleThreaded, ::eventsourcing::RunnerKind::MultiTask] {
                    super::$check(&$crate::memory_store().await, kind).await;
                }
            })*
        }
        mod sqlite {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                for kind in [::eventsourcing::RunnerKind::SingleThreaded, ::eventsourcing::RunnerKind::MultiTask] {
                    let file = $crate::TempSqlite::new();
                    super::$check(&file.open().await, kind).await;
                }
            })*
        }
        mod postgres {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                for kind in [::eventsourcing::RunnerKind::SingleThreaded, ::eventsourcing::RunnerKind::MultiTask] {
                    let Some(store) = $crate::fresh_postgres_store().await else { return };
                    super::$check(&store, kind).await;
                }
            })*
        }
    };
}

/// Like `on_every_backend!`, with a database of its own on PostgreSQL, for
/// the tests whose applications have fixed names.
#[macro_export]
macro_rules! on_every_fresh_backend {
    ($($check:ident),* $(,)?) => {
        mod fresh {
            mod memory {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::super::$check(&$crate::memory_store().await).await;
                })*
            }
            mod sqlite {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let file = $crate::TempSqlite::new();
                    super::super::$check(&file.open().await).await;
                })*
            }
            mod postgres {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some(store) = $crate::fresh_postgres_store().await else { return };
                    super::super::$check(&store).await;
                })*
            }
        }
    };
}

/// An application name no other test uses, so tests sharing one database
/// never see each other's tables.
/// A small xorshift generator for crash tests' kill times, which need to
/// vary from run to run, not to be secure.
pub struct Random(u64);

impl Random {
    /// Seeded from the clock; the seed is printed, labelled `what`, so a
    /// failing run can be told apart.
    pub fn from_clock(what: &str) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        eprintln!("{what} seed {seed}");
        Self(seed)
    }

    /// A number below `bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

pub fn unique_app(prefix: &str) -> AppName {
    AppName::new(format!("{prefix}_{}", &Uuid::new_v4().simple().to_string()[..12])).expect("valid name")
}

/// A dog was registered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    /// The dog's name.
    pub name: String,
}

/// A dog learned a trick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrickAdded {
    /// The trick.
    pub trick: String,
}

/// The events of [`Dog`].
#[derive(Clone, Debug, PartialEq)]
pub enum DogEvent {
    /// See [`Registered`].
    Registered(Registered),
    /// See [`TrickAdded`].
    TrickAdded(TrickAdded),
}

impl DomainEvent for DogEvent {
    const TOPICS: &'static [&'static str] = &["Dog.Registered", "Dog.TrickAdded"];

    fn topic(&self) -> &'static str {
        match self {
            DogEvent::Registered(_) => "Dog.Registered",
            DogEvent::TrickAdded(_) => "Dog.TrickAdded",
        }
    }

    fn encode(&self) -> Result<Vec<u8>, codec::CodecError> {
        match self {
            DogEvent::Registered(e) => codec::encode(e),
            DogEvent::TrickAdded(e) => codec::encode(e),
        }
    }

    fn decode(topic: &str, _version: u32, state: &[u8]) -> Option<Result<Self, codec::CodecError>> {
        match topic {
            "Dog.Registered" => Some(codec::decode(state).map(DogEvent::Registered)),
            "Dog.TrickAdded" => Some(codec::decode(state).map(DogEvent::TrickAdded)),
            _ => None,
        }
    }
}

/// A hand-written aggregate: what `#[aggregate]` will generate.
#[derive(Clone, Debug, PartialEq)]
pub struct Dog {
    /// The dog's name.
    pub name: String,
    /// Tricks, in the order learned.
    pub tricks: Vec<String>,
    meta: AggregateMeta<DogEvent>,
}

impl Aggregate for Dog {
    type Event = DogEvent;
    const NAME: &'static str = "Dog";

    fn meta(&self) -> &AggregateMeta<DogEvent> {
        &self.meta
    }

    fn meta_mut(&mut self) -> &mut AggregateMeta<DogEvent> {
        &mut self.meta
    }

    fn create(_id: Uuid, event: DogEvent) -> Option<Self> {
        match event {
            DogEvent::Registered(e) => Some(Dog {
                name: e.name.clone(),
                tricks: Vec::new(),
                meta: AggregateMeta::default(),
            }),
            DogEvent::TrickAdded(_) => None,
        }
    }

    fn mutate(&mut self, event: DogEvent) -> Result<(), NotApplicable> {
        match event {
            DogEvent::Registered(_) => Err(NotApplicable),
            DogEvent::TrickAdded(e) => {
                self.tricks.push(e.trick);
                Ok(())
            }
        }
    }
}

impl Dog {
    /// Registers a new dog.
    pub fn register(name: &str) -> Dog {
        Dog::start(
            Uuid::new_v4(),
            DogEvent::Registered(Registered { name: name.to_owned() }),
        )
        .expect("Registered creates a dog")
    }

    /// Teaches the dog a trick.
    pub fn add_trick(&mut self, trick: &str) {
        self.trigger(DogEvent::TrickAdded(TrickAdded {
            trick: trick.to_owned(),
        }))
        .expect("a dog accepts tricks");
    }
}

/// Warnings logged with `tracing` on this thread while the guard lives, as
/// text (`message` and every field, `name=value`), for tests of what a user
/// is told in the logs.
pub fn capture_warnings() -> (
    tracing::subscriber::DefaultGuard,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let guard = tracing::subscriber::set_default(WarningCapture(warnings.clone()));
    (guard, warnings)
}

struct WarningCapture(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl tracing::Subscriber for WarningCapture {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.push_str(&format!("{}={value} ", field.name()));
            }
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0.lock().expect("not poisoned").push(text.0);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
