//! The event as sent: `id`, `type`, `version`, `created_at`, what it came by (a webhook's `delivery`
//! or a stream's `stream`) and the stored `message` object. Built here only, so a webhook and a
//! stream event of the same message differ in exactly that one object.

use serde::Serialize;

use super::{EVENT_VERSION, EventType};

/// What an event came by: a webhook attempt, or a place in a stream.
pub enum Via<'a> {
    Delivery { id: &'a str, endpoint: &'a str, attempt: i64, attempted_at: &'a str },
    Stream { name: &'a str, cursor: i64 },
}

/// The event around its `message`, which is added as the JSON it already is (see `event_body`).
#[derive(Serialize)]
struct Head<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    version: &'a str,
    created_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery: Option<DeliveryInfo<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<StreamInfo<'a>>,
}

#[derive(Serialize)]
struct DeliveryInfo<'a> {
    id: &'a str,
    endpoint: &'a str,
    attempt: i64,
    attempted_at: &'a str,
}

#[derive(Serialize)]
struct StreamInfo<'a> {
    name: &'a str,
    cursor: i64,
}

/// The event body: `event_id` is the webhook's or the stream event's own id, the same however often
/// it is sent or read; `message_json` is the `message` object as stored at ingest (with
/// `raw.base64` put back).
pub fn event_body(
    event_id: &str,
    event_type: EventType,
    created_at: &str,
    via: &Via<'_>,
    message_json: &str,
) -> anyhow::Result<Vec<u8>> {
    let (delivery, stream) = match *via {
        Via::Delivery { id, endpoint, attempt, attempted_at } => {
            (Some(DeliveryInfo { id, endpoint, attempt, attempted_at }), None)
        }
        Via::Stream { name, cursor } => (None, Some(StreamInfo { name, cursor })),
    };
    let head = Head { id: event_id, kind: event_type.as_str(), version: EVENT_VERSION, created_at, delivery, stream };
    // `message` was serialised by us at ingest: it is spliced in, not parsed and copied again.
    let mut body = serde_json::to_vec(&head)?;
    anyhow::ensure!(body.pop() == Some(b'}'), "an event serialises as a JSON object");
    body.reserve(message_json.len() + 12);
    body.extend_from_slice(b",\"message\":");
    body.extend_from_slice(message_json.as_bytes());
    body.push(b'}');
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = r#"{"id":"msg_1","text":"a \"quoted\" }","raw":{"base64":null}}"#;

    #[test]
    fn the_body_is_the_event_with_its_message_as_given() {
        let via = Via::Delivery { id: "dlv_1", endpoint: "app", attempt: 2, attempted_at: "2026-11-23T00:00:01Z" };
        let body = event_body("evt_1", EventType::Bounced, "2026-11-23T00:00:00Z", &via, MESSAGE).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], "evt_1");
        assert_eq!(v["type"], "email.bounced");
        assert_eq!(v["delivery"]["attempt"], 2);
        assert!(v.get("stream").is_none());
        assert_eq!(v["message"], serde_json::from_str::<serde_json::Value>(MESSAGE).unwrap());
        assert!(body.ends_with(format!(r#","message":{MESSAGE}}}"#).as_bytes()));
    }

    #[test]
    fn a_stream_event_has_its_stream_and_place_instead_of_a_delivery() {
        let via = Via::Stream { name: "dev", cursor: 42 };
        let body = event_body("evt_2", EventType::Received, "2026-11-23T00:00:00Z", &via, MESSAGE).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["stream"], serde_json::json!({"name": "dev", "cursor": 42}));
        assert!(v.get("delivery").is_none());
        assert_eq!(v["message"]["id"], "msg_1");
    }
}
