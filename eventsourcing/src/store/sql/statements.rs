//! One application's statements, written once with `?` parameters and
//! numbered for databases that want `$1`, `$2`, ….

use sqlx::{SqlSafeStr, SqlStr};

use super::dialect::Dialect;

/// The statements of one application's tables, made when its recorder
/// opens and shared by every query (a clone is a reference count).
#[derive(Debug)]
pub(crate) struct Statements<D: Dialect> {
    pub(crate) insert_tracking: SqlStr,
    pub(crate) update_tracking: SqlStr,
    /// `update_tracking`, also checking the writer's lease epoch.
    pub(crate) update_fenced_tracking: SqlStr,
    pub(crate) select_tracking: SqlStr,
    pub(crate) select_tracking_epoch: SqlStr,
    // SQLite's; PostgreSQL advances the head in its one-statement write.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) advance_head: SqlStr,
    pub(crate) select_events: SqlStr,
    pub(crate) select_version: SqlStr,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) select_notifications: SqlStr,
    pub(crate) max_notification_id: SqlStr,
    pub(crate) park: SqlStr,
    pub(crate) remove_dead_letter: SqlStr,
    pub(crate) record_failed_retry: SqlStr,
    pub(crate) select_dead_letters: SqlStr,
    pub(crate) insert_outgoing: SqlStr,
    pub(crate) select_due_outgoing: SqlStr,
    pub(crate) select_parked_outgoing: SqlStr,
    pub(crate) complete_outgoing: SqlStr,
    pub(crate) fail_outgoing: SqlStr,
    pub(crate) unpark_outgoing: SqlStr,
    pub(crate) claim_outgoing: SqlStr,
    /// The statements of this database only.
    pub(crate) dialect: D::Statements,
}

/// The columns of a notification or an event, as `rows.rs` decodes them.
const EVENT_COLUMNS: &str = "originator_id, originator_version, recorded_at, topic, state_version, state";
const OUTBOX_COLUMNS: &str =
    "id, handler, payload, originator_id, originator_version, created_at, attempts, due_at, last_error, parked";
const DEAD_LETTER_COLUMNS: &str =
    "upstream, partition_id, notification_id, topic, error, attempts, parked_at, last_failed_at";

impl<D: Dialect> Statements<D> {
    /// The statements for the tables prefixed `p` (a validated
    /// [`AppName`](crate::AppName)'s table prefix).
    pub(crate) fn new(p: &str) -> Self {
        let s = statement::<D>;
        Self {
            // A row at 0 is where a worker taking its lease left it.
            insert_tracking: s(format!(
                "INSERT INTO {p}_tracking (upstream, partition_id, notification_id) VALUES (?, ?, ?)
                 ON CONFLICT (upstream, partition_id) DO UPDATE SET notification_id = excluded.notification_id
                 WHERE {p}_tracking.notification_id = 0"
            )),
            update_tracking: s(format!(
                "UPDATE {p}_tracking SET notification_id = ?
                 WHERE upstream = ? AND partition_id = ? AND notification_id = ?"
            )),
            update_fenced_tracking: s(format!(
                "UPDATE {p}_tracking SET notification_id = ?
                 WHERE upstream = ? AND partition_id = ? AND notification_id = ? AND epoch = ?"
            )),
            select_tracking: s(format!(
                "SELECT notification_id FROM {p}_tracking WHERE upstream = ? AND partition_id = ?"
            )),
            select_tracking_epoch: s(format!(
                "SELECT epoch FROM {p}_tracking WHERE upstream = ? AND partition_id = ?"
            )),
            advance_head: s(format!(
                "INSERT INTO {p}_log_heads (partition_id, head) VALUES (?, ?)
                 ON CONFLICT (partition_id) DO UPDATE SET head = {p}_log_heads.head + excluded.head RETURNING head"
            )),
            select_events: s(format!(
                "SELECT {EVENT_COLUMNS} FROM {p}_events
                 WHERE originator_id = ? AND originator_version BETWEEN ? AND ? ORDER BY originator_version"
            )),
            select_version: s(format!(
                "SELECT 1 FROM {p}_events WHERE originator_id = ? AND originator_version = ?"
            )),
            select_notifications: s(format!(
                "SELECT notification_id, {EVENT_COLUMNS} FROM {p}_events
                 WHERE partition_id = ? AND notification_id >= ? ORDER BY notification_id LIMIT ?"
            )),
            max_notification_id: s(format!(
                "SELECT COALESCE(MAX(notification_id), 0) FROM {p}_events WHERE partition_id = ?"
            )),
            park: s(format!(
                "INSERT INTO {p}_dead_letters ({DEAD_LETTER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (upstream, partition_id, notification_id) DO UPDATE SET
                     error = excluded.error, attempts = excluded.attempts, last_failed_at = excluded.last_failed_at"
            )),
            remove_dead_letter: s(format!(
                "DELETE FROM {p}_dead_letters WHERE upstream = ? AND partition_id = ? AND notification_id = ?"
            )),
            record_failed_retry: s(format!(
                "UPDATE {p}_dead_letters SET attempts = attempts + 1, error = ?, last_failed_at = ?
                 WHERE upstream = ? AND partition_id = ? AND notification_id = ? RETURNING attempts"
            )),
            select_dead_letters: s(format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM {p}_dead_letters ORDER BY upstream, partition_id, notification_id"
            )),
            insert_outgoing: s(format!(
                "INSERT INTO {p}_outbox ({OUTBOX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            )),
            select_due_outgoing: s(format!(
                "SELECT {OUTBOX_COLUMNS} FROM {p}_outbox WHERE parked = 0 AND due_at <= ? ORDER BY due_at, id LIMIT ?"
            )),
            select_parked_outgoing: s(format!(
                "SELECT {OUTBOX_COLUMNS} FROM {p}_outbox WHERE parked = 1 ORDER BY created_at, id"
            )),
            complete_outgoing: s(format!("DELETE FROM {p}_outbox WHERE id = ?")),
            fail_outgoing: s(format!(
                "UPDATE {p}_outbox SET attempts = ?, last_error = ?, due_at = ?, parked = ? WHERE id = ?"
            )),
            unpark_outgoing: s(format!(
                "UPDATE {p}_outbox SET parked = 0, due_at = ? WHERE id = ? AND parked = 1"
            )),
            claim_outgoing: s(format!(
                "UPDATE {p}_outbox SET due_at = ? WHERE id = ? AND due_at = ? AND parked = 0"
            )),
            dialect: D::statements(p),
        }
    }
}

/// A statement for `D`: `?` parameters become `$1`, `$2`, … where the
/// database numbers them. Its only dynamic text is table names made from
/// validated application names, so it is safe to run.
pub(crate) fn statement<D: Dialect>(sql: String) -> SqlStr {
    let sql = if D::NUMBERED_PARAMETERS {
        number_parameters(&sql)
    } else {
        sql
    };
    sqlx::AssertSqlSafe(std::sync::Arc::<str>::from(sql)).into_sql_str()
}

/// `?` to `$1`, `$2`, … in order (our statements have no `?` in literals).
fn number_parameters(sql: &str) -> String {
    let mut numbered = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            numbered.push_str(&format!("${n}"));
        } else {
            numbered.push(c);
        }
    }
    numbered
}

#[cfg(test)]
mod tests {
    use super::number_parameters;

    #[test]
    fn parameters_are_numbered_in_order() {
        assert_eq!(
            number_parameters("UPDATE t SET a = ? WHERE b = ? AND c = ?"),
            "UPDATE t SET a = $1 WHERE b = $2 AND c = $3"
        );
        assert_eq!(number_parameters("SELECT 1"), "SELECT 1");
    }
}
