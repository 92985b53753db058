//! The API's error answer, one shape for every route: `{"error": {"type", "message"}}` with the
//! matching status (Stripe's shape, without their codes).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    /// `WWW-Authenticate` for a 401, `Retry-After` for a 429.
    pub header: Option<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind, message: message.into(), header: None }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// The store failed: the detail goes to the log, the client learns only that it may retry.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "api request failed");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the store cannot answer now; try again")
    }

    pub fn with_header(mut self, name: header::HeaderName, value: &'static str) -> Self {
        self.header = Some((name, HeaderValue::from_static(value)));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "type": self.kind, "message": self.message } });
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some((name, value)) = self.header {
            r.headers_mut().insert(name, value);
        }
        r
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::internal(format!("{e:#}"))
    }
}
