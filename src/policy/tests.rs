use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::Config;
use crate::model::{AccessRequest, Approval};

const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMDv8NildAvLkpvtjE0WDyB9USRBorlrGMCnYoLODX3V a";
const KEY_B: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFizu6MfyQRpAf/cCKJhINQT2vJ+YZzGrtWC7nYAGHI6 b";
const KEY_C: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINHbGJazgtDPi1O2OqOrt07n2+MUt6gkmqS9dQ4psBxm c";
const KEY_D: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDSYKLgV/pU76Si4I+LzSO18orRHlC7FoMz4vt6QSWUA d";

/// Monday 2026-11-23 12:00 UTC.
const MON_NOON: i64 = 1_795_392_000 + 12 * 3600;
const SAT_NOON: i64 = MON_NOON + 5 * 86_400;

fn config() -> Config {
    let text = format!(
        r#"
[server]
data_dir = "d"
hostname = "b"
pending_ttl = "30m"

[[hosts]]
name = "web1"
address = "10.0.0.1"
labels = {{ env = "staging" }}
[[hosts]]
name = "db1"
address = "10.0.0.2"
labels = {{ env = "prod", role = "db" }}
[[hosts]]
name = "db2"
address = "10.0.0.3"
labels = {{ env = "prod", role = "db" }}

[[users]]
name = "alice"
roles = ["engineer"]
keys = ["{KEY_A}"]
[[users]]
name = "bob"
roles = ["engineer", "sre-lead"]
keys = ["{KEY_B}"]
[[users]]
name = "carol"
roles = ["incident-commander"]
keys = ["{KEY_C}"]
[[users]]
name = "dave"
roles = ["auditor"]
keys = ["{KEY_D}"]

[[roles]]
name = "engineer"
[[roles.access]]
hosts = {{ env = "staging" }}
logins = ["deploy"]
max_ttl = "4h"
require_reason = false
[[roles.access]]
hosts = {{ env = "prod" }}
logins = ["postgres"]
max_ttl = "15m"
approvals = 1
approvers = ["sre-lead"]
hours = "Mon-Fri 08:00-18:00 UTC"
[[roles.access]]
hosts = ["db1"]
logins = ["root", "postgres"]
max_ttl = "1h"
approvals = 2
approvers = ["sre-lead", "incident-commander"]

[[roles]]
name = "sre-lead"
[[roles]]
name = "incident-commander"
[[roles]]
name = "auditor"
audit = true
"#
    );
    Config::from_str(&text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn ask<'a>(user: &'a str, host: &'a str, login: &'a str, minutes: u64, reason: &'a str) -> Ask<'a> {
    Ask {
        user,
        host,
        login,
        ttl: Duration::from_secs(minutes * 60),
        reason,
    }
}

fn rule(role: &str, index: usize) -> RuleRef {
    config().rule_ref(role, index).unwrap()
}

#[test]
fn evaluate_table() {
    let cfg = config();
    use Decision::*;
    let deny = |s: &str| Deny {
        reason: s.to_string(),
    };
    let table: Vec<(Ask, i64, Decision)> = vec![
        // Staging: approved by policy, no reason needed.
        (
            ask("alice", "web1", "deploy", 60, ""),
            MON_NOON,
            Approve {
                rule: rule("engineer", 0),
            },
        ),
        // Prod in hours: one approval.
        (
            ask("alice", "db1", "postgres", 15, "INC-1"),
            MON_NOON,
            Pending {
                rule: rule("engineer", 1),
                approvals: 1,
            },
        ),
        // Prod at the weekend: the break-glass rule (two approvers) still allows db1 …
        (
            ask("alice", "db1", "postgres", 15, "INC-1"),
            SAT_NOON,
            Pending {
                rule: rule("engineer", 2),
                approvals: 2,
            },
        ),
        // … but nothing allows db2, and the refusal names the hours.
        (
            ask("alice", "db2", "postgres", 15, "INC-1"),
            SAT_NOON,
            deny("access to db2 as postgres is allowed only Mon-Fri 08:00-18:00 UTC"),
        ),
        // TTL above the maximum is refused, never capped; the fewest-approvals rule that fits wins.
        (
            ask("alice", "db2", "postgres", 16, "INC-1"),
            MON_NOON,
            deny(
                "ttl 16m exceeds the maximum of 15m for db2 as postgres; ask again with --ttl 15m or less",
            ),
        ),
        (
            ask("alice", "db1", "postgres", 30, "INC-1"),
            MON_NOON,
            Pending {
                rule: rule("engineer", 2),
                approvals: 2,
            },
        ),
        (
            ask("alice", "db1", "root", 120, "INC-1"),
            MON_NOON,
            deny(
                "ttl 2h exceeds the maximum of 1h for db1 as root; ask again with --ttl 1h or less",
            ),
        ),
        // Reason required by default.
        (
            ask("alice", "db1", "postgres", 15, "  "),
            MON_NOON,
            deny("a reason is required: add --reason \"INC-1234: why you need access\""),
        ),
        // Login and host scope.
        (
            ask("alice", "web1", "root", 15, "x"),
            MON_NOON,
            deny("login \"root\" is not allowed on web1; allowed logins: deploy"),
        ),
        (
            ask("alice", "db9", "root", 15, "x"),
            MON_NOON,
            deny("unknown host \"db9\"; known hosts: web1, db1, db2"),
        ),
        (
            ask("carol", "db1", "root", 15, "x"),
            MON_NOON,
            deny("no access rule of your roles (incident-commander) covers host \"db1\""),
        ),
        (
            ask("mallory", "db1", "root", 15, "x"),
            MON_NOON,
            deny("unknown user \"mallory\""),
        ),
        (
            ask("alice", "web1", "deploy", 0, ""),
            MON_NOON,
            deny("ttl must be more than 0s, e.g. --ttl 15m"),
        ),
    ];
    for (i, (a, now, want)) in table.into_iter().enumerate() {
        assert_eq!(evaluate(&cfg, &a, now), want, "case {i}: {a:?}");
    }
}

#[test]
fn accepted_ask_becomes_a_request_with_pending_ttl() {
    let cfg = config();
    let a = ask("alice", "db1", "postgres", 15, " INC-1 ");
    let new = evaluate(&cfg, &a, MON_NOON)
        .into_request(&cfg, &a, MON_NOON)
        .unwrap();
    assert_eq!(new.pending_until, MON_NOON + 30 * 60);
    // However long the configured wait, the deadline stays after the request (not wrapped).
    let mut forever = cfg.clone();
    forever.server.pending_ttl = Duration::MAX;
    let new = evaluate(&forever, &a, MON_NOON)
        .into_request(&forever, &a, MON_NOON)
        .unwrap();
    assert_eq!(new.pending_until, i64::MAX);
    assert_eq!(
        (new.approvals_needed, new.ttl_secs, new.reason.as_str()),
        (1, 900, "INC-1")
    );
    let denied = ask("alice", "db9", "postgres", 15, "x");
    assert!(
        evaluate(&cfg, &denied, MON_NOON)
            .into_request(&cfg, &denied, MON_NOON)
            .is_none()
    );
}

fn request(
    requester: &str,
    rule_ref: RuleRef,
    state: RequestState,
    approvals: &[&str],
) -> AccessRequest {
    AccessRequest {
        id: 7,
        requester: requester.into(),
        host: "db1".into(),
        login: "postgres".into(),
        ttl_secs: 900,
        reason: "x".into(),
        rule: rule_ref,
        approvals_needed: 2,
        state,
        created_at: MON_NOON,
        pending_until: MON_NOON + 1800,
        approved_at: (state == RequestState::Approved).then_some(MON_NOON),
        expires_at: (state == RequestState::Approved).then_some(MON_NOON + 900),
        decided_by: None,
        decision_reason: None,
        flagged: false,
        approvals: approvals
            .iter()
            .map(|a| Approval {
                approver: a.to_string(),
                comment: None,
                at: MON_NOON,
            })
            .collect(),
    }
}

#[test]
fn deciders_table() {
    let cfg = config();
    let glass = rule("engineer", 2);
    let pending = request("alice", glass.clone(), RequestState::Pending, &[]);
    let table: Vec<(&str, &AccessRequest, i64, Result<(), &str>)> = vec![
        ("bob", &pending, MON_NOON, Ok(())),
        ("carol", &pending, MON_NOON, Ok(())),
        (
            "alice",
            &pending,
            MON_NOON,
            Err("you cannot decide your own request 7; ask an approver"),
        ),
        (
            "dave",
            &pending,
            MON_NOON,
            Err(
                "you are not an approver for request 7: it needs a member of sre-lead or incident-commander",
            ),
        ),
        ("nobody", &pending, MON_NOON, Err("unknown user \"nobody\"")),
        // Undecided past pending_until: expired, with what to do next.
        (
            "bob",
            &pending,
            MON_NOON + 1800,
            Err("request 7 expired at"),
        ),
    ];
    for (who, req, now, want) in table {
        let got = check_decider(&cfg, who, req, now);
        match (got, want) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(w)) => assert!(e.starts_with(w), "{who}: {e:?} should start with {w:?}"),
            (got, want) => panic!("{who}: got {got:?}, want {want:?}"),
        }
    }
    // The requester can never approve, even holding an approver role.
    let bobs = request("bob", glass.clone(), RequestState::Pending, &[]);
    assert!(
        check_decider(&cfg, "bob", &bobs, MON_NOON)
            .unwrap_err()
            .contains("your own")
    );
    // Decided requests cannot be decided again; revoked stays revoked.
    for state in [
        RequestState::Approved,
        RequestState::Denied,
        RequestState::Revoked,
    ] {
        let r = request("alice", glass.clone(), state, &[]);
        // Told to an approver: no advice meant for the requester.
        assert_eq!(
            check_decider(&cfg, "bob", &r, MON_NOON).unwrap_err(),
            format!("request 7 is already {state}")
        );
    }
}

#[test]
fn a_request_whose_rule_is_gone_cannot_be_decided() {
    let cfg = config();
    let gone = RuleRef {
        digest: "0".repeat(64),
        ..rule("engineer", 2)
    };
    let pending = request("alice", gone.clone(), RequestState::Pending, &[]);
    assert!(
        check_decider(&cfg, "bob", &pending, MON_NOON)
            .unwrap_err()
            .contains("can no longer be approved or denied; revoke it, or it expires undecided")
    );
    // Decided already: that, not a time to come.
    let approved = request("alice", gone, RequestState::Approved, &[]);
    assert_eq!(
        check_decider(&cfg, "bob", &approved, MON_NOON).unwrap_err(),
        "request 7 is already approved"
    );
}

#[test]
fn a_requester_out_of_the_role_can_be_denied_not_approved() {
    let mut cfg = config();
    let pending = request(
        "alice",
        rule("engineer", 2),
        RequestState::Pending,
        &["bob"],
    );
    let alice = cfg.users.iter_mut().find(|u| u.name == "alice").unwrap();
    alice.roles.clear();
    assert!(
        check_decider(&cfg, "carol", &pending, MON_NOON).is_ok(),
        "deny"
    );
    assert_eq!(
        check_approver(&cfg, "carol", &pending, MON_NOON).unwrap_err(),
        "request 7 cannot be approved: alice no longer holds role engineer, under which it \
         was made; deny or revoke it"
    );
    // Whoever is not an approver hears that first.
    assert!(
        check_approver(&cfg, "dave", &pending, MON_NOON)
            .unwrap_err()
            .starts_with("you are not an approver")
    );
    // Told to the requester, with what to do.
    assert!(
        rule_of(&cfg, &pending).unwrap_err().starts_with(
            "request 7 was granted through role engineer, which alice no longer holds"
        )
    );
}

#[test]
fn approvals_count_only_by_people_still_approvers() {
    let mut cfg = config();
    let pending = request(
        "alice",
        rule("engineer", 2),
        RequestState::Pending,
        &["bob", "carol"],
    );
    assert_eq!(approvals_counted(&cfg, &pending), 2);
    let bob = cfg.users.iter_mut().find(|u| u.name == "bob").unwrap();
    bob.roles.retain(|r| r != "sre-lead");
    assert_eq!(approvals_counted(&cfg, &pending), 1);
}

#[test]
fn revokers_and_viewers() {
    let cfg = config();
    let approved = request(
        "alice",
        rule("engineer", 1),
        RequestState::Approved,
        &["bob"],
    );
    assert_eq!(
        check_revoker(&cfg, "alice", &approved, MON_NOON),
        Ok(()),
        "the requester withdraws"
    );
    assert_eq!(
        check_revoker(&cfg, "bob", &approved, MON_NOON),
        Ok(()),
        "an approver"
    );
    assert_eq!(
        check_revoker(&cfg, "dave", &approved, MON_NOON),
        Ok(()),
        "an auditor"
    );
    assert!(
        check_revoker(&cfg, "carol", &approved, MON_NOON)
            .unwrap_err()
            .contains("may not revoke")
    );
    // Past its end, access has expired: nothing left to revoke.
    assert!(
        check_revoker(&cfg, "bob", &approved, MON_NOON + 900)
            .unwrap_err()
            .contains("expired")
    );
    let revoked = request("alice", rule("engineer", 1), RequestState::Revoked, &[]);
    assert_eq!(
        check_revoker(&cfg, "bob", &revoked, MON_NOON).unwrap_err(),
        "request 7 is already revoked"
    );
    // Its requester is told how to ask again.
    assert!(
        check_revoker(&cfg, "alice", &revoked, MON_NOON)
            .unwrap_err()
            .starts_with("request 7 is already revoked; for new access, run jitgate request")
    );
    assert!(
        may_view(&cfg, "alice", &approved)
            && may_view(&cfg, "bob", &approved)
            && may_view(&cfg, "dave", &approved)
    );
    assert!(!may_view(&cfg, "carol", &approved));
}

#[test]
fn access_ends_at_approval_plus_ttl() {
    let r = request(
        "alice",
        rule("engineer", 1),
        RequestState::Approved,
        &["bob"],
    );
    assert!(r.is_active(MON_NOON + 899));
    assert!(!r.is_active(MON_NOON + 900));
    assert_eq!(r.state_at(MON_NOON + 900), RequestState::Expired);
}
