//! Reading a stream: what the three transports share (where a reader starts, the query values, a
//! `Follower` that pages through the log and waits for more), long-polling (`/poll`) and
//! `POST /ack`. Server-Sent Events are in `sse.rs`, WebSocket in `ws.rs`.
//!
//! Where a reader starts, first match wins: an explicit cursor (`Last-Event-ID`, `iterator`,
//! `after`), `from=now` (only new events), `from=start`, the named consumer's acked place, the
//! oldest event kept.
//!
//! Acks (every token may ack: it only moves the caller's own named consumer, and loses nothing,
//! since events stay readable by cursor until retention): WebSocket ack frames; polling acks the
//! page it read when the next request passes its `iterator`; SSE clients `POST .../ack`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::watch;

use super::fanout::Ring;
use super::params::ApiQuery;
use super::{ApiError, Reader};
use crate::http::App;
use crate::mail::{EventType, Via};
use crate::store::Store;

/// Events per read for SSE and WebSocket: what one slow reader holds in memory at most.
const PAGE: usize = 32;
/// Polling's `limit`: default and most.
const POLL_LIMIT: usize = 100;
/// Polling's `wait`: most seconds a request is held open.
const MAX_WAIT: u64 = 30;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/streams/{name}/events", get(super::sse::events))
        .route("/streams/{name}/ws", get(super::ws::socket))
        .route("/streams/{name}/poll", get(poll))
        .route("/streams/{name}/ack", post(ack))
}

/// The query values every transport reads, as given (each is checked by a function below, so a bad
/// one gets a 400 that names it).
#[derive(Debug, Default, Deserialize)]
pub(super) struct ReadQuery {
    pub after: Option<String>,
    pub from: Option<String>,
    pub consumer: Option<String>,
    pub types: Option<String>,
    pub iterator: Option<String>,
    pub limit: Option<String>,
    pub wait: Option<String>,
}

/// The shared ring of a configured stream (call after `stream`).
pub(super) fn ring(app: &App, name: &str) -> Arc<Ring> {
    app.api.as_ref().expect("a stream is read only with [api]").fanout.ring(name)
}

/// The stream's name if it is configured (404 otherwise), and the store.
pub(super) fn stream(app: &App, name: &str) -> Result<(Arc<Store>, watch::Receiver<bool>), ApiError> {
    match &app.api {
        Some(api) if api.streams.contains(name) => Ok((app.store.clone(), api.stopping.clone())),
        _ => Err(ApiError::not_found("stream")),
    }
}

/// Runs a store call off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// Resolves when the server stops (the watch's guard is not held across the await).
pub(super) async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// A cursor given by the client (`after`, `Last-Event-ID`, a WebSocket subscribe frame).
pub(super) fn cursor(what: &str, v: &str) -> Result<i64, ApiError> {
    v.trim()
        .parse::<i64>()
        .ok()
        .filter(|c| *c >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("`{what}` must be a cursor (a whole number >= 0), not `{v}`")))
}

/// A consumer's name: what the client keeps its place under.
pub(super) fn consumer(v: &str) -> Result<String, ApiError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(ApiError::bad_request("`consumer` must be 1 to 64 letters, digits, `-`, `_`, `.` or `:`"))
    }
}

/// `types=email.received,email.bounced`: only those (None: every type the stream keeps).
pub(super) fn types<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Option<Vec<EventType>>, ApiError> {
    let mut out = Vec::new();
    for n in names.into_iter().map(str::trim).filter(|n| !n.is_empty()) {
        match EventType::parse(n) {
            Some(t) => out.push(t),
            None => {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                return Err(ApiError::bad_request(format!(
                    "unknown event type `{n}`; the types are {}",
                    known.join(", ")
                )));
            }
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Where a reader starts (see the module's comment). `explicit` is the cursor the request names.
pub(super) async fn start(
    store: &Arc<Store>,
    stream: &str,
    explicit: Option<i64>,
    from: Option<&str>,
    consumer: Option<&str>,
) -> Result<i64, ApiError> {
    if let Some(c) = explicit {
        return Ok(c);
    }
    let (s, name) = (store.clone(), stream.to_string());
    match from {
        Some("now") => return blocking(move || s.stream_last(&name)).await,
        Some("start") => return Ok(0),
        Some(other) => {
            return Err(ApiError::bad_request(format!("`from` is `now` or `start`, not `{other}`")));
        }
        None => {}
    }
    match consumer {
        Some(c) => {
            let c = c.to_string();
            Ok(blocking(move || s.consumer_acked(&name, &c)).await?.unwrap_or(0))
        }
        None => Ok(0),
    }
}

/// One stream event as a reader gets it: its cursor and the event's JSON body (shared by the
/// readers that read it from the same ring: `fanout.rs`).
pub(super) struct Read {
    pub cursor: i64,
    pub body: Arc<str>,
}

/// The bodies of a page of stream items (blocking: call off the async threads).
pub(super) fn build(stream: &str, items: Vec<crate::store::StreamItem>) -> anyhow::Result<Vec<Read>> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let e = &item.event;
        let via = Via::Stream { name: stream, cursor: e.cursor };
        let created = crate::time::rfc3339(e.created_at);
        let body = crate::mail::event_body(&e.event_id, e.event_type, &created, &via, &item.message_json)?;
        // Built by serde from our own strings: always UTF-8.
        out.push(Read { cursor: e.cursor, body: String::from_utf8(body)?.into() });
    }
    Ok(out)
}

/// Up to `limit` events after `after`, with their bodies built (off the async threads); the cursor
/// the next read starts after; whether it reached the end.
async fn read_page(
    store: &Arc<Store>,
    stream: &str,
    after: i64,
    limit: usize,
    types: Option<Vec<EventType>>,
) -> Result<(Vec<Read>, i64, bool), ApiError> {
    let (s, name) = (store.clone(), stream.to_string());
    blocking(move || {
        let page = s.stream_read(&name, after, limit, types.as_deref())?;
        Ok((build(&name, page.items)?, page.next, page.done))
    })
    .await
}

/// A reader that follows a stream: returns its events one by one, reading a page at a time, and
/// waits for the next commit when it has read everything. At the tail it reads from the stream's
/// shared ring (`fanout.rs`), behind it from the store.
pub(super) struct Follower {
    store: Arc<Store>,
    ring: Arc<Ring>,
    stream: String,
    types: Option<Vec<EventType>>,
    /// The last cursor read (not necessarily handed out yet: see `buffered`).
    read_to: i64,
    buffered: VecDeque<Read>,
    tip: watch::Receiver<u64>,
    stopping: watch::Receiver<bool>,
}

impl Follower {
    pub fn new(
        store: Arc<Store>,
        ring: Arc<Ring>,
        stream: &str,
        after: i64,
        types: Option<Vec<EventType>>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        let tip = store.streams_watch();
        Follower {
            store,
            ring,
            stream: stream.to_string(),
            types,
            read_to: after,
            buffered: VecDeque::new(),
            tip,
            stopping,
        }
    }

    /// The next event, waiting as long as it takes. None: the server is stopping. Cancel-safe: a
    /// page being read when the future is dropped is read again by the next call.
    pub async fn next(&mut self) -> Result<Option<Read>, ApiError> {
        loop {
            if let Some(r) = self.buffered.pop_front() {
                return Ok(Some(r));
            }
            // Marked before reading: a commit after this point makes `changed()` return at once.
            self.tip.borrow_and_update();
            let (page, next) = match self.ring.read(&self.store, self.read_to, PAGE, self.types.as_deref()).await? {
                Some(from_ring) => from_ring,
                None => {
                    let (page, next, _) =
                        read_page(&self.store, &self.stream, self.read_to, PAGE, self.types.clone()).await?;
                    (page, next)
                }
            };
            self.read_to = next;
            if !page.is_empty() {
                self.buffered.extend(page);
                continue;
            }
            if *self.stopping.borrow() {
                return Ok(None);
            }
            tokio::select! {
                r = self.tip.changed() => if r.is_err() { return Ok(None) },
                _ = stopped(&mut self.stopping) => return Ok(None),
            }
        }
    }
}

/// `iterator`: opaque to clients; today the stream's name and a cursor, so that an iterator of one
/// stream is refused by another.
fn iterator(stream: &str, cursor: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{stream}:{cursor}"))
}

fn parse_iterator(stream: &str, it: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::bad_request("`iterator` is not one this stream handed out");
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(it.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let (name, cursor) = text.rsplit_once(':').ok_or_else(bad)?;
    if name != stream {
        return Err(bad());
    }
    cursor.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(bad)
}

fn number(what: &str, v: Option<&str>, default: u64, max: u64) -> Result<u64, ApiError> {
    match v {
        None => Ok(default),
        Some(v) => v.trim().parse::<u64>().ok().filter(|n| *n <= max).ok_or_else(|| {
            ApiError::bad_request(format!("`{what}` must be a whole number from 0 to {max}, not `{v}`"))
        }),
    }
}

/// The poll answer: events, the iterator of the next page, whether this page reached the end.
#[derive(serde::Serialize)]
struct PollPage {
    data: Vec<Box<RawValue>>,
    iterator: String,
    done: bool,
}

/// `GET /v1/streams/NAME/poll?iterator=…&limit=…&wait=…&consumer=…`: a page of events after the
/// iterator (or the start, see above). With `wait`, an empty page waits up to that many seconds
/// for the next event. With `consumer`, passing an iterator acks every event before it.
async fn poll(
    _caller: Reader,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<Json<PollPage>, ApiError> {
    let (store, mut stopping) = stream(&app, &name)?;
    let limit = number("limit", q.limit.as_deref(), POLL_LIMIT as u64, POLL_LIMIT as u64)?.max(1) as usize;
    let wait = Duration::from_secs(number("wait", q.wait.as_deref(), 0, MAX_WAIT)?);
    let types = types(q.types.as_deref().unwrap_or("").split(','))?;
    let consumer = q.consumer.as_deref().map(consumer).transpose()?;
    let from_iterator = q.iterator.as_deref().map(|it| parse_iterator(&name, it)).transpose()?;
    let explicit = match (from_iterator, q.after.as_deref()) {
        (Some(c), _) => Some(c),
        (None, Some(a)) => Some(cursor("after", a)?),
        (None, None) => None,
    };
    if let (Some(c), Some(at)) = (&consumer, from_iterator) {
        let (s, n, c) = (store.clone(), name.clone(), c.clone());
        blocking(move || s.ack(&n, &c, at)).await?;
    }
    let after = start(&store, &name, explicit, q.from.as_deref(), consumer.as_deref()).await?;

    let deadline = tokio::time::Instant::now() + wait;
    let mut tip = store.streams_watch();
    loop {
        tip.borrow_and_update();
        let (page, next, done) = read_page(&store, &name, after, limit, types.clone()).await?;
        let waited_enough = tokio::time::Instant::now() >= deadline || *stopping.borrow();
        if !page.is_empty() || waited_enough {
            let data = page
                .into_iter()
                .map(|r| RawValue::from_string(r.body.to_string()).map_err(ApiError::internal))
                .collect::<Result<_, _>>()?;
            return Ok(Json(PollPage { data, iterator: iterator(&name, next), done }));
        }
        tokio::select! {
            r = tip.changed() => if r.is_err() { return Err(ApiError::internal("the store closed")) },
            _ = tokio::time::sleep_until(deadline) => {}
            _ = stopped(&mut stopping) => {}
        }
    }
}

#[derive(Deserialize)]
struct AckBody {
    consumer: String,
    cursor: i64,
}

/// `POST /v1/streams/NAME/ack {"consumer", "cursor"}`: the consumer is done with every event up to
/// `cursor` (how an SSE reader acks). Never moves a consumer back; never past the newest event.
async fn ack(
    _caller: Reader,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Result<Json<AckBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (store, _) = stream(&app, &name)?;
    let Json(body) =
        body.map_err(|e| ApiError::bad_request(format!("the body must be {{\"consumer\", \"cursor\"}}: {e}")))?;
    let c = consumer(&body.consumer)?;
    let acked = record_ack(&store, &name, &c, body.cursor).await?;
    Ok(Json(serde_json::json!({ "consumer": c, "acked": acked })))
}

/// Records an ack (checked against the stream's newest cursor); the consumer's place after it.
pub(super) async fn record_ack(store: &Arc<Store>, stream: &str, consumer: &str, at: i64) -> Result<i64, ApiError> {
    if at < 0 {
        return Err(ApiError::bad_request("`cursor` must be >= 0"));
    }
    let (s, n, c) = (store.clone(), stream.to_string(), consumer.to_string());
    blocking(move || {
        let last = s.stream_last(&n)?;
        if at > last {
            return Ok(Err(ApiError::bad_request(format!(
                "cursor {at} is past the stream's newest event ({last}): an ack there would skip events not written yet"
            ))));
        }
        Ok(Ok(s.ack(&n, &c, at)?))
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_iterator_names_its_stream_and_cursor() {
        let it = iterator("dev", 42);
        assert_eq!(parse_iterator("dev", &it).unwrap(), 42);
        assert!(parse_iterator("prod", &it).is_err());
        assert!(parse_iterator("dev", "not base64!").is_err());
        assert_eq!(parse_iterator("a:b", &iterator("a:b", 7)).unwrap(), 7);
    }

    #[test]
    fn schema_openapi_json_documents_every_stream_route() {
        let doc: serde_json::Value = serde_json::from_str(super::super::OPENAPI).unwrap();
        for (path, method) in [("events", "get"), ("ws", "get"), ("poll", "get"), ("ack", "post")] {
            let op = &doc["paths"][format!("/streams/{{name}}/{path}")][method];
            assert!(op["responses"]["401"].is_object(), "{method} /streams/{{name}}/{path}");
        }
    }

    #[test]
    fn query_values_are_checked() {
        assert_eq!(cursor("after", "7").unwrap(), 7);
        assert!(cursor("after", "-1").is_err() && cursor("after", "x").is_err());
        assert!(consumer("worker-1").is_ok() && consumer("").is_err() && consumer("a b").is_err());
        assert_eq!(types(["email.received"]).unwrap(), Some(vec![EventType::Received]));
        assert_eq!(types([""]).unwrap(), None);
        assert!(types(["email.nope"]).unwrap_err().message.contains("email.received"));
        assert!(number("wait", Some("31"), 0, MAX_WAIT).is_err());
    }
}
