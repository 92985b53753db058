//! `GET /v1/streams/NAME/ws`: the stream over a WebSocket, for clients that want to ack on the same
//! connection. Text frames, JSON, each with a `type`:
//!
//! - client -> server, first: `{"type":"subscribe","events":[…]?,"after":N?,"from":"now"?,"consumer":"…"?}`
//! - server -> client: `{"type":"subscribed","stream","cursor"}` (where it starts), then
//!   `{"type":"event","cursor":N,"event":{…}}` per event
//! - client -> server: `{"type":"ack","cursor":N}` (needs a consumer), answered `{"type":"acked","cursor"}`
//! - server -> client: `{"type":"error","message"}`, and the connection closes
//!
//! The server pings every 15 s. Events are sent one at a time and only when the socket takes them,
//! so a slow client holds one page of events, never more.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;

use super::streams::{Follower, consumer, cursor, record_ack, ring, start, stopped, stream, types};
use super::{ApiError, Reader};
use crate::http::App;

const HEARTBEAT: Duration = Duration::from_secs(15);
/// How long a client has to send its subscribe frame.
const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(30);
/// Client frames are small JSON: anything bigger is refused by the WebSocket layer.
const MAX_FRAME: usize = 64 * 1024;

pub(super) async fn socket(
    _caller: Reader,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // The stream first: an unknown one is 404 whatever the request is.
    stream(&app, &name)?;
    let upgrade = upgrade.map_err(|e| ApiError::bad_request(format!("a WebSocket upgrade is needed here: {e}")))?;
    Ok(upgrade.max_message_size(MAX_FRAME).on_upgrade(move |socket| async move {
        let mut socket = socket;
        if let Err(e) = serve(&mut socket, &app, &name).await {
            let frame = serde_json::json!({ "type": "error", "message": e.message }).to_string();
            let _ = socket.send(Message::Text(frame.into())).await;
            let _ = socket.send(Message::Close(None)).await;
        }
    }))
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum ClientFrame {
    Subscribe {
        #[serde(default)]
        events: Vec<String>,
        after: Option<serde_json::Value>,
        from: Option<String>,
        consumer: Option<String>,
    },
    Ack {
        cursor: i64,
    },
}

fn frame(text: &str) -> Result<ClientFrame, ApiError> {
    serde_json::from_str(text).map_err(|e| ApiError::bad_request(format!("not a frame this stream understands: {e}")))
}

/// The connection after the upgrade; an error is sent to the client as an error frame.
async fn serve(socket: &mut WebSocket, app: &Arc<App>, name: &str) -> Result<(), ApiError> {
    let (store, mut stopping) = stream(app, name)?;
    let first = loop {
        match tokio::time::timeout(SUBSCRIBE_WITHIN, socket.recv()).await {
            Err(_) => return Err(ApiError::bad_request("no subscribe frame within 30 s")),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return Ok(()),
            Ok(Some(Ok(Message::Text(t)))) => break frame(t.as_str())?,
            Ok(Some(Ok(_))) => continue,
        }
    };
    let ClientFrame::Subscribe { events, after, from, consumer: who } = first else {
        return Err(ApiError::bad_request("the first frame must be {\"type\":\"subscribe\", …}"));
    };
    let types = types(events.iter().map(String::as_str))?;
    let who = who.as_deref().map(consumer).transpose()?;
    let explicit = match after {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => Some(cursor("after", &n.to_string())?),
        Some(serde_json::Value::String(s)) => Some(cursor("after", &s)?),
        Some(other) => Some(cursor("after", &other.to_string())?),
    };
    let at = start(&store, name, explicit, from.as_deref(), who.as_deref()).await?;
    let hello = serde_json::json!({ "type": "subscribed", "stream": name, "cursor": at }).to_string();
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return Ok(());
    }

    let mut follower = Follower::new(store.clone(), ring(app, name), name, at, types, stopping.clone());
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    loop {
        // Only the waits race; each send below runs to its end (the follower is cancel-safe).
        let out = tokio::select! {
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Ok(Message::Text(t))) => match frame(t.as_str())? {
                    ClientFrame::Ack { cursor } => {
                        let Some(c) = &who else {
                            return Err(ApiError::bad_request("an ack needs a consumer: subscribe with \"consumer\""));
                        };
                        let acked = record_ack(&store, name, c, cursor).await?;
                        serde_json::json!({ "type": "acked", "cursor": acked }).to_string()
                    }
                    ClientFrame::Subscribe { .. } => return Err(ApiError::bad_request("already subscribed")),
                },
                Some(Ok(_)) => continue,
            },
            next = follower.next() => match next? {
                Some(r) => format!(r#"{{"type":"event","cursor":{},"event":{}}}"#, r.cursor, r.body),
                None => break,
            },
            _ = heartbeat.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return Ok(());
                }
                continue;
            }
            _ = stopped(&mut stopping) => break,
        };
        if socket.send(Message::Text(out.into())).await.is_err() {
            return Ok(());
        }
    }
    let _ = socket.send(Message::Close(None)).await;
    Ok(())
}
