//! The SSH bastion: the only user of russh.
//!
//! An engineer's stock `ssh -J alice@bastion root@db1` authenticates to the outer server
//! (`outer`) with a jitgate user certificate, then opens a `direct-tcpip` channel to `db1:22`.
//! Inside that channel the bastion runs a second SSH server (`inner`) that presents a host
//! certificate for `db1`; the engineer logs in again with the same certificate as the approved
//! login. The bastion dials the real target (`upstream`) with a fresh target-CA certificate and
//! relays every session channel (`relay`). Live connections are bound to their request
//! (`sessions`): revocation (`revocations`), expiry and shutdown close them after a notice.
//!
//! `run(listener, ctx, shutdown)` is the whole server, so tests bind port 0 and drive it.

pub mod access;
mod bridge;
mod dialer;
mod flow;
pub mod gate;
mod guard;
mod inner;
mod keys;
mod outer;
mod record;
pub mod relay;
pub mod requests;
mod revocations;
pub mod sessions;
mod shards;
mod tcp;
mod tunnel;
mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use russh::Disconnect;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::Instrument;

pub use inner::MAX_SESSIONS;
pub use outer::MAX_NESTED;
pub use record::seal_cut_off;

use crate::ca::{CaError, CaKeys};
use crate::config::Config;
use crate::guardrail::Guardrails;
use crate::hub::Hub;
use crate::model::{NewAuditEvent, now};
use crate::recorder::{Masker, Recorder};
use crate::store::{Store, StoreError};
use crate::throttle;
use keys::HostKeys;
use sessions::{ControlHandle, Registry, Tasks, closed};
use upstream::ClientConfigs;

/// Everything the bastion needs from the rest of jitgate.
pub struct BastionContext {
    pub config: Arc<Config>,
    pub ca: Arc<CaKeys>,
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
}

#[derive(Debug, thiserror::Error)]
pub enum BastionError {
    #[error("ssh: {0}")]
    Ssh(#[from] russh::Error),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("certificate: {0}")]
    Ca(#[from] CaError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Bastion-wide state shared by every connection.
pub(crate) struct Shared {
    pub ctx: Arc<BastionContext>,
    pub keys: HostKeys,
    pub clients: ClientConfigs,
    pub registry: Arc<Registry>,
    /// Connection, nested-server and session tasks still running.
    pub tasks: Arc<Tasks>,
    /// Every session channel is recorded; without a recorder no session starts.
    pub recorder: Result<Recorder, String>,
    /// The configured guardrail sets, compiled once; without them no session starts.
    pub guardrails: Result<Arc<Guardrails>, String>,
    /// Masks secrets in command text before it is indexed, audited or alerted.
    pub masker: Result<Masker, String>,
    /// Set once the grace period is over: every connection closes.
    pub stopping: watch::Sender<bool>,
    /// How many refusals reach the audit log.
    refusals: throttle::RefusalThrottle,
}

impl Shared {
    fn new(ctx: Arc<BastionContext>) -> Shared {
        Shared {
            keys: HostKeys::new(ctx.config.ca.clock_skew),
            clients: ClientConfigs::new(),
            registry: Arc::new(Registry::default()),
            tasks: Arc::new(Tasks::default()),
            recorder: Recorder::new(
                ctx.config.server.recordings_dir.clone(),
                &ctx.config.recordings,
            )
            .map_err(|e| e.to_string()),
            guardrails: Guardrails::compile(&ctx.config.guardrails)
                .map(Arc::new)
                .map_err(|e| e.to_string()),
            masker: Masker::new(&ctx.config.recordings.mask).map_err(|e| e.to_string()),
            stopping: watch::channel(false).0,
            // One connection may try several keys: a larger burst than the API's.
            refusals: throttle::RefusalThrottle::new("bastion.refused", 20),
            ctx,
        }
    }

    pub fn config(&self) -> &Config {
        &self.ctx.config
    }

    /// Runs `audit` in a task of its own, for code that cannot wait (a handler's `Drop`):
    /// the task counts as live before this returns, so a shutdown waits for it.
    pub fn audit_later<F>(self: &Arc<Self>, audit: impl FnOnce(Arc<Shared>) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let live = self.tasks.enter();
        let audit = audit(Arc::clone(self));
        rt.spawn(async move {
            audit.await;
            drop(live);
        });
    }

    /// Logs and audits a refusal (`bastion.refused`) of an authenticated engineer.
    pub async fn refused(
        &self,
        stage: &str,
        user: &str,
        peer: SocketAddr,
        request: Option<i64>,
        reason: &str,
    ) {
        self.audit_refusal(stage, Some(user), None, peer, request, reason)
            .await;
    }

    /// Logs and audits a refusal before authentication: the actor is `unknown`, and the
    /// user name the client typed is only `claimed_user`. `request` must come from a
    /// certificate the user CA signed (`CaKeys::request_of_user_cert`).
    pub async fn refused_unauthenticated(
        &self,
        stage: &str,
        claimed_user: &str,
        peer: SocketAddr,
        request: Option<i64>,
        reason: &str,
    ) {
        self.audit_refusal(stage, None, Some(claimed_user), peer, request, reason)
            .await;
    }

    /// Every refusal is traced; the audit log gets them through `refusals` (a flood is
    /// counted, not written one by one).
    async fn audit_refusal(
        &self,
        stage: &str,
        user: Option<&str>,
        claimed_user: Option<&str>,
        peer: SocketAddr,
        request: Option<i64>,
        reason: &str,
    ) {
        tracing::warn!(stage, user, claimed_user, %peer, request, reason, "refused");
        let actor = user.filter(|u| !u.is_empty()).unwrap_or("unknown");
        // A certificate the user CA really signed names its request: its refusals (a revoked
        // or expired engineer still trying) get a bucket of their own, so that a flood of
        // foreign keys cannot turn them into a bare count.
        let bucket = if user.is_none() { request } else { None };
        let suppressed = match self
            .refusals
            .admit(actor, bucket, std::time::Instant::now())
        {
            throttle::Admit::Write { suppressed } => suppressed,
            throttle::Admit::Skip { first } => {
                if first {
                    tracing::warn!(
                        actor,
                        "refusals arrive too fast; counting them instead of auditing each"
                    );
                }
                return;
            }
        };
        let mut event = NewAuditEvent::new(now(), "bastion.refused", actor)
            .with("stage", stage)
            .with("peer", peer)
            .with("reason", reason);
        if let Some(claimed) = claimed_user {
            event = event.with("claimed_user", claimed);
        }
        if suppressed > 0 {
            event = event.with("suppressed", suppressed);
        }
        if let Some(id) = request {
            event = event.request(id);
        }
        if let Err(e) = self.ctx.store.append_audit(event).await {
            tracing::error!(error = %e, "cannot audit a refusal");
        }
    }
}

/// Serves SSH on `listener` until `shutdown` resolves; then stops accepting, gives live
/// sessions `server.shutdown_grace` with a notice, closes them and waits for their records.
pub async fn run(
    listener: TcpListener,
    ctx: Arc<BastionContext>,
    shutdown: impl Future<Output = ()>,
) {
    let shared = Arc::new(Shared::new(ctx));
    // Refusals counted while throttled reach the log as the bastion runs, and once the last
    // connection has ended.
    let server = serve(Arc::clone(&shared), listener, shutdown);
    shared
        .refusals
        .flushing(&*shared.ctx.store, now, server)
        .await;
}

/// `run`, but for the refusals counted while throttled.
async fn serve(shared: Arc<Shared>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let revocations = tokio::spawn(revocations::watch_revocations(Arc::clone(&shared)));
    let shards = shards::Shards::per_core()
        .inspect_err(|e| {
            tracing::warn!(error = %e, "cannot start SSH shard threads; serving SSH on the main runtime");
        })
        .ok();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let shared = Arc::clone(&shared);
                    let live = shared.tasks.enter();
                    let span = tracing::info_span!("ssh", %peer);
                    let socket = match tcp::hand_over(socket) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot hand over a connection");
                            continue;
                        }
                    };
                    let task = async move {
                        match TcpStream::from_std(socket) {
                            Ok(socket) => connection(shared, socket, peer).await,
                            Err(e) => tracing::error!(error = %e, "cannot take over a connection"),
                        }
                        drop(live);
                    }.instrument(span);
                    match &shards {
                        Some(shards) => shards.spawn(task),
                        None => drop(tokio::spawn(task)),
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(listener);
    let grace = shared.config().server.shutdown_grace;
    if !shared.registry.is_empty() {
        shared.registry.notice_all(&format!(
            "the bastion is shutting down; this session closes in {}",
            crate::config::format_duration(grace)
        ));
        // Checked: a grace past what the clock can hold means no deadline, not a panic.
        let deadline = tokio::time::Instant::now().checked_add(grace);
        while !shared.registry.is_empty()
            && deadline.is_none_or(|d| tokio::time::Instant::now() < d)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    shared.stopping.send_replace(true);
    // Every connection, nested server and session holds a task guard: this returns once the
    // last one has written its records.
    let _ = tokio::time::timeout(Duration::from_secs(10), shared.tasks.idle()).await;
    revocations.abort();
    drop(shards);
}

/// How long a client may take from connecting to being authenticated (OpenSSH's
/// `LoginGraceTime`), on the outer server and on each nested one (which may already hold a
/// connection logged in to the target).
const LOGIN_GRACE: Duration = Duration::from_secs(60);

/// Completes when `grace` is over and `authed` is still false.
async fn login_grace(grace: Duration, authed: &AtomicBool) {
    tokio::time::sleep(grace).await;
    if authed.load(Ordering::Acquire) {
        std::future::pending::<()>().await;
    }
}

/// One outer connection, from the SSH banner to its end.
async fn connection(shared: Arc<Shared>, socket: TcpStream, peer: SocketAddr) {
    let (control, mut control_rx) = ControlHandle::new();
    let mut principals = vec![shared.config().server.hostname.clone()];
    if let Ok(local) = socket.local_addr() {
        principals.push(local.ip().to_string());
    }
    let config =
        match shared
            .keys
            .server_config(&shared.ctx.ca, &principals, now().max(0) as u64, true)
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot mint the bastion's host certificate");
                return;
            }
        };
    let authed = Arc::new(AtomicBool::new(false));
    let handler = outer::Outer::new(
        Arc::clone(&shared),
        peer,
        control.clone(),
        Arc::clone(&authed),
    );
    // A client that never sends its banner must not hold the connection forever.
    let started = tokio::time::timeout(
        LOGIN_GRACE,
        russh::server::run_stream(config, tcp::buffered(tcp::Handshake::new(socket)), handler),
    );
    let mut running = match started.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!("no SSH banner within the login grace time");
            return;
        }
    };
    let handle = running.handle();
    let mut stopping = shared.stopping.subscribe();
    tokio::select! {
        r = &mut running => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended");
            }
            return;
        }
        _ = stopping.wait_for(|s| *s) => {
            control.close("the bastion is shutting down");
        }
        _ = closed(&mut control_rx) => {}
        () = login_grace(LOGIN_GRACE, &authed) => {
            tracing::info!("not authenticated within the login grace time");
            control.close("authentication took too long");
        }
    }
    let reason = control_rx.borrow().close.clone().unwrap_or_default();
    // The relays print the notice and close their channels at once; then the whole connection.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _ = handle
        .disconnect(Disconnect::ByApplication, reason, "en".into())
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), running).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_login_grace_ends_only_a_connection_not_logged_in() {
        let grace = Duration::from_millis(20);
        let waiting = AtomicBool::new(false);
        tokio::time::timeout(Duration::from_secs(5), login_grace(grace, &waiting))
            .await
            .expect("not logged in: the grace time ends it");
        let logged_in = AtomicBool::new(false);
        let logs_in = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            logged_in.store(true, Ordering::Release);
        };
        let (_, ended) = tokio::join!(
            logs_in,
            tokio::time::timeout(Duration::from_millis(200), login_grace(grace, &logged_in))
        );
        assert!(
            ended.is_err(),
            "logged in within the grace time: never ends"
        );
    }
}
