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

#[test]
fn a_key_given_twice_is_named() {
    let (_setup, config, db) = history();
    // The map the chain hashed keeps the last "reason"; `json_extract` reads the first.
    sqlite(
        &db,
        "DROP TRIGGER IF EXISTS audit_events_no_update; DROP TRIGGER IF EXISTS audit_events_no_delete; \
         UPDATE audit_events SET data = '{\"reason\":\"rm -rf /x\",' || substr(data, 2) WHERE seq = 1;",
    );
    let run = verify(&config);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stdout.starts_with("audit log NOT intact: ")
            && run
                .stdout
                .contains("audit event 1: data is not stored as it was written"),
        "{run:#?}"
    );
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

/// Runs `f` against the stopped server's store, through the library, as someone with the
/// file (and the database's own rules) could.
fn with_store<T>(db: &std::path::Path, f: impl AsyncFnOnce(&dyn jitgate::store::Store) -> T) -> T {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = jitgate::store::SqliteStore::open(db).unwrap();
        f(&store).await
    })
}

/// Session `id` of request 1, started recording `rel` (a file written under `recordings`),
/// then closed with `end`.
fn session(
    setup: &Setup,
    db: &std::path::Path,
    id: &str,
    end: jitgate::store::SessionEnd<'_>,
) -> (String, std::path::PathBuf) {
    let rel = format!("2026/11/22/{id}.cast");
    let path = setup.path().join("recordings").join(&rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "{\"version\":2,\"width\":80,\"height\":24}\n").unwrap();
    let row = jitgate::model::Session {
        id: id.into(),
        request_id: 1,
        user: "alice".into(),
        host: "db1".into(),
        login: "postgres".into(),
        started_at: 1_795_305_600 + 15 * 3600,
        ended_at: None,
        exit_status: None,
        exit_signal: None,
        bytes_up: 0,
        bytes_down: 0,
        recording: Some(rel.clone()),
    };
    with_store(db, async |store| {
        store.start_session(row).await.unwrap();
        store.end_session(id, end).await.unwrap();
    });
    (rel, path)
}

const NOV22_4PM: i64 = 1_795_305_600 + 16 * 3600;

#[test]
fn a_recording_whose_session_sealed_no_hash_fails_while_it_exists() {
    let (setup, config, db) = history();
    let ended = jitgate::store::SessionEnd {
        ended_at: NOV22_4PM,
        ..Default::default()
    };
    let (rel, path) = session(&setup, &db, "s-unsealed", ended);
    let run = verify(&config);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stdout
            .contains(&format!("audit log NOT intact: recording {rel} (event "))
            && run
                .stdout
                .contains("session s-unsealed) exists but its session sealed no hash"),
        "{run:#?}"
    );
    // Gone, with no reason in the chain: still a failure.
    std::fs::remove_file(&path).unwrap();
    let run = verify(&config);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stdout.contains("sealed neither a hash nor why"),
        "{run:#?}"
    );
}

#[test]
fn a_failed_recording_that_is_gone_warns_when_the_chain_says_why() {
    let (setup, config, db) = history();
    let failed = jitgate::store::SessionEnd {
        ended_at: NOV22_4PM,
        recording_error: Some("No space left on device (os error 28)"),
        ..Default::default()
    };
    let (rel, path) = session(&setup, &db, "s-failed", failed);
    std::fs::remove_file(&path).unwrap();
    let run = verify(&config);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        run.stdout.contains(&format!(
            "warning: recording {rel} (session s-failed) is absent and was never sealed: \
             No space left on device"
        )),
        "{run:#?}"
    );
}

#[test]
fn a_forged_prune_does_not_explain_a_deleted_recording() {
    let (setup, config, db) = history();
    let sha = "0".repeat(64);
    let closed = jitgate::store::SessionEnd {
        ended_at: NOV22_4PM,
        recording_sha256: Some(&sha),
        ..Default::default()
    };
    let (rel, path) = session(&setup, &db, "s-forged", closed);
    // Deleted, then explained away: a retention entered as a real prune would have, then
    // a prune under "0s", dated now, with the right hash.
    std::fs::remove_file(&path).unwrap();
    with_store(&db, async |store| {
        let event = jitgate::model::NewAuditEvent::new(NOV22_4PM, "recordings.retention", "system")
            .with("retention", "30d");
        store.append_audit(event).await.unwrap();
        let event =
            jitgate::model::NewAuditEvent::new(jitgate::model::now(), "recording.pruned", "system")
                .with("recording", &rel)
                .with("sha256", &sha)
                .with("retention", "0s");
        store.append_audit(event).await.unwrap();
    });
    let run = verify(&config);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stdout
            .contains("was pruned under a retention of 0s, shorter than the 30d in force"),
        "{run:#?}"
    );
}
