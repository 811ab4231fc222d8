//! Table tests for the access checks: each row changes one fact and names the refusal.

use std::path::Path;

use super::*;
use crate::config::RuleRef;
use crate::model::RequestState;

const NOW: i64 = 1_800_000_000;

/// The test configuration: db1 and db2, and alice an engineer with one rule over both.
const TEXT: &str = r#"
[server]
data_dir = "data"
hostname = "bastion.test"

[[hosts]]
name = "db1"
address = "10.0.0.5:2222"

[[hosts]]
name = "db2"
address = "10.0.0.6"

[[users]]
name = "alice"
roles = ["engineer"]

[[roles]]
name = "engineer"

[[roles.access]]
hosts = ["db1", "db2"]
logins = ["root"]
max_ttl = "1h"
require_reason = false
"#;

fn parse(text: &str) -> Config {
    Config::from_str(text, Path::new("/tmp/jitgate.toml")).unwrap()
}

fn config() -> Config {
    config_with("")
}

/// `TEXT` with `extra` lines added to its access rule.
fn config_with(extra: &str) -> Config {
    parse(&format!("{TEXT}{extra}\n"))
}

fn request() -> AccessRequest {
    request_under(&config())
}

/// Request 7, approved under the engineer's rule as `cfg` has it.
fn request_under(cfg: &Config) -> AccessRequest {
    AccessRequest {
        id: 7,
        requester: "alice".into(),
        host: "db1".into(),
        login: "root".into(),
        ttl_secs: 3600,
        reason: String::new(),
        rule: cfg.rule_ref("engineer", 0).unwrap(),
        approvals_needed: 0,
        state: RequestState::Approved,
        created_at: NOW - 60,
        pending_until: NOW + 3600,
        approved_at: Some(NOW - 60),
        expires_at: Some(NOW + 600),
        decided_by: None,
        decision_reason: None,
        flagged: false,
        approvals: vec![],
    }
}

fn issued() -> IssuedCert {
    IssuedCert {
        serial: 42,
        request_id: 7,
        user: "alice".into(),
        key_fingerprint: "SHA256:x".into(),
        valid_after: NOW - 120,
        valid_before: NOW + 300,
        issued_at: NOW - 60,
    }
}

fn facts() -> CertFacts {
    CertFacts {
        serial: 42,
        principals: vec!["alice".into()],
        request_id: Some(7),
        valid_before: (NOW + 300) as u64,
    }
}

#[test]
fn check_table() {
    let cfg = config();
    type Case = (
        &'static str,
        &'static str,
        CertFacts,
        Option<IssuedCert>,
        Option<AccessRequest>,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "all good",
            "alice",
            facts(),
            Some(issued()),
            Some(request()),
            None,
        ),
        (
            "other principal",
            "bob",
            facts(),
            Some(issued()),
            Some(request()),
            Some("do not include \"bob\""),
        ),
        (
            "no request extension",
            "alice",
            CertFacts {
                request_id: None,
                ..facts()
            },
            Some(issued()),
            Some(request()),
            Some("names no request"),
        ),
        (
            "unknown serial",
            "alice",
            facts(),
            None,
            Some(request()),
            Some("was not issued by this jitgate"),
        ),
        (
            "serial of another request",
            "alice",
            facts(),
            Some(IssuedCert {
                request_id: 8,
                ..issued()
            }),
            Some(request()),
            Some("for request 8"),
        ),
        (
            "serial of another user",
            "alice",
            facts(),
            Some(IssuedCert {
                user: "bob".into(),
                ..issued()
            }),
            Some(request()),
            Some("issued to bob"),
        ),
        (
            "no such request",
            "alice",
            facts(),
            Some(issued()),
            None,
            Some("no request 7"),
        ),
        (
            "someone else's request",
            "alice",
            facts(),
            Some(issued()),
            Some(AccessRequest {
                requester: "bob".into(),
                ..request()
            }),
            Some("belongs to bob"),
        ),
        (
            "revoked",
            "alice",
            facts(),
            Some(issued()),
            Some(AccessRequest {
                state: RequestState::Revoked,
                ..request()
            }),
            Some("was revoked; run jitgate request --host db1 --login root"),
        ),
        (
            "pending",
            "alice",
            facts(),
            Some(issued()),
            Some(AccessRequest {
                state: RequestState::Pending,
                ..request()
            }),
            Some("is still pending approval; see jitgate show 7"),
        ),
        (
            "expired by time",
            "alice",
            facts(),
            Some(issued()),
            Some(AccessRequest {
                expires_at: Some(NOW),
                ..request()
            }),
            Some("expired at"),
        ),
        (
            "host left the inventory",
            "alice",
            facts(),
            Some(issued()),
            Some(AccessRequest {
                host: "db9".into(),
                ..request()
            }),
            Some("no longer in the inventory"),
        ),
        (
            "rule left the config",
            "alice",
            facts(),
            Some(issued()),
            Some(AccessRequest {
                rule: RuleRef {
                    role: "engineer".into(),
                    index: 3,
                    digest: String::new(),
                },
                ..request()
            }),
            Some("changed or removed in the configuration"),
        ),
        (
            "rule edited since the request",
            "alice",
            facts(),
            Some(issued()),
            Some(AccessRequest {
                rule: RuleRef {
                    digest: "0".repeat(64),
                    ..request().rule
                },
                ..request()
            }),
            Some("changed or removed in the configuration"),
        ),
    ];
    for (name, user, f, i, r, want) in cases {
        let got = check(&cfg, user, &f, i.as_ref(), r.as_ref(), NOW);
        match (got, want) {
            (Ok(_), None) => {}
            (Err(Refusal(reason)), Some(w)) => {
                assert!(reason.contains(w), "{name}: {reason:?} lacks {w:?}")
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn access_ends_at_the_earlier_of_certificate_and_request() {
    let cfg = config();
    let g = check(
        &cfg,
        "alice",
        &facts(),
        Some(&issued()),
        Some(&request()),
        NOW,
    )
    .unwrap();
    assert_eq!(g.until, NOW + 300, "certificate ends first");
    let long = CertFacts {
        valid_before: (NOW + 9999) as u64,
        ..facts()
    };
    let g = check(&cfg, "alice", &long, Some(&issued()), Some(&request()), NOW).unwrap();
    assert_eq!(g.until, NOW + 600, "request ends first");
    assert_eq!(g.host.name, "db1");
}

#[test]
fn access_is_refused_outside_the_rules_hours_and_ends_with_them() {
    // NOW is a Friday, 08:00 UTC; the certificate ends at NOW + 300.
    let at = |hours: &str| {
        let cfg = config_with(&format!("hours = \"{hours}\""));
        check(
            &cfg,
            "alice",
            &facts(),
            Some(&issued()),
            Some(&request_under(&cfg)),
            NOW,
        )
    };
    let g = at("Mon-Fri 06:00-08:02 UTC").unwrap();
    assert_eq!(g.until, NOW + 120, "the hours end first");
    assert!(g.until_hours);
    assert_eq!(
        g.end_notice(),
        "access through request 7 is allowed only Mon-Fri 06:00-08:02 UTC; \
         it ended at 2027-01-15 08:02:00 UTC; closing"
    );
    let g = at("Fri 07:00-09:00 UTC").unwrap();
    assert_eq!(g.until, NOW + 300, "the certificate ends first");
    assert!(!g.until_hours);
    assert_eq!(
        g.end_notice(),
        "access through request 7 ended at 2027-01-15 08:05:00 UTC; closing"
    );
    let refusal = at("Mon-Fri 08:01-18:00 UTC").unwrap_err();
    assert_eq!(
        refusal.0,
        "access to db1 as root is allowed only Mon-Fri 08:01-18:00 UTC (request 7)"
    );
}

#[test]
fn target_and_login_table() {
    let cfg = config();
    let g = check(
        &cfg,
        "alice",
        &facts(),
        Some(&issued()),
        Some(&request()),
        NOW,
    )
    .unwrap();
    for (host, port, ok) in [
        ("db1", 22, true),
        ("db1", 2222, true),
        ("db1", 5432, false),
        ("db2", 22, false),
        ("10.0.0.5", 22, false),
    ] {
        assert_eq!(check_target(&g, host, port).is_ok(), ok, "{host}:{port}");
    }
    for (host, login, ok) in [
        ("db1", "root", true),
        ("db1", "postgres", false),
        ("db2", "root", false),
    ] {
        assert_eq!(check_login(&g, host, login).is_ok(), ok, "{host} {login}");
    }
}

#[test]
fn a_host_that_left_its_rules_scope_is_refused() {
    // The rule is unchanged, but it selects by label and db1 lost the label.
    let labelled = |env: &str| {
        parse(
            &TEXT
                .replace(
                    "address = \"10.0.0.5:2222\"\n",
                    &format!("address = \"10.0.0.5:2222\"\nlabels = {{ env = \"{env}\" }}\n"),
                )
                .replace(
                    r#"hosts = ["db1", "db2"]"#,
                    r#"hosts = { env = "staging" }"#,
                ),
        )
    };
    let before = labelled("staging");
    let after = labelled("production");
    let req = request_under(&before);
    let at = |cfg: &Config| check(cfg, "alice", &facts(), Some(&issued()), Some(&req), NOW);
    assert!(at(&before).is_ok());
    let Err(Refusal(why)) = at(&after) else {
        panic!("db1 is outside the rule now")
    };
    assert!(why.contains("no longer covered by its rule"), "{why}");
}

#[test]
fn a_requester_taken_out_of_the_role_or_the_users_passes_no_more() {
    let request = request();
    let cases = [
        (
            "out of the role",
            TEXT.replace(r#"roles = ["engineer"]"#, "roles = []"),
        ),
        (
            "out of the users",
            TEXT.replace(r#"name = "alice""#, r#"name = "carol""#),
        ),
    ];
    for (name, text) in cases {
        let cfg = parse(&text);
        // The rule itself is word for word the same.
        assert!(cfg.rule(&request.rule).is_some(), "{name}");
        let Err(Refusal(why)) = check(
            &cfg,
            "alice",
            &facts(),
            Some(&issued()),
            Some(&request),
            NOW,
        ) else {
            panic!("{name}: alice still passes");
        };
        assert!(
            why.contains("no longer holds in the configuration"),
            "{name}: {why}"
        );
    }
}
