//! The HTTP side (axum): `/healthz` for now; signed attachment and raw-message links come next.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::store::Store;

pub async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    let l = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {addr}: {e}"))?;
    tracing::info!("http listening on {}", l.local_addr()?);
    Ok(l)
}

pub async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let app = Router::new().route("/healthz", get(healthz)).with_state(store);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await?;
    Ok(())
}

async fn healthz(State(store): State<Arc<Store>>) -> (StatusCode, &'static str) {
    let ok = tokio::task::spawn_blocking(move || store.writable()).await.unwrap_or(false);
    if ok { (StatusCode::OK, "ok\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "store not writable\n") }
}
