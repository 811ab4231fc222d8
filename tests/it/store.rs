//! The SQLite store under real concurrency: tokio tasks on a multi-thread runtime racing on
//! one store, against a database file in a temp dir.

use std::collections::HashSet;
use std::sync::Arc;

use jitgate::config::RuleRef;
use jitgate::model::{NewAuditEvent, NewRequest, RequestState};
use jitgate::store::audit::verify_chain;
use jitgate::store::{ApproveOutcome, SqliteStore, Store, StoreError};
use tokio::sync::Barrier;

type R = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const T: i64 = 1_800_000_000;
const ROUNDS: usize = 25;

fn ask(needed: u32) -> NewRequest {
    NewRequest {
        requester: "alice".into(),
        host: "db1".into(),
        login: "postgres".into(),
        ttl_secs: 900,
        reason: "INC-4711".into(),
        rule: RuleRef {
            role: "dba".into(),
            index: 0,
            digest: String::new(),
        },
        approvals_needed: needed,
        created_at: T,
        pending_until: T + 3600,
    }
}

fn open(dir: &tempfile::TempDir) -> Result<Arc<SqliteStore>, StoreError> {
    Ok(Arc::new(SqliteStore::open(&dir.path().join("jitgate.db"))?))
}

/// Starts `approve(id, who)` for each approver at the same moment, each in its own task.
async fn race(
    store: &Arc<SqliteStore>,
    id: i64,
    approvers: &[&str],
) -> Result<Vec<ApproveOutcome>, Box<dyn std::error::Error + Send + Sync>> {
    let barrier = Arc::new(Barrier::new(approvers.len()));
    let tasks: Vec<_> = approvers
        .iter()
        .map(|who| {
            let (store, barrier, who) = (Arc::clone(store), Arc::clone(&barrier), who.to_string());
            let counted: Vec<String> = approvers.iter().map(|a| a.to_string()).collect();
            tokio::spawn(async move {
                barrier.wait().await;
                store.approve(id, &who, None, &counted, T + 10).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// Number of audit events of `kind` about request `id`.
async fn count(store: &SqliteStore, id: i64, kind: &str) -> Result<usize, StoreError> {
    Ok(store
        .audit_events(None)
        .await?
        .iter()
        .filter(|e| e.event.request_id == Some(id) && e.event.kind == kind)
        .count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_approvers_at_once_count_as_two() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    for _ in 0..ROUNDS {
        let id = store.create_request(ask(2)).await?.id;
        let outcomes = race(&store, id, &["bob", "carol"]).await?;
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, ApproveOutcome::Counted(_)))
        );
        let r = store.get_request(id).await?.ok_or("request gone")?;
        assert_eq!(r.state, RequestState::Approved, "request {id}");
        assert_eq!(r.approvals.len(), 2, "request {id}");
        assert_eq!(count(&store, id, "request.approval").await?, 2);
        assert_eq!(count(&store, id, "request.approved").await?, 1);
    }
    assert!(verify_chain(&store.audit_events(None).await?).is_ok());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_approver_twice_at_once_counts_once() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    for _ in 0..ROUNDS {
        let id = store.create_request(ask(2)).await?.id;
        let outcomes = race(&store, id, &["bob", "bob"]).await?;
        let counted = outcomes
            .iter()
            .filter(|o| matches!(o, ApproveOutcome::Counted(_)))
            .count();
        let repeated = outcomes
            .iter()
            .filter(|o| matches!(o, ApproveOutcome::AlreadyApproved(_)))
            .count();
        assert_eq!((counted, repeated), (1, 1), "request {id}");
        let r = store.get_request(id).await?.ok_or("request gone")?;
        assert_eq!(r.state, RequestState::Pending, "request {id}");
        assert_eq!(r.approvals.len(), 1, "request {id}");
        assert_eq!(count(&store, id, "request.approval").await?, 1);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_get_distinct_serials_and_one_unbroken_chain() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut serials = Vec::new();
                for i in 0..40 {
                    serials.push(store.next_serial().await?);
                    store
                        .append_audit(NewAuditEvent::new(T + i, "test.event", "t").with("task", n))
                        .await?;
                }
                Ok::<_, StoreError>(serials)
            })
        })
        .collect();
    let mut all = HashSet::new();
    for t in tasks {
        for s in t.await?? {
            assert!(all.insert(s), "serial {s} handed out twice");
        }
    }
    assert_eq!(all.len(), 320);
    assert_eq!(verify_chain(&store.audit_events(None).await?), Ok(320));
    Ok(())
}
