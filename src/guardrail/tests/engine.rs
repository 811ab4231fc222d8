//! Verdict semantics: within a set, across sets, shadow mode, allow lists, reports.

use std::sync::Arc;

use crate::config::{Action, SetDefault, SetMode};
use crate::guardrail::{
    GuardrailError, Guardrails, Verdict, exit_code, read_command_file, test_command_file,
    test_commands,
};

use super::set;

fn rails() -> Arc<Guardrails> {
    let sets = vec![
        set(
            "deny",
            SetDefault::Allow,
            SetMode::Enforce,
            &[
                ("kill", Action::Block, r"\bkill\b"),
                ("sudo", Action::Warn, r"\bsudo\b"),
                ("kill-ok", Action::Allow, r"kill -0"),
            ],
        ),
        set(
            "logs",
            SetDefault::Block,
            SetMode::Enforce,
            &[
                ("read", Action::Allow, r"^(?:cat|less|tail|grep) /var/log/"),
                ("journal", Action::Allow, r"^journalctl\b"),
                ("secret", Action::Block, r"/var/log/secret"),
                ("sudo", Action::Warn, r"^sudo "),
            ],
        ),
        set(
            "trial",
            SetDefault::Allow,
            SetMode::Shadow,
            &[
                ("curl", Action::Block, r"\bcurl\b"),
                ("wget", Action::Warn, r"\bwget\b"),
            ],
        ),
        set(
            "trial-list",
            SetDefault::Block,
            SetMode::Shadow,
            &[("ls", Action::Allow, r"^ls\b")],
        ),
    ];
    Arc::new(Guardrails::compile(&sets).expect("compiles"))
}

/// `verdict word` and `set/rule` for `command` under `sets`.
fn decide(sets: &[&str], command: &str) -> (&'static str, Option<String>) {
    let names: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let v = rails().check(&names, command);
    (v.as_str(), v.rule_id())
}

#[test]
fn verdicts_follow_the_documented_semantics() {
    let cases: &[(&[&str], &str, &str, Option<&str>)] = &[
        // Deny list: block beats warn beats allow; no match allows.
        (&["deny"], "ls", "allowed", None),
        (&["deny"], "kill 1", "blocked", Some("deny/kill")),
        (&["deny"], "sudo kill 1", "blocked", Some("deny/kill")),
        (&["deny"], "sudo ls", "warned", Some("deny/sudo")),
        (&["deny"], "kill -0 1", "blocked", Some("deny/kill")),
        // Allow list: only allowed commands run; block rules still win.
        (&["logs"], "tail /var/log/syslog", "allowed", None),
        (&["logs"], "journalctl -u nginx", "allowed", None),
        (&["logs"], "ls /", "blocked", Some("logs/default")),
        (
            &["logs"],
            "cat /var/log/secret",
            "blocked",
            Some("logs/secret"),
        ),
        (&["logs"], "sudo ls", "warned", Some("logs/sudo")),
        // Shadow mode reports, never blocks; its warn stays a warn.
        (&["trial"], "curl x", "would-block", Some("trial/curl")),
        (&["trial"], "wget x", "warned", Some("trial/wget")),
        (
            &["trial-list"],
            "rm x",
            "would-block",
            Some("trial-list/default"),
        ),
        (&["trial-list"], "ls", "allowed", None),
        // Across sets the strictest wins; on a tie the first set.
        (
            &["trial", "deny"],
            "curl x; kill 1",
            "blocked",
            Some("deny/kill"),
        ),
        (
            &["deny", "trial"],
            "sudo curl x",
            "would-block",
            Some("trial/curl"),
        ),
        (&["deny", "logs"], "sudo ls", "warned", Some("deny/sudo")),
        (&["deny", "logs"], "tail /var/log/x", "allowed", None),
        (&["deny", "logs"], "uptime", "blocked", Some("logs/default")),
        // No sets: everything allowed. Unknown set: fail closed.
        (&[], "kill 1", "allowed", None),
        (&["nope"], "ls", "blocked", Some("nope/unknown-set")),
    ];
    for (sets, command, word, rule) in cases {
        let got = decide(sets, command);
        assert_eq!(
            got,
            (*word, rule.map(str::to_string)),
            "{sets:?} {command:?}"
        );
    }
}

#[test]
fn matching_sees_the_normal_form() {
    let cases = [
        ("kill   1", "blocked"),
        ("\"kill\" 1", "blocked"),
        ("ki'll' 1", "blocked"),
        ("skill 1", "allowed"),
    ];
    for (command, word) in cases {
        assert_eq!(decide(&["deny"], command).0, word, "{command:?}");
    }
}

#[test]
fn checker_resolves_names_once_and_rejects_unknown_ones() {
    let rails = rails();
    let checker = rails
        .checker(&["deny".to_string(), "deny".to_string()])
        .expect("known");
    assert!(checker.check("kill 1").is_blocked());
    assert!(matches!(
        rails.checker(&["nope".to_string()]),
        Err(GuardrailError::UnknownSet(n)) if n == "nope"
    ));
}

#[test]
fn display_names_set_and_rule() {
    let names = vec!["deny".to_string(), "trial".to_string()];
    let r = rails();
    assert_eq!(
        r.check(&names, "kill 1").to_string(),
        "jitgate: blocked by guardrail \"deny/kill\": msg-kill"
    );
    assert_eq!(
        r.check(&names, "sudo ls").to_string(),
        "jitgate: warning from guardrail \"deny/sudo\": msg-sudo"
    );
    assert_eq!(
        r.check(&names, "curl x").to_string(),
        "jitgate: would be blocked by guardrail \"trial/curl\" (shadow mode): msg-curl"
    );
    assert_eq!(r.check(&names, "ls"), Verdict::Allow);
}

#[test]
fn a_bad_pattern_is_a_typed_error() {
    let sets = vec![set(
        "s",
        SetDefault::Allow,
        SetMode::Enforce,
        &[("r", Action::Block, "(")],
    )];
    match Guardrails::compile(&sets) {
        Err(GuardrailError::BadPattern { set, rule, .. }) => {
            assert_eq!((set, rule), ("s".into(), "r".into()))
        }
        other => panic!("expected BadPattern, got {other:?}"),
    }
}

#[test]
fn test_commands_reports_each_command_and_the_exit_code() {
    let sets = super::shipped_sets();
    let checks = test_commands(
        &sets,
        None,
        &["ls -la".to_string(), "sudo rm -rf /".to_string()],
    )
    .expect("checks");
    assert_eq!(checks.len(), 2);
    assert!(!checks[0].verdict.is_blocked());
    assert!(checks[1].verdict.is_blocked());
    assert_eq!(checks[1].matched.as_deref(), Some("sudo rm -rf /"));
    let shown = checks[1].to_string();
    assert!(shown.starts_with("blocked      sudo rm -rf /\n"), "{shown}");
    assert!(
        shown.contains("by destructive/rm-recursive-system: "),
        "{shown}"
    );
    assert_eq!(exit_code(&checks), 1);
    assert_eq!(exit_code(&checks[..1]), 0);
    assert_eq!(checks[0].to_string(), "allowed      ls -la");

    let file = "# policy CI\nls\n\n  reboot  \n# rm -rf /\nuptime\n";
    assert_eq!(
        read_command_file(file),
        vec![(2, "ls"), (4, "reboot"), (6, "uptime")]
    );
    let checks = test_command_file(&sets, Some("destructive"), file).expect("checks");
    let lines: Vec<(Option<usize>, bool)> = checks
        .iter()
        .map(|c| (c.line, c.verdict.is_blocked()))
        .collect();
    assert_eq!(
        lines,
        vec![(Some(2), false), (Some(4), true), (Some(6), false)]
    );
    assert!(checks[1].to_string().starts_with("4: blocked"));
    assert!(matches!(
        test_commands(&sets, Some("nope"), &[]),
        Err(GuardrailError::UnknownSet(_))
    ));
}

#[test]
fn a_set_too_large_for_one_regex_set_is_split_and_still_decides() {
    // Unicode `\w{100}` compiles large: 40 of them exceed one RegexSet's size limit.
    let patterns: Vec<String> = (0..40).map(|i| format!(r"\w{{100}}k{i}\b")).collect();
    let rules: Vec<(&str, Action, &str)> = patterns
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                if i == 37 { "r37" } else { "other" },
                Action::Block,
                p.as_str(),
            )
        })
        .collect();
    // Distinct names are not needed by the engine; only the hit of rule 37 is checked.
    let sets = vec![set("big", SetDefault::Allow, SetMode::Enforce, &rules)];
    let rails = Arc::new(Guardrails::compile(&sets).expect("compiles in shards"));
    assert!(rails.shards() > 1, "split into {} shards", rails.shards());
    let names = vec!["big".to_string()];
    let command = format!("{}k37", "a".repeat(100));
    assert_eq!(
        rails.check(&names, &command).rule_id().as_deref(),
        Some("big/r37")
    );
    assert_eq!(rails.check(&names, "ls"), Verdict::Allow);
}
