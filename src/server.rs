//! `jitgate serve`: the API, the bastion and the background tasks, wired together, running
//! until the shutdown future completes (SIGTERM or SIGINT in the binary; a channel in tests).

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::bastion::{self, BastionContext};
use crate::ca::CaKeys;
use crate::config::{Config, StoreUrl};
use crate::hub::Hub;
use crate::store::{self, Holder, SqliteStore, Store, StoreError, StoreLock};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Ca(#[from] crate::ca::CaError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Everything `serve` builds from the configuration before it listens.
pub struct Parts {
    pub cfg: Arc<Config>,
    pub ca: Arc<CaKeys>,
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    /// CA key files created by this start (first start only).
    pub created_keys: Vec<std::path::PathBuf>,
    /// This server's hold on its store (`store::hold`), for as long as it runs.
    _store_lock: StoreLock,
}

impl Parts {
    /// Creates missing CA keys, opens the store (running migrations).
    pub fn open(cfg: Config) -> Result<Parts, ServerError> {
        if let Some(tls) = &cfg.server.tls {
            api::tls::check(tls).map_err(|e| {
                std::io::Error::new(e.kind(), format!("server.tls_cert / tls_key: {e}"))
            })?;
        }
        // First of all: a second server must neither race this one to create the CA keys
        // nor seal its live sessions as cut off.
        let StoreUrl::Sqlite(db) = &cfg.store;
        let store_lock = store::hold(db, Holder::Serve)?;
        let (ca, created_keys) = CaKeys::ensure(&cfg.ca_dir())?;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(db)?);
        crate::private::create_folder(&cfg.server.recordings_dir)?;
        Ok(Parts {
            cfg: Arc::new(cfg),
            ca: Arc::new(ca),
            store,
            hub: Hub::new(),
            created_keys,
            _store_lock: store_lock,
        })
    }
}

/// Runs the API on `api_listener` and the bastion on `ssh_listener` until `shutdown`
/// completes; then both stop accepting and the bastion gives live sessions their grace.
pub async fn run(
    parts: Parts,
    api_listener: TcpListener,
    ssh_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state = AppState::new(
        parts.cfg.clone(),
        parts.store.clone(),
        parts.ca.clone(),
        parts.hub.clone(),
    );
    let webhooks = tokio::spawn(api::webhook::run(
        parts.hub.clone(),
        parts.store.clone(),
        parts.cfg.webhooks.clone(),
    ));
    let expiry = tokio::spawn(api::expire_loop(state.clone()));
    // One shutdown signal, two listeners.
    let (stop_tx, stop_rx) = watch::channel(false);
    let api_failed = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // Sessions a crash left open are closed (and their recordings sealed) before any new one.
    bastion::seal_cut_off(&*parts.store, &parts.cfg.server.recordings_dir).await;
    let bastion = BastionContext {
        config: parts.cfg.clone(),
        ca: parts.ca.clone(),
        store: parts.store.clone(),
        hub: parts.hub.clone(),
    };
    // The API ending on its own is an error: the bastion then stops too (with its grace for
    // live sessions), and `serve` exits with the error rather than run half a server.
    let api_stop = stopped(stop_rx.clone());
    let api = async move {
        let result = api::serve(api_listener, state, api_stop).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "the API stopped; stopping the bastion");
        }
        let _ = api_failed.send(true);
        result
    };
    let (api_result, ()) = tokio::join!(
        api,
        bastion::run(ssh_listener, Arc::new(bastion), stopped(stop_rx)),
    );
    expiry.abort();
    webhooks.abort();
    api_result.map_err(ServerError::from)
}
