//! The HTTP side (axum, on the same runtime): signed attachment and raw-message links
//! (`files.rs`, checked by `links.rs`), `/healthz` and `/metrics`.

mod files;
pub mod links;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::store::Store;
use links::UrlSigner;

pub struct App {
    pub store: Arc<Store>,
    pub signer: Arc<UrlSigner>,
}

pub async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    let l = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {addr}: {e}"))?;
    tracing::info!("http listening on {}", l.local_addr()?);
    Ok(l)
}

pub async fn serve(listener: TcpListener, app: Arc<App>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/att/{id}/{index}", get(files::attachment))
        .route("/raw/{id}", get(files::raw))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await?;
    Ok(())
}

async fn healthz(State(app): State<Arc<App>>) -> (StatusCode, &'static str) {
    let store = app.store.clone();
    let ok = tokio::task::spawn_blocking(move || store.writable()).await.unwrap_or(false);
    if ok { (StatusCode::OK, "ok\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "store not writable\n") }
}
