//! One forwarded copy: the raw message from the spool, byte for byte, re-sent through the `[forward]`
//! relay (lettre, blocking) to a forward route's `destination` addresses. It is a delivery like a
//! webhook's — same table, scheduler and retry policy — whose `endpoint` is `forward:<route match>`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, SmtpTransport, Transport};

use crate::config::Forward;
use crate::route::{Action, Route};

pub struct Forwarder {
    transport: SmtpTransport,
    /// Route match → destinations, from the configuration in force: retries follow an edited route.
    destinations: HashMap<String, Vec<Address>>,
    /// `[forward] mail_from`: Some(None) is the null sender; None keeps the original sender.
    mail_from: Option<Option<Address>>,
    pub retry: Vec<Duration>,
}

/// What one relay transaction came to.
pub struct Sent {
    /// The relay's answer to the end of data (`250 2.0.0 Ok: queued as …`).
    pub reply: Option<String>,
    pub error: Option<String>,
    /// A 5xx answer or a problem no retry can fix: the delivery fails now instead of retrying.
    pub permanent: bool,
    pub duration_ms: i64,
}

impl Forwarder {
    /// `helo` is the name we give in EHLO (our `[smtp] hostname`).
    pub fn new(f: &Forward, routes: &[Route], helo: &str) -> anyhow::Result<Self> {
        let mut builder = SmtpTransport::builder_dangerous(f.host.as_str())
            .port(f.port)
            .timeout(Some(f.timeout))
            .hello_name(ClientId::Domain(helo.to_string()));
        if f.starttls {
            builder = builder.tls(Tls::Required(TlsParameters::new(f.host.clone())?));
        }
        if let Some((user, password)) = &f.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.0.clone()));
        }
        let mut destinations = HashMap::new();
        for r in routes.iter().filter(|r| r.action == Action::Forward) {
            let to = r.destination.iter().map(|d| d.parse()).collect::<Result<Vec<Address>, _>>()?;
            destinations.insert(r.pattern.clone(), to);
        }
        let mail_from = match f.mail_from.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(a) => Some(Some(a.parse()?)),
        };
        Ok(Self { transport: builder.build(), destinations, mail_from, retry: f.retry.clone() })
    }

    /// Sends `raw` for the forward route `route`, from the original envelope sender `mail_from`
    /// (unless `[forward] mail_from` says otherwise). Never fails: every outcome is a `Sent` to record.
    pub fn send(&self, route: &str, mail_from: &str, raw: &[u8]) -> Sent {
        let started = Instant::now();
        let mut sent = match self.envelope(route, mail_from) {
            Err(e) => Sent { reply: None, error: Some(e), permanent: true, duration_ms: 0 },
            // lettre ends the data with CRLF "." CRLF itself: without this the copy would gain an empty line.
            Ok(envelope) => match self.transport.send_raw(&envelope, raw.strip_suffix(b"\r\n").unwrap_or(raw)) {
                Ok(r) => {
                    let text: Vec<&str> = r.message().collect();
                    Sent {
                        reply: Some(format!("{} {}", r.code(), text.join(" "))),
                        error: None,
                        permanent: false,
                        duration_ms: 0,
                    }
                }
                Err(e) => Sent { reply: None, error: Some(describe(&e)), permanent: e.is_permanent(), duration_ms: 0 },
            },
        };
        sent.duration_ms = started.elapsed().as_millis() as i64;
        sent
    }

    fn envelope(&self, route: &str, original: &str) -> Result<Envelope, String> {
        let to = self
            .destinations
            .get(route)
            .ok_or_else(|| format!("no forward route `{route}` in the configuration"))?
            .clone();
        let from = match &self.mail_from {
            Some(configured) => configured.clone(),
            None if original.is_empty() => None,
            None => Some(sender(original)?),
        };
        Envelope::new(from, to).map_err(|e| format!("cannot build the envelope: {e}"))
    }
}

/// The original reverse path as lettre's address. Our SMTP session already accepted it, so a form
/// lettre's stricter parser refuses (a quoted local part) is passed on as it is.
fn sender(original: &str) -> Result<Address, String> {
    if let Ok(a) = original.parse() {
        return Ok(a);
    }
    match original.rsplit_once('@') {
        Some((user, domain))
            if !user.is_empty() && !domain.is_empty() && !original.contains(|c: char| c.is_control() || c == '>') =>
        {
            Ok(Address::new_dangerous(user, domain))
        }
        _ => Err(format!("the original sender `{original}` cannot be used: set [forward] mail_from")),
    }
}

fn describe(e: &lettre::transport::smtp::Error) -> String {
    // lettre's Display says "permanent error (550): 5.1.1 …"; keep it, with the kind first.
    let text = e.to_string();
    if e.is_timeout() { format!("timed out: {text}") } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_but_accepted_senders_pass_through() {
        assert_eq!(sender("ada@example.com").unwrap().to_string(), "ada@example.com");
        assert!(sender("\"a b\"@example.com").is_ok());
        assert!(sender("nobody").is_err());
    }
}
