//! The hand-off from SMTP to the store: for each finished DATA, auth → parse → route → store, all
//! before the session may answer 250. Implements the SMTP side's [`Sink`].

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::{Endpoint, WebhookConfig};
use crate::http::links::UrlSigner;
use crate::route::Router;
use crate::smtp::{Envelope, Reply, Sink};
use crate::store::{NewAttachment, NewMessage, Store};
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
}

impl Sink for Ingest {
    fn check_rcpt(&self, address: &str) -> Result<(), Reply> {
        self.router.route(address).map(|_| ())
    }

    async fn accept(&self, envelope: Envelope, raw: Vec<u8>) -> Result<String, Reply> {
        let id = crate::ids::new_id("msg");
        let received_at = now_ms();
        let endpoints: Vec<(String, i64)> = self
            .router
            .endpoints(&envelope.rcpt_to)
            .into_iter()
            .map(|e| {
                let first = self.endpoints.get(&e).and_then(|ep| ep.retry.first()).map_or(0, |d| d.as_millis() as i64);
                (e, received_at + first)
            })
            .collect();
        let (store, signer, webhook) = (self.store.clone(), self.signer.clone(), self.webhook.clone());
        let msg_id = id.clone();
        let stored = tokio::task::spawn_blocking(move || {
            let parsed = crate::parse::parse(&msg_id, rfc3339(received_at), &envelope, &raw);
            let mut event = parsed.event;
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
            event.raw.url = Some(signer.raw(&msg_id, received_at));
            event.inline_raw(&raw, webhook.inline_raw_max);
            event.fit_payload(webhook.max_payload);
            let event_message = serde_json::to_string(&event)?;
            let from = event.from.as_ref().and_then(|f| f.address.as_deref());
            store.ingest(&NewMessage {
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
                event_message: &event_message,
                raw: &raw,
                attachments: &attachments,
                endpoints: &endpoints,
            })
        })
        .await;
        match stored {
            Ok(Ok(())) => {
                self.metrics.accepted.inc();
                self.wake.notify_one();
                Ok(id)
            }
            Ok(Err(e)) => {
                tracing::error!(message_id = %id, error = %format!("{e:#}"), "cannot store a message; answering 451");
                Err(Reply::new(451, "4.3.0 Error: queue file write error, try again later"))
            }
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "storing a message failed; answering 451");
                Err(Reply::new(451, "4.3.0 Error: queue file write error, try again later"))
            }
        }
    }
}
