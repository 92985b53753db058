//! `mxhook endpoints list | test`.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::print_json;
use crate::config::Settings;
use crate::deliver::webhook;
use crate::mail::Envelope;
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
                            "ordering": e.ordering,
                            "events": e.events.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                print_json(&v)?;
            } else {
                for e in settings.endpoints.values() {
                    let retry: Vec<_> = e.retry.iter().map(|d| humantime::format_duration(*d).to_string()).collect();
                    let fifo = if e.ordering == crate::deliver::Ordering::Fifo { ", fifo" } else { "" };
                    let events: Vec<&str> = e.events.iter().map(|t| t.as_str()).collect();
                    println!(
                        "{:<16} {}  (timeout {}, retry {}{fifo}; events {})",
                        e.name,
                        e.url,
                        humantime::format_duration(e.timeout),
                        retry.join(" "),
                        events.join(" ")
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
            let now_ms = now_ms();
            let (now, message) = (rfc3339(now_ms), sample_message(now_ms)?);
            let event_id = crate::ids::new_id("evt");
            let parts = webhook::EventParts {
                event_id: &event_id,
                event_type: crate::mail::EventType::Received,
                created_at: &now,
                delivery_id: "dlv_test",
                endpoint: &name,
                attempt: 1,
                attempted_at: &now,
                message_json: &message,
            };
            let body = webhook::event_body(&parts)?;
            let r = webhook::post(&webhook::agent(ep), ep, &event_id, &body);
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

/// The `message` object of a test event: a small message run through the real parse, so that the
/// sample has every field, and only the fields, a real event has.
pub(super) fn sample_message(received_at_ms: i64) -> anyhow::Result<String> {
    const RAW: &[u8] = b"From: Ada Lovelace <ada@example.com>\r\nTo: support@example.test\r\n\
Subject: Test event from mxhook\r\nMessage-ID: <test@mxhook>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nThis is a test event sent by `mxhook endpoints test`.\r\n";
    let envelope = Envelope {
        client_ip: [192, 0, 2, 1].into(),
        proxy_ip: None,
        ingress: crate::mail::Ingress::Smtp,
        helo: "mail.example.com".into(),
        mail_from: "ada@example.com".into(),
        rcpt_to: vec!["support@example.test".into()],
        tls: None,
        tls_cipher: None,
    };
    let mut event = crate::parse::parse("msg_test", rfc3339(received_at_ms), &envelope, RAW).event;
    Ok(event.to_json(u64::MAX)?.full)
}
