//! Tests of the SQLite store against a real database file in a temp dir.

use std::path::Path;

use rusqlite::Connection;

use super::SqliteStore;
use super::schema::{MIGRATIONS, latest_version};
use crate::config::RuleRef;
use crate::model::*;
use crate::store::audit::{ChainBreak, verify_chain};
use crate::store::{
    ApproveOutcome, CommandFilter, RequestFilter, SessionFilter, Store, StoreError,
};

type R = Result<(), Box<dyn std::error::Error>>;

const T: UnixTime = 1_800_000_000;

fn ask(needed: u32) -> NewRequest {
    NewRequest {
        requester: "alice".into(),
        host: "db1".into(),
        login: "postgres".into(),
        ttl_secs: 900,
        reason: "INC-4711".into(),
        rule: RuleRef {
            role: "dba".into(),
            index: 1,
        },
        approvals_needed: needed,
        created_at: T,
        pending_until: T + 3600,
    }
}

fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
    SqliteStore::open(&dir.join("data").join("jitgate.db"))
}

/// Kinds of the audit events about request `id`, oldest first.
async fn kinds(store: &SqliteStore, id: i64) -> Result<Vec<String>, StoreError> {
    Ok(store
        .audit_events(None)
        .await?
        .into_iter()
        .filter(|e| e.event.request_id == Some(id))
        .map(|e| e.event.kind)
        .collect())
}

async fn audit_len(store: &SqliteStore) -> Result<usize, StoreError> {
    Ok(store.audit_events(None).await?.len())
}

#[tokio::test]
async fn open_creates_folder_and_file_in_wal_mode() -> R {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("a").join("b").join("jitgate.db");
    let store = SqliteStore::open(&path)?;
    assert!(path.is_file());
    let (mode, sync, fk): (String, i64, i64) = store
        .call(|c| {
            Ok(c.query_row(
                "SELECT (SELECT journal_mode FROM pragma_journal_mode), \
                 (SELECT synchronous FROM pragma_synchronous), \
                 (SELECT foreign_keys FROM pragma_foreign_keys)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?)
        })
        .await?;
    assert_eq!((mode.as_str(), sync, fk), ("wal", 1, 1));
    Ok(())
}

#[tokio::test]
async fn migrations_run_once_across_reopen() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let id = store.create_request(ask(1)).await?.id;
    drop(store);
    let store = open(dir.path())?;
    assert_eq!(store.schema_version().await?, latest_version());
    let rows: i64 = store
        .call(|c| Ok(c.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))?))
        .await?;
    assert_eq!(rows, MIGRATIONS.len() as i64);
    assert!(store.get_request(id).await?.is_some());
    Ok(())
}

#[tokio::test]
async fn open_readonly_never_creates_and_never_writes() -> R {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("missing").join("jitgate.db");
    let err = SqliteStore::open_readonly(&path)
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("no database at")));
    assert!(!dir.path().join("missing").exists());

    let store = open(dir.path())?;
    store.create_request(ask(0)).await?;
    drop(store);
    let ro = SqliteStore::open_readonly(&dir.path().join("data").join("jitgate.db"))?;
    assert_eq!(verify_chain(&ro.audit_events(None).await?), Ok(2));
    assert!(matches!(
        ro.create_request(ask(0)).await,
        Err(StoreError::Db(_))
    ));
    Ok(())
}

#[tokio::test]
async fn create_request_auto_approved_or_pending() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let auto = store.create_request(ask(0)).await?;
    assert_eq!(auto.id, 1);
    assert_eq!(auto.state, RequestState::Approved);
    assert_eq!(
        (auto.approved_at, auto.expires_at),
        (Some(T), Some(T + 900))
    );
    assert_eq!(
        kinds(&store, 1).await?,
        ["request.created", "request.approved"]
    );

    let pending = store.create_request(ask(2)).await?;
    assert_eq!(pending.id, 2);
    assert_eq!(pending.state, RequestState::Pending);
    assert_eq!((pending.approved_at, pending.expires_at), (None, None));
    assert_eq!(kinds(&store, 2).await?, ["request.created"]);
    // What is stored is what was returned.
    assert_eq!(store.get_request(2).await?, Some(pending));
    assert_eq!(store.get_request(3).await?, None);
    Ok(())
}

#[tokio::test]
async fn approvals_count_distinct_people_and_tip_the_request() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let id = store.create_request(ask(2)).await?.id;

    let ApproveOutcome::Counted(r) = store.approve(id, "bob", Some("ok"), T + 10).await? else {
        panic!("first approval not counted");
    };
    assert_eq!(r.state, RequestState::Pending);
    assert_eq!(r.approvals.len(), 1);
    assert_eq!(r.approvals[0].comment.as_deref(), Some("ok"));

    let before = audit_len(&store).await?;
    let again = store.approve(id, "bob", None, T + 20).await?;
    assert!(matches!(again, ApproveOutcome::AlreadyApproved(ref r) if r.approvals.len() == 1));
    assert_eq!(audit_len(&store).await?, before, "a repeat writes no event");

    let ApproveOutcome::Counted(r) = store.approve(id, "carol", None, T + 30).await? else {
        panic!("second approver not counted");
    };
    assert_eq!(r.state, RequestState::Approved);
    assert_eq!(
        (r.approved_at, r.expires_at),
        (Some(T + 30), Some(T + 30 + 900))
    );
    let who: Vec<&str> = r.approvals.iter().map(|a| a.approver.as_str()).collect();
    assert_eq!(who, ["bob", "carol"]);
    assert_eq!(
        kinds(&store, id).await?,
        [
            "request.created",
            "request.approval",
            "request.approval",
            "request.approved"
        ]
    );
    // A decided request takes no more approvals.
    assert!(matches!(
        store.approve(id, "dave", None, T + 40).await,
        Err(StoreError::WrongState {
            state: RequestState::Approved,
            ..
        })
    ));
    assert!(matches!(
        store.approve(99, "dave", None, T).await,
        Err(StoreError::NoRequest(99))
    ));
    Ok(())
}

#[tokio::test]
async fn decided_or_expired_requests_refuse_approval_without_an_event() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let denied = store.create_request(ask(1)).await?.id;
    store.deny(denied, "bob", "not now", T + 1).await?;
    let revoked = store.create_request(ask(1)).await?.id;
    store.revoke(revoked, "alice", "done", false, T + 1).await?;
    let timed_out = store.create_request(ask(1)).await?.id;
    let written_expired = store.create_request(ask(1)).await?.id;
    store.expire_due(T + 3600).await?;
    let cases = [
        (denied, T + 2, RequestState::Denied),
        (revoked, T + 2, RequestState::Revoked),
        // Past pending_until but not yet written down.
        (timed_out, T + 3600, RequestState::Expired),
        (written_expired, T + 10, RequestState::Expired),
    ];
    for (id, now, want) in cases {
        let before = audit_len(&store).await?;
        match store.approve(id, "carol", None, now).await {
            Err(StoreError::WrongState { id: got, state }) => {
                assert_eq!((got, state), (id, want));
            }
            other => panic!("request {id}: {other:?}"),
        }
        assert_eq!(audit_len(&store).await?, before, "request {id}");
        let stored = store.get_request(id).await?.ok_or("gone")?;
        assert!(stored.approvals.is_empty(), "request {id}");
    }
    Ok(())
}

#[tokio::test]
async fn deny_and_revoke_record_who_and_why() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let id = store.create_request(ask(1)).await?.id;
    let r = store.deny(id, "bob", "use staging", T + 5).await?;
    assert_eq!(r.state, RequestState::Denied);
    assert_eq!(r.decided_by.as_deref(), Some("bob"));
    assert_eq!(r.decision_reason.as_deref(), Some("use staging"));
    assert!(matches!(
        store.deny(id, "bob", "again", T + 6).await,
        Err(StoreError::WrongState { .. })
    ));
    assert!(matches!(
        store.revoke(id, "bob", "x", false, T + 6).await,
        Err(StoreError::WrongState {
            state: RequestState::Denied,
            ..
        })
    ));
    assert_eq!(
        kinds(&store, id).await?,
        ["request.created", "request.denied"]
    );

    let id = store.create_request(ask(0)).await?.id;
    let r = store.revoke(id, "bob", "3 blocks", true, T + 60).await?;
    assert_eq!(r.state, RequestState::Revoked);
    assert!(r.flagged);
    assert_eq!(r.decision_reason.as_deref(), Some("3 blocks"));
    assert_eq!(
        kinds(&store, id).await?,
        [
            "request.created",
            "request.approved",
            "request.revoked",
            "request.flagged"
        ]
    );
    assert_eq!(
        r.state_at(T + 10_000),
        RequestState::Revoked,
        "revoked stays revoked"
    );

    // Access already over: nothing left to revoke.
    let id = store.create_request(ask(0)).await?.id;
    assert!(matches!(
        store.revoke(id, "bob", "late", false, T + 900).await,
        Err(StoreError::WrongState {
            state: RequestState::Expired,
            ..
        })
    ));
    Ok(())
}

#[tokio::test]
async fn expire_due_writes_each_expiry_once() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let pending = store.create_request(ask(1)).await?.id; // pending until T + 3600
    let approved = store.create_request(ask(0)).await?.id; // access until T + 900
    let later = store
        .create_request(NewRequest {
            pending_until: T + 7200,
            ..ask(1)
        })
        .await?
        .id;
    assert!(store.expire_due(T + 899).await?.is_empty());

    let first: Vec<(i64, RequestState)> = store
        .expire_due(T + 3600)
        .await?
        .iter()
        .map(|r| (r.id, r.state))
        .collect();
    assert_eq!(
        first,
        [
            (pending, RequestState::Expired),
            (approved, RequestState::Expired)
        ]
    );
    assert!(store.expire_due(T + 3601).await?.is_empty());
    let expired: Vec<Option<i64>> = store
        .audit_events(None)
        .await?
        .into_iter()
        .filter(|e| e.event.kind == "request.expired")
        .map(|e| e.event.request_id)
        .collect();
    assert_eq!(expired, [Some(pending), Some(approved)]);

    let open_now = store
        .list_requests(RequestFilter {
            pending_at: Some(T + 3601),
            ..Default::default()
        })
        .await?;
    assert_eq!(open_now.iter().map(|r| r.id).collect::<Vec<_>>(), [later]);
    Ok(())
}

#[tokio::test]
async fn list_requests_newest_first_with_filters() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    for who in ["alice", "bob", "alice"] {
        store
            .create_request(NewRequest {
                requester: who.into(),
                ..ask(1)
            })
            .await?;
    }
    let ids = |v: Vec<AccessRequest>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_requests(RequestFilter::default()).await?),
        [3, 2, 1]
    );
    let alice = RequestFilter {
        requester: Some("alice".into()),
        ..Default::default()
    };
    assert_eq!(ids(store.list_requests(alice.clone()).await?), [3, 1]);
    let one = RequestFilter {
        limit: Some(1),
        ..alice
    };
    assert_eq!(ids(store.list_requests(one).await?), [3]);
    Ok(())
}

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
    store
        .end_session("s1", T + 9, Some(0), 10, 2000, Some(&sha))
        .await?;
    let s = store.get_session("s1").await?.ok_or("no session")?;
    assert_eq!(
        (s.ended_at, s.exit_status, s.bytes_up, s.bytes_down),
        (Some(T + 9), Some(0), 10, 2000)
    );
    assert!(matches!(
        store.end_session("s1", T + 10, None, 0, 0, None).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.end_session("nope", T + 10, None, 0, 0, None).await,
        Err(StoreError::NoSession(_))
    ));
    let events = store.audit_events(None).await?;
    let closed = events
        .iter()
        .find(|e| e.event.kind == "session.closed")
        .ok_or("no session.closed")?;
    assert_eq!(closed.event.session_id.as_deref(), Some("s1"));
    assert_eq!(closed.event.data.get("recording_sha256"), Some(&sha));
    assert_eq!(
        closed.event.data.get("recording").map(String::as_str),
        Some("2027/01/15/s1.cast")
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event.kind.starts_with("session."))
            .count(),
        2
    );
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
    for (sid, at, text) in [
        ("s1", T + 1, "ls"),
        ("s2", T + 4, "rm -rf /"),
        ("s3", T + 5, "df"),
    ] {
        store
            .record_command(CommandRecord {
                session_id: sid.into(),
                at,
                text: text.into(),
                verdict: "allowed".into(),
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
    Ok(())
}

#[tokio::test]
async fn append_audit_chains_events_and_filters_by_time() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
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
        store.approve(id, "bob", None, T + 1).await?;
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
    Ok(())
}
