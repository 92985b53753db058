//! Delivery: a scheduler loop runs each attempt on a blocking thread (ureq), records the outcome
//! and the next due time from the endpoint's retry list. `attempt_one` does one item and is what
//! tests and the loop share; the loop only decides when.
//! A delivery is a webhook POST, or (endpoint `forward:<route>`) a copy re-sent through the relay.
//!
//! Work reaches the loop two ways. A new message's deliveries are handed over by ingest right
//! after their commit, already claimed and with their event (`hand_off`): no query of the queue,
//! no read of the event. Everything else (retries, CLI requests, what did not fit the hand-off,
//! what a restart left) is claimed from the store, which the loop asks only when it may have
//! something: at its next due time, after a wake-up, or while a backlog fills every slot.

pub mod forward;
mod ordering;
mod resolve;
pub mod webhook;

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::config::Endpoint;
use crate::mail::{Destination, EventType, NextState};
use crate::metrics::Metrics;
use crate::store::{Attempt, Delivery, Store};
use crate::time::{now_ms, rfc3339};

pub use ordering::Ordering;

/// Attempts in flight at once across all endpoints (each endpoint also has its own `concurrency`).
const CONCURRENCY: usize = 64;
/// The longest the loop sleeps without looking at the store: a CLI retry is seen within this.
const POLL: Duration = Duration::from_millis(500);
/// New deliveries waiting in memory for a slot; past this they wait in the store's queue.
const HANDOFF_MAX: usize = 1024;

struct Target {
    endpoint: Endpoint,
    /// One agent per endpoint keeps its connections alive between attempts.
    agent: ureq::Agent,
}

pub struct Deliverer {
    store: Arc<Store>,
    targets: BTreeMap<String, Target>,
    metrics: Arc<Metrics>,
    /// The `[forward]` relay, when configured: sends the deliveries of forward routes.
    forwarder: Option<forward::Forwarder>,
    /// New deliveries from ingest, claimed, each with its event's type and `message` JSON.
    fresh: Mutex<VecDeque<(Delivery, Stamped)>>,
    fresh_ready: Notify,
    /// The `ordering = "fifo"` endpoints: never handed off (ingest leaves them in the queue), claimed
    /// one at a time in arrival order.
    fifo: Vec<String>,
}

/// What one attempt came to, whichever its kind.
struct Outcome {
    attempt: Attempt,
    success: bool,
    /// No retry can help (a 5xx from the relay): the delivery fails now.
    permanent: bool,
}

impl Deliverer {
    pub fn new(store: Arc<Store>, endpoints: &BTreeMap<String, Endpoint>, metrics: Arc<Metrics>) -> Self {
        let mut targets = BTreeMap::new();
        let fifo = endpoints.values().filter(|e| e.ordering == Ordering::Fifo).map(|e| e.name.clone()).collect();
        for (name, ep) in endpoints {
            targets.insert(name.clone(), Target { endpoint: ep.clone(), agent: webhook::agent(ep) });
        }
        Self {
            store,
            targets,
            metrics,
            forwarder: None,
            fresh: Mutex::new(VecDeque::new()),
            fresh_ready: Notify::new(),
            fifo,
        }
    }

    /// The endpoint takes its events one at a time in arrival order.
    fn is_fifo(&self, endpoint: &str) -> bool {
        self.fifo.iter().any(|e| e == endpoint)
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

    /// Takes a new message's deliveries, claimed by `Store::ingest`, to attempt as soon as a slot is
    /// free. Gives back those that do not fit; the caller unclaims them (the store's queue has them)
    /// and wakes the loop.
    pub fn hand_off(&self, deliveries: Vec<Delivery>, event_type: EventType, event_message: String) -> Vec<Delivery> {
        if deliveries.is_empty() {
            return deliveries;
        }
        // Shared as it is, not copied (an `Arc<str>` would copy it).
        let event = Stamped { event_type, message: Arc::new(event_message) };
        let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        let room = HANDOFF_MAX.saturating_sub(fresh.len());
        let mut deliveries = deliveries;
        let rest = deliveries.split_off(room.min(deliveries.len()));
        fresh.extend(deliveries.into_iter().map(|d| (d, event.clone())));
        drop(fresh);
        self.fresh_ready.notify_one();
        rest
    }

    /// Up to `free` handed-off deliveries, oldest first, each for an endpoint with a free slot
    /// (`busy` counts the requests in flight). The others keep their place.
    fn take_fresh(&self, free: usize, busy: &BTreeMap<String, usize>) -> Vec<(Delivery, Stamped)> {
        let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        let mut taken = Vec::new();
        let mut more: BTreeMap<String, usize> = BTreeMap::new();
        let mut i = 0;
        while i < fresh.len() && taken.len() < free {
            let endpoint = &fresh[i].0.endpoint;
            let busy = busy.get(endpoint).copied().unwrap_or(0) + more.get(endpoint).copied().unwrap_or(0);
            if busy < self.concurrency(endpoint) {
                *more.entry(endpoint.clone()).or_default() += 1;
                // Leaves `i` at the next item.
                taken.extend(fresh.remove(i));
            } else {
                i += 1;
            }
        }
        taken
    }

    /// One attempt of one claimed delivery, recorded with its outcome. Blocking.
    pub fn attempt_one(&self, d: &Delivery) -> anyhow::Result<()> {
        self.attempt(d, None, &mut || {})
    }

    /// `attempt_one`, with the event's `message` JSON when the caller has it (no read of the store).
    /// `sent` is called once the endpoint has answered (or failed to), before the outcome is
    /// recorded: the endpoint's slot is free from then on.
    fn attempt(&self, d: &Delivery, event_message: Option<&Stamped>, sent: &mut dyn FnMut()) -> anyhow::Result<()> {
        let number = d.attempts + 1;
        let started_at = now_ms();
        let (outcome, schedule) = match Destination::of(&d.endpoint) {
            Destination::Forward(route) => {
                (self.forward(d, route, number, started_at)?, self.forwarder.as_ref().map(|f| &f.retry[..]))
            }
            Destination::Webhook(name) => {
                let target = self.targets.get(name);
                (self.post(d, target, event_message, number, started_at)?, target.map(|t| &t.endpoint.retry[..]))
            }
        };
        sent();
        let Outcome { attempt, success, permanent } = outcome;
        let schedule = schedule.unwrap_or(&[]);
        let next =
            if permanent { NextState::Failed { step: d.step + 1 } } else { next_state(d, success, schedule, now_ms()) };
        let outcome = next.outcome();
        self.metrics.attempt(&d.endpoint, next, attempt.duration_ms as f64 / 1000.0);
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
    fn post(
        &self,
        d: &Delivery,
        target: Option<&Target>,
        event_message: Option<&Stamped>,
        number: i64,
        started_at: i64,
    ) -> anyhow::Result<Outcome> {
        let message = match event_message {
            Some(m) => Ok((m.event_type, Cow::Borrowed(m.message.as_str()))),
            None => match self.store.message(&d.message_id)? {
                None => Err(format!("message {} is missing from the store", d.message_id)),
                // An unreadable raw message fails this attempt; the schedule tries again.
                Some(m) => {
                    let t = m.event_type;
                    message_json(&self.store, m).map(|j| (t, Cow::Owned(j))).map_err(|e| format!("{e:#}"))
                }
            },
        };
        let response = match (target, message) {
            (None, _) => Err(format!("endpoint `{}` is not in the configuration", d.endpoint)),
            (_, Err(e)) => Err(e),
            (Some(t), Ok((event_type, message_json))) => {
                let parts = webhook::EventParts {
                    event_id: &d.event_id,
                    event_type,
                    created_at: &rfc3339(d.created_at),
                    delivery_id: &d.id,
                    endpoint: &d.endpoint,
                    attempt: number,
                    attempted_at: &rfc3339(started_at),
                    message_json: &message_json,
                };
                let body = webhook::event_body(&parts)?;
                Ok(webhook::post(&t.agent, &t.endpoint, &d.event_id, &body))
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

/// What an attempt that ran on a blocking thread tells the loop when it ends.
struct Ended {
    endpoint: String,
    /// It already gave its endpoint slot back (on `sent`, when the endpoint answered).
    sent: bool,
    /// Its outcome could not be recorded: the delivery to put back in the queue.
    unrecorded: Option<String>,
}

/// The scheduler loop: runs until `shutdown`, then lets attempts in flight finish.
pub async fn run(deliverer: Arc<Deliverer>, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    let mut in_flight: JoinSet<Ended> = JoinSet::new();
    // Requests in flight per endpoint: an attempt holds its endpoint's slot until the endpoint
    // has answered, not while its outcome is recorded (that is the store's wait, not the endpoint's).
    let mut busy: BTreeMap<String, usize> = BTreeMap::new();
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut unrecorded: Vec<String> = Vec::new();
    // When to claim from the store next; `ask_store` asks at the next turn (startup, a wake-up, a
    // backlog that filled every slot, overdue work waiting for an endpoint's slot).
    let mut store_at = tokio::time::Instant::now();
    let mut ask_store = true;
    let mut overdue = false;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let free = CONCURRENCY.saturating_sub(in_flight.len());
        // The store first when it has work: under a backlog everything then goes through its queue,
        // oldest first, and the hand-off (full) sends new mail there too.
        if free > 0 && (ask_store || !unrecorded.is_empty() || tokio::time::Instant::now() >= store_at) {
            let (due, next) = claim(&deliverer, free, &busy, &mut unrecorded).await;
            let claimed = due.len();
            for d in due {
                start(&deliverer, &mut in_flight, &mut busy, &sent_tx, d, None);
            }
            let now = now_ms();
            // Overdue work that could not be claimed waits for a busy endpoint to free a slot.
            overdue = next.is_some_and(|t| t <= now) && claimed < free;
            ask_store = claimed == free;
            let wait = next.map_or(POLL, |t| Duration::from_millis((t - now).clamp(0, POLL.as_millis() as i64) as u64));
            store_at = tokio::time::Instant::now() + if overdue { POLL } else { wait };
        }
        let free = CONCURRENCY.saturating_sub(in_flight.len());
        for (d, event) in deliverer.take_fresh(free, &busy) {
            start(&deliverer, &mut in_flight, &mut busy, &sent_tx, d, Some(event));
        }
        let full = in_flight.len() >= CONCURRENCY;
        if ask_store && !full {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(store_at), if !full => {}
            _ = wake.notified() => ask_store = true,
            _ = deliverer.fresh_ready.notified(), if !full => {}
            Some(endpoint) = sent_rx.recv() => {
                // Every endpoint that answered frees its slot before the next look for work.
                let mut sent = Some(endpoint);
                while let Some(endpoint) = sent {
                    free_slot(&mut busy, &endpoint);
                    sent = sent_rx.try_recv().ok();
                }
                ask_store |= overdue;
            }
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                // Every attempt that has ended frees its task before the next claim, so one claim
                // (a query of the queue) refills them all rather than one per turn of the loop.
                let mut done = Some(done);
                while let Some(ended) = done {
                    if let Ok(ended) = ended {
                        if !ended.sent {
                            free_slot(&mut busy, &ended.endpoint);
                        }
                        // A fifo endpoint's next event waited for this outcome, not for a due time.
                        ask_store |= deliverer.is_fifo(&ended.endpoint);
                        unrecorded.extend(ended.unrecorded);
                    }
                    done = in_flight.try_join_next();
                }
                ask_store |= overdue;
            }
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    while in_flight.join_next().await.is_some() {}
}

fn free_slot(busy: &mut BTreeMap<String, usize>, endpoint: &str) {
    if let Some(n) = busy.get_mut(endpoint) {
        *n = n.saturating_sub(1);
    }
}

/// Claims what is due from the store (after putting back `unrecorded`), and when the next
/// unclaimed delivery is due.
async fn claim(
    deliverer: &Arc<Deliverer>,
    free: usize,
    busy: &BTreeMap<String, usize>,
    unrecorded: &mut Vec<String>,
) -> (Vec<Delivery>, Option<i64>) {
    let running = busy.clone();
    let (store, d) = (deliverer.store.clone(), deliverer.clone());
    let release = std::mem::take(unrecorded);
    let claimed = tokio::task::spawn_blocking(move || {
        // Until the store takes writes again this fails, and the ids wait for the next turn.
        if !release.is_empty()
            && let Err(e) = store.release(&release)
        {
            return Err((e, release));
        }
        // What each endpoint's concurrency leaves free: a hard cap, however many slots are free.
        let room = |e: &str| d.concurrency(e).saturating_sub(running.get(e).copied().unwrap_or(0));
        let due = store.claim_due(now_ms(), free, &room, &d.fifo).and_then(|due| Ok((due, store.next_due(&d.fifo)?)));
        due.map_err(|e| (e, Vec::new()))
    })
    .await;
    match claimed {
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
    }
}

/// A new message's event as ingest built it: its type and its `message` JSON, shared by its deliveries.
#[derive(Clone)]
struct Stamped {
    event_type: EventType,
    message: Arc<String>,
}

/// Starts one attempt on a blocking thread; it reports on `sent` when its endpoint has answered.
fn start(
    deliverer: &Arc<Deliverer>,
    in_flight: &mut JoinSet<Ended>,
    busy: &mut BTreeMap<String, usize>,
    sent: &tokio::sync::mpsc::UnboundedSender<String>,
    d: Delivery,
    event_message: Option<Stamped>,
) {
    *busy.entry(d.endpoint.clone()).or_default() += 1;
    let (deliverer, sent) = (deliverer.clone(), sent.clone());
    in_flight.spawn_blocking(move || {
        let mut reported = false;
        let recorded = deliverer.attempt(&d, event_message.as_ref(), &mut || {
            reported = sent.send(d.endpoint.clone()).is_ok();
        });
        match recorded {
            Ok(()) => Ended { endpoint: d.endpoint, sent: reported, unrecorded: None },
            Err(e) => {
                tracing::error!(delivery = %d.id, error = %format!("{e:#}"), "cannot record a delivery attempt; it will be made again");
                Ended { endpoint: d.endpoint, sent: reported, unrecorded: Some(d.id) }
            }
        }
    });
}

/// A stored message's event `message` JSON as it is sent: with the `raw.base64` the store left
/// out (see `mail::EventJson`) put back from the raw bytes. Once retention has removed the bytes
/// it goes as stored, `raw.base64` null.
pub fn message_json(store: &Store, m: crate::store::MessageRow) -> anyhow::Result<String> {
    if !m.raw_inline {
        return Ok(m.event_message);
    }
    let Some(raw) = store.raw(&m.id)? else {
        return Ok(m.event_message);
    };
    crate::mail::with_raw_base64(&m.event_message, &raw)
        .ok_or_else(|| anyhow::anyhow!("the stored event of {} does not end with raw.base64", m.id))
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
            status: crate::mail::DeliveryStatus::Pending,
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
