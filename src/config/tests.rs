//! How a request finds its access rule again after the configuration changed.

use std::path::Path;

use super::*;

/// A configuration whose role `eng` has the given `[[roles.access]]` tables, after one host
/// and one approver role.
fn text_with_rules(rules: &str) -> String {
    format!(
        r#"[server]
data_dir = "data"
hostname = "bastion.test"

[[hosts]]
name = "db1"
address = "10.0.0.1:22"

[[roles]]
name = "dba"

[[roles]]
name = "eng"
{rules}"#
    )
}

fn with_rules(rules: &str) -> Config {
    Config::from_str(&text_with_rules(rules), Path::new("/tmp/jitgate.toml")).unwrap()
}

/// An expected error: line, key and message.
type Located = (usize, &'static str, &'static str);

/// The errors `text` loads with, as `(line, key, message)` (none when it loads).
fn errors(text: &str) -> Vec<(usize, String, String)> {
    match Config::from_str(text, Path::new("/tmp/jitgate.toml")) {
        Ok(_) => Vec::new(),
        Err(ConfigErrors(errs)) => errs
            .into_iter()
            .map(|e| (e.line, e.key, e.message))
            .collect(),
    }
}

const READ: &str = r#"
[[roles.access]]
hosts = ["db1"]
logins = ["readonly"]
max_ttl = "1h"
"#;

const ROOT: &str = r#"
[[roles.access]]
hosts = ["db1"]
logins = ["root"]
max_ttl = "15m"
approvals = 1
approvers = ["dba"]
"#;

#[test]
fn a_request_keeps_its_rule_while_the_rule_is_unchanged() {
    let before = with_rules(&format!("{READ}{ROOT}"));
    let root = before.rule_ref("eng", 1).unwrap();
    assert_eq!(before.rule(&root).unwrap().logins, ["root"]);

    // Another rule added in front: the request follows its rule to its new place.
    let moved = with_rules(&format!("{READ}{READ}{ROOT}"));
    assert_eq!(moved.rule(&root).unwrap().logins, ["root"]);
}

#[test]
fn a_rule_edited_or_replaced_under_a_request_leaves_it_without_one() {
    let before = with_rules(&format!("{READ}{ROOT}"));
    let root = before.rule_ref("eng", 1).unwrap();

    // The rule at index 1 is now another rule: the request must not pick up its approvers.
    let swapped = with_rules(&format!("{ROOT}{READ}"));
    assert_eq!(swapped.rule(&root).unwrap().logins, ["root"], "found at 0");
    let replaced = with_rules(&format!("{READ}{READ}"));
    assert!(replaced.rule(&root).is_none());

    // Any edit of the rule itself, however small, ends it.
    let edited = with_rules(&format!("{READ}{}", ROOT.replace("15m", "16m")));
    assert!(edited.rule(&root).is_none());
    let removed = with_rules(READ);
    assert!(removed.rule(&root).is_none());
}

#[test]
fn every_field_of_a_rule_moves_its_digest() {
    let base = with_rules(ROOT).role("eng").unwrap().access[0].clone();
    let edits: Vec<(&str, AccessRule)> = vec![
        (
            "hosts",
            AccessRule {
                hosts: HostSelector::Names(vec!["*".into()]),
                ..base.clone()
            },
        ),
        (
            "approvals",
            AccessRule {
                approvals: 2,
                ..base.clone()
            },
        ),
        (
            "approvers",
            AccessRule {
                approvers: vec!["eng".into()],
                ..base.clone()
            },
        ),
        (
            "port forwarding",
            AccessRule {
                allow_port_forwarding: true,
                ..base.clone()
            },
        ),
        (
            "record_input",
            AccessRule {
                record_input: true,
                ..base.clone()
            },
        ),
    ];
    for (what, edited) in edits {
        assert_ne!(edited.digest(), base.digest(), "{what}");
    }
    assert_eq!(base.clone().digest(), base.digest());
}

#[test]
fn approvers_and_approvals_go_together() {
    const NO_ONE_ASKED: &str = "approvers are named but approvals is left out, so every \
                                request would be approved with no one asked; set approvals = \
                                N, or approvals = 0 to approve by policy and let the \
                                approvers see and revoke";
    // The rule starts on line 15 of `text_with_rules`; its `approvals` key, when written, on 19.
    let rule = |extra: &str| {
        format!(
            "\n[[roles.access]]\nhosts = [\"db1\"]\nlogins = [\"root\"]\nmax_ttl = \"15m\"\n{extra}"
        )
    };
    let table: [(&str, Option<Located>); 5] = [
        ("", None),
        ("approvals = 1\napprovers = [\"dba\"]\n", None),
        // `approvals` left out: the error points at the rule.
        (
            "approvers = [\"dba\"]\n",
            Some((15, "roles[1].access[0].approvals", NO_ONE_ASKED)),
        ),
        // Written out: approved by policy on purpose, the approvers watch.
        ("approvals = 0\napprovers = [\"dba\"]\n", None),
        (
            "approvals = 2\n",
            Some((
                15,
                "roles[1].access[0].approvers",
                "approvals = 2 needs approver roles",
            )),
        ),
    ];
    for (extra, want) in table {
        let got = errors(&text_with_rules(&rule(extra)));
        let want: Vec<_> = want
            .into_iter()
            .map(|(line, key, message)| (line, key.to_string(), message.to_string()))
            .collect();
        assert_eq!(got, want, "{extra}");
    }
}

#[test]
fn durations_are_bounded_and_zero_only_where_it_means_something() {
    const TOO_LONG: &str = "is too long: write at most \"36500d\" (100 years)";
    // (key, value, the start of its error; `None`: it loads)
    let table = [
        (
            "server.pending_ttl",
            "0s",
            Some("must be more than 0s: every request needing approval would expire at once"),
        ),
        ("server.pending_ttl", "36500d", None),
        ("server.pending_ttl", "36501d", Some(TOO_LONG)),
        // No grace: sessions are closed at once.
        ("server.shutdown_grace", "0s", None),
        ("server.shutdown_grace", "999999999999d", Some(TOO_LONG)),
        // No skew: certificates are valid from the second they are signed.
        ("ca.clock_skew", "0s", None),
        ("ca.clock_skew", "36501d", Some(TOO_LONG)),
        (
            "ca.upstream_cert_ttl",
            "0s",
            Some("must be more than 0s: the bastion's certificate towards a target would expire"),
        ),
        ("ca.upstream_cert_ttl", "1s", None),
        ("ca.upstream_cert_ttl", "36501d", Some(TOO_LONG)),
        (
            "recordings.retention",
            "0s",
            Some(
                "must be more than 0s: `jitgate recordings prune` would delete every closed \
                 recording; write e.g. \"365d\", or leave retention out to keep recordings",
            ),
        ),
        ("recordings.retention", "1s", None),
        ("recordings.retention", "36501d", Some(TOO_LONG)),
        (
            "roles[1].access[0].max_ttl",
            "0s",
            Some("must be more than 0s: no request could be granted any time"),
        ),
        ("roles[1].access[0].max_ttl", "36500d", None),
        ("roles[1].access[0].max_ttl", "36501d", Some(TOO_LONG)),
    ];
    let rule = "\n[[roles.access]]\nhosts = [\"db1\"]\nlogins = [\"root\"]\nmax_ttl = \"15m\"\n";
    for (key, value, want) in table {
        let text = text_with_rules(rule);
        let text = match key.split_once('.') {
            Some(("server", name)) => {
                text.replace("[server]\n", &format!("[server]\n{name} = {value:?}\n"))
            }
            Some((table @ ("ca" | "recordings"), name)) => {
                format!("{text}\n[{table}]\n{name} = {value:?}\n")
            }
            _ => text.replace("max_ttl = \"15m\"", &format!("max_ttl = {value:?}")),
        };
        let got = errors(&text);
        match want {
            None => assert!(got.is_empty(), "{key} = {value:?}: {got:?}"),
            Some(part) => {
                assert_eq!(got.len(), 1, "{key} = {value:?}: {got:?}");
                let (_, k, message) = &got[0];
                assert_eq!(k, key, "{value:?}");
                assert!(message.contains(part), "{key} = {value:?}: {message}");
            }
        }
    }
}
