//! The published shape of the event: schema/event.schema.json (JSON Schema 2020-12), served at
//! `GET /schema` and printed by `mxhook schema`. The test harness validates every webhook the suite
//! receives against it, so the event cannot change shape without this file changing too.

use serde_json::Value;

/// The date of the last change of the event's shape: the event's `version` and the schema's.
pub const EVENT_VERSION: &str = "2026-11-29";

/// The schema of every event, as published.
pub const SCHEMA: &str = include_str!("../../schema/event.schema.json");

/// The event types the schema knows (its `$defs.type` enum).
pub fn types() -> Vec<String> {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap_or_default();
    schema["$defs"]["type"]["enum"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The schema of one event type: the published schema with `type` fixed to it. None for a type
/// the schema does not know.
pub fn for_type(kind: &str) -> Option<Value> {
    if !types().iter().any(|t| t == kind) {
        return None;
    }
    let mut schema: Value = serde_json::from_str(SCHEMA).ok()?;
    schema["title"] = Value::from(format!("mxhook {kind} event"));
    schema["properties"]["type"] = serde_json::json!({ "const": kind });
    // A bounce always has its report, a complaint its feedback report.
    let message = &mut schema["$defs"]["message"]["properties"];
    match kind {
        "email.bounced" => message["bounce"] = serde_json::json!({ "$ref": "#/$defs/bounce" }),
        "email.complained" => message["complaint"] = serde_json::json!({ "$ref": "#/$defs/complaint" }),
        _ => {}
    }
    Some(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_carries_the_events_version() {
        let schema: Value = serde_json::from_str(SCHEMA).expect("the schema is JSON");
        assert_eq!(schema["version"], EVENT_VERSION);
        assert_eq!(schema["properties"]["version"]["const"], EVENT_VERSION);
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert!(types().contains(&"email.received".to_string()));
        assert_eq!(for_type("email.received").unwrap()["properties"]["type"]["const"], "email.received");
        assert!(for_type("email.nonsense").is_none());
        // The schema knows exactly the event types the code has.
        let names: Vec<String> = super::super::EventType::ALL.iter().map(|t| t.as_str().to_string()).collect();
        assert_eq!(types(), names);
        assert_eq!(
            for_type("email.bounced").unwrap()["$defs"]["message"]["properties"]["bounce"]["$ref"],
            "#/$defs/bounce"
        );
    }
}
