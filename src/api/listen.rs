//! Accepting API connections, plain or TLS, so that clients that connect and send nothing
//! cannot pile up: the TLS handshake and each request's headers have a deadline, and the
//! connections served at once are bounded. The file descriptors they hold are the bastion's
//! too, in the same process.
//!
//! Only HTTP/1 is served: hyper-util's automatic version detection waits for a connection's
//! first bytes with no deadline at all, and no client of ours speaks HTTP/2.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

/// What a connection may hold of the API before it sends a request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For the TLS handshake.
    pub handshake: Duration,
    /// For a request's headers: from the connection (or the handshake) on, and on a
    /// connection kept alive, from each response on.
    pub headers: Duration,
    /// For a signed call's body, once its headers are in (read by `authenticate`).
    pub body: Duration,
    /// Connections served at once.
    pub connections: u32,
}

impl Limits {
    /// Ample for our CLI on a slow network; short enough that idle sockets do not pile up.
    pub const API: Limits = Limits {
        handshake: Duration::from_secs(10),
        headers: Duration::from_secs(10),
        body: Duration::from_secs(10),
        connections: 1024,
    };
}

/// How long a shutdown waits for requests in flight: they finish, but a client stalled in
/// the middle of its body cannot hold the server open.
pub(super) const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, lets the
/// requests in flight finish, closes idle connections and returns when all have ended.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    // Past the bound, a connection is not accepted: it waits in the kernel's backlog, holding
    // no descriptor of ours, and is served as soon as a slot frees (a connection that sends
    // nothing, or stalls in its headers or a signed call's body, ends at its deadline).
    // Accepting it only to close it would spend a descriptor and a system call per attempt,
    // and turn away callers a moment's wait serves.
    let slots = Arc::new(Semaphore::new(limits.connections as usize));
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: the listener stays, and is tried again.
                    tracing::error!(error = %e, "cannot accept an API connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let conn = connection(tcp, tls.clone(), app.clone(), limits, stopping.clone());
        tokio::spawn(
            async move {
                conn.await;
                drop(slot);
            }
            .instrument(tracing::debug_span!("api", %peer)),
        );
    }
    drop(listener);
    stop.send_replace(true);
    // Each connection holds its slot until it ends: every slot back, every connection done.
    let all = slots.acquire_many(limits.connections);
    let _ = tokio::time::timeout(DRAIN, all).await;
}

/// One connection: the TLS handshake if any, then HTTP/1 until the client or the shutdown
/// ends it.
async fn connection(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) {
    let served = match tls {
        None => http(tcp, app, limits, stopping).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(limits.handshake, acceptor.accept(tcp));
            let handshake = tokio::select! {
                done = handshake => done,
                _ = stopping.wait_for(|s| *s) => return,
            };
            match handshake {
                Ok(Ok(stream)) => http(stream, app, limits, stopping).await,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("no TLS handshake within the deadline");
                    return;
                }
            }
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "API connection ended with an error");
    }
}

async fn http<I>(
    io: I,
    app: Router,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) -> hyper::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.headers)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(conn);
    tokio::select! {
        done = conn.as_mut() => return done,
        // Finishes the request in flight, if any, then closes.
        _ = stopping.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    conn.await
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn past_the_bound_a_connection_waits_for_a_slot() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/healthz", get(|| async { "ok\n" }));
        let limits = Limits {
            connections: 1,
            ..Limits::API
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, None, limits, async {
            let _ = stopped.await;
        }));
        let idle = TcpStream::connect(addr).await.unwrap();
        let mut waiting = TcpStream::connect(addr).await.unwrap();
        waiting
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: jitgate\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let early =
            tokio::time::timeout(Duration::from_millis(300), waiting.read_to_end(&mut answer))
                .await;
        assert!(
            early.is_err(),
            "served past the bound: {:?}",
            String::from_utf8_lossy(&answer)
        );
        // The idle connection ends: its slot goes to the one waiting.
        drop(idle);
        tokio::time::timeout(Duration::from_secs(10), waiting.read_to_end(&mut answer))
            .await
            .expect("served once a slot is free")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        drop(stop);
        server.await.unwrap();
    }
}
