//! Certificates, sessions, the command index and the audit log.

use std::path::Path;

use rusqlite::Connection;

use super::{R, T, approvers, ask, kinds, open};
use crate::model::*;
use crate::store::audit::{ChainBreak, verify_chain};
use crate::store::sqlite::SqliteStore;
use crate::store::{CommandFilter, SessionEnd, SessionFilter, Store, StoreError};

fn cert(serial: u64, request_id: i64) -> IssuedCert {
    IssuedCert {
        serial,
        request_id,
        user: "alice".into(),
        key_fingerprint: "SHA256:abc".into(),
        valid_after: T - 60,
        valid_before: T + 900,
        issued_at: T,
    }
}

/// The `session.closed` event of session `id`.
async fn closed_event(
    store: &SqliteStore,
    id: &str,
) -> Result<AuditEvent, Box<dyn std::error::Error>> {
    store
        .audit_events(None)
        .await?
        .into_iter()
        .find(|e| e.event.kind == "session.closed" && e.event.session_id.as_deref() == Some(id))
        .ok_or_else(|| format!("no session.closed for {id}").into())
}

#[tokio::test]
async fn serials_are_never_reused_across_reopen() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let id = store.create_request(ask(0)).await?.id;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(store.next_serial().await?);
    }
    store.record_cert(cert(seen[0], id)).await?;
    drop(store);
    let store = open(dir.path())?;
    for _ in 0..3 {
        seen.push(store.next_serial().await?);
    }
    assert_eq!(seen, [1, 2, 3, 4, 5, 6]);

    assert_eq!(store.cert_by_serial(1).await?, Some(cert(1, id)));
    assert_eq!(store.cert_by_serial(2).await?, None);
    assert_eq!(store.cert_by_serial(u64::MAX).await?, None);
    assert!(matches!(
        store.record_cert(cert(1, id)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.record_cert(cert(2, 77)).await,
        Err(StoreError::NoRequest(77))
    ));
    // Refused changes leave no event.
    assert_eq!(
        kinds(&store, id).await?,
        ["request.created", "request.approved", "cert.issued"]
    );
    assert!(kinds(&store, 77).await?.is_empty());
    Ok(())
}

fn session(id: &str, request_id: i64, user: &str, host: &str, started_at: UnixTime) -> Session {
    Session {
        id: id.into(),
        request_id,
        user: user.into(),
        host: host.into(),
        login: "postgres".into(),
        started_at,
        ended_at: None,
        exit_status: None,
        bytes_up: 0,
        bytes_down: 0,
        recording: Some(format!("2027/01/15/{id}.cast")),
        exit_signal: None,
    }
}

#[tokio::test]
async fn sessions_open_close_and_carry_the_recording_hash() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let id = store.create_request(ask(0)).await?.id;
    store
        .start_session(session("s1", id, "alice", "db1", T + 1))
        .await?;
    assert!(matches!(
        store
            .start_session(session("s1", id, "alice", "db1", T + 1))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .start_session(session("s9", 42, "alice", "db1", T + 1))
            .await,
        Err(StoreError::NoRequest(42))
    ));
    let sha = "ab".repeat(32);
    let end = SessionEnd {
        ended_at: T + 9,
        exit_status: Some(0),
        bytes_up: 10,
        bytes_down: 2000,
        recording_sha256: Some(&sha),
        ..SessionEnd::default()
    };
    store.end_session("s1", end).await?;
    let s = store.get_session("s1").await?.ok_or("no session")?;
    assert_eq!(
        (s.ended_at, s.exit_status, s.bytes_up, s.bytes_down),
        (Some(T + 9), Some(0), 10, 2000)
    );
    let later = SessionEnd {
        ended_at: T + 10,
        ..SessionEnd::default()
    };
    assert!(matches!(
        store.end_session("s1", later).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.end_session("nope", later).await,
        Err(StoreError::NoSession(_))
    ));
    let closed = closed_event(&store, "s1").await?;
    assert_eq!(closed.event.session_id.as_deref(), Some("s1"));
    assert_eq!(closed.event.data.get("recording_sha256"), Some(&sha));
    assert_eq!(
        closed.event.data.get("recording").map(String::as_str),
        Some("2027/01/15/s1.cast")
    );
    let events = store.audit_events(None).await?;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event.kind.starts_with("session."))
            .count(),
        2
    );
    // A command ended by a signal: its row and its close keep the signal, not a status.
    store
        .start_session(session("s2", id, "alice", "db1", T + 11))
        .await?;
    let killed = SessionEnd {
        ended_at: T + 12,
        exit_signal: Some("KILL"),
        ..SessionEnd::default()
    };
    store.end_session("s2", killed).await?;
    let s = store.get_session("s2").await?.ok_or("no session")?;
    assert_eq!(
        (s.exit_status, s.exit_signal.as_deref()),
        (None, Some("KILL"))
    );
    let closed = closed_event(&store, "s2").await?;
    assert_eq!(closed.event.session_id.as_deref(), Some("s2"));
    assert_eq!(
        closed.event.data.get("exit_signal").map(String::as_str),
        Some("KILL")
    );
    assert!(!closed.event.data.contains_key("exit_status"));
    Ok(())
}

#[tokio::test]
async fn sessions_and_commands_are_listed_with_filters() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let a = store.create_request(ask(0)).await?.id;
    let b = store
        .create_request(NewRequest {
            requester: "bob".into(),
            host: "web1".into(),
            ..ask(0)
        })
        .await?
        .id;
    store
        .start_session(session("s1", a, "alice", "db1", T + 1))
        .await?;
    store
        .start_session(session("s2", b, "bob", "web1", T + 2))
        .await?;
    store
        .start_session(session("s3", a, "alice", "db1", T + 3))
        .await?;
    for (sid, at, text, verdict) in [
        ("s1", T + 1, "ls", "allowed"),
        ("s2", T + 4, "rm -rf /", "blocked"),
        ("s3", T + 5, "df", "allowed"),
    ] {
        store
            .record_command(CommandRecord {
                session_id: sid.into(),
                at,
                text: text.into(),
                verdict: verdict.into(),
                rule: None,
            })
            .await?;
    }
    assert!(matches!(
        store
            .record_command(CommandRecord {
                session_id: "nope".into(),
                at: T,
                text: "x".into(),
                verdict: "allowed".into(),
                rule: None,
            })
            .await,
        Err(StoreError::NoSession(_))
    ));

    let sessions = |f: SessionFilter| {
        let store = store.clone();
        async move {
            Ok::<_, StoreError>(
                store
                    .list_sessions(f)
                    .await?
                    .into_iter()
                    .map(|s| s.id)
                    .collect::<Vec<_>>(),
            )
        }
    };
    assert_eq!(
        sessions(SessionFilter::default()).await?,
        ["s3", "s2", "s1"]
    );
    let by_user = SessionFilter {
        user: Some("alice".into()),
        ..Default::default()
    };
    assert_eq!(sessions(by_user).await?, ["s3", "s1"]);
    let by_host = SessionFilter {
        host: Some("web1".into()),
        ..Default::default()
    };
    assert_eq!(sessions(by_host).await?, ["s2"]);
    let since = SessionFilter {
        since: Some(T + 2),
        request_id: Some(a),
        ..Default::default()
    };
    assert_eq!(sessions(since).await?, ["s3"]);
    // Open ones only; a session cut off by a stop is closed with a note in its audit event.
    let open = || SessionFilter {
        open: true,
        ..Default::default()
    };
    assert_eq!(sessions(open()).await?, ["s3", "s2", "s1"]);
    let cut = SessionEnd {
        ended_at: T + 4,
        cut_off: true,
        recording_error: Some("unreadable"),
        ..SessionEnd::default()
    };
    store.end_session("s2", cut).await?;
    assert_eq!(sessions(open()).await?, ["s3", "s1"]);
    let closed = closed_event(&store, "s2").await?;
    assert!(closed.event.data.contains_key("cut_off"), "{closed:?}");
    assert_eq!(
        closed.event.data.get("recording_error").map(String::as_str),
        Some("unreadable")
    );

    let commands = |f: CommandFilter| {
        let store = store.clone();
        async move {
            Ok::<_, StoreError>(
                store
                    .list_commands(f)
                    .await?
                    .into_iter()
                    .map(|(c, s)| format!("{}@{}:{}", s.user, s.host, c.text))
                    .collect::<Vec<_>>(),
            )
        }
    };
    assert_eq!(
        commands(CommandFilter::default()).await?,
        ["alice@db1:df", "bob@web1:rm -rf /", "alice@db1:ls"]
    );
    let f = CommandFilter {
        user: Some("alice".into()),
        since: Some(T + 2),
        ..Default::default()
    };
    assert_eq!(commands(f).await?, ["alice@db1:df"]);
    let f = CommandFilter {
        host: Some("web1".into()),
        ..Default::default()
    };
    assert_eq!(commands(f).await?, ["bob@web1:rm -rf /"]);
    // By request (every session of it) and by verdict.
    let f = CommandFilter {
        request_id: Some(a),
        ..Default::default()
    };
    assert_eq!(commands(f).await?, ["alice@db1:df", "alice@db1:ls"]);
    let f = CommandFilter {
        verdict: Some("blocked".into()),
        ..Default::default()
    };
    assert_eq!(commands(f).await?, ["bob@web1:rm -rf /"]);
    Ok(())
}

#[tokio::test]
async fn append_audit_chains_events_and_filters_by_time() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    assert_eq!(store.audit_head().await?, None);
    let first = store
        .append_audit(NewAuditEvent::new(T, "api.refused", "mallory").with("why", "bad sig"))
        .await?;
    assert_eq!(
        (first.seq, first.prev_hash.as_str()),
        (1, crate::store::audit::GENESIS)
    );
    let second = store
        .append_audit(NewAuditEvent::new(T + 5, "api.refused", "mallory").request(3))
        .await?;
    assert_eq!((second.seq, &second.prev_hash), (2, &first.hash));
    let head = store.audit_head().await?.expect("a head");
    assert_eq!((head.seq, &head.hash), (2, &second.hash));
    let all = store.audit_events(None).await?;
    assert_eq!(all, [first, second.clone()]);
    assert_eq!(verify_chain(&all), Ok(2));
    assert_eq!(store.audit_events(Some(T + 1)).await?, [second]);
    Ok(())
}

/// A raw connection to the store's file, as someone with the file would have.
fn raw(dir: &Path) -> Result<Connection, rusqlite::Error> {
    Connection::open(dir.join("data").join("jitgate.db"))
}

/// What `audit verify` would say about the file.
async fn verify(dir: &Path) -> Result<Result<usize, ChainBreak>, StoreError> {
    let ro = SqliteStore::open_readonly(&dir.join("data").join("jitgate.db"))?;
    Ok(verify_chain(&ro.audit_events(None).await?))
}

#[tokio::test]
async fn the_log_refuses_edits_and_verify_names_tampering() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    for n in 0..3 {
        let id = store.create_request(ask(1 + n % 2)).await?.id;
        store.approve(id, "bob", None, &approvers(), T + 1).await?;
    }
    let events = store.audit_events(None).await?;
    assert_eq!(verify_chain(&events), Ok(events.len()));
    drop(store);

    let conn = raw(dir.path())?;
    assert!(
        conn.execute("UPDATE audit_events SET actor = 'x' WHERE seq = 2", [])
            .is_err()
    );
    assert!(
        conn.execute("DELETE FROM audit_events WHERE seq = 2", [])
            .is_err()
    );

    conn.execute_batch(
        "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;",
    )?;
    conn.execute(
        "UPDATE audit_events SET data = json_set(data, '$.reason', 'forged') WHERE seq = 3",
        [],
    )?;
    assert_eq!(
        verify(dir.path()).await?,
        Err(ChainBreak::Edited {
            seq: 3,
            kind: events[2].event.kind.clone()
        })
    );
    conn.execute("DELETE FROM audit_events WHERE seq = 3", [])?;
    assert_eq!(
        verify(dir.path()).await?.map_err(|e| e.to_string()),
        Err("event 3 is missing (2 is followed by 4)".to_string())
    );
    // A key given twice: the map (and so the hash) keeps the last, `json_extract` the
    // first. Spaces that change no value are refused as well.
    let kept: String = conn.query_row("SELECT data FROM audit_events WHERE seq = 1", [], |r| {
        r.get(0)
    })?;
    assert!(kept.contains("\"reason\":"), "{kept}");
    let forms = [
        "'{\"reason\":\"rm -rf /x\",' || substr(data, 2)",
        "replace(data, ',', ', ')",
    ];
    for form in forms {
        conn.execute(
            &format!("UPDATE audit_events SET data = {form} WHERE seq = 1"),
            [],
        )?;
        let err = verify(dir.path()).await.expect_err(form).to_string();
        assert!(
            err.contains("audit event 1: data is not stored as it was written"),
            "{form}: {err}"
        );
        conn.execute("UPDATE audit_events SET data = ?1 WHERE seq = 1", [&kept])?;
    }
    Ok(())
}
