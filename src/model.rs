//! Domain types shared by policy, store, api and bastion. No JSON, no SQL, no clock here:
//! times are Unix seconds passed in by the caller.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::RuleRef;

/// Seconds since the Unix epoch, UTC.
pub type UnixTime = i64;

/// The current time. Only the outer layers (api, bastion, cli) call this.
pub fn now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestState {
    Pending,
    Approved,
    Denied,
    Revoked,
    Expired,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Denied => "denied",
            RequestState::Revoked => "revoked",
            RequestState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<RequestState> {
        [
            RequestState::Pending,
            RequestState::Approved,
            RequestState::Denied,
            RequestState::Revoked,
            RequestState::Expired,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a requester asks for, after policy accepted it, before the store gives it an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    pub requester: String,
    pub host: String,
    pub login: String,
    pub ttl_secs: u64,
    pub reason: String,
    pub rule: RuleRef,
    /// 0: approved by policy at creation.
    pub approvals_needed: u32,
    pub created_at: UnixTime,
    /// An undecided request expires at this time.
    pub pending_until: UnixTime,
}

impl NewRequest {
    /// For tests: alice asks for postgres on db1 for 15 minutes under role `dba`'s second
    /// rule, created at `at`, pending for an hour, needing `needed` approvals.
    #[cfg(test)]
    pub(crate) fn example(needed: u32, at: UnixTime) -> NewRequest {
        NewRequest {
            requester: "alice".into(),
            host: "db1".into(),
            login: "postgres".into(),
            ttl_secs: 900,
            reason: "INC-4711".into(),
            rule: RuleRef {
                role: "dba".into(),
                index: 1,
                digest: "ab".repeat(32),
            },
            approvals_needed: needed,
            created_at: at,
            pending_until: at + 3600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub approver: String,
    pub comment: Option<String>,
    pub at: UnixTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    pub id: i64,
    pub requester: String,
    pub host: String,
    pub login: String,
    pub ttl_secs: u64,
    pub reason: String,
    pub rule: RuleRef,
    pub approvals_needed: u32,
    /// The state as last written; `state_at` applies expiry.
    pub state: RequestState,
    pub created_at: UnixTime,
    pub pending_until: UnixTime,
    pub approved_at: Option<UnixTime>,
    /// End of access: approval + TTL.
    pub expires_at: Option<UnixTime>,
    /// Who denied or revoked it, and why.
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    /// Set when guardrails closed a session of it; the request is revoked pending review.
    pub flagged: bool,
    pub approvals: Vec<Approval>,
}

impl AccessRequest {
    /// The state at `now`: a pending request past `pending_until`, or an approved one past
    /// `expires_at`, is expired even before anyone wrote that down.
    pub fn state_at(&self, now: UnixTime) -> RequestState {
        match self.state {
            RequestState::Pending if now >= self.pending_until => RequestState::Expired,
            RequestState::Approved if self.expires_at.is_some_and(|e| now >= e) => {
                RequestState::Expired
            }
            s => s,
        }
    }

    /// Whether access through this request is open at `now`.
    pub fn is_active(&self, now: UnixTime) -> bool {
        self.state_at(now) == RequestState::Approved
    }
}

/// A certificate the user CA issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pub serial: u64,
    pub request_id: i64,
    pub user: String,
    /// SHA-256 fingerprint of the certified key.
    pub key_fingerprint: String,
    pub valid_after: UnixTime,
    pub valid_before: UnixTime,
    pub issued_at: UnixTime,
}

/// An audit event before it is chained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    pub at: UnixTime,
    /// e.g. `request.created`, `request.denied`, `api.refused`, `session.closed`.
    pub kind: String,
    /// The user (or `system`) who caused it.
    pub actor: String,
    pub request_id: Option<i64>,
    pub session_id: Option<String>,
    /// Further fields, sorted by key so the encoding is canonical.
    pub data: BTreeMap<String, String>,
}

impl NewAuditEvent {
    pub fn new(at: UnixTime, kind: &str, actor: &str) -> NewAuditEvent {
        NewAuditEvent {
            at,
            kind: kind.to_string(),
            actor: actor.to_string(),
            request_id: None,
            session_id: None,
            data: BTreeMap::new(),
        }
    }

    pub fn request(mut self, id: i64) -> NewAuditEvent {
        self.request_id = Some(id);
        self
    }

    pub fn session(mut self, id: &str) -> NewAuditEvent {
        self.session_id = Some(id.to_string());
        self
    }

    pub fn with(mut self, key: &str, value: impl fmt::Display) -> NewAuditEvent {
        self.data.insert(key.to_string(), value.to_string());
        self
    }
}

/// An audit event as stored: numbered and chained to the one before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub seq: i64,
    pub event: NewAuditEvent,
    /// Hex SHA-256 of the previous event (64 zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 over `seq`, the event and `prev_hash` (see `audit::event_hash`).
    pub hash: String,
}

/// One SSH session channel through the bastion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub request_id: i64,
    pub user: String,
    pub host: String,
    pub login: String,
    pub started_at: UnixTime,
    pub ended_at: Option<UnixTime>,
    pub exit_status: Option<i32>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Path of the recording relative to the recordings folder.
    pub recording: Option<String>,
    /// The signal that ended the remote command (`KILL`, `TERM`, …), when one did.
    pub exit_signal: Option<String>,
}

/// A command the guardrails looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    pub session_id: String,
    pub at: UnixTime,
    pub text: String,
    /// `allowed`, `warned`, `blocked`, `would-block` (shadow mode).
    pub verdict: String,
    /// `set/rule` that decided, if any.
    pub rule: Option<String>,
}

/// `2026-11-22 10:15:00 UTC`: how times appear in messages.
pub fn format_time(t: UnixTime) -> String {
    chrono::DateTime::from_timestamp(t, 0).map_or_else(
        || t.to_string(),
        |d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// Whether `c` changes how a terminal shows the text around it: C0 and C1 controls (a
/// carriage return, the start of an escape sequence) and the invisible marks that reorder
/// or hide characters (bidirectional overrides, zero-width spaces). Free text one person
/// types for another to read is refused with them; text printed to a terminal shows them
/// escaped.
pub fn redraws_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
                | '\u{e0000}'..='\u{e007f}'
        )
}

/// Why `text`, typed by one person for others to read (a reason, a comment), is refused:
/// see `redraws_terminal`.
pub fn unprintable(what: &str, text: &str) -> Option<String> {
    let c = text.chars().find(|&c| redraws_terminal(c))?;
    Some(format!(
        "the {what} contains {:?}, which would redraw an approver's terminal; write it on one \
         line, in plain text",
        c
    ))
}

#[cfg(test)]
mod text_tests {
    use super::*;

    #[test]
    fn what_redraws_a_terminal() {
        for c in [
            '\r',
            '\n',
            '\t',
            '\x1b',
            '\x7f',
            '\u{9b}',
            '\u{061c}',
            '\u{200b}',
            '\u{200f}',
            '\u{2028}',
            '\u{202e}',
            '\u{2066}',
            '\u{feff}',
            '\u{e0041}',
        ] {
            assert!(redraws_terminal(c), "{c:?}");
        }
        for c in ['a', ' ', '-', '"', 'é', '漢', '→', '\u{a0}'] {
            assert!(!redraws_terminal(c), "{c:?}");
        }
        assert_eq!(unprintable("reason", "INC-1: restart the worker"), None);
        assert!(
            unprintable("comment", "ok\u{1b}[1A")
                .unwrap()
                .starts_with("the comment contains '\\u{1b}'")
        );
    }
}
