//! SQLite implementation of `Store`: one file, WAL mode, migrations on open.
//!
//! rusqlite is synchronous, so one thread owns the connection and runs every call (see
//! `worker`): no async task ever waits on the disk. Each call runs in its own savepoint of a
//! `BEGIN IMMEDIATE` transaction, so a state change and its audit events commit together or
//! not at all, and concurrent calls are serialised: checks such as "is it still pending?"
//! cannot race.

mod records;
mod requests;
mod schema;
#[cfg(test)]
mod tests;
mod worker;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};

use self::worker::Worker;
use super::{
    ApproveOutcome, CommandFilter, RequestFilter, SessionEnd, SessionFilter, Store, StoreError,
    audit,
};
use crate::model::{
    AccessRequest, AuditEvent, CommandRecord, IssuedCert, NewAuditEvent, NewRequest, Session,
    UnixTime,
};

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Db(e.to_string())
    }
}

/// The SQLite store. Cheap to clone: clones share the connection and its thread, which
/// closes the database when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    worker: Worker,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating the folder, 0700, and file, 0600, when absent) the database at
    /// `path`, switches it to WAL mode and applies pending migrations.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        super::private::prepare_database(path)?;
        let mut conn = Connection::open(path)
            .map_err(|e| StoreError::Db(format!("cannot open {}: {e}", path.display())))?;
        schema::configure(&conn)?;
        schema::migrate(&mut conn)?;
        SqliteStore::start(conn, path, "BEGIN IMMEDIATE")
    }

    /// Opens an existing database read-only (for `jitgate audit verify`): never creates the
    /// file, never migrates; fails when the file is absent or its schema is not current.
    /// Writes through this store fail with `StoreError::Db`.
    pub fn open_readonly(path: &Path) -> Result<SqliteStore, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Db(format!(
                "no database at {}: nothing to read",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Db(format!("cannot open {}: {e}", path.display())))?;
        schema::configure_readonly(&conn)?;
        schema::check_current(&conn)
            .map_err(|e| StoreError::Db(format!("{}: {e}", path.display())))?;
        SqliteStore::start(conn, path, "BEGIN DEFERRED")
    }

    fn start(
        conn: Connection,
        path: &Path,
        begin: &'static str,
    ) -> Result<SqliteStore, StoreError> {
        Ok(SqliteStore {
            worker: Worker::start(conn, begin)?,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        self.call(|c| {
            Ok(
                c.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
                    r.get::<_, Option<i64>>(0)
                })?
                .unwrap_or(0),
            )
        })
        .await
    }

    /// Runs `f` on the store thread in its own savepoint; its changes commit only when it
    /// succeeds.
    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.worker.call(f).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_request(&self, new: NewRequest) -> Result<AccessRequest, StoreError> {
        self.call(move |c| requests::create(c, new)).await
    }

    async fn get_request(&self, id: i64) -> Result<Option<AccessRequest>, StoreError> {
        self.call(move |c| requests::get(c, id)).await
    }

    async fn list_requests(&self, filter: RequestFilter) -> Result<Vec<AccessRequest>, StoreError> {
        self.call(move |c| requests::list(c, &filter)).await
    }

    async fn approve(
        &self,
        id: i64,
        approver: &str,
        comment: Option<&str>,
        counted: &[String],
        now: UnixTime,
    ) -> Result<ApproveOutcome, StoreError> {
        let approver = approver.to_string();
        let comment = comment.map(str::to_string);
        let counted = counted.to_vec();
        self.call(move |c| requests::approve(c, id, &approver, comment.as_deref(), &counted, now))
            .await
    }

    async fn deny(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        now: UnixTime,
    ) -> Result<AccessRequest, StoreError> {
        let (by, reason) = (by.to_string(), reason.to_string());
        self.call(move |c| requests::deny(c, id, &by, &reason, now))
            .await
    }

    async fn revoke(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        flag: bool,
        now: UnixTime,
    ) -> Result<AccessRequest, StoreError> {
        let (by, reason) = (by.to_string(), reason.to_string());
        self.call(move |c| requests::revoke(c, id, &by, &reason, flag, now))
            .await
    }

    async fn expire_due(&self, now: UnixTime) -> Result<Vec<AccessRequest>, StoreError> {
        self.call(move |c| requests::expire_due(c, now)).await
    }

    async fn next_serial(&self) -> Result<u64, StoreError> {
        self.call(requests::next_serial).await
    }

    async fn record_cert(&self, cert: IssuedCert) -> Result<(), StoreError> {
        self.call(move |c| records::record_cert(c, cert)).await
    }

    async fn cert_by_serial(&self, serial: u64) -> Result<Option<IssuedCert>, StoreError> {
        self.call(move |c| records::cert_by_serial(c, serial)).await
    }

    async fn append_audit(&self, event: NewAuditEvent) -> Result<AuditEvent, StoreError> {
        self.call(move |c| records::append(c, event)).await
    }

    async fn audit_events(&self, since: Option<UnixTime>) -> Result<Vec<AuditEvent>, StoreError> {
        self.call(move |c| records::audit_events(c, since)).await
    }

    async fn audit_head(&self) -> Result<Option<audit::Head>, StoreError> {
        self.call(records::audit_head).await
    }

    async fn start_session(&self, session: Session) -> Result<(), StoreError> {
        self.call(move |c| records::start_session(c, session)).await
    }

    async fn end_session(&self, id: &str, end: SessionEnd<'_>) -> Result<(), StoreError> {
        let id = id.to_string();
        let signal = end.exit_signal.map(str::to_string);
        let sha = end.recording_sha256.map(str::to_string);
        let error = end.recording_error.map(str::to_string);
        self.call(move |c| {
            records::end_session(
                c,
                &id,
                SessionEnd {
                    exit_signal: signal.as_deref(),
                    recording_sha256: sha.as_deref(),
                    recording_error: error.as_deref(),
                    ..end
                },
            )
        })
        .await
    }

    async fn get_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let id = id.to_string();
        self.call(move |c| records::get_session(c, &id)).await
    }

    async fn list_sessions(&self, filter: SessionFilter) -> Result<Vec<Session>, StoreError> {
        self.call(move |c| records::list_sessions(c, &filter)).await
    }

    async fn record_command(&self, cmd: CommandRecord) -> Result<(), StoreError> {
        self.call(move |c| records::record_command(c, cmd)).await
    }

    async fn list_commands(
        &self,
        filter: CommandFilter,
    ) -> Result<Vec<(CommandRecord, Session)>, StoreError> {
        self.call(move |c| records::list_commands(c, &filter)).await
    }
}
