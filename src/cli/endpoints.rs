//! `mxhook endpoints list | test`.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::print_json;
use crate::config::Settings;
use crate::deliver::webhook;
use crate::mail::SigningKey;
use crate::time::{now_ms, rfc3339};

#[derive(Subcommand)]
pub enum Cmd {
    /// List configured endpoints.
    List {
        #[arg(long)]
        json: bool,
    },
    /// POST a signed sample `email.received` event to an endpoint and print its answer.
    Test { name: String },
}

pub fn run(settings: &Settings, cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::List { json } => {
            if json {
                let v: Vec<_> = settings
                    .endpoints
                    .values()
                    .map(|e| {
                        json!({
                            "name": e.name, "url": e.url, "timeout_ms": e.timeout.as_millis() as u64,
                            "retry": e.retry.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                print_json(&v)?;
            } else {
                for e in settings.endpoints.values() {
                    let retry: Vec<_> = e.retry.iter().map(|d| humantime::format_duration(*d).to_string()).collect();
                    println!(
                        "{:<16} {}  (timeout {}, retry {})",
                        e.name,
                        e.url,
                        humantime::format_duration(e.timeout),
                        retry.join(" ")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Test { name } => {
            let Some(ep) = settings.endpoints.get(&name) else {
                eprintln!("no endpoint named `{name}` in {}", settings.file.display());
                return Ok(ExitCode::FAILURE);
            };
            let key = SigningKey::parse(&ep.secret.0)?;
            let now = rfc3339(now_ms());
            let message = sample_message(&now);
            let event_id = crate::ids::new_id("evt");
            let parts = webhook::EventParts {
                event_id: &event_id,
                created_at: &now,
                delivery_id: "dlv_test",
                endpoint: &name,
                attempt: 1,
                attempted_at: &now,
                message_json: &message.to_string(),
            };
            let body = webhook::event_body(&parts)?;
            let r = webhook::post(&webhook::agent(ep), ep, &key, &event_id, &body);
            match r.status {
                Some(s) => println!("{name}: HTTP {s} in {} ms", r.duration_ms),
                None => println!("{name}: {}", r.error.as_deref().unwrap_or("no answer")),
            }
            if let Some(b) = &r.body_excerpt {
                println!("{}", b.chars().take(200).collect::<String>());
            }
            Ok(if r.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

pub(super) fn sample_message(now: &str) -> serde_json::Value {
    json!({
        "id": "msg_test", "received_at": now,
        "smtp": { "client_ip": "192.0.2.1", "helo": "mail.example.com", "mail_from": "ada@example.com",
                  "rcpt_to": ["support@example.test"], "tls": null },
        "from": { "address": "ada@example.com", "name": "Ada Lovelace" },
        "to": [{ "address": "support@example.test", "name": null }], "cc": [], "reply_to": [],
        "subject": "Test event from mxhook", "date": now,
        "message_id": "test@mxhook", "in_reply_to": null, "references": [], "thread_id": "test@mxhook",
        "headers": [["Subject", "Test event from mxhook"]],
        "text": "This is a test event sent by `mxhook endpoints test`.\n", "html": null, "omitted": [],
        "attachments": [], "raw": { "size": 0, "sha256": "", "url": null, "base64": null },
        "parsed": { "status": "complete", "error": null }, "auth": null,
        "spam": { "verdict": null, "score": null, "engine": null }
    })
}
