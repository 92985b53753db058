//! `mxhook listen --stream URL --token T`: develop against real mail with nothing exposed. Long-polls
//! a gateway's stream (`GET URL/poll`, ureq: plain blocking HTTP, one request at a time) and prints
//! each event, or POSTs it to `--forward-to` signed with the local secret exactly as the gateway
//! signs a webhook (Standard Webhooks headers, the stream event's own id as `webhook-id`).
//!
//! With `--consumer`, the gateway keeps the place: each request passes the iterator of the page
//! before, which acks it, so a restart continues after the last page handled in full (a page cut
//! short by Ctrl-C comes again: at least once, like webhooks). Without one it starts from now.

use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::mail::SigningKey;

pub struct Options {
    /// The stream's URL, `…/v1/streams/NAME`.
    pub url: String,
    pub token: String,
    pub consumer: Option<String>,
    /// Where to POST each event, and the key to sign it with.
    pub forward: Option<(String, SigningKey)>,
    pub json: bool,
}

/// How long the gateway holds a poll open when there is nothing new (its limit is 30 s).
const WAIT_SECS: u64 = 25;
/// The longest pause between retries after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct Page {
    data: Vec<Box<RawValue>>,
    iterator: String,
}

pub fn run(o: &Options) -> anyhow::Result<ExitCode> {
    let base = o.url.trim_end_matches('/');
    anyhow::ensure!(
        base.starts_with("http://") || base.starts_with("https://"),
        "--stream must be a URL like https://mx.example.com/v1/streams/dev"
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(WAIT_SECS + 20)))
        .http_status_as_error(false)
        .user_agent(concat!("mxhook-listen/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    match &o.forward {
        Some((to, _)) => eprintln!("reading {base}; forwarding each event to {to}; Ctrl-C to stop"),
        None => eprintln!("reading {base}; Ctrl-C to stop"),
    }
    let mut iterator: Option<String> = None;
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut url = format!("{base}/poll?wait={WAIT_SECS}");
        if let Some(c) = &o.consumer {
            url.push_str(&format!("&consumer={}", percent_encoding::utf8_percent_encode(c, QUERY)));
        }
        match &iterator {
            Some(it) => url.push_str(&format!("&iterator={it}")),
            // Without a consumer there is no place kept: only what arrives from now on.
            None if o.consumer.is_none() => url.push_str("&from=now"),
            None => {}
        }
        let page = match fetch(&agent, &url, &o.token) {
            Ok(p) => p,
            Err(Fetch::Fatal(e)) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::FAILURE);
            }
            Err(Fetch::Retry(e)) => {
                eprintln!("warning: {e}; trying again in {}s", backoff.as_secs());
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        for event in &page.data {
            handle(&agent, o, event.get());
        }
        iterator = Some(page.iterator);
    }
}

/// Query-string escaping for a consumer name.
const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

enum Fetch {
    /// The gateway refused the request itself (token, stream name): retrying will not help.
    Fatal(String),
    Retry(String),
}

fn fetch(agent: &ureq::Agent, url: &str, token: &str) -> Result<Page, Fetch> {
    let mut resp = agent
        .get(url)
        .header("authorization", format!("Bearer {token}"))
        .call()
        .map_err(|e| Fetch::Retry(format!("cannot reach the gateway: {e}")))?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().map_err(|e| Fetch::Retry(format!("reading the answer: {e}")))?;
    match status {
        200 => serde_json::from_str(&body).map_err(|e| Fetch::Retry(format!("the answer is not a stream page: {e}"))),
        400 | 401 | 403 | 404 => Err(Fetch::Fatal(format!("the gateway answered {status}: {}", body.trim()))),
        _ => Err(Fetch::Retry(format!("the gateway answered {status}"))),
    }
}

/// Prints one event, or forwards it until the local app takes it (the app being down or
/// answering 500 while you edit it must not lose the event).
fn handle(agent: &ureq::Agent, o: &Options, body: &str) {
    let event: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    if o.json {
        println!("{}", serde_json::to_string_pretty(&event).unwrap_or_default());
    } else {
        println!("{}", super::listen::summary(&event));
    }
    let Some((to, key)) = &o.forward else { return };
    let id = event["id"].as_str().unwrap_or_default();
    let mut backoff = Duration::from_secs(1);
    loop {
        let timestamp = crate::time::now_ms() / 1000;
        let result = agent
            .post(to)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", key.sign(id, timestamp, body.as_bytes()))
            .send(body.as_bytes());
        let why = match result {
            Ok(r) if r.status().is_success() => {
                println!("  -> {to} {}", r.status().as_u16());
                return;
            }
            Ok(r) => format!("answered {}", r.status().as_u16()),
            Err(e) => e.to_string(),
        };
        eprintln!("warning: {to}: {why}; trying {id} again in {}s", backoff.as_secs());
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
