//! `GET /v1/streams/NAME/events`: the stream as Server-Sent Events. Each event's `id:` is its
//! cursor, so a browser `EventSource` resumes by itself (`Last-Event-ID`); the `data:` is the event
//! JSON, the same body a webhook gets (with `stream` instead of `delivery`). A comment line every
//! 15 s keeps proxies from closing an idle connection. The body is pulled by the connection: a slow
//! client holds one page of events, never more.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use super::params::ApiQuery;
use super::streams::{Follower, ReadQuery, consumer, cursor, ring, start, stream, types};
use super::{ApiError, Reader};
use crate::http::App;

/// How often an idle connection gets a comment line.
const HEARTBEAT: Duration = Duration::from_secs(15);

pub(super) async fn events(
    _caller: Reader,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    let (store, stopping) = stream(&app, &name)?;
    let types = types(q.types.as_deref().unwrap_or("").split(','))?;
    let consumer = q.consumer.as_deref().map(consumer).transpose()?;
    let last_event_id = headers.get("last-event-id").map(|v| v.to_str().unwrap_or("?"));
    let explicit = match (last_event_id, q.after.as_deref()) {
        (Some(id), _) => Some(cursor("Last-Event-ID", id)?),
        (None, Some(a)) => Some(cursor("after", a)?),
        (None, None) => None,
    };
    let after = start(&store, &name, explicit, q.from.as_deref(), consumer.as_deref()).await?;
    let follower = Follower::new(store, ring(&app, &name), &name, after, types, stopping);
    let events = futures_util::stream::unfold(follower, |mut f| async move {
        match f.next().await {
            Ok(Some(r)) => Some((Ok(Event::default().id(r.cursor.to_string()).data(&*r.body)), f)),
            // Stopping, or the store failed (logged): the client reconnects with Last-Event-ID.
            Ok(None) | Err(_) => None,
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat")))
}
