//! `mxhook deliver --from SENDER --to RCPT … < message.eml`: a message on standard input, routed,
//! stored and queued exactly as one received over SMTP (the same `Ingest`, as a `Sink`), for an MTA's
//! pipe transport (Postfix `pipe`, Exim, procmail/maildrop, Dovecot Sieve, fetchmail `--mda`). The
//! running `serve` finds the new deliveries in the store's queue (it looks every 500 ms) and sends them.
//!
//! Exit codes are sysexits(3), which every MTA maps to bounce or retry. Nothing is printed to
//! standard output before the message is durably stored.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::Settings;
use crate::deliver::Deliverer;
use crate::http::links::UrlSigner;
use crate::ingest::Ingest;
use crate::mail::{Envelope, Ingress, Reply};
use crate::metrics::Metrics;
use crate::smtp::Sink;
use crate::store::Store;

/// sysexits.h: the input is not a message.
pub const EX_DATAERR: u8 = 65;
/// No route for a recipient (a permanent 5xx at RCPT).
pub const EX_NOUSER: u8 = 67;
/// Could not store (or any 4xx): the MTA keeps the message and tries again.
pub const EX_TEMPFAIL: u8 = 75;
/// Refused by policy (a 5xx for the sender or the message: block list, DMARC reject).
pub const EX_NOPERM: u8 = 77;

pub fn run(settings: &Settings, from: &str, to: &[String]) -> ExitCode {
    let mut raw = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut raw) {
        eprintln!("mxhook deliver: cannot read the message from standard input: {e}");
        return ExitCode::from(EX_DATAERR);
    }
    let raw = crlf(raw);
    if raw.iter().all(u8::is_ascii_whitespace) {
        eprintln!("mxhook deliver: standard input holds no message");
        return ExitCode::from(EX_DATAERR);
    }
    if raw.len() as u64 > settings.smtp.max_message_size {
        eprintln!("mxhook deliver: the message is larger than [smtp] max_message_size");
        return ExitCode::from(EX_DATAERR);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(r) => r,
        Err(e) => return temp_fail(&format!("cannot start: {e}")),
    };
    runtime.block_on(deliver(settings, from.trim_matches(['<', '>']), to, raw))
}

async fn deliver(settings: &Settings, from: &str, to: &[String], raw: Vec<u8>) -> ExitCode {
    let ingest = match open(settings) {
        Ok(i) => i,
        Err(e) => return temp_fail(&format!("{e:#}")),
    };
    let to: Vec<String> = to.iter().map(|t| t.trim_matches(['<', '>']).to_string()).collect();
    for rcpt in &to {
        if let Err(r) = ingest.check_rcpt(rcpt) {
            return refused(&format!("<{rcpt}>"), &r, EX_NOUSER);
        }
    }
    let local = std::net::IpAddr::from([127, 0, 0, 1]);
    let sender = match ingest.check_mail(local, Ingress::Pipe, "localhost", from).await {
        Ok(s) => s,
        Err(r) => return refused("the sender", &r, EX_NOPERM),
    };
    let envelope = Envelope {
        client_ip: local,
        proxy_ip: None,
        ingress: Ingress::Pipe,
        helo: "localhost".into(),
        mail_from: from.to_string(),
        rcpt_to: to,
        tls: None,
        tls_cipher: None,
    };
    match ingest.accept(envelope, sender, raw).await {
        Ok(id) => {
            println!("queued as {id}");
            ExitCode::SUCCESS
        }
        Err(r) => refused("the message", &r, EX_NOPERM),
    }
}

/// The same ingest as `serve`, its deliveries left in the store's queue for `serve` to send.
fn open(settings: &Settings) -> anyhow::Result<Ingest> {
    let store = Arc::new(Store::open_configured(&settings.data_dir, settings.database.as_ref(), settings.lease)?);
    let key_file = settings.url_secret_file.clone().unwrap_or_else(|| settings.data_dir.join("url.key"));
    let key = UrlSigner::key_for(&store, settings.url_secret_file.as_deref(), &key_file)?;
    let signer = Arc::new(UrlSigner::new(&key, &settings.public_url, settings.link_ttl.as_secs() as i64));
    let metrics = Arc::new(Metrics::new());
    let forwarder = match &settings.forward {
        Some(f) => Some(crate::deliver::forward::Forwarder::new(f, &settings.routes, &settings.smtp.hostname)?),
        None => None,
    };
    let deliverer =
        Arc::new(Deliverer::new(store.clone(), &settings.endpoints, metrics.clone()).with_forwarder(forwarder));
    let mut ingest = Ingest::new(settings, store, signer, deliverer, metrics, Arc::new(Notify::new()))?;
    ingest.hand_off = false;
    Ok(ingest)
}

/// A 4xx is always a retry; a 5xx exits with `permanent`.
fn refused(what: &str, r: &Reply, permanent: u8) -> ExitCode {
    eprintln!("mxhook deliver: {what}: {} {}", r.code, r.text);
    ExitCode::from(if r.code >= 500 { permanent } else { EX_TEMPFAIL })
}

fn temp_fail(why: &str) -> ExitCode {
    eprintln!("mxhook deliver: {why}");
    ExitCode::from(EX_TEMPFAIL)
}

/// Pipes hand over Unix line ends; the store keeps what SMTP would have carried (CRLF), which is
/// also what DKIM signed.
fn crlf(raw: Vec<u8>) -> Vec<u8> {
    if !raw.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r') && raw.first() != Some(&b'\n') {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    let mut prev = 0u8;
    for b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn bare_line_feeds_become_crlf() {
        assert_eq!(super::crlf(b"a\nb\r\nc\n".to_vec()), b"a\r\nb\r\nc\r\n");
        assert_eq!(super::crlf(b"a\r\n".to_vec()), b"a\r\n");
    }
}
