//! `/v1/messages`: list (filters, cursor pages), one message whole, its raw bytes, one attachment,
//! and deletion. A message's `text` and `html` are whole here even when its webhook left them out
//! for size: the stored raw message is parsed again, without the payload cap.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::deliveries::delivery_json;
use super::error::ApiError;
use super::params::{Params, RawQuery, encode_cursor, segment};
use super::{Reader, Writer, blocking};
use crate::http::App;
use crate::mail::EventType;
use crate::store::{Content, MessageFilter, MessageRow, Removal, Store};
use crate::time::rfc3339;

/// The largest attachment index a request may name (the OpenAPI file says the same).
const MAX_INDEX: usize = 1_000_000;

pub async fn list(_: Reader, State(app): State<Arc<App>>, query: RawQuery) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(query, &["after", "limit", "to", "from", "type", "since", "until", "subject"])?;
    let types: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    let filter = MessageFilter {
        to: p.text("to").map(str::to_string),
        from: p.text("from").map(str::to_string),
        kind: p.one_of("type", EventType::parse, &types)?,
        since: p.time("since")?,
        until: p.time("until")?,
        subject: p.text("subject").map(str::to_string),
    };
    let (after, limit) = (p.cursor()?, p.limit()?);
    let mut rows = blocking(&app, move |s| s.list_messages(&filter, after.as_ref(), limit + 1)).await?;
    let next = page_end(&mut rows, limit, |m| encode_cursor(m.received_at, &m.id));
    Ok(Json(json!({ "data": rows.iter().map(summary).collect::<Vec<_>>(), "next": next })))
}

/// Cuts `rows` (read with one extra) to `limit`; the cursor of the last row kept when there are more.
pub fn page_end<T>(rows: &mut Vec<T>, limit: usize, cursor: impl Fn(&T) -> String) -> Option<String> {
    if rows.len() <= limit {
        return None;
    }
    rows.truncate(limit);
    rows.last().map(cursor)
}

pub async fn get(
    _: Reader,
    State(app): State<Arc<App>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = segment(id)?;
    let found = blocking(&app, move |s| {
        let Some(m) = s.message(&id)? else { return Ok(None) };
        let deliveries = s.deliveries(None, Some(&id))?;
        let message = whole_message(s, &m)?;
        Ok(Some((m, deliveries, message)))
    })
    .await?;
    let (m, deliveries, message) = found.ok_or_else(|| ApiError::not_found("message"))?;
    let mut v = summary(&m);
    v["message"] = message;
    v["deliveries"] = deliveries.iter().map(delivery_json).collect();
    Ok(Json(v))
}

/// The event's `message` object as stored, with `raw.base64` put back (as the webhook had it) and
/// `text` / `html` parsed again from the raw message when the event withheld them.
fn whole_message(store: &Store, m: &MessageRow) -> anyhow::Result<Value> {
    let mut v: Value = serde_json::from_str(&m.event_message)?;
    let omitted = |v: &Value, what: &str| v["omitted"].as_array().is_some_and(|a| a.iter().any(|o| o == what));
    let withheld = omitted(&v, "text") || omitted(&v, "html");
    if !m.raw_inline && !withheld {
        return Ok(v);
    }
    // Retention may have removed the bytes: then the stored event is all there is.
    let Some(raw) = store.raw(&m.id)? else { return Ok(v) };
    if m.raw_inline
        && let Some(sent) = crate::mail::with_raw_base64(&m.event_message, &raw)
    {
        v = serde_json::from_str(&sent)?;
    }
    if withheld {
        let envelope = crate::mail::Envelope {
            client_ip: m.client_ip.parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
            helo: m.helo.clone(),
            mail_from: m.mail_from.clone(),
            rcpt_to: m.rcpt_to.clone(),
            tls: None,
            tls_cipher: None,
            proxy_ip: None,
            ingress: crate::mail::Ingress::Smtp,
        };
        let parsed = crate::parse::parse(&m.id, rfc3339(m.received_at), &envelope, &raw).event;
        v["text"] = json!(parsed.text);
        v["html"] = json!(parsed.html);
        if let Some(list) = v["omitted"].as_array_mut() {
            list.retain(|o| o != "text" && o != "html");
        }
    }
    Ok(v)
}

pub async fn raw(
    _: Reader,
    State(app): State<Arc<App>>,
    id: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let id = segment(id)?;
    let mid = id.clone();
    let content = blocking(&app, move |s| s.content(&mid, None)).await?;
    let content = present(content, "message")?;
    Ok(crate::http::files::serve(content, "message/rfc822", &format!("{id}.eml"), req).await)
}

pub async fn attachment(
    _: Reader,
    State(app): State<Arc<App>>,
    path: Result<Path<(String, String)>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let (id, index) = segment(path)?;
    let index: usize = match index.parse() {
        Ok(i) if i <= MAX_INDEX => i,
        _ => {
            let why = format!("the attachment index must be a whole number from 0 to {MAX_INDEX}, not `{index}`");
            return Err(ApiError::bad_request(why));
        }
    };
    let found = blocking(&app, move |s| {
        if s.message(&id)?.is_none() {
            return Ok(Err(ApiError::not_found("message")));
        }
        let Some(att) = s.attachment(&id, index)? else { return Ok(Err(ApiError::not_found("attachment"))) };
        Ok(Ok((att, s.content(&id, Some(index))?)))
    })
    .await?;
    let (att, content) = found?;
    let content = present(content, "attachment")?;
    // The sender's file name is only ever a suggestion in Content-Disposition, made safe there.
    let name = att.filename.unwrap_or_else(|| format!("attachment-{index}"));
    Ok(crate::http::files::serve(content, &att.content_type, &name, req).await)
}

/// The bytes, or 404 (no such message) / 410 (retention removed them).
fn present(content: Content, what: &str) -> Result<Content, ApiError> {
    match content {
        Content::Missing => Err(ApiError::not_found(what)),
        Content::Removed => Err(ApiError::new(StatusCode::GONE, "gone", "retention has removed these bytes")),
        c => Ok(c),
    }
}

pub async fn delete(
    caller: Writer,
    State(app): State<Arc<App>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = segment(id)?;
    let mid = id.clone();
    match blocking(&app, move |s| s.delete_message(&mid)).await? {
        Removal::NotFound => Err(ApiError::not_found("message")),
        Removal::InFlight => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "a delivery attempt of this message is in flight; try again in a moment",
        )),
        Removal::Deleted { cancelled } => {
            tracing::info!(message_id = %id, token = %caller.name, cancelled, "message deleted through the API");
            Ok(Json(json!({ "id": id, "deleted": true, "cancelled_deliveries": cancelled })).into_response())
        }
    }
}

/// A message in a list: what it is, where it came from, what became of it.
fn summary(m: &MessageRow) -> Value {
    json!({
        "id": m.id,
        "received_at": rfc3339(m.received_at),
        "type": m.event_type.as_str(),
        "disposition": m.disposition,
        "from": m.from_addr,
        "mail_from": m.mail_from,
        "rcpt_to": m.rcpt_to,
        "subject": m.subject,
        "size": m.size,
        "sha256": m.sha256,
        "parsed_status": m.parsed_status,
    })
}
