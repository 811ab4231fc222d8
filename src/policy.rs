//! Who may request what, who may decide, and when access ends: pure decisions, time passed in.
//!
//! `policy` never reads the clock, the store or the network. A decision is a value:
//! `Decision::Deny { reason }` is an answer, not an error.

use std::time::Duration;

use crate::config::{AccessRule, Config, RuleRef, format_duration};
use crate::model::{AccessRequest, NewRequest, RequestState, UnixTime};

/// What an engineer asks for.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pub user: &'a str,
    pub host: &'a str,
    pub login: &'a str,
    pub ttl: Duration,
    pub reason: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed and approved by policy at once.
    Approve {
        rule: RuleRef,
    },
    /// Allowed once `approvals` people holding an approver role agree.
    Pending {
        rule: RuleRef,
        approvals: u32,
    },
    Deny {
        reason: String,
    },
}

impl Decision {
    /// The request to store for an accepted ask, or `None` for a denial.
    pub fn into_request(self, cfg: &Config, ask: &Ask, now: UnixTime) -> Option<NewRequest> {
        let (rule, approvals_needed) = match self {
            Decision::Approve { rule } => (rule, 0),
            Decision::Pending { rule, approvals } => (rule, approvals),
            Decision::Deny { .. } => return None,
        };
        Some(NewRequest {
            requester: ask.user.to_string(),
            host: ask.host.to_string(),
            login: ask.login.to_string(),
            ttl_secs: ask.ttl.as_secs(),
            reason: ask.reason.trim().to_string(),
            rule,
            approvals_needed,
            created_at: now,
            pending_until: now.saturating_add(
                i64::try_from(cfg.server.pending_ttl.as_secs()).unwrap_or(i64::MAX),
            ),
        })
    }
}

fn deny(reason: impl Into<String>) -> Decision {
    Decision::Deny {
        reason: reason.into(),
    }
}

/// Decides an ask. Of the rules that allow it, the one needing the fewest approvals wins.
pub fn evaluate(cfg: &Config, ask: &Ask, now: UnixTime) -> Decision {
    let Some(user) = cfg.user(ask.user) else {
        return deny(format!("unknown user {:?}", ask.user));
    };
    let Some(host) = cfg.host(ask.host) else {
        let known: Vec<&str> = cfg.hosts.iter().map(|h| h.name.as_str()).collect();
        return deny(format!(
            "unknown host {:?}; known hosts: {}",
            ask.host,
            known.join(", ")
        ));
    };
    if ask.ttl.is_zero() {
        return deny("ttl must be more than 0s, e.g. --ttl 15m");
    }
    // Every rule of the user's roles that covers this host.
    let for_host: Vec<(RuleRef, &AccessRule)> = user
        .roles
        .iter()
        .filter_map(|r| cfg.role(r))
        .flat_map(|role| role.rules())
        .filter(|(_, rule)| rule.hosts.matches(host))
        .collect();
    if for_host.is_empty() {
        return deny(format!(
            "no access rule of your roles ({}) covers host {:?}",
            user.roles.join(", "),
            ask.host
        ));
    }
    let for_login: Vec<&(RuleRef, &AccessRule)> = for_host
        .iter()
        .filter(|(_, rule)| rule.logins.iter().any(|l| l == ask.login))
        .collect();
    if for_login.is_empty() {
        let mut allowed: Vec<&str> = for_host
            .iter()
            .flat_map(|(_, r)| r.logins.iter().map(String::as_str))
            .collect();
        allowed.sort();
        allowed.dedup();
        return deny(format!(
            "login {:?} is not allowed on {}; allowed logins: {}",
            ask.login,
            ask.host,
            allowed.join(", ")
        ));
    }
    let mut first_refusal = None;
    let mut best: Option<(&RuleRef, &AccessRule)> = None;
    for (rule_ref, rule) in for_login {
        match check_rule(rule, ask, now) {
            Ok(()) => {
                if best.is_none_or(|(_, b)| rule.approvals < b.approvals) {
                    best = Some((rule_ref, rule));
                }
            }
            Err(reason) => {
                first_refusal.get_or_insert(reason);
            }
        }
    }
    match best {
        Some((rule_ref, rule)) if rule.approvals == 0 => Decision::Approve {
            rule: rule_ref.clone(),
        },
        Some((rule_ref, rule)) => Decision::Pending {
            rule: rule_ref.clone(),
            approvals: rule.approvals,
        },
        None => deny(first_refusal.unwrap_or_else(|| "no access rule allows this".into())),
    }
}

fn check_rule(rule: &AccessRule, ask: &Ask, now: UnixTime) -> Result<(), String> {
    if ask.ttl > rule.max_ttl {
        return Err(format!(
            "ttl {} exceeds the maximum of {} for {} as {}; ask again with --ttl {} or less",
            format_duration(ask.ttl),
            format_duration(rule.max_ttl),
            ask.host,
            ask.login,
            format_duration(rule.max_ttl)
        ));
    }
    if rule.require_reason && ask.reason.trim().is_empty() {
        return Err("a reason is required: add --reason \"INC-1234: why you need access\"".into());
    }
    hours_end(rule, ask.host, ask.login, now)?;
    Ok(())
}

/// When the rule's allowed hours end access that is used at `now`: `Ok(None)` when the rule
/// has none (or they never end), `Err` with the engineer's message outside them. Checked when
/// a request is made, a certificate signed and a connection accepted; a session open when
/// they end is closed then.
pub fn hours_end(
    rule: &AccessRule,
    host: &str,
    login: &str,
    now: UnixTime,
) -> Result<Option<UnixTime>, String> {
    let Some(hours) = &rule.hours else {
        return Ok(None);
    };
    if !hours.contains(now) {
        return Err(format!(
            "access to {host} as {login} is allowed only {hours}"
        ));
    }
    Ok(hours.ends_after(now))
}

/// The rule `req` was admitted under, while it still holds: the rule is configured word for
/// word and its requester is still a user holding the rule's role. Taking someone out of a
/// role (or out of `[[users]]`) ends what they were granted through it, like editing the
/// rule does: no new certificate, no new connection. The message is the requester's.
pub fn rule_of<'c>(cfg: &'c Config, req: &AccessRequest) -> Result<&'c AccessRule, String> {
    let Some(rule) = cfg.rule(&req.rule) else {
        return Err(format!(
            "the access rule of request {} was changed or removed in the configuration; \
             run jitgate request --host {} --login {} again",
            req.id, req.host, req.login
        ));
    };
    if !requester_holds_role(cfg, req) {
        return Err(format!(
            "request {} was granted through role {}, which {} no longer holds in the \
             configuration; ask an admin, or run jitgate request --host {} --login {} under \
             a role you hold",
            req.id, req.rule.role, req.requester, req.host, req.login
        ));
    }
    Ok(rule)
}

/// Whether the requester of `req` is still a user holding the role it was made under.
fn requester_holds_role(cfg: &Config, req: &AccessRequest) -> bool {
    cfg.user(&req.requester)
        .is_some_and(|u| u.roles.contains(&req.rule.role))
}

/// The users whose approvals of `req` count today: those holding one of its rule's
/// approver roles, never its requester. An approval given by someone who has since lost
/// the role stays on record but no longer counts towards the rule's number.
pub fn current_approvers(cfg: &Config, rule: &AccessRule, req: &AccessRequest) -> Vec<String> {
    cfg.users
        .iter()
        .filter(|u| u.name != req.requester && u.roles.iter().any(|r| rule.approvers.contains(r)))
        .map(|u| u.name.clone())
        .collect()
}

/// For each of `req`'s approvals, whether it counts today (see `current_approvers`); all
/// do when its rule is no longer configured (nothing can be decided then anyway).
pub fn approvals_counting(cfg: &Config, req: &AccessRequest) -> Vec<bool> {
    let current = cfg
        .rule(&req.rule)
        .map(|rule| current_approvers(cfg, rule, req));
    req.approvals
        .iter()
        .map(|a| current.as_ref().is_none_or(|c| c.contains(&a.approver)))
        .collect()
}

/// How many of `req`'s approvals count today (`approvals_counting`).
pub fn approvals_counted(cfg: &Config, req: &AccessRequest) -> usize {
    approvals_counting(cfg, req)
        .into_iter()
        .filter(|&c| c)
        .count()
}

/// Whether `approver` may approve `req` at `now`: `check_decider`, and its requester still
/// holds the role it was made under (else it can only be denied or revoked).
pub fn check_approver<'c>(
    cfg: &'c Config,
    approver: &str,
    req: &AccessRequest,
    now: UnixTime,
) -> Result<&'c AccessRule, String> {
    let rule = check_decider(cfg, approver, req, now)?;
    if !requester_holds_role(cfg, req) {
        return Err(format!(
            "request {} cannot be approved: {} no longer holds role {}, under which it was \
             made; deny or revoke it",
            req.id, req.requester, req.rule.role
        ));
    }
    Ok(rule)
}

/// Whether `approver` may approve or deny `req` at `now`, and the rule that says so. The
/// store re-checks the state inside its transaction; this answers everything that does not
/// race.
pub fn check_decider<'c>(
    cfg: &'c Config,
    approver: &str,
    req: &AccessRequest,
    now: UnixTime,
) -> Result<&'c AccessRule, String> {
    if approver == req.requester {
        return Err(format!(
            "you cannot decide your own request {}; ask an approver",
            req.id
        ));
    }
    // Told to whoever would decide (an auditor: approvers no longer see such a request):
    // the requester's way out (`rule_of`) is not theirs.
    let Some(rule) = cfg.rule(&req.rule) else {
        return Err(match req.state_at(now) {
            RequestState::Pending => format!(
                "the access rule of request {} was changed or removed in the configuration, so \
                 it can no longer be approved or denied; revoke it, or it expires undecided at {}",
                req.id,
                crate::model::format_time(req.pending_until)
            ),
            state => already_decided(req, state, false),
        });
    };
    let Some(user) = cfg.user(approver) else {
        return Err(format!("unknown user {approver:?}"));
    };
    if !user.roles.iter().any(|r| rule.approvers.contains(r)) {
        return Err(format!(
            "you are not an approver for request {}: it needs a member of {}",
            req.id,
            rule.approvers.join(" or ")
        ));
    }
    match req.state_at(now) {
        RequestState::Pending => Ok(rule),
        state => Err(already_decided(req, state, false)),
    }
}

/// Whether `who` may revoke `req`: its requester (withdrawing it), an approver of its rule,
/// or an auditor; and only while it is pending or approved.
pub fn check_revoker(
    cfg: &Config,
    who: &str,
    req: &AccessRequest,
    now: UnixTime,
) -> Result<(), String> {
    let allowed = who == req.requester
        || cfg.user(who).is_some_and(|u| {
            cfg.is_auditor(u)
                || cfg
                    .rule(&req.rule)
                    .is_some_and(|rule| u.roles.iter().any(|r| rule.approvers.contains(r)))
        });
    if !allowed {
        return Err(format!(
            "you may not revoke request {}: only its requester, its approvers and auditors may",
            req.id
        ));
    }
    match req.state_at(now) {
        RequestState::Pending | RequestState::Approved => Ok(()),
        state => Err(already_decided(req, state, who == req.requester)),
    }
}

/// Whether `who` may see `req`: its requester, approvers of its rule, and auditors.
pub fn may_view(cfg: &Config, who: &str, req: &AccessRequest) -> bool {
    who == req.requester
        || cfg.user(who).is_some_and(|u| {
            cfg.is_auditor(u)
                || cfg
                    .rule(&req.rule)
                    .is_some_and(|rule| u.roles.iter().any(|r| rule.approvers.contains(r)))
        })
}

/// Whether `who` holds an auditor role (sees every session and audit event).
pub fn is_auditor(cfg: &Config, who: &str) -> bool {
    cfg.user(who).is_some_and(|u| cfg.is_auditor(u))
}

/// Why a request can no longer be decided or used, in words that say what to do next: to
/// its requester, how to ask again.
pub fn already_decided(req: &AccessRequest, state: RequestState, to_requester: bool) -> String {
    let again = |how: &str| {
        if to_requester {
            format!(
                "; {how}run jitgate request --host {} --login {}",
                req.host, req.login
            )
        } else {
            String::new()
        }
    };
    match state {
        RequestState::Expired => format!(
            "request {} expired at {}{}",
            req.id,
            crate::model::format_time(req.expires_at.unwrap_or(req.pending_until)),
            if to_requester {
                again("") + " again"
            } else {
                String::new()
            }
        ),
        RequestState::Approved => format!("request {} is already approved", req.id),
        state => format!(
            "request {} is already {state}{}",
            req.id,
            again("for new access, ")
        ),
    }
}

#[cfg(test)]
mod tests;
