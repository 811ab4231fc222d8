//! The nested SSH server inside one `direct-tcpip` channel: it presents a host certificate
//! for the target's name, takes the engineer's second login (same certificate, approved
//! login), and relays each session channel to one upstream connection to the target.
//!
//! The upstream connection is dialled as soon as the channel opens, alongside the nested
//! handshake; a session channel waits for it, and a target that cannot be reached turns into
//! a channel-open failure whose text the engineer's `ssh` prints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::server::{self, Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, ChannelStream, Disconnect, Pty};
use ssh_key::Certificate;
use tokio::sync::watch;

use super::access::{self, Grant};
use super::keys::random_id;
use super::outer::authorize;
use super::relay::{self, Request, allows};
use super::sessions::{ControlHandle, closed};
use super::upstream::{self, Upstream};
use super::{BastionError, Shared};
use crate::model::{self, now};

/// What one nested server knows about its outer connection.
pub struct InnerConn {
    pub shared: Arc<Shared>,
    pub grant: Grant,
    pub peer: SocketAddr,
    pub control: ControlHandle,
}

type Dialled = Option<Result<Arc<Upstream>, String>>;

/// Runs the nested server over `stream` until it ends or its control says close.
pub async fn serve(stream: ChannelStream<Msg>, conn: InnerConn) {
    let shared = Arc::clone(&conn.shared);
    let grant = conn.grant.clone();
    let conn_id = random_id();
    let (dial_tx, dial_rx) = watch::channel::<Dialled>(None);
    let dial = {
        let shared = Arc::clone(&shared);
        let grant = grant.clone();
        let key_id = format!(
            "jitgate:request={}:user={}:connection={conn_id}",
            grant.request.id, grant.user
        );
        tokio::spawn(async move {
            let result = upstream::connect(
                shared.config(),
                &shared.ctx.ca,
                &shared.clients,
                &grant.host,
                &grant.request.login,
                &key_id,
            )
            .await;
            if let Err(e) = &result {
                tracing::warn!(host = %grant.host.name, error = %e, "upstream failed");
            }
            dial_tx.send_replace(Some(result.map(Arc::new)));
        })
    };
    let config = match shared.keys.server_config(
        &shared.ctx.ca,
        std::slice::from_ref(&grant.host.name),
        now().max(0) as u64,
        false,
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot mint a host certificate");
            dial.abort();
            return;
        }
    };
    let mut control_rx = conn.control.subscribe();
    let handler = Inner {
        conn,
        conn_id,
        dialled: dial_rx.clone(),
        logged_in: false,
    };
    match russh::server::run_stream(config, stream, handler).await {
        Ok(mut running) => {
            let handle = running.handle();
            tokio::select! {
                _ = &mut running => {}
                reason = closed(&mut control_rx) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = handle.disconnect(Disconnect::ByApplication, reason, "en".into()).await;
                    let _ = tokio::time::timeout(Duration::from_secs(2), running).await;
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "nested handshake failed"),
    }
    dial.abort();
    let up = dial_rx.borrow().clone();
    if let Some(Ok(up)) = up {
        let _ = up.disconnect(Disconnect::ByApplication, "", "en").await;
    }
}

struct Inner {
    conn: InnerConn,
    conn_id: String,
    dialled: watch::Receiver<Dialled>,
    logged_in: bool,
}

impl Inner {
    fn rule(&self) -> &crate::config::AccessRule {
        &self.conn.grant.rule
    }

    fn reply(
        &self,
        channel: ChannelId,
        ok: bool,
        session: &mut Session,
    ) -> Result<(), BastionError> {
        if ok {
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn refused(&self, stage: &str, reason: &str) {
        let g = &self.conn.grant;
        self.conn
            .shared
            .refused(stage, &g.user, self.conn.peer, Some(g.request.id), reason)
            .await;
    }
}

/// Waits for the upstream connection of this nested server.
async fn upstream_of(mut dialled: watch::Receiver<Dialled>) -> Result<Arc<Upstream>, String> {
    match dialled.wait_for(|d| d.is_some()).await {
        Ok(d) => d
            .clone()
            .unwrap_or_else(|| Err("jitgate: no upstream".into())),
        Err(_) => Err("jitgate: the upstream connection was abandoned".into()),
    }
}

fn failure(code: u32, reason: String) -> ChannelOpenFailure {
    ChannelOpenFailure::Other { code, reason }
}

/// What a session channel's task needs from its connection.
struct ChannelCtx {
    shared: Arc<Shared>,
    grant: Grant,
    control: ControlHandle,
    dialled: watch::Receiver<Dialled>,
    handle: server::Handle,
    session_id: String,
}

/// One session channel: open upstream, record, relay, record the end.
async fn session_channel(cx: ChannelCtx, channel: Channel<Msg>, reply: ChannelOpenHandle) {
    let ChannelCtx {
        shared,
        grant,
        control,
        dialled,
        handle,
        session_id,
    } = cx;
    let up = match upstream_of(dialled).await {
        Ok(up) => up,
        Err(msg) => {
            reply.reject(failure(2, msg)).await;
            return;
        }
    };
    let target = match up.channel_open_session().await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!(
                "jitgate: {} refused a session channel: {e}",
                grant.host.name
            );
            reply.reject(failure(2, msg)).await;
            return;
        }
    };
    let record = model::Session {
        id: session_id.clone(),
        request_id: grant.request.id,
        user: grant.user.clone(),
        host: grant.host.name.clone(),
        login: grant.request.login.clone(),
        started_at: now(),
        ended_at: None,
        exit_status: None,
        bytes_up: 0,
        bytes_down: 0,
        recording: None,
    };
    // Fails closed: a session that cannot be recorded does not start.
    if let Err(e) = shared.ctx.store.start_session(record).await {
        tracing::error!(error = %e, "cannot record a session start");
        let _ = target.close().await;
        reply
            .reject(failure(2, "jitgate: cannot record the session".into()))
            .await;
        return;
    }
    reply.accept().await;
    tracing::info!(session = %session_id, user = %grant.user, host = %grant.host.name, "session started");
    let outcome = relay::relay(
        channel,
        handle,
        target,
        &grant.rule,
        Box::new(relay::NoTap),
        control.subscribe(),
    )
    .await;
    tracing::info!(
        session = %session_id,
        exit = ?outcome.exit_status,
        up = outcome.bytes_up,
        down = outcome.bytes_down,
        closed_by = ?outcome.closed_by,
        "session ended"
    );
    if let Err(e) = shared
        .ctx
        .store
        .end_session(
            &session_id,
            now(),
            outcome.exit_status.map(|s| s as i32),
            outcome.bytes_up,
            outcome.bytes_down,
            outcome.recording_sha256.as_deref(),
        )
        .await
    {
        tracing::error!(session = %session_id, error = %e, "cannot record a session end");
    }
}

/// A `-L` forward through the nested connection, when the rule allows it.
async fn forward_channel(
    dialled: watch::Receiver<Dialled>,
    channel: Channel<Msg>,
    reply: ChannelOpenHandle,
    host: String,
    port: u32,
    from: (String, u32),
) {
    let up = match upstream_of(dialled).await {
        Ok(up) => up,
        Err(msg) => {
            reply.reject(failure(2, msg)).await;
            return;
        }
    };
    match up
        .channel_open_direct_tcpip(host, port, from.0, from.1)
        .await
    {
        Ok(target) => {
            reply.accept().await;
            let mut a = channel.into_stream();
            let mut b = target.into_stream();
            let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
        }
        Err(e) => reply.reject(failure(2, format!("jitgate: {e}"))).await,
    }
}

impl server::Handler for Inner {
    type Error = BastionError;

    async fn auth_publickey(
        &mut self,
        _user: &str,
        _key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.refused(
            "inner",
            "a plain public key; only jitgate certificates are accepted",
        )
        .await;
        Ok(Auth::reject())
    }

    async fn auth_openssh_certificate(
        &mut self,
        login: &str,
        cert: &Certificate,
    ) -> Result<Auth, Self::Error> {
        let grant = &self.conn.grant;
        let checked = authorize(&self.conn.shared, &grant.user, cert)
            .await
            .and_then(|_| access::check_login(grant, cert.serial(), login));
        match checked {
            Ok(()) => {
                self.logged_in = true;
                tracing::info!(user = %grant.user, login, host = %grant.host.name, connection = %self.conn_id, "logged in");
                Ok(Auth::Accept)
            }
            Err(refusal) => {
                self.refused("inner", &refusal.0).await;
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if !self.logged_in || self.conn.control.is_closed() {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        let cx = ChannelCtx {
            shared: Arc::clone(&self.conn.shared),
            grant: self.conn.grant.clone(),
            control: self.conn.control.clone(),
            dialled: self.dialled.clone(),
            handle: session.handle(),
            session_id: random_id(),
        };
        tokio::spawn(session_channel(cx, channel, reply));
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if !self.logged_in || !self.rule().allow_port_forwarding {
            self.refused(
                "forwarding",
                &format!("port forwarding to {host_to_connect}:{port_to_connect} is not allowed by the access rule"),
            )
            .await;
            reply
                .reject(failure(
                    1,
                    "jitgate: port forwarding is not allowed by the access rule".into(),
                ))
                .await;
            return Ok(());
        }
        tokio::spawn(forward_channel(
            self.dialled.clone(),
            channel,
            reply,
            host_to_connect.to_string(),
            port_to_connect,
            (originator_address.to_string(), originator_port),
        ));
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.refused(
            "forwarding",
            &format!("remote forwarding of {address}:{port} is not supported"),
        )
        .await;
        Ok(false)
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = allows(self.rule(), Request::Pty);
        self.reply(channel, ok, session)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _protocol: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refused("x11", "X11 forwarding is not allowed").await;
        self.reply(channel, allows(self.rule(), Request::X11), session)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = allows(self.rule(), Request::Env(name));
        self.reply(channel, ok, session)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.reply(channel, allows(self.rule(), Request::Shell), session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _command: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A command the guardrails block still gets "success": the relay answers it with
        // the block message and exit status 126.
        self.reply(channel, allows(self.rule(), Request::Exec), session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = allows(self.rule(), Request::Subsystem(name));
        if !ok {
            self.refused(
                "subsystem",
                &format!("subsystem {name:?} is not allowed by the access rule"),
            )
            .await;
        }
        self.reply(channel, ok, session)
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        _cols: u32,
        _rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.reply(channel, true, session)
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.refused("agent", "agent forwarding is not supported")
            .await;
        Ok(allows(self.rule(), Request::Agent))
    }
}
