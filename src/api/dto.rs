//! The JSON the API speaks. Domain types never cross the wire; these do. Times are Unix
//! seconds (UTC).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{Config, format_duration};
use crate::model::{AccessRequest, AuditEvent, CommandRecord, RequestState, Session};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub host: String,
    pub login: String,
    /// `15m`, `1h`, …
    pub ttl: String,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalView {
    pub approver: String,
    pub comment: Option<String>,
    pub at: i64,
    /// False for an approval of a pending request by someone who has since lost the
    /// approver role: it stays on record and does not count.
    #[serde(default = "counts_by_default")]
    pub counts: bool,
}

fn counts_by_default() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestView {
    pub id: i64,
    pub requester: String,
    pub host: String,
    pub login: String,
    pub ttl: String,
    pub reason: String,
    /// The state now, with expiry applied.
    pub state: String,
    pub rule: String,
    pub approvals_needed: u32,
    pub approvals: Vec<ApprovalView>,
    pub created_at: i64,
    pub pending_until: i64,
    pub approved_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub flagged: bool,
    /// The rule's allowed hours, when it has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<String>,
    /// When those hours end the access of an approved request, if before `expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours_end: Option<i64>,
}

impl RequestView {
    /// The approvals that count towards `approvals_needed`.
    pub fn approvals_counted(&self) -> usize {
        self.approvals.iter().filter(|a| a.counts).count()
    }

    /// The view with what the request's rule in `cfg` says of its hours, and which of its
    /// approvals still count.
    pub fn of(cfg: &Config, r: &AccessRequest, now: i64) -> RequestView {
        let mut view = RequestView::new(r, now);
        if r.state_at(now) == RequestState::Pending {
            let counting = crate::policy::approvals_counting(cfg, r);
            for (a, counts) in view.approvals.iter_mut().zip(counting) {
                a.counts = counts;
            }
        }
        if let Some(rule) = cfg.rule(&r.rule)
            && let Some(hours) = &rule.hours
        {
            view.hours = Some(hours.to_string());
            let end = crate::policy::hours_end(rule, &r.host, &r.login, now)
                .ok()
                .flatten();
            let open = r.state_at(now) == RequestState::Approved;
            view.hours_end = end.filter(|&e| open && r.expires_at.is_some_and(|x| e < x));
        }
        view
    }

    pub fn new(r: &AccessRequest, now: i64) -> RequestView {
        RequestView {
            id: r.id,
            requester: r.requester.clone(),
            host: r.host.clone(),
            login: r.login.clone(),
            ttl: format_duration(std::time::Duration::from_secs(r.ttl_secs)),
            reason: r.reason.clone(),
            state: r.state_at(now).to_string(),
            rule: r.rule.to_string(),
            approvals_needed: r.approvals_needed,
            approvals: r
                .approvals
                .iter()
                .map(|a| ApprovalView {
                    approver: a.approver.clone(),
                    comment: a.comment.clone(),
                    at: a.at,
                    counts: true,
                })
                .collect(),
            created_at: r.created_at,
            pending_until: r.pending_until,
            approved_at: r.approved_at,
            expires_at: r.expires_at,
            decided_by: r.decided_by.clone(),
            decision_reason: r.decision_reason.clone(),
            flagged: r.flagged,
            hours: None,
            hours_end: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificateView {
    pub request_id: i64,
    pub serial: u64,
    /// One OpenSSH line, to save as `<key>-cert.pub`.
    pub certificate: String,
    pub principal: String,
    pub valid_after: i64,
    pub valid_before: i64,
    pub host: String,
    pub login: String,
    pub bastion: BastionInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BastionInfo {
    /// The name engineers use for the bastion.
    pub hostname: String,
    pub ssh_port: u16,
    /// `@cert-authority * ssh-ed25519 …` for `known_hosts`.
    pub known_hosts_line: String,
    /// Inventory host names reachable through it.
    pub hosts: Vec<String>,
    /// The caller's user name (the bastion login).
    pub user: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEventView {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub request_id: Option<i64>,
    pub session_id: Option<String>,
    pub data: BTreeMap<String, String>,
    pub prev_hash: String,
    pub hash: String,
}

impl From<&AuditEvent> for AuditEventView {
    fn from(e: &AuditEvent) -> AuditEventView {
        AuditEventView {
            seq: e.seq,
            at: e.event.at,
            kind: e.event.kind.clone(),
            actor: e.event.actor.clone(),
            request_id: e.event.request_id,
            session_id: e.event.session_id.clone(),
            data: e.event.data.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionView {
    pub id: String,
    pub request_id: i64,
    pub user: String,
    pub host: String,
    pub login: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub exit_status: Option<i32>,
    /// The signal that ended the remote command, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<String>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub recording: Option<String>,
}

impl From<&Session> for SessionView {
    fn from(s: &Session) -> SessionView {
        SessionView {
            id: s.id.clone(),
            request_id: s.request_id,
            user: s.user.clone(),
            host: s.host.clone(),
            login: s.login.clone(),
            started_at: s.started_at,
            ended_at: s.ended_at,
            exit_status: s.exit_status,
            exit_signal: s.exit_signal.clone(),
            bytes_up: s.bytes_up,
            bytes_down: s.bytes_down,
            recording: s.recording.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandView {
    pub session_id: String,
    pub user: String,
    pub host: String,
    pub login: String,
    pub at: i64,
    pub text: String,
    pub verdict: String,
    pub rule: Option<String>,
}

impl CommandView {
    pub fn new(c: &CommandRecord, s: &Session) -> CommandView {
        CommandView {
            session_id: c.session_id.clone(),
            user: s.user.clone(),
            host: s.host.clone(),
            login: s.login.clone(),
            at: c.at,
            text: c.text.clone(),
            verdict: c.verdict.clone(),
            rule: c.rule.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub pending: bool,
    pub user: Option<String>,
    pub host: Option<String>,
    /// Unix seconds.
    pub since: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
