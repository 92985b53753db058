//! The hand-off from SMTP to the store: for each finished DATA, auth → parse → route → store, all
//! before the session may answer 250. Implements the SMTP side's [`Sink`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::auth::{Authenticator, SenderChecks};
use crate::config::{Endpoint, Stream, WebhookConfig};
use crate::deliver::{Deliverer, Ordering};
use crate::http::links::UrlSigner;
use crate::mail::{DeliveryStatus, Destination, EventMessage, EventType, Standing};
use crate::mail::{Envelope, Ingress, Reason, Reply};
use crate::route::{Mode, Plan, Router};
use crate::senders::Proven;
use crate::smtp::Sink;
use crate::store::{FirstAttempt, NewAttachment, NewMessage, Store};
use crate::time::{now_ms, rfc3339};

pub struct Ingest {
    pub router: Router,
    pub store: Arc<Store>,
    /// Each endpoint's retry list decides when its first attempt is due.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// Wakes the delivery scheduler so a new message goes out in milliseconds, not at its next poll.
    pub wake: Arc<Notify>,
    /// Signs the attachment and raw-message links put in the event.
    pub signer: Arc<UrlSigner>,
    pub webhook: Arc<WebhookConfig>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// For routes in `sync` mode: the attempt made before answering DATA.
    pub deliverer: Arc<Deliverer>,
    /// The `[spam]` engine, asked before routing so `on_spam` can apply; None: no verdict.
    pub spam: Option<crate::spam::SpamCheck>,
    /// None when `[auth] enabled = false`: `message.auth` is then null.
    pub auth: Option<Arc<Authenticator>>,
    /// The block and allow lists, as `mxhook senders` last left them.
    pub senders: crate::senders::Live,
    /// Each `[streams.NAME]`'s event types decide whether it keeps a message's event.
    pub streams: BTreeMap<String, Stream>,
    /// Whether new deliveries are handed to this process's scheduler. False in `mxhook deliver`:
    /// they stay in the store's queue, where the running `serve` picks them up.
    pub hand_off: bool,
}

impl Ingest {
    /// The ingest `serve` and `mxhook deliver` both run: one way into the store.
    pub fn new(
        settings: &crate::config::Settings,
        store: Arc<Store>,
        signer: Arc<UrlSigner>,
        deliverer: Arc<Deliverer>,
        metrics: Arc<crate::metrics::Metrics>,
        wake: Arc<Notify>,
    ) -> anyhow::Result<Ingest> {
        let auth = match &settings.auth {
            Some(a) => Some(Arc::new(Authenticator::new(a, &settings.smtp.hostname)?)),
            None => None,
        };
        Ok(Ingest {
            router: Router::new(settings.domains.clone(), &settings.routes),
            store: store.clone(),
            endpoints: settings.endpoints.clone(),
            wake,
            signer,
            webhook: Arc::new(WebhookConfig {
                inline_raw_max: settings.webhook.inline_raw_max,
                max_payload: settings.webhook.max_payload,
            }),
            metrics,
            deliverer,
            spam: settings.spam.as_ref().map(crate::spam::SpamCheck::new),
            auth,
            senders: crate::senders::Live::new(&settings.senders, store),
            streams: settings.streams.clone(),
            hand_off: true,
        })
    }
}

const STORE_FAILED: &str = "4.3.0 Error: queue file write error, try again later";

/// What was stored, for the answer to DATA.
struct Stored {
    /// Deliveries for the scheduler to start now, and the event they send.
    now: Vec<crate::store::Delivery>,
    event_type: EventType,
    event_message: String,
    /// Some delivery waits in the store's queue (a later first attempt): the scheduler must look.
    queued: bool,
    sync: Vec<String>,
    sync_timeout: std::time::Duration,
}

impl Sink for Ingest {
    type Sender = Option<SenderChecks>;

    async fn check_mail(
        &self,
        client_ip: IpAddr,
        ingress: Ingress,
        helo: &str,
        mail_from: &str,
    ) -> Result<Self::Sender, Reply> {
        // Nothing is proven yet (SPF is checked below): only an IP allow rule counts here, unless
        // `[auth]` is off.
        let unchecked = self.auth.is_none();
        let proven = Proven { mail_from: unchecked, from: unchecked };
        let standing = self.senders.standing(client_ip, mail_from, None, proven);
        if standing == Standing::Blocked && self.senders.rejects() {
            return Err(Reply::new(550, "5.7.1 Error: sender blocked", Reason::Blocked));
        }
        match &self.auth {
            // An allowed sender is not refused for its SPF: the checks run again at DATA and are
            // recorded in the event as usual.
            Some(auth) => match auth.check_mail(client_ip, ingress, helo, mail_from).await {
                Err(_) if standing == Standing::Allowed => Ok(None),
                checked => checked,
            },
            None => Ok(None),
        }
    }

    fn check_rcpt(&self, address: &str) -> Result<(), Reply> {
        self.router.route(address).map(|_| ())
    }

    async fn accept(&self, envelope: Envelope, sender: Self::Sender, raw: Vec<u8>) -> Result<String, Reply> {
        let auth = match &self.auth {
            // Boxed: the checks' future is large, and inline it would make every session's future
            // that large, copied as it moves (tens of KB per message, with [auth] off too).
            Some(a) => Some(Box::pin(a.verify(&envelope, sender, &raw)).await?),
            None => None,
        };
        let id = crate::ids::new_id("msg");
        let received_at = now_ms();
        let (store, signer, webhook) = (self.store.clone(), self.signer.clone(), self.webhook.clone());
        let (router, endpoints, spam_check, deliverer) = (&self.router, &self.endpoints, &self.spam, &self.deliverer);
        let streams = &self.streams;
        let senders = &self.senders;
        let msg_id = id.clone();
        // Parsing and storing are CPU and disk work: off the async threads.
        let stored = tokio::task::block_in_place(|| {
            let spam = spam_check.as_ref().map(|c| c.check(&msg_id, &envelope, &raw));
            let parsed =
                crate::parse::parse_bounded(&msg_id, rfc3339(received_at), &envelope, &raw, webhook.max_payload);
            let mut event = parsed.event;
            event.auth = auth;
            if let Some(spam) = spam {
                event.spam = spam;
            }
            let from = event.from.as_ref().and_then(|f| f.address.as_deref());
            let proven = match &event.auth {
                None => Proven { mail_from: true, from: true },
                Some(a) => Proven {
                    mail_from: a.spf.as_ref().is_some_and(|s| s.result == "pass"),
                    from: a.dmarc.result == "pass",
                },
            };
            event.sender_list = senders.standing(envelope.client_ip, &envelope.mail_from, from, proven);
            // Refused at MAIL FROM already when the client IP or MAIL FROM is blocked; here the From
            // address (or a list changed during the transaction).
            if event.sender_list == Standing::Blocked && senders.rejects() {
                return Ok(Err(Reply::new(550, "5.7.1 Error: message rejected: sender blocked", Reason::Blocked)));
            }
            // An allowed sender's mail is never held back as spam or for failing DMARC.
            let allowed = event.sender_list == Standing::Allowed;
            // Bounded by the payload cap: a withheld text is not read.
            // Under the same guard as parse: a bug in it costs the message its reply fields only.
            let extracted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut fields = crate::extract::Fields::default();
                crate::extract::extract(&event, &parsed.attachments, &mut fields);
                fields
            }));
            if let Ok(fields) = extracted {
                (event.reply, event.forward, event.preview) = (fields.reply, fields.forward, fields.preview);
            }
            let event_type = crate::classify::classify(&mut event, &raw);
            let mut plan =
                router.plan(&envelope.rcpt_to, is_spam(&event) && !allowed, dmarc_failed(&event) && !allowed);
            if plan.reject {
                return Ok(Err(Reply::new(550, "5.7.1 Error: message rejected by policy", Reason::Policy)));
            }
            let not_sent = subscribed(&mut plan, endpoints, streams, event_type);
            event.routes = serde_json::to_value(&plan.applied)?;
            for (i, a) in event.attachments.iter_mut().enumerate() {
                a.url = Some(signer.attachment(&msg_id, i, received_at));
            }
            // The store's copy of each attachment's metadata; the event may leave its list out (payload cap).
            let meta: Vec<_> = event
                .attachments
                .iter()
                .map(|a| (a.filename.clone(), a.content_type.clone(), a.sha256.clone()))
                .collect();
            let attachments: Vec<NewAttachment<'_>> = meta
                .iter()
                .zip(&parsed.attachments)
                .map(|((filename, content_type, sha256), bytes)| NewAttachment {
                    filename: filename.as_deref(),
                    content_type,
                    sha256,
                    bytes,
                })
                .collect();
            if !event.attachments.is_empty() {
                event.attachments_url = Some(signer.attachments_zip(&msg_id, received_at));
            }
            event.raw.url = Some(signer.raw(&msg_id, received_at));
            event.inline_raw(&raw, webhook.inline_raw_max);
            let event_json = event.to_json(webhook.max_payload)?;
            let deliveries = first_attempts(&plan, endpoints, deliverer.forward_retry(), received_at);
            let from = event.from.as_ref().and_then(|f| f.address.as_deref());
            let now = store.ingest(&NewMessage {
                id: &msg_id,
                received_at,
                client_ip: &event.smtp.client_ip,
                helo: &envelope.helo,
                mail_from: &envelope.mail_from,
                rcpt_to: &envelope.rcpt_to,
                sha256: &event.raw.sha256,
                subject: event.subject.as_deref(),
                from_addr: from,
                parsed_status: event.parsed.status,
                event_message: event_json.without_raw.as_deref().unwrap_or(&event_json.full),
                raw_inline: event_json.without_raw.is_some(),
                event_type,
                not_sent,
                raw: &raw,
                keep_files: plan.keep,
                attachments: &attachments,
                endpoints: &deliveries,
                streams: &plan.streams,
            })?;
            let sync: Vec<String> =
                plan.endpoints.iter().filter(|(_, m)| *m == Mode::Sync).map(|(e, _)| e.clone()).collect();
            let sync_timeout = plan.sync_timeout.unwrap_or_default();
            let queued = deliveries.len() > now.len() + sync.len();
            let event_message = event_json.full;
            anyhow::Ok(Ok(Stored { now, event_type, event_message, queued, sync, sync_timeout }))
        });
        let stored = match stored {
            Ok(Ok(s)) => s,
            Ok(Err(refusal)) => return Err(refusal),
            Err(e) => {
                tracing::error!(message_id = %id, error = %format!("{e:#}"), "cannot store a message; answering 451");
                return Err(Reply::new(451, STORE_FAILED, Reason::StoreFailed));
            }
        };
        self.metrics.accepted.inc();
        // With sync routes, the other deliveries wait for the sync answer: on a 451 the message is
        // withdrawn (or left queued after a timeout), and nothing may have been sent meanwhile.
        if !stored.sync.is_empty()
            && let Err(refusal) = Box::pin(self.deliver_now(&id, &stored.sync, stored.sync_timeout)).await
        {
            self.give_back(stored.now, true);
            return Err(refusal);
        }
        let left = match self.hand_off {
            true => self.deliverer.hand_off(stored.now, stored.event_type, stored.event_message),
            false => stored.now,
        };
        let wake = stored.queued || !left.is_empty();
        self.give_back(left, wake);
        Ok(id)
    }
}

impl Ingest {
    /// Gives back the deliveries leased at ingest that nobody attempts now, then wakes the
    /// scheduler. In `serve` this runs off the reply's path: the message is committed, and with
    /// PostgreSQL gone the give-back waits for a connection (up to 5 s), which the 250 must not
    /// wait for (a lease not given back only expires). `mxhook deliver` has no scheduler to hand
    /// them to, and gives them back before it exits.
    fn give_back(&self, left: Vec<crate::store::Delivery>, wake: bool) {
        // The usual case (every delivery handed off, or none due now): no thread hop.
        if left.is_empty() {
            if wake {
                self.wake.notify_one();
            }
            return;
        }
        let (store, scheduler) = (self.store.clone(), self.wake.clone());
        let run = move || {
            store.unclaim(&left);
            if wake {
                scheduler.notify_one();
            }
        };
        match self.hand_off {
            true => drop(tokio::task::spawn_blocking(run)),
            false => run(),
        }
    }

    /// Sync mode: the message is stored, its sync deliveries are claimed; try them now. All 2xx → 250.
    /// Otherwise the message is withdrawn (it was never acknowledged) and the sender's server keeps
    /// it and retries: `451`.
    async fn deliver_now(&self, id: &str, endpoints: &[String], timeout: std::time::Duration) -> Result<(), Reply> {
        let (store, deliverer, mid) = (self.store.clone(), self.deliverer.clone(), id.to_string());
        let wanted = endpoints.to_vec();
        let attempt = tokio::task::spawn_blocking(move || {
            let mut ok = true;
            for d in store.deliveries(None, Some(&mid))?.into_iter().filter(|d| wanted.contains(&d.endpoint)) {
                deliverer.attempt_one(&d)?;
                ok &= store.delivery(&d.id)?.is_some_and(|d| d.status == DeliveryStatus::Succeeded);
            }
            anyhow::Ok(ok)
        });
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(Ok(true))) => Ok(()),
            Ok(result) => {
                if let Ok(Err(e)) = &result {
                    tracing::error!(message_id = %id, error = %format!("{e:#}"), "sync delivery failed");
                }
                let (store, mid) = (self.store.clone(), id.to_string());
                match tokio::task::spawn_blocking(move || store.withdraw(&mid)).await {
                    Ok(Ok(())) => {
                        tracing::info!(message_id = %id, "sync delivery not accepted by the endpoint; answering 451")
                    }
                    _ => tracing::error!(message_id = %id, "cannot withdraw a message after a failed sync delivery"),
                }
                Err(Reply::new(
                    451,
                    "4.3.0 Error: the endpoint did not accept the message, try again later",
                    Reason::SyncEndpoint,
                ))
            }
            Err(_) => {
                // The attempt is still running and will be recorded; the message stays queued.
                tracing::warn!(message_id = %id, "sync delivery timed out; answering 451, the message stays queued");
                Err(Reply::new(
                    451,
                    "4.4.1 Error: the endpoint did not answer in time, try again later",
                    Reason::SyncEndpoint,
                ))
            }
        }
    }
}

/// Deliveries to create: each endpoint with its first due time, sync ones claimed at once so the
/// scheduler leaves them to the session.
fn first_attempts(
    plan: &Plan,
    endpoints: &BTreeMap<String, Endpoint>,
    forward_retry: &[std::time::Duration],
    received_at: i64,
) -> Vec<FirstAttempt> {
    plan.endpoints
        .iter()
        .map(|(e, mode)| {
            let (schedule, ordering) = match Destination::of(e) {
                Destination::Forward(_) => (forward_retry, Ordering::Concurrent),
                Destination::Webhook(name) => {
                    endpoints.get(name).map_or((&[][..], Ordering::Concurrent), |ep| (&ep.retry[..], ep.ordering))
                }
            };
            let first = schedule.first().map_or(0, |d| d.as_millis() as i64);
            FirstAttempt {
                endpoint: e.clone(),
                due: received_at + first,
                sync: *mode == Mode::Sync,
                ordered: ordering == Ordering::Fifo,
            }
        })
        .collect()
}

/// Keeps only the webhook endpoints and streams that subscribe to the message's type (forwards are
/// not events). When that leaves nothing to send although the routes wanted it sent, the message
/// is still kept: returns why nothing was sent, for its disposition.
fn subscribed(
    plan: &mut Plan,
    endpoints: &BTreeMap<String, Endpoint>,
    streams: &BTreeMap<String, Stream>,
    t: EventType,
) -> Option<String> {
    let before = plan.endpoints.len() + plan.streams.len();
    plan.endpoints.retain(|(e, _)| match Destination::of(e) {
        Destination::Forward(_) => true,
        Destination::Webhook(name) => endpoints.get(name).is_none_or(|ep| ep.wants(t)),
    });
    plan.streams.retain(|s| streams.get(s).is_some_and(|s| s.wants(t)));
    if !plan.endpoints.iter().any(|(_, m)| *m == Mode::Sync) {
        plan.sync_timeout = None;
    }
    (before > 0 && plan.endpoints.is_empty() && plan.streams.is_empty())
        .then(|| format!("no endpoint subscribes to {t}"))
}

fn is_spam(event: &EventMessage) -> bool {
    event.spam.verdict.as_deref() == Some("spam")
}

fn dmarc_failed(event: &EventMessage) -> bool {
    event.auth.as_ref().is_some_and(|a| a.dmarc.result == "fail")
}
