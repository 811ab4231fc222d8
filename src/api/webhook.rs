//! Webhooks: each hub event is POSTed as JSON to every configured URL that wants it, retried
//! with exponential backoff, in tasks of their own so no API call ever waits on a receiver.
//!
//! Each payload carries `audit_head`, the audit chain's newest event as `SEQ:HASH` when the
//! event was sent (the event's own audit entry or a later one): a receiver that keeps them
//! holds copies of the chain's head outside the server, which `jitgate audit verify --head`
//! checks the log against (see `store::audit`).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::config::Webhook;
use crate::hub::{Hub, HubEvent};
use crate::store::Store;

const ATTEMPTS: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

#[derive(Serialize)]
struct Payload<'a> {
    event: &'a str,
    request_id: Option<i64>,
    at: i64,
    data: &'a std::collections::BTreeMap<String, String>,
    audit_head: Option<&'a str>,
}

/// Delivers hub events until the hub is dropped.
pub async fn run(hub: Arc<Hub>, store: Arc<dyn Store>, hooks: Vec<Webhook>) {
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
        let urls: Vec<&String> = hooks
            .iter()
            .filter(|h| h.wants(&event.kind))
            .map(|h| &h.url)
            .collect();
        if urls.is_empty() {
            continue;
        }
        let head: Option<Arc<str>> = match store.audit_head().await {
            Ok(h) => h.map(|h| h.to_string().into()),
            Err(e) => {
                tracing::warn!(error = %e, "webhook: audit head unreadable; sent without it");
                None
            }
        };
        for url in urls {
            tokio::spawn(deliver(
                client.clone(),
                url.clone(),
                event.clone(),
                head.clone(),
            ));
        }
    }
}

async fn deliver(
    client: reqwest::Client,
    url: String,
    event: HubEvent,
    audit_head: Option<Arc<str>>,
) {
    let body = Payload {
        event: &event.kind,
        request_id: event.request_id,
        at: crate::model::now(),
        data: &event.data,
        audit_head: audit_head.as_deref(),
    };
    // Webhook URLs often carry their secret in the path or query (chat incoming hooks):
    // logs name the endpoint only.
    let shown = endpoint(&url);
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        match client.post(&url).json(&body).send().await {
            Ok(resp) if resp.status().is_success() => return,
            Ok(resp) => {
                tracing::warn!(url = %shown, event = %event.kind, status = %resp.status(), attempt, "webhook refused")
            }
            Err(e) => {
                let e = e.without_url();
                tracing::warn!(url = %shown, event = %event.kind, error = %e, attempt, "webhook failed")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    tracing::error!(url = %shown, event = %event.kind, "webhook given up after {ATTEMPTS} attempts");
}

/// `scheme://host:port/…`: a URL without its user info, path and query.
fn endpoint(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if u.path() == "/" && u.query().is_none() {
                ""
            } else {
                "/…"
            };
            format!(
                "{}://{}{port}{rest}",
                u.scheme(),
                u.host_str().unwrap_or("?")
            )
        }
        Err(_) => "(unparsable URL)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn logged_urls_keep_no_secret() {
        for (url, shown) in [
            (
                "https://hooks.slack.com/services/T000/B000/XXXXsecret",
                "https://hooks.slack.com/…",
            ),
            (
                "https://user:pw@example.com:8443/h?token=abc",
                "https://example.com:8443/…",
            ),
            ("http://127.0.0.1:9000/", "http://127.0.0.1:9000"),
            ("not a url", "(unparsable URL)"),
        ] {
            assert_eq!(endpoint(url), shown, "{url}");
        }
    }
}
