//! Claims on an application's tables (see `store/claims.rs`), kept in the
//! store's `eventsourcing_claims` table.

use super::statements::statement;
use super::with_sql_bounds;
use crate::store::claims::{Claim, clash};
use crate::{AppName, Result, Timestamp};

/// The table of claims: the process application that runs each
/// application's tables, by table prefix.
pub(crate) const CLAIMS_TABLE: &str = "eventsourcing_claims";

with_sql_bounds! {
    /// Takes or releases the claim on `app`'s tables, in the open
    /// transaction on `conn` (the one that brought them up to date).
    pub(crate) async fn apply_claim(
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
