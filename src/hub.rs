//! In-process events between the API and the bastion: revocations and webhook events.
//!
//! The API revokes; the bastion, listening here, closes that request's live sessions. Both
//! emit events (`request.*`, `guardrail.*`) that the webhook sender delivers.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::broadcast;

/// An event for webhooks: `kind` is one of `config::WEBHOOK_EVENTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubEvent {
    pub kind: String,
    pub request_id: Option<i64>,
    pub data: BTreeMap<String, String>,
}

pub struct Hub {
    revocations: broadcast::Sender<i64>,
    events: broadcast::Sender<HubEvent>,
}

impl Hub {
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub {
            revocations: broadcast::channel(1024).0,
            events: broadcast::channel(4096).0,
        })
    }

    /// Access through request `id` has ended (revoked or expired): close its sessions.
    pub fn end_access(&self, id: i64) {
        // No receiver yet (no bastion running) is fine.
        let _ = self.revocations.send(id);
    }

    pub fn revocations(&self) -> broadcast::Receiver<i64> {
        self.revocations.subscribe()
    }

    pub fn emit(&self, kind: &str, request_id: Option<i64>, data: BTreeMap<String, String>) {
        let _ = self.events.send(HubEvent {
            kind: kind.to_string(),
            request_id,
            data,
        });
    }

    pub fn events(&self) -> broadcast::Receiver<HubEvent> {
        self.events.subscribe()
    }
}
