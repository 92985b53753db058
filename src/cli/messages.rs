//! `mxhook messages list | show | replay`.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};

use super::deliveries::delivery_json;
use super::{open_store, page_end, print_json, print_next};
use crate::config::Settings;
use crate::mail::{DeliveryStatus, EventType};
use crate::store::{Delivery, MessageFilter, MessageRow, Position};
use crate::time::rfc3339;

#[derive(Subcommand)]
pub enum Cmd {
    /// List messages, newest first, a page at a time. When there are more, stderr says the
    /// `--after` of the next page.
    List {
        /// How many to show.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Start after this cursor (the `--after` the previous page printed).
        #[arg(long, value_parser = super::parse_cursor)]
        after: Option<Position>,
        /// Only messages of this event type (e.g. `email.bounced`).
        #[arg(long = "type", value_parser = parse_type)]
        kind: Option<EventType>,
        #[arg(long)]
        json: bool,
    },
    /// Show one message (envelope, parsed fields, deliveries), or its raw bytes with --raw.
    Show {
        id: String,
        #[arg(long, conflicts_with = "raw")]
        json: bool,
        /// Write the exact stored message to stdout.
        #[arg(long)]
        raw: bool,
    },
    /// Send the message's events again to every endpoint (same event ids).
    Replay { id: String },
    /// Delete messages received before DATE: raw files, attachments and records (messages with a
    /// pending delivery are kept).
    Purge {
        /// `2026-11-01` or `2026-11-01T12:00:00Z`.
        #[arg(long, value_parser = parse_date)]
        before: i64,
        /// Delete only the raw files and attachments; keep the records.
        #[arg(long)]
        files_only: bool,
    },
}

pub fn run(settings: &Settings, cmd: Cmd) -> anyhow::Result<ExitCode> {
    let store = open_store(settings)?;
    match cmd {
        Cmd::List { limit, after, kind, json } => {
            let limit = limit as usize;
            let filter = MessageFilter { kind, ..Default::default() };
            let mut list = store.list_messages(&filter, after.as_ref(), limit + 1)?;
            let next = page_end(&mut list, limit, |m| Position { at: m.received_at, id: m.id.clone() });
            let deliveries = store.deliveries_of(&list.iter().map(|m| m.id.clone()).collect::<Vec<_>>())?;
            let mut by_message: HashMap<&str, Vec<&Delivery>> = HashMap::new();
            for d in &deliveries {
                by_message.entry(&d.message_id).or_default().push(d);
            }
            let state = |m: &MessageRow| {
                State::of(&m.disposition, by_message.get(m.id.as_str()).into_iter().flatten().copied())
            };
            if json {
                print_json(&list.iter().map(|m| summary_json(m, state(m))).collect::<Vec<_>>())?;
            } else {
                println!(
                    "{:<30}  {:<24}  {:>8}  {:<8}  {:<9}  {:<30}  {:<28}  SUBJECT",
                    "ID", "RECEIVED", "SIZE", "PARSED", "STATE", "TYPE", "FROM"
                );
                for m in &list {
                    println!(
                        "{:<30}  {:<24}  {:>8}  {:<8}  {:<9}  {:<30}  {:<28}  {}",
                        m.id,
                        rfc3339(m.received_at),
                        m.size,
                        m.parsed_status,
                        state(m).as_str(),
                        m.event_type.as_str(),
                        m.from_addr.as_deref().unwrap_or("-"),
                        m.subject.as_deref().unwrap_or("-")
                    );
                }
            }
            print_next("messages", next);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Show { id, json, raw } => {
            let Some(m) = store.message(&id)? else {
                eprintln!("no such message: {id}");
                return Ok(ExitCode::FAILURE);
            };
            if raw {
                let Some(bytes) = store.raw(&id)? else {
                    eprintln!("the raw bytes of {id} were removed by retention");
                    return Ok(ExitCode::FAILURE);
                };
                std::io::stdout().write_all(&bytes)?;
                return Ok(ExitCode::SUCCESS);
            }
            let deliveries = store.deliveries(None, Some(&id))?;
            let state = State::of(&m.disposition, deliveries.iter());
            if json {
                let mut v = summary_json(&m, state);
                // As sent: with the raw.base64 the store keeps apart.
                let sent = crate::deliver::message_json(&store, m.clone())?;
                v["event_message"] = serde_json::from_str(&sent)?;
                v["deliveries"] = deliveries.iter().map(delivery_json).collect();
                print_json(&v)?;
            } else {
                println!("message    {}", m.id);
                println!("received   {} from {} (helo {})", rfc3339(m.received_at), m.client_ip, m.helo);
                println!("mail from  <{}>", m.mail_from);
                println!("rcpt to    {}", m.rcpt_to.join(", "));
                println!("from       {}", m.from_addr.as_deref().unwrap_or("-"));
                println!("subject    {}", m.subject.as_deref().unwrap_or("-"));
                println!("size       {} bytes, sha256 {}", m.size, m.sha256);
                println!("parsed     {}", m.parsed_status);
                println!("type       {}", m.event_type);
                println!("state      {}", state.as_str());
                println!("disposition {}", m.disposition);
                for d in &deliveries {
                    println!("delivery   {}  {}  {} attempt(s)  -> {}", d.id, d.status, d.attempts, d.endpoint);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Purge { before, files_only } => {
            let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let show = |what: &'static str| {
                move |n: usize| {
                    if terminal {
                        eprint!("\r{what}: {n}");
                    }
                }
            };
            let files = store.purge_files_with(before, &mut show("messages whose files were removed"))?;
            if terminal && files > 0 {
                eprintln!();
            }
            let records =
                if files_only { 0 } else { store.purge_records_with(before, &mut show("records removed"))? };
            if terminal && records > 0 {
                eprintln!();
            }
            let kept = store.pending_before(before)?;
            println!("purged before {}: files of {files} message(s), records of {records}", rfc3339(before));
            if kept > 0 {
                println!("kept {kept} message(s) with a pending delivery");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Replay { id } => {
            if store.message(&id)?.is_none() {
                eprintln!("no such message: {id}");
                return Ok(ExitCode::FAILURE);
            }
            for d in store.deliveries(None, Some(&id))? {
                store.request_retry(&d.id)?;
                println!("replay scheduled: {} ({} -> {})", d.id, d.event_id, d.endpoint);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_type(s: &str) -> Result<EventType, String> {
    EventType::parse(s).ok_or_else(|| {
        let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        format!("`{s}` is not an event type (known: {})", known.join(", "))
    })
}

/// A date or RFC 3339 time, as Unix milliseconds.
pub(super) fn parse_date(s: &str) -> Result<i64, String> {
    let full = if s.len() == 10 { format!("{s}T00:00:00Z") } else { s.to_string() };
    let t = humantime::parse_rfc3339_weak(&full).map_err(|e| format!("`{s}` is not a date like 2026-11-01: {e}"))?;
    let since = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("`{s}` is before 1970"))?;
    Ok(since.as_millis() as i64)
}

/// What became of a message, for an operator at a glance. Its disposition is fixed at ingest (`queued`
/// means "has deliveries", whatever became of them); this rolls its deliveries up, the one most in
/// need of attention winning: a failed delivery, then one being retried, then one not yet attempted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Every delivery succeeded.
    Delivered,
    /// A delivery not attempted yet.
    Pending,
    /// A delivery whose attempts failed so far, with another scheduled.
    Retrying,
    /// A delivery gave up after its last attempt (`deliveries retry` sends it again).
    Failed,
    /// Kept, nothing sent (a `store` route).
    Stored,
    /// Recorded only (a `drop` route).
    Dropped,
    /// Queued, but its deliveries are gone (not left by mxhook itself).
    Unknown,
}

impl State {
    fn of<'a>(disposition: &str, deliveries: impl Iterator<Item = &'a Delivery>) -> State {
        let worst = deliveries
            .map(|d| match d.status {
                DeliveryStatus::Succeeded => State::Delivered,
                DeliveryStatus::Pending if d.attempts == 0 => State::Pending,
                DeliveryStatus::Pending => State::Retrying,
                DeliveryStatus::Failed => State::Failed,
            })
            .max_by_key(|s| match s {
                State::Failed => 3,
                State::Retrying => 2,
                State::Pending => 1,
                _ => 0,
            });
        // `stored: <why>`: kept, nothing sent because no endpoint subscribes to its type.
        worst.unwrap_or(match disposition {
            "dropped" => State::Dropped,
            d if d == "stored" || d.starts_with("stored:") => State::Stored,
            _ => State::Unknown,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            State::Delivered => "delivered",
            State::Pending => "pending",
            State::Retrying => "retrying",
            State::Failed => "failed",
            State::Stored => "stored",
            State::Dropped => "dropped",
            State::Unknown => "unknown",
        }
    }
}

fn summary_json(m: &MessageRow, state: State) -> Value {
    json!({
        "id": m.id,
        "received_at": rfc3339(m.received_at),
        "client_ip": m.client_ip,
        "helo": m.helo,
        "mail_from": m.mail_from,
        "rcpt_to": m.rcpt_to,
        "subject": m.subject,
        "from": m.from_addr,
        "size": m.size,
        "sha256": m.sha256,
        "parsed_status": m.parsed_status,
        "type": m.event_type.as_str(),
        "state": state.as_str(),
        "disposition": m.disposition,
    })
}
