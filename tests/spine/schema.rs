//! The published event schema: `mxhook schema [TYPE]` and `GET /schema` give schema/event.schema.json,
//! and every event the suite receives validates against it (checked by the harness; here once more
//! on a fresh event, and on a broken one that must fail).

use std::time::Duration;

use serde_json::Value;

use crate::common::schema::problems;
use crate::common::*;

#[test]
fn the_schema_is_printed_served_and_every_event_validates() {
    let published: Value =
        serde_json::from_str(include_str!("../../schema/event.schema.json")).expect("the schema is JSON");
    let h = Harness::basic();
    let gw = h.start();

    let printed = h.cli(&["schema"]);
    printed.assert_ok("schema");
    assert_eq!(serde_json::from_str::<Value>(&printed.stdout_str()).unwrap(), published);
    let one = h.cli(&["schema", "email.received"]);
    one.assert_ok("schema email.received");
    let one: Value = serde_json::from_str(&one.stdout_str()).unwrap();
    assert_eq!(one["properties"]["type"]["const"], "email.received");
    let unknown = h.cli(&["schema", "email.nonsense"]);
    assert_eq!(unknown.code, Some(2), "{}", unknown.describe());
    assert!(unknown.stderr_str().contains("email.received"), "{}", unknown.describe());

    let served = get(&agent(), &format!("http://{}/schema", gw.http), &[]);
    assert_eq!(served.status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&served.body).unwrap(), published);

    let mut c = SmtpClient::ready(gw.smtp);
    let id = c.send_mail("ada@sender.test", &["inbox@example.test"], b"Subject: shape\r\n\r\nhello\r\n");
    h.wait_until(Duration::from_secs(10), "the event", || !h.rx.requests_for_message(&id).is_empty());
    let mut event = h.rx.requests_for_message(&id)[0].json();
    assert_eq!(event["version"], published["version"]);
    assert!(problems(&event).is_empty(), "{:?}", problems(&event));
    // A field the schema does not know fails it: the shape cannot change unnoticed.
    event["message"]["surprise"] = Value::from(1);
    assert!(!problems(&event).is_empty(), "an unknown field must fail the schema");
}
