//! The schema of an application's tables, as numbered migrations.
//!
//! Each application's tables carry a schema version, kept in the store's
//! `eventsourcing_applications` table (with the partitions of its log). Opening a recorder applies the
//! migrations past that version, and records the new one, in the
//! transaction the backend opened for it (which also makes other openers,
//! in any process, wait). Tables made before versions were kept have no
//! row there: their version is read from what they have.
//!
//! A change to the schema is a new migration at the end of [`MIGRATIONS`],
//! never an edit of one that has shipped.

use super::dialect::ColumnTypes;
use super::{statements::statement, with_sql_bounds};
use crate::{AppName, Error, Result, Timestamp};

/// The schema version this build writes and reads: stores at a higher
/// version were written by a newer build and are refused.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The table of applications: one row each, with its schema version and
/// the partitions of its log.
const APPLICATIONS_TABLE: &str = "eventsourcing_applications";

/// One step of the schema: what it is for, and its statements for the
/// tables prefixed `p`.
struct Migration {
    what: &'static str,
    statements: fn(p: &str, t: &ColumnTypes) -> Vec<String>,
}

/// The migrations in order: the first is version 1.
const MIGRATIONS: &[Migration] = &[
    Migration {
        what: "events, log heads and tracking positions",
        statements: |p, t| {
            let ColumnTypes {
                int,
                bigint,
                uuid,
                text,
                bytes,
                clustered,
            } = t;
            vec![
                format!(
                    "CREATE TABLE {p}_events (
                        partition_id {int} NOT NULL,
                        notification_id {bigint} NOT NULL,
                        originator_id {uuid} NOT NULL,
                        originator_version {bigint} NOT NULL,
                        recorded_at {bigint} NOT NULL,
                        topic {text} NOT NULL,
                        state {bytes} NOT NULL,
                        PRIMARY KEY (partition_id, notification_id)
                    ){clustered}"
                ),
                format!("CREATE UNIQUE INDEX {p}_events_aggregate ON {p}_events (originator_id, originator_version)"),
                format!(
                    "CREATE TABLE {p}_log_heads (
                        partition_id {int} PRIMARY KEY,
                        head {bigint} NOT NULL
                    )"
                ),
                format!(
                    "CREATE TABLE {p}_tracking (
                        upstream {text} NOT NULL,
                        partition_id {int} NOT NULL,
                        notification_id {bigint} NOT NULL,
                        PRIMARY KEY (upstream, partition_id)
                    ){clustered}"
                ),
            ]
        },
    },
    Migration {
        what: "the version of each event's data (events before it are at 1)",
        statements: |p, t| {
            vec![format!(
                "ALTER TABLE {p}_events ADD COLUMN state_version {} NOT NULL DEFAULT 1",
                t.int
            )]
        },
    },
    Migration {
        what: "dead letters: parked notifications",
        statements: |p, t| {
            let ColumnTypes {
                int,
                bigint,
                text,
                clustered,
                ..
            } = t;
            vec![format!(
                "CREATE TABLE {p}_dead_letters (
                    upstream {text} NOT NULL,
                    partition_id {int} NOT NULL,
                    notification_id {bigint} NOT NULL,
                    topic {text} NOT NULL,
                    error {text} NOT NULL,
                    attempts {int} NOT NULL,
                    parked_at {bigint} NOT NULL,
                    last_failed_at {bigint} NOT NULL,
                    PRIMARY KEY (upstream, partition_id, notification_id)
                ){clustered}"
            )]
        },
    },
    Migration {
        what: "leases: which worker runs each partition, fenced by an epoch in the tracking rows",
        statements: |p, t| {
            let ColumnTypes { int, bigint, text, .. } = t;
            vec![
                format!(
                    "CREATE TABLE {p}_leases (
                        partition_id {int} PRIMARY KEY,
                        owner {text} NOT NULL,
                        epoch {bigint} NOT NULL,
                        expires_at {bigint} NOT NULL
                    )"
                ),
                format!("ALTER TABLE {p}_tracking ADD COLUMN epoch {bigint} NOT NULL DEFAULT 0"),
                // Shared by every application: the workers of each system.
                format!(
                    "CREATE TABLE IF NOT EXISTS {WORKERS_TABLE} (
                        grp {text} NOT NULL,
                        worker {text} NOT NULL,
                        expires_at {bigint} NOT NULL,
                        PRIMARY KEY (grp, worker)
                    )"
                ),
            ]
        },
    },
    Migration {
        what: "the outbox: effects recorded with their command's events, until delivered",
        statements: |p, t| {
            let ColumnTypes {
                int,
                bigint,
                uuid,
                text,
                bytes,
                ..
            } = t;
            vec![
                format!(
                    "CREATE TABLE {p}_outbox (
                        id {uuid} PRIMARY KEY,
                        handler {text} NOT NULL,
                        payload {bytes} NOT NULL,
                        originator_id {uuid} NOT NULL,
                        originator_version {bigint} NOT NULL,
                        created_at {bigint} NOT NULL,
                        attempts {int} NOT NULL,
                        due_at {bigint} NOT NULL,
                        last_error {text},
                        parked {int} NOT NULL
                    )"
                ),
                format!("CREATE INDEX {p}_outbox_due ON {p}_outbox (parked, due_at)"),
            ]
        },
    },
    Migration {
        what: "namespaces and claims: which (namespace, application) owns each application's tables, and which process application runs them",
        statements: |_, t| {
            // Shared by every application, like the table of workers.
            vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {OWNERS_TABLE} (
                        tables {text} PRIMARY KEY,
                        namespace {text} NOT NULL,
                        app {text} NOT NULL
                    )",
                    text = t.text,
                ),
                super::claims::claims_table(t),
            ]
        },
    },
];

/// The schema version that made the table of owners: tables at an earlier
/// version were made before namespaces, by an application in none.
const OWNERS_SINCE: u32 = 6;

/// Which (namespace, application) owns each set of tables, by prefix: an
/// application outside any namespace whose name has two underscores in a
/// row (`eu__orders`) would otherwise share the tables of `orders` in the
/// namespace `eu`.
const OWNERS_TABLE: &str = "eventsourcing_table_owners";

/// The workers alive in each system (see `Runner::worker`).
pub(crate) const WORKERS_TABLE: &str = "eventsourcing_workers";

with_sql_bounds! {
    /// Brings `app`'s tables to [`SCHEMA_VERSION`] in the open transaction
    /// on `conn`, or refuses tables a newer build wrote, and answers the
    /// partitions of its log: those asked for if it is new, else those it
    /// has (refusing others). The caller commits (or rolls back on an
    /// error).
    pub(crate) async fn migrate(
        conn: &mut <D::Db as sqlx::Database>::Connection,
        app: &AppName,
        partitions: Option<u32>,
    ) -> Result<u32> {
        let p = app.table_prefix();
        let db = |action| crate::store::db_error(app, action);
        let t = D::TYPES;
        sqlx::query(statement::<D>(format!(
            "CREATE TABLE IF NOT EXISTS {APPLICATIONS_TABLE} (
                app {text} PRIMARY KEY,
                schema_version {int} NOT NULL,
                partitions {int} NOT NULL,
                migrated_at {bigint} NOT NULL
            )",
            text = t.text,
            int = t.int,
            bigint = t.bigint,
        )))
        .execute(&mut *conn)
        .await
        .map_err(db("creating the table of schema versions"))?;

        let recorded: Option<(i32, i32)> = sqlx::query_as(statement::<D>(format!(
            "SELECT schema_version, partitions FROM {APPLICATIONS_TABLE} WHERE app = ?"
        )))
        .bind(p)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("reading the schema version"))?;
        let (found, stored_partitions) = match recorded {
            Some((version, stored)) => (
                u32::try_from(version).unwrap_or_default(),
                u32::try_from(stored).unwrap_or_default(),
            ),
            // Logs before versions were kept have one partition.
            None => {
                let found = Self::version_before_versions(conn, app).await?;
                (found, if found == 0 { partitions.unwrap_or(1) } else { 1 })
            }
        };
        if found > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew {
                app: app.to_string(),
                backend: D::NAME,
                found,
                supported: SCHEMA_VERSION,
            });
        }
        crate::store::check_partitions_unchanged(app, stored_partitions, partitions)?;
        // Tables from before namespaces belong to an application in none.
        if (1..OWNERS_SINCE).contains(&found) && app.namespace().is_some() {
            return Err(crate::store::claims::tables_taken(app, app.table_prefix().to_owned(), String::new()));
        }
        if found == SCHEMA_VERSION && recorded.is_some() {
            Self::check_owner(conn, app).await?;
            return Ok(stored_partitions);
        }
        for (version, migration) in (1..).zip(MIGRATIONS).skip(found as usize) {
            for sql in (migration.statements)(p, &t) {
                sqlx::query(statement::<D>(sql))
                    .execute(&mut *conn)
                    .await
                    .map_err(db("migrating the schema"))?;
            }
            tracing::info!(%app, version, what = migration.what, backend = D::NAME, "migrated the schema");
        }
        sqlx::query(statement::<D>(format!(
            "INSERT INTO {APPLICATIONS_TABLE} (app, schema_version, partitions, migrated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (app) DO UPDATE SET
                 schema_version = excluded.schema_version, migrated_at = excluded.migrated_at"
        )))
        .bind(p)
        .bind(SCHEMA_VERSION as i32)
        .bind(super::to_i32(stored_partitions))
        .bind(Timestamp::now().as_micros())
        .execute(&mut *conn)
        .await
        .map_err(db("recording the schema version"))?;
        Self::check_owner(conn, app).await?;
        Ok(stored_partitions)
    }

    /// Records that `app` (in its namespace) owns its tables, unless
    /// another (namespace, application) does: then fails with
    /// [`Error::TablesTaken`].
    async fn check_owner(conn: &mut <D::Db as sqlx::Database>::Connection, app: &AppName) -> Result<()> {
        let db = |action| crate::store::db_error(app, action);
        let namespace = app.namespace().map_or("", |ns| ns.table_prefix());
        sqlx::query(statement::<D>(format!(
            "INSERT INTO {OWNERS_TABLE} (tables, namespace, app) VALUES (?, ?, ?) ON CONFLICT (tables) DO NOTHING"
        )))
        .bind(app.table_prefix())
        .bind(namespace)
        .bind(app.key())
        .execute(&mut *conn)
        .await
        .map_err(db("recording the owner of its tables"))?;
        let (owner_namespace, owner): (String, String) = sqlx::query_as(statement::<D>(format!(
            "SELECT namespace, app FROM {OWNERS_TABLE} WHERE tables = ?"
        )))
        .bind(app.table_prefix())
        .fetch_one(&mut *conn)
        .await
        .map_err(db("reading the owner of its tables"))?;
        if (owner_namespace.as_str(), owner.as_str()) == (namespace, app.key()) {
            Ok(())
        } else {
            Err(crate::store::claims::tables_taken(app, owner, owner_namespace))
        }
    }

    /// The version of tables made before versions were kept, read from
    /// what they have (0 for none).
    async fn version_before_versions(
        conn: &mut <D::Db as sqlx::Database>::Connection,
        app: &AppName,
    ) -> Result<u32> {
        let p = app.table_prefix();
        let db = |action| crate::store::db_error(app, action);
        let table_exists = statement::<D>(D::TABLE_EXISTS.to_owned());
        let exists = |table: String| {
            sqlx::query(table_exists.clone()).bind(table)
        };
        if exists(format!("{p}_events")).fetch_optional(&mut *conn).await.map_err(db("reading the schema"))?.is_none() {
            return Ok(0);
        }
        let has_state_version = sqlx::query(statement::<D>(D::COLUMN_EXISTS.to_owned()))
            .bind(format!("{p}_events"))
            .bind("state_version")
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("reading the schema"))?
            .is_some();
        if !has_state_version {
            return Ok(1);
        }
        let has_dead_letters = exists(format!("{p}_dead_letters"))
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("reading the schema"))?
            .is_some();
        Ok(if has_dead_letters { 3 } else { 2 })
    }
}
