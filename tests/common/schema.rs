//! The published event schema (schema/event.schema.json), checked with a real JSON Schema validator
//! (the `jsonschema` crate, draft 2020-12, formats checked). Every webhook a test receives through
//! the harness is validated when the harness is dropped, so a change of the event's shape that does
//! not update the schema fails the suite.

use std::sync::OnceLock;

use serde_json::Value;

const SCHEMA: &str = include_str!("../../schema/event.schema.json");

fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let schema: Value = serde_json::from_str(SCHEMA).expect("schema/event.schema.json is JSON");
        jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("schema/event.schema.json is not a valid JSON Schema: {e}"))
    })
}

/// The schema's problems with `event`, one line each (empty: it validates).
pub fn problems(event: &Value) -> Vec<String> {
    validator().iter_errors(event).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

/// Panics unless `event` validates against the published schema.
#[track_caller]
pub fn assert_valid(event: &Value) {
    let problems = problems(event);
    assert!(
        problems.is_empty(),
        "the event does not match schema/event.schema.json:\n{}\nevent: {event}",
        problems.join("\n")
    );
}
