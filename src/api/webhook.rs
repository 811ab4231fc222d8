//! Webhooks: each hub event is POSTed as JSON to every configured URL that wants it, retried
//! with exponential backoff, in tasks of their own so no API call ever waits on a receiver.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::config::Webhook;
use crate::hub::{Hub, HubEvent};

const ATTEMPTS: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

#[derive(Serialize)]
struct Payload<'a> {
    event: &'a str,
    request_id: Option<i64>,
    at: i64,
    data: &'a std::collections::BTreeMap<String, String>,
}

/// Delivers hub events until the hub is dropped.
pub async fn run(hub: Arc<Hub>, hooks: Vec<Webhook>) {
    if hooks.is_empty() {
        return;
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut events = hub.events();
    drop(hub);
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(dropped = n, "webhook sender fell behind; events dropped");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        for hook in hooks.iter().filter(|h| h.wants(&event.kind)) {
            tokio::spawn(deliver(client.clone(), hook.url.clone(), event.clone()));
        }
    }
}

async fn deliver(client: reqwest::Client, url: String, event: HubEvent) {
    let body = Payload {
        event: &event.kind,
        request_id: event.request_id,
        at: crate::model::now(),
        data: &event.data,
    };
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        match client.post(&url).json(&body).send().await {
            Ok(resp) if resp.status().is_success() => return,
            Ok(resp) => {
                tracing::warn!(%url, event = %event.kind, status = %resp.status(), attempt, "webhook refused")
            }
            Err(e) => {
                tracing::warn!(%url, event = %event.kind, error = %e, attempt, "webhook failed")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    tracing::error!(%url, event = %event.kind, "webhook given up after {ATTEMPTS} attempts");
}
