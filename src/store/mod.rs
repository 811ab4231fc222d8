//! The only place with SQL: requests, approvals, issued certificates, sessions, the command
//! index and the hash-chained audit log, behind the `Store` trait.
//!
//! Every state change and the audit event that records it commit in one transaction, so the
//! log never disagrees with the state. Checks that race (is the request still pending? has
//! this approver approved already?) run inside that transaction too.

pub mod audit;
mod lock;
mod private;
mod sqlite;

use async_trait::async_trait;

pub use lock::{Holder, StoreLock, hold, lock_path};
pub use sqlite::SqliteStore;

use crate::model::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(String),
    #[error("no request {0}")]
    NoRequest(i64),
    #[error("no session {0}")]
    NoSession(String),
    /// The request is not in a state that allows this change.
    #[error("request {id} is already {state}; see jitgate show {id}")]
    WrongState { id: i64, state: RequestState },
    /// The change clashes with what is stored: a serial or session id used twice, a session
    /// closed twice.
    #[error("{0}")]
    Conflict(String),
}

/// What `approve` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproveOutcome {
    /// The approval counted; `request.state` is `Approved` once enough have.
    Counted(AccessRequest),
    /// This approver had approved already; nothing changed.
    AlreadyApproved(AccessRequest),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// Only requests whose stored state is pending and not past `pending_until` at `now`.
    pub pending_at: Option<UnixTime>,
    pub requester: Option<String>,
    /// Only requests with a smaller id (the next page, newest first).
    pub before_id: Option<i64>,
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    pub user: Option<String>,
    pub host: Option<String>,
    pub since: Option<UnixTime>,
    pub request_id: Option<i64>,
    /// Only sessions not ended yet.
    pub open: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandFilter {
    pub user: Option<String>,
    pub host: Option<String>,
    pub since: Option<UnixTime>,
    /// Only commands of this request's sessions.
    pub request_id: Option<i64>,
    /// Only commands with this verdict (`blocked`, …).
    pub verdict: Option<String>,
}

/// How a session ended, for `Store::end_session`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionEnd<'a> {
    pub ended_at: UnixTime,
    /// The remote command's exit status, when it exited.
    pub exit_status: Option<i32>,
    /// The signal that ended the remote command (`KILL`, `TERM`, …), when one did.
    pub exit_signal: Option<&'a str>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// The recording's SHA-256: of its final bytes, or, when it failed, of the file as it
    /// stood when the session closed.
    pub recording_sha256: Option<&'a str>,
    /// Why the recording failed (a write error, a file unreadable when sealed), when it did.
    pub recording_error: Option<&'a str>,
    /// The server stopped without closing the session; it was sealed at the next start.
    pub cut_off: bool,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new request (state approved when `approvals_needed == 0`, with
    /// `approved_at = created_at` and `expires_at = created_at + ttl`) and its
    /// `request.created` (and `request.approved`) audit events.
    async fn create_request(&self, new: NewRequest) -> Result<AccessRequest, StoreError>;

    async fn get_request(&self, id: i64) -> Result<Option<AccessRequest>, StoreError>;

    /// Newest first.
    async fn list_requests(&self, filter: RequestFilter) -> Result<Vec<AccessRequest>, StoreError>;

    /// Records one approval by `approver` at `now`. In one transaction: the request must be
    /// pending at `now` (else `WrongState`); a second approval by the same person changes
    /// nothing; when the distinct approvals by people in `counted` (who may approve it
    /// today) reach `approvals_needed`, the request becomes approved (`approved_at = now`,
    /// `expires_at = now + ttl`). Audit: `request.approval`, and `request.approved` when it
    /// tips over.
    async fn approve(
        &self,
        id: i64,
        approver: &str,
        comment: Option<&str>,
        counted: &[String],
        now: UnixTime,
    ) -> Result<ApproveOutcome, StoreError>;

    /// Pending at `now` → denied. Audit: `request.denied`.
    async fn deny(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        now: UnixTime,
    ) -> Result<AccessRequest, StoreError>;

    /// Pending or approved (not yet expired) at `now` → revoked; `flag` marks it for review.
    /// Audit: `request.revoked` (and `request.flagged`).
    async fn revoke(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        flag: bool,
        now: UnixTime,
    ) -> Result<AccessRequest, StoreError>;

    /// Writes `expired` for every request whose `state_at(now)` is expired but whose stored
    /// state is not, with a `request.expired` audit event each; returns them.
    async fn expire_due(&self, now: UnixTime) -> Result<Vec<AccessRequest>, StoreError>;

    /// A fresh, never reused certificate serial.
    async fn next_serial(&self) -> Result<u64, StoreError>;

    /// Records an issued certificate. Audit: `cert.issued`.
    async fn record_cert(&self, cert: IssuedCert) -> Result<(), StoreError>;

    async fn cert_by_serial(&self, serial: u64) -> Result<Option<IssuedCert>, StoreError>;

    /// Appends one event to the chain and returns it as stored.
    async fn append_audit(&self, event: NewAuditEvent) -> Result<AuditEvent, StoreError>;

    /// Events with `at >= since`, oldest first.
    async fn audit_events(&self, since: Option<UnixTime>) -> Result<Vec<AuditEvent>, StoreError>;

    /// The newest event as `SEQ:HASH` (`None` while the log is empty), for copies kept
    /// outside the store (webhooks, `audit verify --head`).
    async fn audit_head(&self) -> Result<Option<audit::Head>, StoreError>;

    /// Audit: `session.started`.
    async fn start_session(&self, session: Session) -> Result<(), StoreError>;

    /// Sets end, exit status or signal, byte counts and recording; audit `session.closed`
    /// carrying them, and `recording_sha256` and `recording_error` when given.
    async fn end_session(&self, id: &str, end: SessionEnd<'_>) -> Result<(), StoreError>;

    async fn get_session(&self, id: &str) -> Result<Option<Session>, StoreError>;

    /// Newest first.
    async fn list_sessions(&self, filter: SessionFilter) -> Result<Vec<Session>, StoreError>;

    async fn record_command(&self, cmd: CommandRecord) -> Result<(), StoreError>;

    /// Newest first, with the session's user and host.
    async fn list_commands(
        &self,
        filter: CommandFilter,
    ) -> Result<Vec<(CommandRecord, Session)>, StoreError>;
}
