//! The HTTP API under `/v1/` (only with `[api]` in the config): messages, deliveries, replay and
//! streams, JSON, bearer tokens (`auth.rs`), documented by `schema/openapi.json` (served at
//! `/v1/openapi.json`, without a token, as public documentation).

mod auth;
mod error;
mod fanout;
mod settings;
mod sse;
mod streams;
mod ws;

pub use auth::{Api, Reader, Writer};
pub use error::ApiError;
pub use settings::{ApiSettings, Token};

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use super::App;

/// The OpenAPI 3.1 description of `/v1/`, kept in the repository.
pub const OPENAPI: &str = include_str!("../../../schema/openapi.json");

pub fn router() -> Router<Arc<App>> {
    Router::new().route("/openapi.json", get(openapi)).route("/whoami", get(whoami)).merge(streams::routes())
}

async fn openapi() -> ([(axum::http::header::HeaderName, &'static str); 1], &'static str) {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The token's name and scopes: a cheap way for a client to check its token.
async fn whoami(caller: Reader) -> axum::Json<serde_json::Value> {
    let scopes = if caller.write { vec!["read", "write"] } else { vec!["read"] };
    axum::Json(serde_json::json!({ "token": caller.name, "scopes": scopes }))
}
