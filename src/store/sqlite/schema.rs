//! Connection settings and the numbered, ordered schema migrations.
//!
//! `schema_migrations` holds one row per applied migration. On open, every migration whose
//! number is not there yet runs, in order, each in its own transaction together with its row,
//! so a crash midway leaves the database at a clean version and opening twice is a no-op.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::store::StoreError;

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// Numbered migrations, applied in order. Append only: never edit a shipped one.
pub(super) const MIGRATIONS: &[(i64, &str)] = &[(1, V1), (2, V2), (3, V3)];

/// The fingerprint of the access rule a request was admitted under. Requests made before it
/// have none, match no rule, and so end: requests live minutes, and guessing is worse.
const V3: &str = "ALTER TABLE requests ADD COLUMN rule_digest TEXT NOT NULL DEFAULT '';";

/// The signal that ended a session's remote command, when one did.
const V2: &str = "ALTER TABLE sessions ADD COLUMN exit_signal TEXT;";

const V1: &str = r#"
CREATE TABLE requests (
    id               INTEGER PRIMARY KEY,
    requester        TEXT    NOT NULL,
    host             TEXT    NOT NULL,
    login            TEXT    NOT NULL,
    ttl_secs         INTEGER NOT NULL CHECK (ttl_secs >= 0),
    reason           TEXT    NOT NULL,
    rule_role        TEXT    NOT NULL,
    rule_index       INTEGER NOT NULL CHECK (rule_index >= 0),
    approvals_needed INTEGER NOT NULL CHECK (approvals_needed >= 0),
    state            TEXT    NOT NULL
        CHECK (state IN ('pending', 'approved', 'denied', 'revoked', 'expired')),
    created_at       INTEGER NOT NULL,
    pending_until    INTEGER NOT NULL,
    approved_at      INTEGER,
    expires_at       INTEGER,
    decided_by       TEXT,
    decision_reason  TEXT,
    flagged          INTEGER NOT NULL DEFAULT 0 CHECK (flagged IN (0, 1))
);
CREATE INDEX requests_open ON requests (state) WHERE state IN ('pending', 'approved');
CREATE INDEX requests_by_requester ON requests (requester, id);

CREATE TABLE approvals (
    request_id INTEGER NOT NULL REFERENCES requests (id),
    approver   TEXT    NOT NULL,
    comment    TEXT,
    at         INTEGER NOT NULL,
    PRIMARY KEY (request_id, approver)
);

CREATE TABLE counters (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('cert_serial', 0);

CREATE TABLE certs (
    serial          INTEGER PRIMARY KEY CHECK (serial > 0),
    request_id      INTEGER NOT NULL REFERENCES requests (id),
    user            TEXT    NOT NULL,
    key_fingerprint TEXT    NOT NULL,
    valid_after     INTEGER NOT NULL,
    valid_before    INTEGER NOT NULL,
    issued_at       INTEGER NOT NULL
);
CREATE INDEX certs_by_request ON certs (request_id);

CREATE TABLE sessions (
    id               TEXT    PRIMARY KEY,
    request_id       INTEGER NOT NULL REFERENCES requests (id),
    user             TEXT    NOT NULL,
    host             TEXT    NOT NULL,
    login            TEXT    NOT NULL,
    started_at       INTEGER NOT NULL,
    ended_at         INTEGER,
    exit_status      INTEGER,
    bytes_up         INTEGER NOT NULL DEFAULT 0,
    bytes_down       INTEGER NOT NULL DEFAULT 0,
    recording        TEXT,
    recording_sha256 TEXT
);
CREATE INDEX sessions_by_start ON sessions (started_at);
CREATE INDEX sessions_by_request ON sessions (request_id);

CREATE TABLE commands (
    id         INTEGER PRIMARY KEY,
    session_id TEXT    NOT NULL REFERENCES sessions (id),
    at         INTEGER NOT NULL,
    text       TEXT    NOT NULL,
    verdict    TEXT    NOT NULL,
    rule       TEXT
);
CREATE INDEX commands_by_at ON commands (at);
CREATE INDEX commands_by_session ON commands (session_id);

CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY CHECK (seq > 0),
    at         INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    request_id INTEGER,
    session_id TEXT,
    data       TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL
);
CREATE INDEX audit_events_by_at ON audit_events (at);

-- The log is append-only through jitgate. These stop accidents, not an attacker with the
-- file (who can drop them): the hash chain is what shows an edit.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#;

/// The newest schema version this build knows.
pub(super) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// Settings for the read-write connection.
pub(super) fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Db(format!(
            "could not switch the database to WAL mode (it is in {mode} mode)"
        )));
    }
    // FULL syncs the WAL at every commit, so a commit the caller heard of survives a power
    // loss too (NORMAL would keep it only across a crash of the process): an issued
    // certificate's serial, an approval and the audit event beside it are never handed out
    // and then forgotten. Calls waiting together share one commit, so one sync; measured
    // with `cargo bench --bench certificates`, about 2,700 certificates a second either way.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Settings for the read-only connection of `audit verify`.
pub(super) fn configure_readonly(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn applied_version(conn: &Connection) -> Result<Option<i64>, StoreError> {
    let has_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' \
         AND name = 'schema_migrations')",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(None);
    }
    Ok(conn
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .optional()?
        .flatten())
}

/// Applies every migration not applied yet. Returns how many ran.
pub(super) fn migrate(conn: &mut Connection) -> Result<usize, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
    )?;
    check_not_newer(applied_version(conn)?.unwrap_or(0))?;
    let mut ran = 0;
    for (version, sql) in MIGRATIONS {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Checked inside the write transaction: another process may have just applied it.
        let done: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
            [version],
            |r| r.get(0),
        )?;
        if !done {
            tx.execute_batch(sql)
                .map_err(|e| StoreError::Db(format!("migration {version} failed: {e}")))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, unixepoch())",
                [version],
            )?;
            ran += 1;
        }
        tx.commit()?;
    }
    Ok(ran)
}

/// A read-only opener cannot migrate: the database must be exactly at this build's version.
pub(super) fn check_current(conn: &Connection) -> Result<(), StoreError> {
    let Some(v) = applied_version(conn)? else {
        return Err(StoreError::Db(
            "not a jitgate database (no schema_migrations table)".into(),
        ));
    };
    check_not_newer(v)?;
    if v < latest_version() {
        return Err(StoreError::Db(format!(
            "database schema is at version {v}, this jitgate needs {}; start `jitgate serve` \
             once to migrate it",
            latest_version()
        )));
    }
    Ok(())
}

fn check_not_newer(v: i64) -> Result<(), StoreError> {
    if v > latest_version() {
        return Err(StoreError::Db(format!(
            "database schema is at version {v}, newer than this jitgate knows ({}); \
             upgrade jitgate",
            latest_version()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (i, (v, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v, i as i64 + 1);
        }
    }

    #[test]
    fn migrating_twice_is_a_no_op() -> Result<(), StoreError> {
        let mut conn = Connection::open_in_memory()?;
        assert_eq!(migrate(&mut conn)?, MIGRATIONS.len());
        assert_eq!(migrate(&mut conn)?, 0);
        let rows: i64 =
            conn.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))?;
        assert_eq!(rows, MIGRATIONS.len() as i64);
        check_current(&conn)
    }

    #[test]
    fn a_newer_database_is_refused() -> Result<(), StoreError> {
        let mut conn = Connection::open_in_memory()?;
        migrate(&mut conn)?;
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)",
            [latest_version() + 1],
        )?;
        let err = migrate(&mut conn).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("newer than this jitgate")));
        Ok(())
    }
}
