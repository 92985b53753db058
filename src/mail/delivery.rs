//! A delivery's nouns: where it goes (`Destination`), where it stands (`DeliveryStatus`) and what
//! one attempt decided (`NextState`). Their text forms (SQL, JSON, CLI) are written here, once.

use std::fmt;

use serde::Serialize;

/// Where a delivery goes: a webhook endpoint by its `[endpoints.NAME]`, or a copy forwarded by the
/// relay for the route whose `match` is given. Stored as its `key`: `NAME`, or `forward:MATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    Webhook(&'a str),
    Forward(&'a str),
}

const FORWARD: &str = "forward:";

impl<'a> Destination<'a> {
    /// The destination a stored key names.
    pub fn of(key: &'a str) -> Self {
        match key.strip_prefix(FORWARD) {
            Some(route) => Destination::Forward(route),
            None => Destination::Webhook(key),
        }
    }

    /// The key a delivery row keeps.
    pub fn key(self) -> String {
        match self {
            Destination::Webhook(name) => name.to_string(),
            Destination::Forward(route) => format!("{FORWARD}{route}"),
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Due now or at `next_attempt_at`.
    Pending,
    /// An attempt was accepted (2xx, or 250 from the relay).
    Succeeded,
    /// Every attempt of the schedule failed; `mxhook deliveries retry` sends it again.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [DeliveryStatus::Pending, DeliveryStatus::Succeeded, DeliveryStatus::Failed]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an attempt decided for its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextState {
    Succeeded,
    /// Try again at `at` (ms since the epoch), at `step` of the schedule.
    Retry {
        at: i64,
        step: i64,
    },
    Failed {
        step: i64,
    },
}

impl NextState {
    pub fn status(self) -> DeliveryStatus {
        match self {
            NextState::Succeeded => DeliveryStatus::Succeeded,
            NextState::Retry { .. } => DeliveryStatus::Pending,
            NextState::Failed { .. } => DeliveryStatus::Failed,
        }
    }

    /// The `outcome` label of the attempt metrics and log lines.
    pub fn outcome(self) -> &'static str {
        match self {
            NextState::Succeeded => "succeeded",
            NextState::Retry { .. } => "retry",
            NextState::Failed { .. } => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_keys_round_trip() {
        for d in [Destination::Webhook("app"), Destination::Forward("support@example.test")] {
            assert_eq!(Destination::of(&d.key()), d);
        }
        assert_eq!(Destination::Forward("a@b.test").key(), "forward:a@b.test");
        for s in [DeliveryStatus::Pending, DeliveryStatus::Succeeded, DeliveryStatus::Failed] {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
