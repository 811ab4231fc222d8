//! The API: the only place with HTTP and JSON. axum routes, SSHSIG-signed calls, DTOs,
//! Prometheus metrics, webhooks, and the signed client the CLI uses.
//!
//! Every route but `/healthz` and `/metrics` passes through `authenticate`, which verifies
//! the signature and hands the handler a `Caller`.

pub mod auth;
pub mod client;
pub mod dto;
mod error;
pub mod listen;
mod metrics;
mod routes;
pub(crate) mod tls;
pub mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ssh_key::PublicKey;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

pub use error::ApiError;
pub use metrics::Metrics;

use crate::ca::CaKeys;
use crate::config::Config;
use crate::hub::Hub;
use crate::model::{NewAuditEvent, now};
use crate::store::Store;
use crate::throttle;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// What every handler shares.
pub struct AppState {
    pub cfg: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub ca: Arc<CaKeys>,
    pub hub: Arc<Hub>,
    pub metrics: Metrics,
    nonces: auth::NonceCache,
    refusals: throttle::RefusalThrottle,
    /// Signed calls running in tasks of their own (`to_the_end`), waited for at shutdown.
    calls: TaskTracker,
}

impl AppState {
    pub fn new(
        cfg: Arc<Config>,
        store: Arc<dyn Store>,
        ca: Arc<CaKeys>,
        hub: Arc<Hub>,
    ) -> Arc<AppState> {
        Arc::new(AppState {
            cfg,
            store,
            ca,
            hub,
            metrics: Metrics::default(),
            nonces: auth::NonceCache::new(now()),
            refusals: throttle::RefusalThrottle::new("api.refused", 10),
            calls: TaskTracker::new(),
        })
    }
}

/// The verified caller of a signed request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: String,
    /// The key that signed the call (certified by `login`).
    pub key: PublicKey,
}

pub fn router(state: Arc<AppState>) -> Router {
    let signed = Router::new()
        .route(
            "/v1/requests",
            post(routes::create_request).get(routes::list_requests),
        )
        .route("/v1/requests/{id}", get(routes::show_request))
        .route("/v1/requests/{id}/approve", post(routes::approve))
        .route("/v1/requests/{id}/deny", post(routes::deny))
        .route("/v1/requests/{id}/revoke", post(routes::revoke))
        .route("/v1/requests/{id}/certificate", post(routes::certificate))
        .route("/v1/bastion", get(routes::bastion))
        .route("/v1/audit", get(routes::audit))
        .route("/v1/sessions", get(routes::sessions))
        .route("/v1/sessions/{id}/recording", get(routes::recording))
        .route("/v1/commands", get(routes::commands))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route_layer(middleware::from_fn_with_state(
            state.calls.clone(),
            to_the_end,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text))
        .merge(signed)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn metrics_text(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        app.metrics.render(),
    )
}

async fn observe(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let resp = next.run(req).await;
    app.metrics.observe(start.elapsed());
    resp
}

/// Runs a signed call in a task of its own. Hyper drops a handler whose client hangs up or
/// times out; a change the store has committed by then (a revocation, an approval) must
/// still have its effects — live sessions closed, webhooks sent — so the call runs to its
/// end whatever becomes of the connection, and a shutdown waits for it (`serve`).
async fn to_the_end(State(calls): State<TaskTracker>, req: Request, next: Next) -> Response {
    match calls.spawn(next.run(req)).await {
        Ok(resp) => resp,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => ApiError::Unavailable("the server is stopping; try again".into()).into_response(),
    }
}

/// Verifies the call's signature over method, path, body, timestamp and nonce.
async fn authenticate(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    // The body follows its headers promptly, or a client that sends headers and then nothing
    // holds its connection slot (`listen`) for good.
    let deadline = listen::BODY;
    let bytes = match tokio::time::timeout(deadline, to_bytes(body, MAX_BODY)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return ApiError::BadRequest(format!("body larger than {MAX_BODY} bytes"))
                .into_response();
        }
        Err(_) => {
            return ApiError::TimedOut(format!(
                "the request's body did not arrive within {} s",
                deadline.as_secs()
            ))
            .into_response();
        }
    };
    let header = |name: &'static str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(auth::AuthError::Missing(name))
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let verified = (|| {
        let call = auth::SignedCall {
            method: parts.method.as_str(),
            path_and_query: path,
            body: &bytes,
            signature: header(auth::HEADER_SIGNATURE)?,
            timestamp: header(auth::HEADER_TIMESTAMP)?,
            nonce: header(auth::HEADER_NONCE)?,
        };
        auth::verify_call(&app.cfg, &app.nonces, &call, now())
    })();
    match verified {
        Ok(caller) => {
            let mut req = Request::from_parts(parts, Body::from(bytes));
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            // The user whose enrolled key is inside the signature: the caller when the
            // signature verified (the checks after it), only a claim when it did not.
            let signer = || {
                parts
                    .headers
                    .get(auth::HEADER_SIGNATURE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(auth::signing_key)
                    .and_then(|k| app.cfg.user_by_key(&k).map(|u| u.name.clone()))
            };
            let (actor, claimed) = match &e {
                auth::AuthError::Replayed
                | auth::AuthError::Skew { .. }
                | auth::AuthError::BeforeStart { .. } => (signer(), None),
                auth::AuthError::BadSignature => (None, signer()),
                _ => (None, None),
            };
            let actor = actor.as_deref().unwrap_or("unknown");
            match app.refusals.admit(actor, None, Instant::now()) {
                throttle::Admit::Write { suppressed } => {
                    let mut event = NewAuditEvent::new(now(), "api.refused", actor)
                        .with("reason", &e)
                        .with("method", &parts.method)
                        .with("path", path);
                    if let Some(claimed) = &claimed {
                        event = event.with("claimed_user", claimed);
                    }
                    if suppressed > 0 {
                        event = event.with("suppressed", suppressed);
                    }
                    if let Err(err) = app.store.append_audit(event).await {
                        tracing::error!(error = %err, "could not audit a refused call");
                    }
                    tracing::warn!(reason = %e, %path, "API call refused");
                }
                throttle::Admit::Skip { first } => {
                    if first {
                        tracing::warn!(
                            actor,
                            "refused API calls arrive too fast; counting them instead of auditing each"
                        );
                    }
                }
            }
            ApiError::Unauthorized(e.to_string()).into_response()
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes; TLS when configured.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = match &state.cfg.server.tls {
        Some(tls) => Some(tls::acceptor(tls)?),
        None => None,
    };
    let http = listen::serve(
        listener,
        router(state.clone()),
        tls,
        listen::Limits::API,
        shutdown,
    );
    // Calls whose clients hung up may still be running: they finish (for as long as the
    // connections in flight were given) before the last refusals are counted.
    let http = async {
        http.await;
        state.calls.close();
        let _ = tokio::time::timeout(listen::DRAIN, state.calls.wait()).await;
    };
    // Refusals counted while throttled reach the log as the API runs, and once it stops.
    state.refusals.flushing(&*state.store, now, http).await;
    Ok(())
}

/// Marks requests whose time is up as expired, ends their sessions, and tells webhooks.
pub async fn expire_loop(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        match state.store.expire_due(now()).await {
            Ok(expired) => {
                for r in expired {
                    state.hub.end_access(r.id);
                    state.metrics.request("expired");
                    state
                        .hub
                        .emit("request.expired", Some(r.id), routes::request_data(&r));
                }
            }
            Err(e) => tracing::error!(error = %e, "expiry sweep failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use axum::routing::post;

    use super::*;

    #[tokio::test]
    async fn a_call_whose_client_hangs_up_still_runs_to_its_end() {
        static DONE: AtomicBool = AtomicBool::new(false);
        let calls = TaskTracker::new();
        let app = Router::new()
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    DONE.store(true, Ordering::SeqCst);
                }),
            )
            .route_layer(middleware::from_fn_with_state(calls.clone(), to_the_end));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/slow", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let hung_up = reqwest::Client::new()
            .post(url)
            .timeout(Duration::from_millis(50))
            .send()
            .await;
        assert!(hung_up.is_err(), "the client gave up first");
        assert!(!DONE.load(Ordering::SeqCst));
        // What a shutdown does (`serve`): it waits for the call, which runs to its end.
        calls.close();
        tokio::time::timeout(Duration::from_secs(10), calls.wait())
            .await
            .expect("the call ends");
        assert!(
            DONE.load(Ordering::SeqCst),
            "the handler was dropped half way"
        );
    }
}
