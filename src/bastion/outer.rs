//! The outer SSH server: what `ssh -J alice@bastion` talks to.
//!
//! Authentication is publickey with a jitgate user certificate only. The one thing an
//! authenticated engineer may do here is open `direct-tcpip` to the request's host, which
//! starts a nested server (`inner`) inside that channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use russh::server::{self, Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelOpenFailure};
use ssh_key::Certificate;

use super::access::{self, CertFacts, Grant, Refusal};
use super::sessions::{ControlHandle, Registration};
use super::{BastionError, Shared, bridge, inner};
use crate::config::Host;
use crate::model::{format_time, now};
use crate::store::RequestFilter;

pub struct Outer {
    shared: Arc<Shared>,
    peer: SocketAddr,
    control: ControlHandle,
    grant: Option<Grant>,
    registration: Option<Registration>,
    /// Set once authenticated: the connection task's login grace no longer applies.
    authed: Arc<AtomicBool>,
}

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
        }
    }
}

impl Outer {
    /// The inventory host a `direct-tcpip` may reach: the jump's own request's host, or the
    /// host of another active request of the same engineer (its nested login then presents
    /// that request's certificate).
    async fn scope(&self, grant: &Grant, host: &str, port: u32) -> Result<Host, Refusal> {
        let own = access::check_target(grant, host, port);
        if own.is_ok() {
            return Ok(grant.host.clone());
        }
        let t = now();
        let others = self
            .shared
            .ctx
            .store
            .list_requests(RequestFilter {
                requester: Some(grant.user.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| Refusal(format!("store unavailable: {e}")))?;
        let held = others.iter().any(|r| r.host == host && r.is_active(t));
        match self.shared.config().host(host) {
            Some(h) if held => {
                access::check_port(h, port)?;
                Ok(h.clone())
            }
            _ => own.map(|()| grant.host.clone()),
        }
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

    async fn auth_publickey(
        &mut self,
        user: &str,
        _key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.shared
            .refused(
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
        match authorize(&self.shared, user, cert).await {
            Ok(grant) => {
                tracing::info!(
                    user,
                    request = grant.request.id,
                    host = %grant.host.name,
                    until = %format_time(grant.until),
                    "authenticated"
                );
                self.registration = Some(
                    self.shared
                        .registry
                        .register(grant.request.id, self.control.clone()),
                );
                self.control.close_at(grant.until, grant.end_notice());
                self.grant = Some(grant);
                self.authed.store(true, Ordering::Release);
                Ok(Auth::Accept)
            }
            Err(refusal) => {
                self.shared
                    .refused(
                        "outer",
                        user,
                        self.peer,
                        crate::ca::request_id_of(cert),
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
        let target = match self.scope(&grant, host_to_connect, port_to_connect).await {
            Ok(host) => host,
            Err(refusal) => {
                self.shared
                    .refused(
                        "direct-tcpip",
                        &grant.user,
                        self.peer,
                        Some(grant.request.id),
                        &refusal.0,
                    )
                    .await;
                reply.reject(prohibited(&refusal.0)).await;
                return Ok(());
            }
        };
        let conn = inner::InnerConn {
            shared: Arc::clone(&self.shared),
            outer: grant,
            host: target,
            peer: self.peer,
            outer_control: self.control.clone(),
        };
        // The nested server must run in its own task: awaiting it here would stall this
        // session's loop, which carries the nested server's bytes.
        let live = self.shared.tasks.enter();
        tokio::spawn(async move {
            reply.accept().await;
            let (stream, moving) = bridge::open(channel);
            inner::serve(stream, conn).await;
            moving.close().await;
            drop(live);
        });
        Ok(())
    }
}
