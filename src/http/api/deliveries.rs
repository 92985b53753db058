//! `/v1/deliveries`: list (filters, cursor pages), one delivery with every attempt, and a retry
//! now (same event id, as `mxhook deliveries retry`).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::error::ApiError;
use super::messages::page_end;
use super::params::{Params, RawQuery, encode_cursor, segment};
use super::{Reader, Writer, blocking};
use crate::http::App;
use crate::mail::DeliveryStatus;
use crate::store::{Attempt, Delivery, DeliveryFilter};
use crate::time::rfc3339;

pub const STATUSES: [&str; 3] = ["pending", "succeeded", "failed"];

pub async fn list(_: Reader, State(app): State<Arc<App>>, query: RawQuery) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(query, &["after", "limit", "status", "endpoint", "message"])?;
    let filter = DeliveryFilter {
        status: p.one_of("status", DeliveryStatus::parse, &STATUSES)?,
        endpoint: p.text("endpoint").map(str::to_string),
        message: p.text("message").map(str::to_string),
    };
    let (after, limit) = (p.cursor()?, p.limit()?);
    let mut rows = blocking(&app, move |s| s.list_deliveries(&filter, after.as_ref(), limit + 1)).await?;
    let next = page_end(&mut rows, limit, |d| encode_cursor(d.created_at, &d.id));
    Ok(Json(json!({ "data": rows.iter().map(delivery_json).collect::<Vec<_>>(), "next": next })))
}

pub async fn get(
    _: Reader,
    State(app): State<Arc<App>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = segment(id)?;
    let found = blocking(&app, move |s| match s.delivery(&id)? {
        None => Ok(None),
        Some(d) => Ok(Some((s.attempts(&id)?, d))),
    })
    .await?;
    let (attempts, d) = found.ok_or_else(|| ApiError::not_found("delivery"))?;
    let mut v = delivery_json(&d);
    v["attempt_log"] = attempts.iter().map(attempt_json).collect();
    Ok(Json(v))
}

pub async fn retry(
    caller: Writer,
    State(app): State<Arc<App>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = segment(id)?;
    let did = id.clone();
    let d = blocking(&app, move |s| if s.request_retry(&did)? { s.delivery(&did) } else { Ok(None) }).await?;
    let d = d.ok_or_else(|| ApiError::not_found("delivery"))?;
    tracing::info!(delivery = %d.id, event = %d.event_id, token = %caller.name, "retry requested through the API");
    Ok((StatusCode::ACCEPTED, Json(delivery_json(&d))))
}

/// A delivery as the API shows it (the same fields as `mxhook deliveries list --json`).
/// A delivery as the API and the CLI's `--json` show it.
pub fn delivery_json(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "message_id": d.message_id,
        "event_id": d.event_id,
        "endpoint": d.endpoint,
        "status": d.status.as_str(),
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at.map(rfc3339),
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": rfc3339(d.created_at),
    })
}

/// An attempt as the API and the CLI's `--json` show it.
pub fn attempt_json(a: &Attempt) -> Value {
    json!({
        "attempt": a.attempt,
        "started_at": rfc3339(a.started_at),
        "duration_ms": a.duration_ms,
        "http_status": a.http_status,
        "error": a.error,
        "response_body": a.response_body,
    })
}
