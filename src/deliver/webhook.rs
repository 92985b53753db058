//! One webhook request: the event body (built per attempt: `delivery.attempt` changes, the event
//! id never does), its Standard Webhooks signature, and the POST with ureq. Used by the scheduler,
//! and by `mxhook endpoints test`.

use std::io::Read;
use std::time::Instant;

use super::resolve::CachingResolver;
use crate::config::Endpoint;
use crate::mail::{EventType, Via};

/// How much of an endpoint's answer we keep for `deliveries show`.
const RESPONSE_EXCERPT: u64 = 1024;

pub struct EventParts<'a> {
    pub event_id: &'a str,
    /// The message's type, as stored at ingest.
    pub event_type: EventType,
    pub created_at: &'a str,
    pub delivery_id: &'a str,
    pub endpoint: &'a str,
    pub attempt: i64,
    pub attempted_at: &'a str,
    /// The `message` object as stored at ingest (JSON text).
    pub message_json: &'a str,
}

/// The webhook's event body (see `mail::event_body`, shared with the streams).
pub fn event_body(p: &EventParts<'_>) -> anyhow::Result<Vec<u8>> {
    let via =
        Via::Delivery { id: p.delivery_id, endpoint: p.endpoint, attempt: p.attempt, attempted_at: p.attempted_at };
    crate::mail::event_body(p.event_id, p.event_type, p.created_at, &via, p.message_json)
}

/// What one POST came to.
pub struct Response {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub body_excerpt: Option<String>,
    pub duration_ms: i64,
}

impl Response {
    pub fn is_success(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

pub fn agent(ep: &Endpoint) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(ep.timeout))
        // Record every status ourselves; a redirect is the endpoint's answer, not a place to follow.
        .http_status_as_error(false)
        .max_redirects(0)
        // Keep a connection per attempt in flight (ureq's default keeps 3 per host: the others
        // would reconnect for every attempt).
        .max_idle_connections(ep.concurrency.max(10))
        .max_idle_connections_per_host(ep.concurrency.max(3))
        // Each pooled connection keeps its buffers (ureq's default: 128 KiB in, 128 KiB out, 2 MiB
        // for 8 connections, idle). An answer's head rarely needs more than a few KB (the input
        // buffer grows when it does); the output side writes the event 64 KiB per call.
        .input_buffer_size(16 * 1024)
        .output_buffer_size(64 * 1024)
        .proxy(None)
        .user_agent(concat!("mxhook/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::default(),
        CachingResolver::default(),
    )
}

/// Signs and POSTs `body`; never fails: every outcome is a `Response` to record.
pub fn post(agent: &ureq::Agent, ep: &Endpoint, event_id: &str, body: &[u8]) -> Response {
    let timestamp = crate::time::now_ms() / 1000;
    let signature = ep.keys.sign(event_id, timestamp, body);
    let started = Instant::now();
    let result = agent
        .post(&ep.url)
        .header("content-type", "application/json")
        .header("webhook-id", event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .send(body);
    let mut out = Response { status: None, error: None, body_excerpt: None, duration_ms: 0 };
    match result {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            out.status = Some(status);
            let mut excerpt = Vec::new();
            let read = resp.body_mut().as_reader().take(RESPONSE_EXCERPT).read_to_end(&mut excerpt);
            out.body_excerpt = Some(String::from_utf8_lossy(&excerpt).into_owned()).filter(|s| !s.is_empty());
            if !(200..300).contains(&status) {
                out.error = Some(format!("HTTP {status}"));
            } else if let Err(e) = read {
                tracing::debug!(error = %e, "reading the endpoint's answer failed after a 2xx");
            }
        }
        Err(e) => out.error = Some(describe(&e)),
    }
    out.duration_ms = started.elapsed().as_millis() as i64;
    out
}

fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::Io(io) => format!("connection failed: {io}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_event_with_its_message_as_given() {
        let message_json = r#"{"id":"msg_1","text":"a \"quoted\" }","raw":{"base64":null}}"#;
        let parts = EventParts {
            event_id: "evt_1",
            event_type: EventType::Bounced,
            created_at: "2026-11-23T00:00:00Z",
            delivery_id: "dlv_1",
            endpoint: "app",
            attempt: 2,
            attempted_at: "2026-11-23T00:00:01Z",
            message_json,
        };
        let body = event_body(&parts).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], "evt_1");
        assert_eq!(v["type"], "email.bounced");
        assert_eq!(v["delivery"]["attempt"], 2);
        assert_eq!(v["message"], serde_json::from_str::<serde_json::Value>(message_json).unwrap());
        assert!(body.ends_with(format!(r#","message":{message_json}}}"#).as_bytes()));
    }
}
