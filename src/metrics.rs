//! Prometheus metrics (`GET /metrics`): counters the SMTP side and the scheduler bump as mail
//! flows, plus queue gauges read from the store at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::mail::{NextState, Reason};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    pub endpoint: String,
}

pub struct Metrics {
    registry: Registry,
    pub accepted: Counter,
    rejected: Family<ReasonLabel, Counter>,
    attempts: Family<Outcome, Counter>,
    pub attempt_seconds: Histogram,
    pub pending: Gauge,
    pub oldest_pending_seconds: Gauge<f64, AtomicU64>,
    consecutive_failures: Family<EndpointLabel, Gauge>,
    /// Attempts made, all outcomes: with `accepted`, what `activity` counts.
    attempted: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mxhook");
        let accepted = Counter::default();
        let rejected = Family::<ReasonLabel, Counter>::default();
        let attempts = Family::<Outcome, Counter>::default();
        let attempt_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let pending = Gauge::default();
        let oldest_pending_seconds = Gauge::<f64, AtomicU64>::default();
        let consecutive_failures = Family::<EndpointLabel, Gauge>::default();
        registry.register("messages_accepted", "Messages stored and answered 250", accepted.clone());
        registry.register("messages_rejected", "Messages and recipients refused, by reason", rejected.clone());
        registry.register(
            "delivery_attempts",
            "Webhook attempts by outcome (succeeded, retry, failed)",
            attempts.clone(),
        );
        registry.register("delivery_attempt_duration_seconds", "Time of one webhook attempt", attempt_seconds.clone());
        registry.register("deliveries_pending", "Deliveries waiting for an attempt", pending.clone());
        registry.register(
            "oldest_pending_delivery_age_seconds",
            "Age of the oldest event not yet delivered",
            oldest_pending_seconds.clone(),
        );
        registry.register(
            "endpoint_consecutive_failures",
            "Failed attempts in a row, per endpoint (0 after a success)",
            consecutive_failures.clone(),
        );
        Self {
            registry,
            accepted,
            rejected,
            attempts,
            attempt_seconds,
            pending,
            oldest_pending_seconds,
            consecutive_failures,
            attempted: AtomicU64::new(0),
        }
    }

    pub fn rejected(&self, reason: Reason) {
        self.rejected.get_or_create(&ReasonLabel { reason: reason.as_str().to_string() }).inc();
    }

    /// Grows with every message accepted and every attempt made: unchanged means the gateway was idle.
    pub fn activity(&self) -> u64 {
        self.accepted.get() + self.attempted.load(Ordering::Relaxed)
    }

    pub fn attempt(&self, endpoint: &str, next: NextState, seconds: f64) {
        self.attempted.fetch_add(1, Ordering::Relaxed);
        self.attempts.get_or_create(&Outcome { outcome: next.outcome().to_string() }).inc();
        self.attempt_seconds.observe(seconds);
        let failures = self.consecutive_failures.get_or_create(&EndpointLabel { endpoint: endpoint.to_string() });
        if next == NextState::Succeeded {
            failures.set(0);
        } else {
            failures.inc();
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
