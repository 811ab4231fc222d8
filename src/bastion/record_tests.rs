//! Sealing failed and cut-off recordings, against a real SQLite store.

use super::*;
use crate::model::{AuditEvent, NewRequest, Session};
use crate::store::SqliteStore;

const T: i64 = 1_800_000_000;
const REL: &str = "2027/01/15/s1.cast";

/// A store holding one open session, `s1`, recorded at `REL`; returns it and the request.
async fn with_session(dir: &Path) -> (SqliteStore, i64) {
    let store = SqliteStore::open(&dir.join("jitgate.db")).expect("store");
    let request = store
        .create_request(NewRequest::example(0, T))
        .await
        .expect("request");
    let session = Session {
        id: "s1".into(),
        request_id: request.id,
        user: "alice".into(),
        host: "db1".into(),
        login: "postgres".into(),
        started_at: T + 1,
        ended_at: None,
        exit_status: None,
        bytes_up: 0,
        bytes_down: 0,
        recording: Some(REL.into()),
        exit_signal: None,
    };
    store.start_session(session).await.expect("session");
    (store, request.id)
}

async fn events(store: &SqliteStore, kind: &str) -> Vec<AuditEvent> {
    let all = store.audit_events(None).await.expect("events");
    all.into_iter().filter(|e| e.event.kind == kind).collect()
}

fn data<'a>(e: &'a AuditEvent, key: &str) -> Option<&'a str> {
    e.event.data.get(key).map(String::as_str)
}

#[tokio::test]
async fn a_failed_recording_is_audited_and_sealed_as_it_stands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("recordings");
    let file = root.join(REL);
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&file, "{\"version\":2,\"width\":80,\"height\":24}\n").expect("write");
    let (store, request) = with_session(dir.path()).await;
    let owner = Owner {
        user: "alice",
        request,
        session: "s1",
    };
    let full = "No space left on device (os error 28)".to_string();
    let (sha, error) = seal_failed(&store, &root, &owner, REL, full.clone(), false).await;
    let want = crate::recorder::sha256_file(&file).expect("hash");
    assert_eq!(
        (sha.as_deref(), error.as_str()),
        (Some(want.as_str()), full.as_str())
    );
    let failed = events(&store, "recording.failed").await;
    assert_eq!(failed.len(), 1);
    let e = &failed[0];
    assert_eq!(
        (e.event.session_id.as_deref(), e.event.request_id),
        (Some("s1"), Some(request))
    );
    assert_eq!(
        (data(e, "recording"), data(e, "error")),
        (Some(REL), Some(full.as_str()))
    );

    // Audited already (by the watcher): not twice. The file gone: no hash, and why.
    std::fs::remove_file(&file).expect("remove");
    let (sha, error) = seal_failed(&store, &root, &owner, REL, full.clone(), true).await;
    assert_eq!(sha, None);
    assert!(
        error.starts_with(&format!("{full}; unreadable when sealed: ")),
        "{error}"
    );
    assert_eq!(events(&store, "recording.failed").await.len(), 1);
}

#[tokio::test]
async fn a_cut_off_recording_that_cannot_be_read_is_sealed_with_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("recordings");
    // A directory where the file should be: it cannot be hashed.
    std::fs::create_dir_all(root.join(REL)).expect("mkdir");
    let (store, _) = with_session(dir.path()).await;
    seal_cut_off(&store, &root).await;
    let closed = events(&store, "session.closed").await;
    assert_eq!(closed.len(), 1);
    let c = &closed[0];
    assert_eq!(data(c, "recording_sha256"), None);
    assert!(data(c, "cut_off").is_some(), "{c:?}");
    let error = data(c, "recording_error").expect("why it has no hash");
    assert!(error.starts_with("unreadable when sealed"), "{error}");
    let failed = events(&store, "recording.failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(data(&failed[0], "error"), Some(error));
}
