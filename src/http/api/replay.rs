//! `POST /v1/replay`: every delivery of the messages received in `[since, until)` is attempted
//! again now, with its own event id (receivers dedupe on it): the recovery after an app's outage.
//! Scheduling is one UPDATE, so the answer already says how many were scheduled; the deliverer
//! sends them within a second, at each endpoint's concurrency.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::deliveries::STATUSES;
use super::error::ApiError;
use super::params::parse_time;
use super::{Writer, blocking};
use crate::http::App;
use crate::mail::DeliveryStatus;
use crate::time::rfc3339;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    since: String,
    until: String,
    endpoint: Option<String>,
    status: Option<String>,
}

pub async fn replay(
    caller: Writer,
    State(app): State<Arc<App>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let r: ReplayRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("the body must be JSON like {{\"since\": \"…\", \"until\": \"…\"}}: {e}"))
    })?;
    let (since, until) = (parse_time("since", &r.since)?, parse_time("until", &r.until)?);
    if since >= until {
        return Err(ApiError::bad_request("`since` must be before `until`"));
    }
    let status = match r.status.as_deref() {
        None => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("`status` must be one of {}, not `{s}`", STATUSES.join(", ")))
        })?),
    };
    let endpoint = r.endpoint.clone();
    let scheduled = blocking(&app, move |s| s.replay(since, until, endpoint.as_deref(), status)).await?;
    tracing::info!(
        since = %rfc3339(since), until = %rfc3339(until), endpoint = r.endpoint.as_deref().unwrap_or("*"),
        status = r.status.as_deref().unwrap_or("*"), scheduled, token = %caller.name, "replay requested through the API"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "scheduled": scheduled,
            "since": rfc3339(since),
            "until": rfc3339(until),
            "endpoint": r.endpoint,
            "status": r.status,
        })),
    ))
}
