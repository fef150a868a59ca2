//! The promlake server: HTTP API (Prometheus-compatible) over storage and the PromQL engine.
//!
//! Architecture Invariant: only this crate knows HTTP, JSON and config files. Lower crates get
//! plain values and a tenant id.

pub mod config;
mod error;
mod http;
pub mod metrics;
pub mod query_cache;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::Config;
pub use error::ApiError;

/// A running server: its bound HTTP address, and the handle that stops it.
pub struct Running {
    pub http_addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl Running {
    /// Stops accepting requests, lets in-flight ones finish, closes storage.
    pub async fn stop(self) -> Result<(), String> {
        let _ = self.shutdown.send(true);
        self.task.await.map_err(|e| e.to_string())?
    }

    /// Waits until the server ends by itself (a signal).
    pub async fn wait(self) -> Result<(), String> {
        self.task.await.map_err(|e| e.to_string())?
    }
}

/// Binds the listeners, starts serving at once (`/-/healthy` answers during WAL replay), opens
/// storage in the background and flips `/-/ready` when replay is done.
pub async fn start(config: Config) -> Result<Running, String> {
    // The block store first: a misconfigured or unreachable bucket fails `serve` here, named,
    // rather than after the listeners are up.
    let storage_opts = config.storage_options()?;
    let store = {
        let o = storage_opts.clone();
        tokio::task::spawn_blocking(move || storage::Db::block_store(&o))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot open the block store ([storage] blocks_url): {e}"))?
    };
    tracing::info!(blocks = store.url(), "block store");
    let listener = tokio::net::TcpListener::bind(&config.http_listen)
        .await
        .map_err(|e| format!("cannot listen on {} (http_listen): {e}", config.http_listen))?;
    let http_addr = listener.local_addr().map_err(|e| e.to_string())?;
    let state = Arc::new(http::AppState::new(config.clone()));
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let app = http::router(state.clone());
    tracing::info!(%http_addr, data_dir = %config.data_dir.display(), "promlake listening");

    let opener = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || state.open_storage_with(storage_opts, store))
    };
    let maintenance = {
        let state = state.clone();
        let mut rx = tx.subscribe();
        tokio::spawn(async move {
            let every = config.storage.maintenance_interval;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = rx.changed() => return,
                }
                let s = state.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || s.maintain()).await {
                    tracing::error!(error = %e, "maintenance task failed");
                }
            }
        })
    };
    let task = tokio::spawn(async move {
        let signal = async move {
            tokio::select! {
                _ = shutdown_signal() => tracing::info!("signal received, shutting down"),
                _ = rx.changed() => {}
            }
        };
        let served = axum::serve(listener, app).with_graceful_shutdown(signal).await;
        maintenance.abort();
        // Storage needs no final flush: everything acknowledged is in the WAL.
        let _ = opener.await;
        served.map_err(|e| e.to_string())
    });
    Ok(Running { http_addr, shutdown: tx, task })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
