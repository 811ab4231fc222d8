//! The end notice, and revocations closing sessions while the store does not answer.

use std::path::Path;
use std::time::Instant;

use async_trait::async_trait;

use super::*;
use crate::bastion::BastionContext;
use crate::bastion::sessions::closed;
use crate::ca::CaKeys;
use crate::config::RuleRef;
use crate::hub::Hub;
use crate::model::*;
use crate::store::*;

/// Request `id` for db1 created at `created`, in `state`, ending at 2000.
pub(crate) fn request(id: i64, created: UnixTime, state: RequestState) -> AccessRequest {
    AccessRequest {
        id,
        requester: "alice".into(),
        host: "db1".into(),
        login: "root".into(),
        ttl_secs: 1000,
        reason: String::new(),
        rule: RuleRef {
            role: "engineer".into(),
            index: 0,
            digest: "d".into(),
        },
        approvals_needed: 0,
        state,
        created_at: created,
        pending_until: created + 600,
        approved_at: Some(1000),
        expires_at: Some(2000),
        decided_by: None,
        decision_reason: None,
        flagged: false,
        approvals: vec![],
    }
}

#[test]
fn the_longest_certificate_saturates_instead_of_overflowing() {
    let text = "[server]\ndata_dir = \"d\"\nhostname = \"b\"\n[[roles]]\nname = \"eng\"\n\
                [[roles.access]]\nhosts = [\"*\"]\nlogins = [\"root\"]\nmax_ttl = \"1h\"\n";
    let mut config = Config::from_str(text, Path::new("/tmp/jitgate.toml")).unwrap();
    assert_eq!(
        longest_certificate(&config),
        3600 + 120,
        "max_ttl + clock_skew"
    );
    config.roles[0].access[0].max_ttl = Duration::MAX;
    assert_eq!(longest_certificate(&config), i64::MAX);
}

#[test]
fn the_end_notice_says_why_and_falls_back_to_the_request_alone() {
    let revoked = AccessRequest {
        decided_by: Some("bob".into()),
        decision_reason: Some("INC-4711 closed".into()),
        ..request(42, 900, RequestState::Revoked)
    };
    let revoked_silently = AccessRequest {
        decision_reason: Some(String::new()),
        ..request(42, 900, RequestState::Revoked)
    };
    let approved = request(42, 900, RequestState::Approved);
    for (r, t, want) in [
        (
            Some(&revoked),
            1500,
            "access through request 42 was revoked by bob: INC-4711 closed; closing",
        ),
        (
            Some(&revoked_silently),
            1500,
            "access through request 42 was revoked; closing",
        ),
        (
            Some(&approved),
            2500,
            "request 42 expired at 1970-01-01 00:33:20 UTC; closing",
        ),
        // The store did not answer in time: the notice names the request alone.
        (None, 1500, "access through request 42 has ended; closing"),
        (
            Some(&approved),
            1500,
            "access through request 42 has ended; closing",
        ),
    ] {
        assert_eq!(ended_notice(42, r, t), want);
    }
}

/// A store that never answers `get_request`, as a stalled database would not.
struct Stalled(SqliteStore);

#[async_trait]
impl Store for Stalled {
    async fn create_request(&self, new: NewRequest) -> Result<AccessRequest, StoreError> {
        self.0.create_request(new).await
    }

    async fn get_request(&self, _id: i64) -> Result<Option<AccessRequest>, StoreError> {
        std::future::pending().await
    }

    async fn list_requests(&self, filter: RequestFilter) -> Result<Vec<AccessRequest>, StoreError> {
        self.0.list_requests(filter).await
    }

    async fn approve(
        &self,
        id: i64,
        approver: &str,
        comment: Option<&str>,
        counted: &[String],
        now: UnixTime,
    ) -> Result<ApproveOutcome, StoreError> {
        self.0.approve(id, approver, comment, counted, now).await
    }

    async fn deny(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        now: UnixTime,
    ) -> Result<AccessRequest, StoreError> {
        self.0.deny(id, by, reason, now).await
    }

    async fn revoke(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        flag: bool,
        now: UnixTime,
    ) -> Result<AccessRequest, StoreError> {
        self.0.revoke(id, by, reason, flag, now).await
    }

    async fn expire_due(&self, now: UnixTime) -> Result<Vec<AccessRequest>, StoreError> {
        self.0.expire_due(now).await
    }

    async fn next_serial(&self) -> Result<u64, StoreError> {
        self.0.next_serial().await
    }

    async fn record_cert(&self, cert: IssuedCert) -> Result<(), StoreError> {
        self.0.record_cert(cert).await
    }

    async fn cert_by_serial(&self, serial: u64) -> Result<Option<IssuedCert>, StoreError> {
        self.0.cert_by_serial(serial).await
    }

    async fn append_audit(&self, event: NewAuditEvent) -> Result<AuditEvent, StoreError> {
        self.0.append_audit(event).await
    }

    async fn audit_events(&self, since: Option<UnixTime>) -> Result<Vec<AuditEvent>, StoreError> {
        self.0.audit_events(since).await
    }

    async fn audit_head(&self) -> Result<Option<audit::Head>, StoreError> {
        self.0.audit_head().await
    }

    async fn start_session(&self, session: Session) -> Result<(), StoreError> {
        self.0.start_session(session).await
    }

    async fn end_session(&self, id: &str, end: SessionEnd<'_>) -> Result<(), StoreError> {
        self.0.end_session(id, end).await
    }

    async fn get_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.0.get_session(id).await
    }

    async fn list_sessions(&self, filter: SessionFilter) -> Result<Vec<Session>, StoreError> {
        self.0.list_sessions(filter).await
    }

    async fn record_command(&self, cmd: CommandRecord) -> Result<(), StoreError> {
        self.0.record_command(cmd).await
    }

    async fn list_commands(
        &self,
        filter: CommandFilter,
    ) -> Result<Vec<(CommandRecord, Session)>, StoreError> {
        self.0.list_commands(filter).await
    }
}

#[tokio::test]
async fn revocations_close_within_a_second_while_the_store_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\ndata_dir = {:?}\nhostname = \"bastion.test\"\n",
        dir.path().display()
    );
    let config = Config::from_str(&text, Path::new("/tmp/jitgate.toml")).unwrap();
    let (ca, _) = CaKeys::ensure(&dir.path().join("ca")).unwrap();
    let store = SqliteStore::open(&dir.path().join("jitgate.db")).unwrap();
    let hub = Hub::new();
    let shared = Arc::new(Shared::new(Arc::new(BastionContext {
        config: Arc::new(config),
        ca: Arc::new(ca),
        store: Arc::new(Stalled(store)),
        hub: Arc::clone(&hub),
    })));
    let mut controls = Vec::new();
    let mut guards = Vec::new();
    for id in 1..=5 {
        let (control, rx) = ControlHandle::new();
        guards.push(shared.registry.register(id, control));
        controls.push((id, rx));
    }
    let watcher = tokio::spawn(watch_revocations(Arc::clone(&shared)));
    // Let the watcher subscribe before anything is sent.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    for (id, _) in &controls {
        hub.end_access(*id);
    }
    // No notice waits on the store forever, nor holds up the next one: all five are closed
    // within one notice wait (one after the other would take five).
    for (id, rx) in &mut controls {
        let reason = tokio::time::timeout(Duration::from_secs(1), closed(rx))
            .await
            .unwrap_or_else(|_| panic!("request {id} not closed within a second"));
        assert_eq!(
            reason,
            format!("access through request {id} has ended; closing")
        );
    }
    assert!(
        start.elapsed() < NOTICE_WAIT * 2,
        "{:?}: the revocations waited for each other",
        start.elapsed()
    );
    drop(guards);
    watcher.abort();
}
