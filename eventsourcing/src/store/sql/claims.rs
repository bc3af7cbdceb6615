//! Claims on an application's tables (see `store/claims.rs`), kept in the
//! store's `eventsourcing_claims` table.

use super::dialect::ColumnTypes;
use super::statements::statement;
use super::with_sql_bounds;
use crate::store::claims::{Claim, clash};
use crate::{AppName, Result, Timestamp};

/// The table of claims: the process application that runs each
/// application's tables, by table prefix.
pub(crate) const CLAIMS_TABLE: &str = "eventsourcing_claims";

/// The statement that makes the table of claims (in migration 6, and
/// before a release in a store that has not had it).
pub(crate) fn claims_table(t: &ColumnTypes) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {CLAIMS_TABLE} (
            tables {text} PRIMARY KEY,
            process {text} NOT NULL,
            claimed_at {bigint} NOT NULL
        )",
        text = t.text,
        bigint = t.bigint,
    )
}

with_sql_bounds! {
    /// Opens `app`'s tables in the open transaction on `conn`: brings them
    /// up to date and takes the claim on them (or checks it), answering
    /// the partitions of the log; or releases the claim, which creates no
    /// tables.
    pub(crate) async fn open_tables(
        conn: &mut <D::Db as sqlx::Database>::Connection,
        app: &AppName,
        partitions: Option<u32>,
        claim: Claim,
    ) -> Result<u32> {
        if claim != Claim::Release {
            let partitions = Self::migrate(conn, app, partitions).await?;
            Self::apply_claim(conn, app, claim).await?;
            return Ok(partitions);
        }
        sqlx::query(statement::<D>(claims_table(&D::TYPES)))
            .execute(&mut *conn)
            .await
            .map_err(crate::store::db_error(app, "creating the table of claims"))?;
        Self::apply_claim(conn, app, claim).await?;
        Ok(partitions.unwrap_or(1))
    }

    /// Takes or releases the claim on `app`'s tables, in the open
    /// transaction on `conn` (the one that brought them up to date).
    async fn apply_claim(
        conn: &mut <D::Db as sqlx::Database>::Connection,
        app: &AppName,
        claim: Claim,
    ) -> Result<()> {
        let db = |action| crate::store::db_error(app, action);
        match claim {
            Claim::Leave => Ok(()),
            Claim::Release => {
                sqlx::query(statement::<D>(format!("DELETE FROM {CLAIMS_TABLE} WHERE tables = ?")))
                    .bind(app.table_prefix())
                    .execute(&mut *conn)
                    .await
                    .map_err(db("releasing the claim on its tables"))?;
                Ok(())
            }
            Claim::Check(process) | Claim::Take(process) => {
                if matches!(claim, Claim::Take(_)) {
                    // Whoever inserts first holds the claim; the others read it.
                    sqlx::query(statement::<D>(format!(
                        "INSERT INTO {CLAIMS_TABLE} (tables, process, claimed_at) VALUES (?, ?, ?)
                         ON CONFLICT (tables) DO NOTHING"
                    )))
                    .bind(app.table_prefix())
                    .bind(process)
                    .bind(Timestamp::now().as_micros())
                    .execute(&mut *conn)
                    .await
                    .map_err(db("claiming its tables"))?;
                }
                let claimed_by: Option<String> =
                    sqlx::query_scalar(statement::<D>(format!("SELECT process FROM {CLAIMS_TABLE} WHERE tables = ?")))
                        .bind(app.table_prefix())
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(db("reading the claim on its tables"))?;
                match claimed_by {
                    Some(claimed_by) if claimed_by != process => Err(clash(app, claimed_by, process)),
                    _ => Ok(()),
                }
            }
        }
    }
}
