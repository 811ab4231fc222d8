//! The nested SSH server inside one `direct-tcpip` channel: it presents a host certificate
//! for the target's name, takes the engineer's second login (same certificate, approved
//! login), and relays each session channel to one upstream connection to the target.
//!
//! For the jump's own request the upstream connection is dialled as soon as the channel
//! opens, alongside the nested handshake; a login under another request, login or rule dials
//! again (`dialer::Dialer`). A session channel waits for it, and a target that cannot be
//! reached turns into a channel-open failure whose text the engineer's `ssh` prints. A
//! nested server whose login has not succeeded within `LOGIN_GRACE` is closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::server::{self, Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, Disconnect, Pty};
use ssh_key::Certificate;
use tokio::sync::watch;

use super::access::{self, Grant};
use super::bridge::Bridge;
use super::dialer::{Dialer, Dialled, upstream_of};
use super::keys::random_id;
use super::outer::{NO_CERT_CHECKED, authorize};
use super::relay;
use super::requests::{Request, allows};
use super::sessions::{ControlHandle, Registration, Slot, closed};
use super::upstream::{FORWARD_REPLY_WAIT, ToEngineer, remote_forward};
use super::{BastionError, LOGIN_GRACE, Shared};
use crate::config::Host;
use crate::model::{NewAuditEvent, now};

mod channels;
use channels::{ChannelCtx, SetupEntry, Setups, failure, forward_channel, session_channel};

/// What one nested server knows about its outer connection.
pub struct InnerConn {
    pub shared: Arc<Shared>,
    /// The outer login's grant: who the engineer is.
    pub outer: Grant,
    /// The inventory host this channel leads to.
    pub host: Host,
    pub peer: SocketAddr,
    /// The outer connection's control: when it closes, this connection closes too.
    pub outer_control: ControlHandle,
}

/// Runs the nested server over `stream` until it ends or is told to close.
pub async fn serve(stream: Bridge, conn: InnerConn) {
    let shared = Arc::clone(&conn.shared);
    let (dial_tx, dial_rx) = watch::channel::<Dialled>(None);
    let dialer = Arc::new(Dialer {
        shared: Arc::clone(&shared),
        host: conn.host.clone(),
        user: conn.outer.user.clone(),
        conn_id: random_id(),
        tx: Arc::new(dial_tx),
        current: Mutex::new(None),
        engineer: Arc::new(ToEngineer::default()),
    });
    // The usual case: the jump's own request. Dial now, alongside the nested handshake.
    if conn.host.name == conn.outer.host.name {
        dialer.dial(&conn.outer, &conn.outer.request.login);
    }
    let config = match shared.keys.server_config(
        &shared.ctx.ca,
        std::slice::from_ref(&conn.host.name),
        now().max(0) as u64,
        false,
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot mint a host certificate");
            dialer.abort();
            return;
        }
    };
    let (control, mut control_rx) = ControlHandle::new();
    let mut outer_rx = conn.outer_control.subscribe();
    let authed = Arc::new(AtomicBool::new(false));
    let handler = Inner {
        conn,
        control: control.clone(),
        dialer: Arc::clone(&dialer),
        dialled: dial_rx.clone(),
        grant: None,
        registration: None,
        sessions: Arc::new(AtomicUsize::new(0)),
        next_session: AtomicU64::new(1),
        authed: Arc::clone(&authed),
        setups: Arc::default(),
        attempted: false,
        cert_checked: false,
    };
    // A client that never sends its banner must not hold the slot (and the target
    // connection dialled for it) either.
    let started = tokio::time::timeout(
        LOGIN_GRACE,
        russh::server::run_stream(config, stream, handler),
    );
    match started.await.unwrap_or_else(|_| {
        Err(BastionError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no SSH banner within the login grace time",
        )))
    }) {
        Ok(mut running) => {
            let handle = running.handle();
            let _ = dialer.engineer.handle.set(handle.clone());
            let reason = tokio::select! {
                _ = &mut running => None,
                reason = closed(&mut control_rx) => Some(reason),
                reason = closed(&mut outer_rx) => {
                    // Let this connection's relays print the notice too.
                    control.close(&reason);
                    Some(reason)
                }
                () = super::login_grace(LOGIN_GRACE, &authed) => {
                    tracing::info!(host = %dialer.host.name, "no nested login within the login grace time");
                    Some("login took too long".to_string())
                }
            };
            if let Some(reason) = reason {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = handle
                    .disconnect(Disconnect::ByApplication, reason, "en".into())
                    .await;
                let _ = tokio::time::timeout(Duration::from_secs(2), running).await;
            }
        }
        Err(e) => tracing::debug!(error = %e, "nested handshake failed"),
    }
    dialer.abort();
    let up = dial_rx.borrow().clone();
    if let Some(Ok(up)) = up {
        let _ = up.disconnect(Disconnect::ByApplication, "", "en").await;
    }
}

struct Inner {
    conn: InnerConn,
    /// This connection's own control, registered under the request of its login.
    control: ControlHandle,
    dialer: Arc<Dialer>,
    dialled: watch::Receiver<Dialled>,
    /// Set by the nested login.
    grant: Option<Grant>,
    registration: Option<Registration>,
    /// Session channels open on this connection (at most `MAX_SESSIONS`).
    sessions: Arc<AtomicUsize>,
    /// Numbers this connection's sessions: their ids are `<connection id>-<n>`, so the id
    /// the target certificate names (`Dialer::conn_id`) leads to them in the store.
    next_session: AtomicU64,
    /// Set by the nested login: `LOGIN_GRACE` no longer applies.
    authed: Arc<AtomicBool>,
    /// What each open session channel asked for so far, as its relay lets it through: an
    /// entry from the channel's open to the end of its task (russh tells the handler of no
    /// close the bastion sent first).
    setups: Setups,
    /// Whether the engineer's client tried to log in (see `Drop`).
    attempted: bool,
    /// Whether a certificate reached `authorize`.
    cert_checked: bool,
}

/// As for the outer login (`outer::NO_CERT_CHECKED`): a nested login that ends without any
/// certificate reaching jitgate's checks (russh refused an expired one first) is audited
/// once on its way out.
impl Drop for Inner {
    fn drop(&mut self) {
        if !self.attempted || self.cert_checked || self.authed.load(Ordering::Acquire) {
            return;
        }
        let (user, request, peer) = (
            self.conn.outer.user.clone(),
            self.conn.outer.request.id,
            self.conn.peer,
        );
        self.conn.shared.audit_later(move |shared| async move {
            shared
                .refused("inner", &user, peer, Some(request), NO_CERT_CHECKED)
                .await;
        });
    }
}

/// Session channels one connection may have open at once: OpenSSH's `MaxSessions` default.
/// Each holds a relay, an upstream channel, a recording and bounded buffers, so an
/// engineer cannot make the bastion hold more than this many per connection.
pub const MAX_SESSIONS: usize = 10;

impl Inner {
    /// Whether the logged-in request's rule allows `req`; nothing is allowed before login.
    fn allows(&self, req: Request<'_>) -> bool {
        self.grant.as_ref().is_some_and(|g| allows(&g.rule, req))
    }

    /// Whether `channel`'s relay lets this request through (`relay::Setup`); never for a
    /// channel that is not an open session channel.
    fn setup(&self, channel: ChannelId, request: impl FnOnce(&mut relay::Setup) -> bool) -> bool {
        let mut setups = self.setups.lock().unwrap_or_else(|e| e.into_inner());
        setups.get_mut(&channel.into()).is_some_and(request)
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

    /// Audits forwarding the rule allowed (`bastion.forwarding`), which no recording shows:
    /// `kind` is `local` (`-L`, `-D`, `-W`), `remote` (`-R`), `x11` or `agent`. The event is
    /// written beside the session, not in its loop: a SOCKS proxy (`-D`) opens a channel per
    /// connection, and none should wait on the store.
    fn forwarding(&self, kind: &str, what: &str) {
        let Some(g) = self.grant.as_ref() else {
            return;
        };
        tracing::info!(user = %g.user, host = %g.host.name, request = g.request.id, kind, what, "forwarding");
        let event = NewAuditEvent::new(now(), "bastion.forwarding", &g.user)
            .request(g.request.id)
            .with("kind", kind)
            .with("host", &g.host.name)
            .with("what", what)
            .with("peer", self.conn.peer);
        let store = Arc::clone(&self.conn.shared.ctx.store);
        tokio::spawn(async move {
            if let Err(e) = store.append_audit(event).await {
                tracing::error!(error = %e, "cannot audit a forwarding");
            }
        });
    }

    async fn refused(&self, stage: &str, reason: &str) {
        let g = self.grant.as_ref().unwrap_or(&self.conn.outer);
        self.conn
            .shared
            .refused(stage, &g.user, self.conn.peer, Some(g.request.id), reason)
            .await;
    }
}

impl server::Handler for Inner {
    type Error = BastionError;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        self.attempted = true;
        Ok(Auth::reject())
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        _key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.attempted = true;
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
        self.cert_checked = true;
        let user = self.conn.outer.user.clone();
        let mark = self.conn.shared.registry.lag_mark();
        let checked = authorize(&self.conn.shared, &user, cert)
            .await
            .and_then(|g| access::check_login(&g, &self.conn.host.name, login).map(|()| g));
        match checked {
            Ok(grant) => {
                tracing::info!(user = %grant.user, login, host = %grant.host.name, request = grant.request.id, "logged in");
                self.registration = Some(self.conn.shared.register(
                    grant.request.id,
                    self.control.clone(),
                    mark,
                ));
                self.control.close_at(grant.until, grant.end_notice());
                self.dialer.dial(&grant, login);
                self.grant = Some(grant);
                self.authed.store(true, Ordering::Release);
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
        let Some(grant) = self.grant.clone().filter(|_| !self.control.is_closed()) else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let Some(slot) = Slot::take(&self.sessions, MAX_SESSIONS) else {
            self.refused(
                "session",
                &format!("more than {MAX_SESSIONS} session channels on one connection"),
            )
            .await;
            reply
                .reject(failure(
                    2,
                    format!(
                        "jitgate: at most {MAX_SESSIONS} sessions per connection; open another connection"
                    ),
                ))
                .await;
            return Ok(());
        };
        let cx = ChannelCtx {
            shared: Arc::clone(&self.conn.shared),
            grant,
            control: self.control.clone(),
            dialled: self.dialled.clone(),
            handle: session.handle(),
            stalls: Arc::clone(&self.dialer.engineer.stalls),
            session_id: format!(
                "{}-{}",
                self.dialer.conn_id,
                self.next_session.fetch_add(1, Ordering::Relaxed)
            ),
        };
        let live = self.conn.shared.tasks.enter();
        let setup = SetupEntry::open(&self.setups, channel.id().into());
        tokio::spawn(async move {
            session_channel(cx, channel, reply).await;
            drop(setup);
            drop(slot);
            drop(live);
        });
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
        if !self.allows(Request::PortForwarding) {
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
        self.forwarding(
            "local",
            &format!(
                "to {host_to_connect}:{port_to_connect} from {originator_address}:{originator_port}"
            ),
        );
        tokio::spawn(forward_channel(
            self.dialled.clone(),
            channel,
            reply,
            (host_to_connect.to_string(), port_to_connect),
            (originator_address.to_string(), originator_port),
            Arc::clone(&self.dialer.engineer.stalls),
        ));
        Ok(())
    }

    /// `ssh -R`: the target listens, and its connections come back through the bastion
    /// (`upstream::ToEngineer`). The nested session waits for the target's answer, at most
    /// `FORWARD_REPLY_WAIT`: it reads nothing else meanwhile, and the upstream session may
    /// itself be waiting for this one (`flow`'s circle) while a paused download holds it.
    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        if !self.allows(Request::PortForwarding) {
            self.refused(
                "forwarding",
                &format!(
                    "remote port forwarding of {address}:{port} is not allowed by the access rule"
                ),
            )
            .await;
            return Ok(false);
        }
        let Ok(up) = upstream_of(self.dialled.clone()).await else {
            return Ok(false);
        };
        match remote_forward(up, address, *port).await {
            Ok(bound) => {
                // A reply names the port only when the target chose it.
                if *port == 0 {
                    *port = bound;
                }
                self.dialer.engineer.forwarded(address, *port);
                self.forwarding("remote", &format!("listen on {address}:{port}"));
                Ok(true)
            }
            Err(e) => {
                tracing::info!(host = %self.conn.host.name, address, port = *port, error = %e, "no remote forward");
                Ok(false)
            }
        }
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.dialer.engineer.unforwarded(address, port);
        let Ok(up) = upstream_of(self.dialled.clone()).await else {
            return Ok(false);
        };
        let asked = up.cancel_tcpip_forward(address, port);
        let answer = tokio::time::timeout(FORWARD_REPLY_WAIT, asked).await;
        Ok(answer.is_ok_and(|a| a.is_ok()))
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
        let ok = self.allows(Request::Pty) && self.setup(channel, relay::Setup::pty);
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
        let ok = self.allows(Request::X11);
        if ok {
            self.forwarding("x11", "X11 display");
        } else {
            self.refused("x11", "X11 forwarding is not allowed by the access rule")
                .await;
        }
        self.reply(channel, ok, session)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = self.allows(Request::Env(name));
        self.reply(channel, ok, session)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = self.allows(Request::Shell) && self.setup(channel, relay::Setup::start);
        self.reply(channel, ok, session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        command: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A command the guardrails block still gets "success": the relay answers it with
        // the block message and exit status 126.
        let command = String::from_utf8_lossy(command);
        let ok = self.allows(Request::Exec(&command));
        if !ok {
            self.refused(
                "subsystem",
                "an exec of sftp-server is sftp, which the access rule does not allow",
            )
            .await;
        }
        let ok = ok && self.setup(channel, relay::Setup::start);
        self.reply(channel, ok, session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = self.allows(Request::Subsystem(name));
        if !ok {
            self.refused(
                "subsystem",
                &format!("subsystem {name:?} is not allowed by the access rule"),
            )
            .await;
        }
        let ok = ok && self.setup(channel, relay::Setup::start);
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
        let ok = self.allows(Request::Agent);
        if ok {
            self.forwarding("agent", "SSH agent");
        } else {
            self.refused(
                "agent",
                "agent forwarding is not allowed by the access rule",
            )
            .await;
        }
        Ok(ok)
    }
}
