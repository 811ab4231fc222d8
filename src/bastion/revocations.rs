//! Ending access: revocations from the hub close every live connection of their request
//! (within a second, whatever the store does), and connections that may have missed one are
//! checked again against the store.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::Shared;
use super::sessions::{ControlHandle, Registration};
use crate::config::Config;
use crate::model::{AccessRequest, RequestState, UnixTime, format_time, now};

impl Shared {
    /// Registers a connection of request `request_id` whose check began at `mark`
    /// (`Registry::lag_mark`); if revocations may have been missed since, the request is
    /// checked again in the background.
    pub fn register(
        self: &Arc<Self>,
        request_id: i64,
        control: ControlHandle,
        mark: u64,
    ) -> Registration {
        let registration = self.registry.register(request_id, control);
        if self.registry.lagged_since(mark) {
            tokio::spawn(Arc::clone(self).recheck(request_id));
        }
        registration
    }

    /// Closes request `id`'s connections with a notice saying why; the notice waits for the
    /// store at most `NOTICE_WAIT`.
    async fn end_request(&self, id: i64) {
        let t = now();
        let (reason, until) =
            match tokio::time::timeout(NOTICE_WAIT, self.ctx.store.get_request(id)).await {
                Ok(Ok(Some(r))) => (ended_notice(id, Some(&r), t), r.expires_at.unwrap_or(t)),
                _ => (
                    ended_notice(id, None, t),
                    t.saturating_add(longest_certificate(self.config())),
                ),
            };
        let n = self.registry.close_request(id, &reason, until, t);
        tracing::info!(request = id, connections = n, "access ended");
    }

    /// Asks the store whether request `id` is still active, and ends it if not (or if the
    /// store does not answer within `RECHECK_WAIT`: no store, no access).
    async fn recheck(self: Arc<Self>, id: i64) {
        let t = now();
        let active = matches!(
            tokio::time::timeout(RECHECK_WAIT, self.ctx.store.get_request(id)).await,
            Ok(Ok(Some(r))) if r.is_active(t)
        );
        if !active {
            self.end_request(id).await;
        }
    }
}

/// How long an ended request's notice waits for the store before a plain one is shown.
const NOTICE_WAIT: Duration = Duration::from_millis(300);
/// How long a check after missed revocations waits for the store before closing.
const RECHECK_WAIT: Duration = Duration::from_secs(5);

/// The longest a certificate can stay valid from now, in seconds: the longest `max_ttl` of
/// any rule (a certificate ends with its request, approval + TTL).
pub(super) fn longest_certificate(config: &Config) -> i64 {
    let longest = config
        .roles
        .iter()
        .flat_map(|r| &r.access)
        .map(|a| a.max_ttl)
        .max()
        .unwrap_or_default()
        .saturating_add(config.ca.clock_skew);
    i64::try_from(longest.as_secs()).unwrap_or(i64::MAX)
}

/// The notice an engineer sees when request `id` ends, from what the store says of it at
/// `t` (`None`: nothing in time).
fn ended_notice(id: i64, request: Option<&AccessRequest>, t: UnixTime) -> String {
    match request.map(|r| (r, r.state_at(t))) {
        Some((r, RequestState::Revoked)) => {
            let by = r
                .decided_by
                .as_ref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default();
            let why = r
                .decision_reason
                .as_ref()
                .filter(|w| !w.is_empty())
                .map(|w| format!(": {w}"))
                .unwrap_or_default();
            format!("access through request {id} was revoked{by}{why}; closing")
        }
        Some((r, RequestState::Expired)) => format!(
            "request {id} expired at {}; closing",
            format_time(r.expires_at.unwrap_or(t))
        ),
        _ => format!("access through request {id} has ended; closing"),
    }
}

/// Closes the live sessions of every request the hub says has ended. Each revocation is
/// handled in its own task, so a slow store delays none behind it; after missed revocations,
/// every live request, and every connection that checked before the miss and registers
/// after it (`Shared::register`), is checked again.
pub(super) async fn watch_revocations(shared: Arc<Shared>) {
    let mut rx = shared.ctx.hub.revocations();
    loop {
        match rx.recv().await {
            Ok(id) => {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move { shared.end_request(id).await });
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "revocations missed; checking every live request");
                shared.registry.lagged();
                for id in shared.registry.requests() {
                    tokio::spawn(Arc::clone(&shared).recheck(id));
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
pub(super) mod tests;
