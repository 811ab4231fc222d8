//! Configuration: every shipped config is valid; every invalid fixture fails with exit 2
//! and its expected `file:line:column: key: message`.

use std::path::Path;

use jitgate::config::Config;

use crate::util::jitgate;

fn shipped_configs() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files = vec![root.join("jitgate.toml")];
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        files.push(entry.unwrap().path());
    }
    files
}

#[test]
fn every_shipped_config_is_valid() {
    let files = shipped_configs();
    assert!(files.len() >= 2);
    for file in files {
        if let Err(e) = Config::load(&file) {
            panic!("{} does not load:\n{e}", file.display());
        }
        let run = jitgate(&["check-config", "--config", file.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{run:#?}");
        assert!(run.stdout.contains(": ok"), "{run:#?}");
    }
}

#[test]
fn production_example_has_the_promised_rules() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/production.toml");
    let cfg = Config::load(&file).unwrap();
    let engineer = cfg.role("engineer").unwrap();
    let staging = &engineer.access[0];
    assert_eq!(staging.approvals, 0, "staging is approved by policy");
    let prod = &engineer.access[1];
    assert_eq!((prod.approvals, prod.max_ttl.as_secs()), (1, 900));
    assert_eq!(prod.approvers, ["sre-lead"]);
    let glass = &engineer.access[2];
    assert_eq!(glass.approvals, 2, "break-glass needs two approvers");
    assert!(!glass.guardrails.is_empty());
}

#[test]
fn every_invalid_fixture_fails_with_its_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/invalid");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expects: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expects.is_empty(),
            "{} has no `# expect:` line",
            path.display()
        );
        let run = jitgate(&["check-config", "--config", path.to_str().unwrap()]);
        assert_eq!(run.code, 2, "{}: {run:#?}", path.display());
        for want in expects {
            // `L:C: key: message` must follow the file name exactly; `key: message` anywhere
            // in a line about this file.
            let file = format!("{}:", path.display());
            let found = if want.starts_with(|c: char| c.is_ascii_digit()) {
                run.stderr.contains(&format!("{file}{want}"))
            } else {
                run.stderr
                    .lines()
                    .any(|l| l.starts_with(&file) && l.contains(want))
            };
            assert!(
                found,
                "{}: expected {want:?} in:\n{}",
                path.display(),
                run.stderr
            );
        }
        // Nothing was created for an invalid configuration.
        assert!(!dir.join("data").exists());
        seen += 1;
    }
    assert!(seen >= 10);
}

#[test]
fn errors_carry_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[server]\ndata_dir = \"d\"\nhostname = \"b\"\n[ca]\nclock_skew = \"2 minutes\"\n",
    )
    .unwrap();
    let run = jitgate(&["check-config", "--config", file.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    let want = format!("{}:5:1: ca.clock_skew: bad duration", file.display());
    assert!(run.stderr.contains(&want), "{}", run.stderr);
}

#[test]
fn guardrail_test_command_contract() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/jitgate.toml");
    let c = config.to_str().unwrap();
    let run = jitgate(&["guardrail", "test", "--config", c, "--", "rm", "-rf", "/"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stdout.contains("blocked") && run.stdout.contains("destructive/"),
        "{run:#?}"
    );
    let run = jitgate(&[
        "guardrail",
        "test",
        "--config",
        c,
        "--set",
        "destructive",
        "--",
        "rm",
        "-rf",
        "./build",
    ]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.starts_with("allowed"), "{run:#?}");
    let run = jitgate(&[
        "guardrail",
        "test",
        "--config",
        c,
        "--set",
        "nope",
        "--",
        "ls",
    ]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.stderr.contains("no guardrail set named \"nope\""),
        "{run:#?}"
    );
    // A commands file for policy CI: line numbers, comments skipped, exit 1 if any blocks.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("commands.txt");
    std::fs::write(
        &file,
        "ls -la\n# a comment\n\nDROP TABLE users;\ngrep DROP app.log\n",
    )
    .unwrap();
    let run = jitgate(&[
        "guardrail",
        "test",
        "--config",
        c,
        "--file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stdout.contains("1: allowed"), "{run:#?}");
    assert!(run.stdout.contains("4: blocked"), "{run:#?}");
    assert!(run.stdout.contains("5: allowed"), "{run:#?}");
    assert!(!run.stdout.contains("a comment"), "{run:#?}");
}
