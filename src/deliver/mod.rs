//! Delivery: a scheduler loop claims due deliveries from the store, runs each attempt on a blocking
//! thread (ureq), records the outcome and the next due time from the endpoint's retry list.
//! `attempt_one` does one item and is what tests and the loop share; the loop only decides when.
//! A delivery is a webhook POST, or (endpoint `forward:<route>`) a copy re-sent through the relay.

pub mod forward;
pub mod sign;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::config::Endpoint;
use crate::metrics::Metrics;
use crate::store::{Attempt, Delivery, NextState, Store};
use crate::time::{now_ms, rfc3339};
use sign::SigningKey;

/// Attempts in flight at once across all endpoints (each endpoint also has its own `concurrency`).
const CONCURRENCY: usize = 32;
/// The longest the loop sleeps without looking at the store: a CLI retry is seen within this.
const POLL: Duration = Duration::from_millis(500);

struct Target {
    endpoint: Endpoint,
    key: SigningKey,
    /// One agent per endpoint keeps its connections alive between attempts.
    agent: ureq::Agent,
}

pub struct Deliverer {
    store: Arc<Store>,
    targets: BTreeMap<String, Target>,
    metrics: Arc<Metrics>,
    /// The `[forward]` relay, when configured: sends the deliveries of forward routes.
    forwarder: Option<forward::Forwarder>,
}

/// What one attempt came to, whichever its kind.
struct Outcome {
    attempt: Attempt,
    success: bool,
    /// No retry can help (a 5xx from the relay): the delivery fails now.
    permanent: bool,
}

impl Deliverer {
    pub fn new(
        store: Arc<Store>,
        endpoints: &BTreeMap<String, Endpoint>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let mut targets = BTreeMap::new();
        for (name, ep) in endpoints {
            let key = SigningKey::parse(&ep.secret.0)?;
            targets.insert(name.clone(), Target { endpoint: ep.clone(), key, agent: webhook::agent(ep) });
        }
        Ok(Self { store, targets, metrics, forwarder: None })
    }

    /// The forward relay's retry schedule (empty without one).
    pub fn forward_retry(&self) -> &[Duration] {
        self.forwarder.as_ref().map_or(&[], |f| &f.retry[..])
    }

    /// Lets this deliverer send forward routes' copies through `forwarder`.
    pub fn with_forwarder(mut self, forwarder: Option<forward::Forwarder>) -> Self {
        self.forwarder = forwarder;
        self
    }

    /// How many attempts may be in flight to an endpoint at once.
    fn concurrency(&self, endpoint: &str) -> usize {
        self.targets.get(endpoint).map_or(4, |t| t.endpoint.concurrency)
    }

    /// One attempt of one claimed delivery, recorded with its outcome. Blocking.
    pub fn attempt_one(&self, d: &Delivery) -> anyhow::Result<()> {
        let number = d.attempts + 1;
        let started_at = now_ms();
        let (outcome, schedule) = match forward::route_of(&d.endpoint) {
            Some(route) => (self.forward(d, route, number, started_at)?, self.forwarder.as_ref().map(|f| &f.retry[..])),
            None => {
                let target = self.targets.get(&d.endpoint);
                (self.post(d, target, number, started_at)?, target.map(|t| &t.endpoint.retry[..]))
            }
        };
        let Outcome { attempt, success, permanent } = outcome;
        let schedule = schedule.unwrap_or(&[]);
        let next =
            if permanent { NextState::Failed { step: d.step + 1 } } else { next_state(d, success, schedule, now_ms()) };
        let outcome = match next {
            NextState::Succeeded => "succeeded",
            NextState::Retry { .. } => "retry",
            NextState::Failed { .. } => "failed",
        };
        self.metrics.attempt(&d.endpoint, outcome, attempt.duration_ms as f64 / 1000.0);
        tracing::info!(
            delivery = %d.id, message_id = %d.message_id, event = %d.event_id, endpoint = %d.endpoint,
            attempt = number, status = attempt.http_status.unwrap_or(0), ms = attempt.duration_ms,
            error = attempt.error.as_deref().unwrap_or(""),
            outcome,
            "delivery attempt"
        );
        self.store.finish_attempt(d, &attempt, &next)
    }

    /// A webhook attempt: the signed event POSTed to the endpoint.
    fn post(&self, d: &Delivery, target: Option<&Target>, number: i64, started_at: i64) -> anyhow::Result<Outcome> {
        let response = match (target, self.store.message(&d.message_id)?) {
            (None, _) => Err(format!("endpoint `{}` is not in the configuration", d.endpoint)),
            (_, None) => Err(format!("message {} is missing from the store", d.message_id)),
            (Some(t), Some(m)) => {
                let parts = webhook::EventParts {
                    event_id: &d.event_id,
                    created_at: &rfc3339(d.created_at),
                    delivery_id: &d.id,
                    endpoint: &d.endpoint,
                    attempt: number,
                    attempted_at: &rfc3339(started_at),
                    message_json: &m.event_message,
                };
                let body = webhook::event_body(&parts)?;
                Ok(webhook::post(&t.agent, &t.endpoint, &t.key, &d.event_id, &body))
            }
        };
        Ok(match response {
            Ok(r) => Outcome {
                success: r.is_success(),
                permanent: false,
                attempt: Attempt {
                    attempt: number,
                    started_at,
                    duration_ms: r.duration_ms,
                    http_status: r.status.map(i64::from),
                    error: r.error,
                    response_body: r.body_excerpt,
                },
            },
            Err(error) => Outcome { success: false, permanent: false, attempt: failed(number, started_at, error) },
        })
    }

    /// A forward attempt: the raw message from the spool, through the relay. The relay's final
    /// answer is kept as the attempt's response; it has no HTTP status.
    fn forward(&self, d: &Delivery, route: &str, number: i64, started_at: i64) -> anyhow::Result<Outcome> {
        let Some(forwarder) = &self.forwarder else {
            let error = "no [forward] relay in the configuration".to_string();
            return Ok(Outcome { success: false, permanent: false, attempt: failed(number, started_at, error) });
        };
        let Some(m) = self.store.message(&d.message_id)? else {
            let error = format!("message {} is missing from the store", d.message_id);
            return Ok(Outcome { success: false, permanent: true, attempt: failed(number, started_at, error) });
        };
        let raw = match self.store.raw(&m.id) {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                let error = "the raw message was removed by retention".to_string();
                return Ok(Outcome { success: false, permanent: true, attempt: failed(number, started_at, error) });
            }
            Err(e) => {
                let error = format!("cannot read the raw message: {e}");
                return Ok(Outcome { success: false, permanent: true, attempt: failed(number, started_at, error) });
            }
        };
        let sent = forwarder.send(route, &m.mail_from, &raw);
        Ok(Outcome {
            success: sent.error.is_none(),
            permanent: sent.permanent,
            attempt: Attempt {
                attempt: number,
                started_at,
                duration_ms: sent.duration_ms,
                http_status: None,
                error: sent.error,
                response_body: sent.reply,
            },
        })
    }
}

fn failed(attempt: i64, started_at: i64, error: String) -> Attempt {
    Attempt { attempt, started_at, duration_ms: 0, http_status: None, error: Some(error), response_body: None }
}

/// The retry policy. `step` indexes the endpoint's retry list (the delay before that attempt,
/// counted from the previous one). A CLI-requested attempt uses no step, so retrying a failed
/// delivery by hand gives it one attempt and leaves a pending one on its schedule.
pub fn next_state(d: &Delivery, success: bool, schedule: &[Duration], now: i64) -> NextState {
    if success {
        return NextState::Succeeded;
    }
    let step = if d.retry_requested_at.is_some() { d.step } else { d.step + 1 };
    match schedule.get(step as usize) {
        Some(delay) => NextState::Retry { at: now + delay.as_millis() as i64, step },
        None => NextState::Failed { step },
    }
}

/// The scheduler loop: runs until `shutdown`, then lets attempts in flight finish.
pub async fn run(deliverer: Arc<Deliverer>, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    // Each task gives back the endpoint it used (so per-endpoint counts stay exact) and, when its
    // outcome could not be recorded, the delivery to put back in the queue.
    let mut in_flight: JoinSet<(String, Option<String>)> = JoinSet::new();
    let mut per_endpoint: BTreeMap<String, usize> = BTreeMap::new();
    let mut unrecorded: Vec<String> = Vec::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let free = CONCURRENCY.saturating_sub(in_flight.len());
        let running = per_endpoint.clone();
        let (store, d) = (deliverer.store.clone(), deliverer.clone());
        let release = std::mem::take(&mut unrecorded);
        let (due, next) = match tokio::task::spawn_blocking(move || {
            // Until the store takes writes again this fails, and the ids wait for the next turn.
            if !release.is_empty()
                && let Err(e) = store.release(&release)
            {
                return Err((e, release));
            }
            // What each endpoint's concurrency leaves free: a hard cap, however many slots are free.
            let room = |e: &str| d.concurrency(e).saturating_sub(running.get(e).copied().unwrap_or(0));
            let claimed = if free > 0 { store.claim_due(now_ms(), free, &room) } else { Ok(Vec::new()) };
            let due = claimed.and_then(|due| Ok((due, store.next_due()?)));
            due.map_err(|e| (e, Vec::new()))
        })
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err((e, release))) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read the delivery queue");
                unrecorded.extend(release);
                (Vec::new(), None)
            }
            Err(e) => {
                tracing::error!(error = %e, "delivery queue task failed");
                (Vec::new(), None)
            }
        };
        let claimed_any = !due.is_empty();
        for d in due {
            *per_endpoint.entry(d.endpoint.clone()).or_default() += 1;
            let deliverer = deliverer.clone();
            in_flight.spawn_blocking(move || match deliverer.attempt_one(&d) {
                Ok(()) => (d.endpoint, None),
                Err(e) => {
                    tracing::error!(delivery = %d.id, error = %format!("{e:#}"), "cannot record a delivery attempt; it will be made again");
                    (d.endpoint, Some(d.id))
                }
            });
        }
        // Overdue work that could not be claimed waits for a busy endpoint to free a slot.
        let wait = match next {
            Some(t) if t > now_ms() || claimed_any => {
                Duration::from_millis((t - now_ms()).clamp(0, POLL.as_millis() as i64) as u64)
            }
            _ => POLL,
        };
        let full = in_flight.len() >= CONCURRENCY;
        tokio::select! {
            _ = tokio::time::sleep(wait), if !full => {}
            _ = wake.notified() => {}
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                // Every attempt that has ended frees its slot before the next claim, so one claim
                // (a query of the queue) refills them all rather than one per turn of the loop.
                let mut done = Some(done);
                while let Some(ended) = done {
                    if let Ok((endpoint, failed)) = ended {
                        if let Some(n) = per_endpoint.get_mut(&endpoint) {
                            *n = n.saturating_sub(1);
                        }
                        unrecorded.extend(failed);
                    }
                    done = in_flight.try_join_next();
                }
            }
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    while in_flight.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(step: i64, manual: bool) -> Delivery {
        Delivery {
            id: "dlv_1".into(),
            message_id: "msg_1".into(),
            event_id: "evt_1".into(),
            endpoint: "app".into(),
            status: "pending".into(),
            attempts: step,
            step,
            retry_requested_at: manual.then_some(1),
            next_attempt_at: Some(0),
            last_status: None,
            last_error: None,
            created_at: 0,
        }
    }

    #[test]
    fn follows_the_schedule_then_fails() {
        let s = crate::config::default_retry();
        assert!(matches!(next_state(&delivery(0, false), false, &s, 1000), NextState::Retry { at: 61_000, step: 1 }));
        assert!(matches!(next_state(&delivery(4, false), false, &s, 0), NextState::Retry { at: 28_800_000, step: 5 }));
        assert!(matches!(next_state(&delivery(5, false), false, &s, 0), NextState::Failed { step: 6 }));
        assert!(matches!(next_state(&delivery(2, false), true, &s, 0), NextState::Succeeded));
    }

    #[test]
    fn a_manual_attempt_uses_no_step() {
        let s = crate::config::default_retry();
        assert!(matches!(next_state(&delivery(6, true), false, &s, 0), NextState::Failed { step: 6 }));
        assert!(matches!(next_state(&delivery(2, true), false, &s, 0), NextState::Retry { at: 300_000, step: 2 }));
    }
}
