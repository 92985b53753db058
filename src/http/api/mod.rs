//! The HTTP API under `/v1/` (only with `[api]` in the config): messages, deliveries, replay and
//! streams, JSON, bearer tokens (`auth.rs`), documented by `schema/openapi.json` (served at
//! `/v1/openapi.json`, without a token, as public documentation).

mod auth;
mod deliveries;
mod error;
mod fanout;
mod messages;
mod params;
mod replay;
mod settings;
mod sse;
mod streams;
mod ws;

pub use auth::{Api, Reader, Writer};
pub use deliveries::{attempt_json, delivery_json};
pub use error::ApiError;
pub use settings::{ApiSettings, Token};

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use super::App;
use crate::store::Store;

/// The OpenAPI 3.1 description of `/v1/`, kept in the repository.
pub const OPENAPI: &str = include_str!("../../../schema/openapi.json");

/// Every route; `schema/openapi.json` documents exactly these (a test holds them together).
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/whoami", get(whoami))
        .route("/messages", get(messages::list))
        .route("/messages/{id}", get(messages::get).delete(messages::delete))
        .route("/messages/{id}/raw", get(messages::raw))
        .route("/messages/{id}/attachments/{index}", get(messages::attachment))
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/{id}", get(deliveries::get))
        .route("/deliveries/{id}/retry", post(deliveries::retry))
        .route("/replay", post(replay::replay))
        .merge(streams::routes())
        .fallback(|| async { ApiError::not_found("route") })
}

/// Runs a store call on a blocking thread: the store's failures are a 503 (`ApiError::internal`),
/// logged, never a 500.
async fn blocking<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&Store) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let store = app.store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(e)),
    }
}

async fn openapi() -> ([(axum::http::header::HeaderName, &'static str); 1], &'static str) {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The token's name and scopes: a cheap way for a client to check its token.
async fn whoami(caller: Reader) -> axum::Json<serde_json::Value> {
    let scopes = if caller.write { vec!["read", "write"] } else { vec!["read"] };
    axum::Json(serde_json::json!({ "token": caller.name, "scopes": scopes }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// (METHOD, path) of every route `router()` declares, read from its source: axum cannot list a
    /// router's routes, and a route missing from the OpenAPI file is a route nobody can find.
    fn routed() -> BTreeSet<(String, String)> {
        let body = |source: &'static str, f: &str| {
            source.split(f).nth(1).and_then(|s| s.split("\n}\n").next()).unwrap_or_else(|| panic!("{f}"))
        };
        let router = body(include_str!("mod.rs"), "pub fn router()");
        assert!(router.contains(".merge(streams::routes())"), "router() takes the streams' routes");
        let streams = body(include_str!("streams.rs"), "pub fn routes()");
        let mut out = BTreeSet::new();
        for line in router.lines().chain(streams.lines()).filter_map(|l| l.trim().strip_prefix(".route(\"")) {
            let (path, handlers) = line.split_once('"').expect("a quoted path");
            for method in ["get", "post", "put", "patch", "delete"] {
                if handlers.contains(&format!(" {method}(")) || handlers.contains(&format!(".{method}(")) {
                    out.insert((method.to_uppercase(), path.to_string()));
                }
            }
        }
        out
    }

    fn documented() -> BTreeSet<(String, String)> {
        let spec: serde_json::Value = serde_json::from_str(super::OPENAPI).expect("openapi.json is JSON");
        let mut out = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys().filter(|k| *k != "parameters") {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    #[test]
    fn every_route_is_in_the_openapi_file_and_every_documented_operation_is_routed() {
        let _ = super::router(); // axum refuses overlapping routes when the router is built
        let (routed, documented) = (routed(), documented());
        assert!(routed.len() >= 10, "{routed:?}");
        assert_eq!(routed, documented, "router() and schema/openapi.json disagree");
    }
}
