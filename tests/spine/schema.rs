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

/// Every field path of a JSON value: objects by key, arrays through their first element.
fn paths_of(v: &Value, at: &str, out: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, v)| {
            let p = format!("{at}.{k}");
            out.insert(p.clone());
            paths_of(v, &p, out);
        }),
        Value::Array(a) => a.iter().take(1).for_each(|v| paths_of(v, &format!("{at}[]"), out)),
        _ => {}
    }
}

/// Every property path the schema allows, following `$ref`s, `oneOf` and `items`.
fn schema_paths(schema: &Value, root: &Value, at: &str, out: &mut std::collections::BTreeSet<String>) {
    if let Some(r) = schema["$ref"].as_str() {
        let def = r.trim_start_matches("#/$defs/");
        return schema_paths(&root["$defs"][def], root, at, out);
    }
    if let Some(props) = schema["properties"].as_object() {
        for (k, s) in props {
            let p = format!("{at}.{k}");
            out.insert(p.clone());
            schema_paths(s, root, &p, out);
        }
    }
    for alt in schema["oneOf"].as_array().into_iter().flatten() {
        schema_paths(alt, root, at, out);
    }
    if schema["items"].is_object() {
        schema_paths(&schema["items"], root, &format!("{at}[]"), out);
    }
}

/// The value at a path of `paths_of` (no arrays in it).
fn pointer<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if path.contains("[]") {
        return None;
    }
    v.pointer(&path.replace('.', "/"))
}

#[test]
fn the_readmes_event_reference_has_exactly_the_schemas_fields() {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find("## The event").expect("README has \"The event\"")..];
    let start = section.find("```json\n").expect("a JSON example") + "```json\n".len();
    let example: Value = serde_json::from_str(&section[start..start + section[start..].find("```").unwrap()])
        .expect("README's event example is JSON");
    let schema: Value = serde_json::from_str(include_str!("../../schema/event.schema.json")).unwrap();
    let (mut documented, mut published) = Default::default();
    paths_of(&example, "", &mut documented);
    // A stream event has `stream` where a webhook has `delivery`: the Streams section shows it.
    let streams = &readme[readme.find("## Streams").expect("README has \"Streams\"")..];
    let start = streams.find("```json\n").expect("a stream event example") + "```json\n".len();
    let stream_example: Value = serde_json::from_str(&streams[start..start + streams[start..].find("```").unwrap()])
        .expect("README's stream event example is JSON");
    paths_of(&stream_example, "", &mut documented);
    schema_paths(&schema, &schema, "", &mut published);
    // Below an array the example leaves empty, or an object it shows as null, there is nothing to
    // compare.
    let nulls: Vec<String> =
        documented.iter().filter(|p| pointer(&example, p).is_some_and(Value::is_null)).cloned().collect();
    let missing: Vec<_> = published
        .difference(&documented)
        .filter(|p| !p.contains("[]") && !nulls.iter().any(|n| p.starts_with(&format!("{n}."))))
        .collect();
    let unknown: Vec<_> = documented.difference(&published).collect();
    assert!(missing.is_empty(), "README's event example lacks {missing:?}");
    assert!(unknown.is_empty(), "README's event example has fields the schema does not: {unknown:?}");
    assert_eq!(example["version"], schema["version"], "README's example shows the current version");
}
