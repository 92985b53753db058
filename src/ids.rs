//! Identifiers: a type prefix and a lower-case ULID (time-ordered, globally unique, so receivers can
//! dedupe across several MX hosts). `msg_…` messages, `dlv_…` deliveries, `evt_…` events.

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new().to_string().to_ascii_lowercase())
}
