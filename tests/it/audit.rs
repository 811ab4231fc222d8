//! `jitgate audit verify`: offline, against the real SQLite file, after real tampering.

use crate::util::*;

/// A server that made a handful of events, then stopped.
fn history() -> (Setup, std::path::PathBuf, std::path::PathBuf) {
    let setup = Setup::new();
    let config = setup.config(Setup::standard_policy());
    {
        let server = Server::start(&config);
        server
            .request(&setup.alice, "db1", "postgres", "5m", "x")
            .ok();
        server.cli(&setup.bob, &["approve", "1"]).ok();
        server.cli(&setup.alice, &["login", "1"]).ok();
        server.cli(&setup.bob, &["revoke", "1"]).ok();
    }
    let db = setup.path().join("data/jitgate.db");
    (setup, config, db)
}

fn verify(config: &std::path::Path) -> Run {
    jitgate(&["audit", "verify", "--config", config.to_str().unwrap()])
}

#[test]
fn intact_log_verifies() {
    let (_setup, config, _db) = history();
    let run = verify(&config);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("audit log intact"), "{run:#?}");
}

#[test]
fn an_edited_field_is_named() {
    let (_setup, config, db) = history();
    // Drop the guard triggers first, as someone with the file could.
    sqlite(
        &db,
        "DROP TRIGGER IF EXISTS audit_events_no_update; DROP TRIGGER IF EXISTS audit_events_no_delete; UPDATE audit_events SET actor = 'mallory' WHERE seq = 2;",
    );
    let run = verify(&config);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stdout.contains("event 2"), "{run:#?}");
}

#[test]
fn a_deleted_row_is_named() {
    let (_setup, config, db) = history();
    sqlite(
        &db,
        "DROP TRIGGER IF EXISTS audit_events_no_update; DROP TRIGGER IF EXISTS audit_events_no_delete; DELETE FROM audit_events WHERE seq = 3;",
    );
    let run = verify(&config);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stdout.contains("event 3 is missing"), "{run:#?}");
}

/// The `SEQ:HASH` after "head " in a verify's output.
fn printed_head(run: &Run) -> String {
    let head = run.stdout.rsplit("; head ").next().unwrap().trim();
    assert!(head.contains(':'), "{run:#?}");
    head.to_string()
}

#[test]
fn a_kept_head_shows_events_cut_off_the_end() {
    let (_setup, config, db) = history();
    let head = printed_head(&verify(&config));
    let config_arg = config.to_str().unwrap();
    let with_head = || jitgate(&["audit", "verify", "--config", config_arg, "--head", &head]);
    let run = with_head();
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        run.stdout.contains(&format!("holds the kept head {head}")),
        "{run:#?}"
    );

    // The newest event gone: the chain alone still looks whole.
    let last: i64 = head.split(':').next().unwrap().parse().unwrap();
    sqlite(
        &db,
        &format!(
            "DROP TRIGGER IF EXISTS audit_events_no_update; DROP TRIGGER IF EXISTS audit_events_no_delete; DELETE FROM audit_events WHERE seq = {last};"
        ),
    );
    assert_eq!(verify(&config).code, 0);
    let run = with_head();
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stdout.contains(&format!(
            "the log ends at event {}, short of the kept head {head}: event {last} was removed",
            last - 1
        )),
        "{run:#?}"
    );
}

#[test]
fn a_malformed_head_is_refused() {
    let (_setup, config, _db) = history();
    let config = config.to_str().unwrap();
    let run = jitgate(&["audit", "verify", "--config", config, "--head", "3:abc"]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("expected SEQ:HASH"), "{run:#?}");
}

#[test]
fn a_missing_store_is_an_error_not_an_empty_log() {
    let setup = Setup::new();
    let config = setup.config(Setup::standard_policy());
    let run = verify(&config);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        !setup.path().join("data/jitgate.db").exists(),
        "verify must not create a store"
    );
}
