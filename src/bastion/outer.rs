//! The outer SSH server: what `ssh -J alice@bastion` talks to.
//!
//! Authentication is publickey with a jitgate user certificate only. The one thing an
//! authenticated engineer may do here is open `direct-tcpip` to the request's host, which
//! starts a nested server (`inner`) inside that channel: at most `MAX_NESTED` at once on
//! one connection, each checked and served in its own task, never in this session's loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use russh::server::{self, Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelOpenFailure};
use ssh_key::Certificate;

use super::access::{self, CertFacts, Grant, Refusal};
use super::sessions::{ControlHandle, Registration, Slot};
use super::{BastionError, Shared, bridge, inner};
use crate::config::Host;
use crate::model::{AccessRequest, UnixTime, format_time, now};
use crate::store::RequestFilter;

pub struct Outer {
    shared: Arc<Shared>,
    peer: SocketAddr,
    control: ControlHandle,
    grant: Option<Grant>,
    registration: Option<Registration>,
    /// Set once authenticated: the connection task's login grace no longer applies.
    authed: Arc<AtomicBool>,
    /// Nested servers running on this connection (at most `MAX_NESTED`).
    nested: Arc<AtomicUsize>,
    /// The user name the client last tried to log in as.
    claimed_user: Option<String>,
    /// Whether a certificate reached `authorize` (see `Drop`).
    cert_checked: bool,
}

/// Why a connection that ended unauthenticated without any certificate reaching jitgate's
/// checks was refused.
pub const NO_CERT_CHECKED: &str = "no certificate reached jitgate's checks: none was offered, or it was expired, not yet valid or badly signed (refused before it is checked)";

/// Nested servers (jumps through `direct-tcpip`) one outer connection may run at once: each
/// holds a handshake, and for the jump's own host a connection logged in to the target.
/// OpenSSH's `MaxSessions` does not count forwarding channels; this does, so a client that
/// multiplexes more than ten parallel jumps over one connection (`ControlMaster`) is refused
/// the eleventh, with the reason, and should open another connection.
pub const MAX_NESTED: usize = 10;

impl Outer {
    pub fn new(
        shared: Arc<Shared>,
        peer: SocketAddr,
        control: ControlHandle,
        authed: Arc<AtomicBool>,
    ) -> Outer {
        Outer {
            shared,
            peer,
            control,
            grant: None,
            registration: None,
            authed,
            nested: Arc::new(AtomicUsize::new(0)),
            claimed_user: None,
            cert_checked: false,
        }
    }
}

/// russh refuses a certificate outside its validity window, or whose signature does not
/// verify, before any handler sees it: without this, the commonest refusal of all (an
/// engineer's expired certificate) would leave no trace in the audit log. So a connection
/// that ends unauthenticated, with a user name claimed and no certificate checked, is
/// audited once on its way out.
impl Drop for Outer {
    fn drop(&mut self) {
        if self.authed.load(Ordering::Acquire) || self.cert_checked {
            return;
        }
        let Some(user) = self.claimed_user.take() else {
            return;
        };
        let peer = self.peer;
        self.shared.audit_later(move |shared| async move {
            shared
                .refused_unauthenticated("outer", &user, peer, None, NO_CERT_CHECKED)
                .await;
        });
    }
}

/// Requests are read this many at a time, newest first, when looking for another active one.
const SCOPE_PAGE: u32 = 20;

/// The inventory host a `direct-tcpip` may reach: the jump's own request's host, or the host
/// of another active request of the same engineer (its nested login then presents that
/// request's certificate). Only requests young enough to be still active are read.
async fn scope(shared: &Shared, grant: &Grant, host: &str, port: u32) -> Result<Host, Refusal> {
    let own = access::check_target(grant, host, port);
    if own.is_ok() {
        return Ok(grant.host.clone());
    }
    let Some(h) = shared.config().host(host) else {
        return own.map(|()| grant.host.clone());
    };
    let t = now();
    // An active request was approved within `pending_ttl` of its creation and lasts at most
    // the longest `max_ttl`: anything created before this is over.
    let horizon = t
        .saturating_sub(super::revocations::longest_certificate(shared.config()))
        .saturating_sub(
            i64::try_from(shared.config().server.pending_ttl.as_secs()).unwrap_or(i64::MAX),
        );
    let mut before_id = None;
    loop {
        let page = shared
            .ctx
            .store
            .list_requests(RequestFilter {
                requester: Some(grant.user.clone()),
                before_id,
                limit: Some(SCOPE_PAGE),
                ..Default::default()
            })
            .await
            .map_err(|e| Refusal(format!("store unavailable: {e}")))?;
        match holds(&page, host, t, horizon) {
            Held::Yes => {
                access::check_port(h, port)?;
                return Ok(h.clone());
            }
            Held::NotYet(oldest) if page.len() == SCOPE_PAGE as usize => {
                before_id = Some(oldest);
            }
            _ => return own.map(|()| grant.host.clone()),
        }
    }
}

/// What one page of an engineer's requests (newest first) says about `host` at `t`.
#[derive(Debug, PartialEq, Eq)]
enum Held {
    /// An active request for it.
    Yes,
    /// None on this page; older ones may be active (the next page starts below this id).
    NotYet(i64),
    /// None, and the page reached requests created before `horizon`, which cannot be active.
    No,
}

fn holds(page: &[AccessRequest], host: &str, t: UnixTime, horizon: UnixTime) -> Held {
    if page.iter().any(|r| r.host == host && r.is_active(t)) {
        return Held::Yes;
    }
    match page.last() {
        Some(oldest) if oldest.created_at >= horizon => Held::NotYet(oldest.id),
        _ => Held::No,
    }
}

/// Checks `cert` for `user` against the CA and the store; the same for outer and inner logins.
pub(crate) async fn authorize(
    shared: &Shared,
    user: &str,
    cert: &Certificate,
) -> Result<Grant, Refusal> {
    let t = now();
    shared
        .ctx
        .ca
        .validate_user_cert(cert, t.max(0) as u64)
        .map_err(Refusal)?;
    let facts = CertFacts::of(cert);
    let store = &shared.ctx.store;
    // No store, no access: a store error refuses.
    let issued = store
        .cert_by_serial(facts.serial)
        .await
        .map_err(|e| Refusal(format!("store unavailable: {e}")))?;
    let request = match facts.request_id {
        Some(id) => store
            .get_request(id)
            .await
            .map_err(|e| Refusal(format!("store unavailable: {e}")))?,
        None => None,
    };
    access::check(
        shared.config(),
        user,
        &facts,
        issued.as_ref(),
        request.as_ref(),
        t,
    )
}

fn prohibited(reason: &str) -> ChannelOpenFailure {
    ChannelOpenFailure::Other {
        code: 1,
        reason: format!("jitgate: {reason}"),
    }
}

impl server::Handler for Outer {
    type Error = BastionError;

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        self.claimed_user = Some(user.to_string());
        Ok(Auth::reject())
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        _key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.claimed_user = Some(user.to_string());
        self.shared
            .refused_unauthenticated(
                "outer",
                user,
                self.peer,
                None,
                "a plain public key; only jitgate certificates are accepted",
            )
            .await;
        Ok(Auth::reject())
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        cert: &Certificate,
    ) -> Result<Auth, Self::Error> {
        self.cert_checked = true;
        let mark = self.shared.registry.lag_mark();
        match authorize(&self.shared, user, cert).await {
            Ok(grant) => {
                tracing::info!(
                    user,
                    request = grant.request.id,
                    host = %grant.host.name,
                    until = %format_time(grant.until),
                    "authenticated"
                );
                self.registration = Some(self.shared.register(
                    grant.request.id,
                    self.control.clone(),
                    mark,
                ));
                self.control.close_at(grant.until, grant.end_notice());
                self.grant = Some(grant);
                self.authed.store(true, Ordering::Release);
                Ok(Auth::Accept)
            }
            Err(refusal) => {
                self.shared
                    .refused_unauthenticated(
                        "outer",
                        user,
                        self.peer,
                        self.shared.ctx.ca.request_of_user_cert(cert),
                        &refusal.0,
                    )
                    .await;
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let hint = match &self.grant {
            Some(g) => format!(
                "this is a jump host; use: ssh -J {}@{} {}@{}",
                g.user,
                self.shared.config().server.hostname,
                g.request.login,
                g.host.name
            ),
            None => "this is a jump host; use ssh -J".to_string(),
        };
        reply.reject(prohibited(&hint)).await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(grant) = self.grant.clone() else {
            reply.reject(prohibited("not authenticated")).await;
            return Ok(());
        };
        let Some(slot) = Slot::take(&self.nested, MAX_NESTED) else {
            let reason =
                format!("more than {MAX_NESTED} nested connections on one jump connection");
            self.shared
                .refused(
                    "direct-tcpip",
                    &grant.user,
                    self.peer,
                    Some(grant.request.id),
                    &reason,
                )
                .await;
            reply
                .reject(prohibited(&format!(
                    "at most {MAX_NESTED} connections through one jump connection; open another"
                )))
                .await;
            return Ok(());
        };
        let (shared, peer, outer_control) =
            (Arc::clone(&self.shared), self.peer, self.control.clone());
        let (host, port) = (host_to_connect.to_string(), port_to_connect);
        // The scope check may read the store, and the nested server must run in its own task:
        // awaiting either here would stall this session's loop, which carries the nested
        // server's bytes.
        let live = self.shared.tasks.enter();
        tokio::spawn(async move {
            let target = match scope(&shared, &grant, &host, port).await {
                Ok(target) => target,
                Err(refusal) => {
                    shared
                        .refused(
                            "direct-tcpip",
                            &grant.user,
                            peer,
                            Some(grant.request.id),
                            &refusal.0,
                        )
                        .await;
                    reply.reject(prohibited(&refusal.0)).await;
                    return;
                }
            };
            let conn = inner::InnerConn {
                shared,
                outer: grant,
                host: target,
                peer,
                outer_control,
            };
            reply.accept().await;
            let (stream, moving) = bridge::open(channel);
            inner::serve(stream, conn).await;
            moving.close().await;
            drop(slot);
            drop(live);
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::revocations::tests::request;
    use super::*;
    use crate::model::RequestState;

    #[test]
    fn the_scope_reads_back_only_as_far_as_a_request_can_still_be_active() {
        let (t, horizon) = (1500, 500);
        let db2 = |id, created, state| AccessRequest {
            host: "db2".into(),
            ..request(id, created, state)
        };
        let approved = RequestState::Approved;
        for (page, want) in [
            (vec![db2(9, 1400, approved)], Held::Yes),
            // Another host's, a revoked one: not held; older pages may still hold one.
            (
                vec![
                    request(9, 1400, approved),
                    db2(8, 1300, RequestState::Revoked),
                ],
                Held::NotYet(8),
            ),
            // Created before the horizon: nothing older can be active.
            (
                vec![request(9, 1400, approved), request(8, 400, approved)],
                Held::No,
            ),
            (vec![], Held::No),
        ] {
            assert_eq!(holds(&page, "db2", t, horizon), want, "{page:?}");
        }
        // Expired by `t`.
        assert_eq!(
            holds(&[db2(9, 1400, approved)], "db2", 2500, horizon),
            Held::NotYet(9)
        );
    }
}
