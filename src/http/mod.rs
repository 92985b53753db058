//! The HTTP side (axum, on the same runtime): signed attachment, all-attachments zip and raw-message links, `/schema`
//! (`files.rs`, checked by `links.rs`), `/healthz` and `/metrics`.

pub mod api;
mod archive;
mod files;
pub mod links;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::store::Store;
use links::UrlSigner;

pub struct App {
    pub store: Arc<Store>,
    pub signer: Arc<UrlSigner>,
    pub metrics: Arc<Metrics>,
    /// None: no `[api]` in the config; nothing under `/v1/` answers.
    pub api: Option<api::Api>,
}

pub async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    let l = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {addr}: {e}"))?;
    tracing::info!("http listening on {}", l.local_addr()?);
    Ok(l)
}

pub async fn serve(listener: TcpListener, app: Arc<App>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/schema", get(schema))
        .route("/att/{id}/{index}", get(files::attachment))
        .route("/raw/{id}", get(files::raw))
        .route("/zip/{id}", get(archive::zip));
    let router = if app.api.is_some() { router.nest("/v1", api::router()) } else { router };
    let router = router.with_state(app);
    // The client's address, for the API's limit on wrong tokens.
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await?;
    Ok(())
}

async fn metrics(State(app): State<Arc<App>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let store = app.store.clone();
    if let Ok(Ok((pending, oldest))) = tokio::task::spawn_blocking(move || store.queue_stats()).await {
        app.metrics.pending.set(pending);
        let age = oldest.map_or(0.0, |t| (crate::time::now_ms() - t).max(0) as f64 / 1000.0);
        app.metrics.oldest_pending_seconds.set(age);
    }
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(axum::http::header::CONTENT_TYPE, content_type)], app.metrics.encode()).into_response()
}

async fn healthz(State(app): State<Arc<App>>) -> (StatusCode, &'static str) {
    let store = app.store.clone();
    let ok = tokio::task::spawn_blocking(move || store.writable()).await.unwrap_or(false);
    if ok { (StatusCode::OK, "ok\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "store not writable\n") }
}

/// The published event schema (JSON Schema 2020-12), without a token: it is public documentation.
async fn schema() -> ([(axum::http::header::HeaderName, &'static str); 1], &'static str) {
    ([(axum::http::header::CONTENT_TYPE, "application/schema+json")], crate::mail::schema::SCHEMA)
}
