//! Requests: creation, approvals, decisions, expiry, listing.

use super::{R, T, approvers, ask, audit_len, kinds, open};
use crate::model::*;
use crate::store::{ApproveOutcome, RequestFilter, Store, StoreError};

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
    // What is stored is what was returned, down to the rule's fingerprint.
    assert_eq!(pending.rule, ask(2).rule);
    assert_eq!(store.get_request(2).await?, Some(pending));
    assert_eq!(store.get_request(3).await?, None);
    Ok(())
}

#[tokio::test]
async fn approvals_count_distinct_people_and_tip_the_request() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let id = store.create_request(ask(2)).await?.id;

    let ApproveOutcome::Counted(r) = store
        .approve(id, "bob", Some("ok"), &approvers(), T + 10)
        .await?
    else {
        panic!("first approval not counted");
    };
    assert_eq!(r.state, RequestState::Pending);
    assert_eq!(r.approvals.len(), 1);
    assert_eq!(r.approvals[0].comment.as_deref(), Some("ok"));

    let before = audit_len(&store).await?;
    let again = store.approve(id, "bob", None, &approvers(), T + 20).await?;
    assert!(matches!(again, ApproveOutcome::AlreadyApproved(ref r) if r.approvals.len() == 1));
    assert_eq!(audit_len(&store).await?, before, "a repeat writes no event");

    let ApproveOutcome::Counted(r) = store
        .approve(id, "carol", None, &approvers(), T + 30)
        .await?
    else {
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
        store.approve(id, "dave", None, &approvers(), T + 40).await,
        Err(StoreError::WrongState {
            state: RequestState::Approved,
            ..
        })
    ));
    assert!(matches!(
        store.approve(99, "dave", None, &approvers(), T).await,
        Err(StoreError::NoRequest(99))
    ));
    Ok(())
}

#[tokio::test]
async fn an_approval_by_someone_no_longer_an_approver_does_not_count() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let id = store.create_request(ask(2)).await?.id;
    store.approve(id, "bob", None, &approvers(), T + 10).await?;
    // bob has since lost the approver role: carol's approval is the only one that counts.
    let only = ["carol", "dave"].map(String::from);
    let ApproveOutcome::Counted(r) = store.approve(id, "carol", None, &only, T + 20).await? else {
        panic!("carol's approval not counted");
    };
    assert_eq!(
        r.state,
        RequestState::Pending,
        "bob's approval still counted"
    );
    assert_eq!(r.approvals.len(), 2, "bob's approval stays on record");
    let ApproveOutcome::Counted(r) = store.approve(id, "dave", None, &only, T + 30).await? else {
        panic!("dave's approval not counted");
    };
    assert_eq!(r.state, RequestState::Approved);
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
        match store.approve(id, "carol", None, &approvers(), now).await {
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
        ..alice.clone()
    };
    assert_eq!(ids(store.list_requests(one).await?), [3]);
    let next_page = RequestFilter {
        before_id: Some(3),
        ..alice
    };
    assert_eq!(ids(store.list_requests(next_page).await?), [1]);
    Ok(())
}
