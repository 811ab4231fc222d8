//! Dialling the target for one nested connection: at most one upstream connection at a
//! time, for one request, login and rule; the nested server's channels wait for it.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::Shared;
use super::access::Grant;
use super::upstream::{Back, ToEngineer, Upstream, connect};
use crate::config::Host;

/// The outcome of dialling, once known.
pub type Dialled = Option<Result<Arc<Upstream>, String>>;

/// What a target connection was dialled for. Its certificate names the request, and what
/// the target may open back follows the rule, so it serves only the same request, login
/// and rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialFor {
    pub request: i64,
    pub login: String,
    /// The rule's digest (`RuleRef::digest`).
    pub rule: String,
}

impl DialFor {
    pub fn new(grant: &Grant, login: &str) -> DialFor {
        DialFor {
            request: grant.request.id,
            login: login.to_string(),
            rule: grant.request.rule.digest.clone(),
        }
    }
}

/// Whether a login for `want` can use the dial for `current`: the same request, login and
/// rule, and not failed (a failed dial is tried again).
pub fn reusable(current: Option<&DialFor>, want: &DialFor, dialled: &Dialled) -> bool {
    current == Some(want) && !matches!(dialled, Some(Err(_)))
}

/// Dials the target for one nested connection, once its login is known.
pub struct Dialer {
    pub shared: Arc<Shared>,
    pub host: Host,
    pub user: String,
    /// Names the connection in its target certificate's key id; the ids of its sessions (in
    /// the store) begin with it.
    pub conn_id: String,
    pub tx: Arc<watch::Sender<Dialled>>,
    pub current: Mutex<Option<(DialFor, tokio::task::JoinHandle<()>)>>,
    /// The nested connection, for channels the target opens.
    pub engineer: Arc<ToEngineer>,
}

impl Dialer {
    /// Starts dialling as `login` for `grant`'s request, unless a dial for the same request,
    /// login and rule is under way or done; a connection dialled for anything else is closed.
    pub fn dial(&self, grant: &Grant, login: &str) {
        let want = DialFor::new(grant, login);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if reusable(current.as_ref().map(|(d, _)| d), &want, &self.tx.borrow()) {
            return;
        }
        if let Some((_, task)) = current.take() {
            task.abort();
        }
        if let Some(Ok(old)) = self.tx.send_replace(None) {
            tokio::spawn(async move {
                let _ = old
                    .disconnect(russh::Disconnect::ByApplication, "", "en")
                    .await;
            });
        }
        let key_id = format!(
            "jitgate:request={}:user={}:connection={}",
            want.request, self.user, self.conn_id
        );
        let (shared, host, tx, rule) = (
            Arc::clone(&self.shared),
            self.host.clone(),
            Arc::clone(&self.tx),
            grant.rule.clone(),
        );
        let login_owned = login.to_string();
        let back = Back::new(Arc::clone(&self.engineer), &rule);
        let task = tokio::spawn(async move {
            let result = connect(&shared, &host, &login_owned, &key_id, &rule, back).await;
            if let Err(e) = &result {
                tracing::warn!(host = %host.name, error = %e, "upstream failed");
            }
            tx.send_replace(Some(result.map(Arc::new)));
        });
        *current = Some((want, task));
    }

    pub fn abort(&self) {
        if let Some((_, task)) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// Waits for the upstream connection of this nested server.
pub async fn upstream_of(mut dialled: watch::Receiver<Dialled>) -> Result<Arc<Upstream>, String> {
    match dialled.wait_for(|d| d.is_some()).await {
        Ok(d) => d
            .clone()
            .unwrap_or_else(|| Err("jitgate: no upstream".into())),
        Err(_) => Err("jitgate: the upstream connection was abandoned".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dial_serves_only_the_same_request_login_and_rule() {
        let dial = |request: i64, login: &str, rule: &str| DialFor {
            request,
            login: login.into(),
            rule: rule.into(),
        };
        let a = dial(1, "root", "r1");
        let under_way: Dialled = None;
        let done: Dialled = Some(Err("jitgate: cannot reach db1".into()));
        for (current, want, dialled, reuse) in [
            (Some(&a), &a, &under_way, true),
            (None, &a, &under_way, false),
            // Another request for the same host and login: its own certificate and rule.
            (Some(&a), &dial(2, "root", "r1"), &under_way, false),
            (Some(&a), &dial(1, "postgres", "r1"), &under_way, false),
            (Some(&a), &dial(1, "root", "r2"), &under_way, false),
            // A failed dial is tried again, even for the same login.
            (Some(&a), &a, &done, false),
        ] {
            assert_eq!(
                reusable(current, want, dialled),
                reuse,
                "{current:?} {want:?}"
            );
        }
    }
}
