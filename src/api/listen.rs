//! Accepting API connections, plain or TLS, so that clients that connect and send nothing
//! cannot pile up: the TLS handshake and each request's headers have a deadline, and the
//! connections served at once are bounded. The file descriptors they hold are the bastion's
//! too, in the same process.
//!
//! Only HTTP/1 is served: hyper-util's automatic version detection waits for a connection's
//! first bytes with no deadline at all, and no client of ours speaks HTTP/2.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Sleep;
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
    /// For a response to make any progress into a client that has stopped reading.
    pub writes: Duration,
    /// Connections served at once.
    pub connections: u32,
}

impl Limits {
    /// Ample for our CLI on a slow network; short enough that idle sockets do not pile up.
    pub const API: Limits = Limits {
        handshake: Duration::from_secs(10),
        headers: Duration::from_secs(10),
        writes: Duration::from_secs(10),
        connections: 1024,
    };
}

/// How long a signed call's body may take once its headers are in (`authenticate`).
pub const BODY: Duration = Duration::from_secs(10);

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
    // nothing, stalls in its headers or a signed call's body, or stops reading what it is
    // sent, ends at its deadline).
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
        .serve_connection(
            TokioIo::new(WriteDeadline::new(io, limits.writes)),
            TowerToHyperService::new(app),
        );
    tokio::pin!(conn);
    tokio::select! {
        done = conn.as_mut() => return done,
        // Finishes the request in flight, if any, then closes.
        _ = stopping.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    conn.await
}

/// A connection's stream whose writes fail once they have made no progress for `limit`. A
/// client that pipelines requests and reads none of the answers would otherwise hold its
/// slot for good: hyper reads no request while a response waits to go out, so the header
/// deadline never starts, and it has no deadline on writing.
struct WriteDeadline<I> {
    io: I,
    limit: Duration,
    /// Since the first write that could not go out.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<I> WriteDeadline<I> {
    fn new(io: I, limit: Duration) -> WriteDeadline<I> {
        WriteDeadline {
            io,
            limit,
            stalled: None,
        }
    }

    /// What a write that made no progress gives: wait, or the error once `limit` is past.
    fn waiting<T>(
        &mut self,
        cx: &mut Context<'_>,
        done: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if done.is_ready() {
            self.stalled = None;
            return done;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {} s", limit.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteDeadline<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let done = Pin::new(&mut this.io).poll_write(cx, buf);
        this.waiting(cx, done)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let done = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.waiting(cx, done)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let done = Pin::new(&mut this.io).poll_flush(cx);
        this.waiting(cx, done)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let done = Pin::new(&mut this.io).poll_shutdown(cx);
        this.waiting(cx, done)
    }
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
