//! `mxhook deliveries list | show | retry | replay`, and `mxhook flush`.

use std::process::ExitCode;

use clap::Subcommand;

use super::{Progress, open_store, page_end, parse_cursor, print_json, print_next, time_or_dash};
use crate::config::Settings;
pub use crate::http::api::{attempt_json, delivery_json};
use crate::mail::DeliveryStatus;
use crate::store::{Delivery, DeliveryFilter, Position, Store};
use crate::time::rfc3339;

#[derive(Subcommand)]
pub enum Cmd {
    /// List deliveries, newest first (by their message's arrival), a page at a time, with the last
    /// attempt's HTTP status or error. When there are more, stderr says the `--after` of the next page.
    List {
        /// Only deliveries in this state.
        #[arg(long, value_parser = ["pending", "succeeded", "failed"])]
        status: Option<String>,
        /// Only deliveries of this message.
        #[arg(long)]
        message: Option<String>,
        /// Only deliveries to this endpoint.
        #[arg(long)]
        endpoint: Option<String>,
        /// How many to show.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Start after this cursor (the `--after` the previous page printed).
        #[arg(long, value_parser = parse_cursor)]
        after: Option<Position>,
        #[arg(long)]
        json: bool,
    },
    /// Show one delivery and every attempt.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Attempt a delivery again now, with the same event id (the running server picks it up within a second).
    Retry {
        /// Deliveries to attempt again (`dlv_…`, from `deliveries list`).
        ids: Vec<String>,
        /// Retry every delivery that ended `failed` (after an outage, say).
        #[arg(long, conflicts_with = "ids")]
        all_failed: bool,
        /// Attempt every pending delivery now, rather than at its next scheduled retry (`mxhook flush`).
        #[arg(long, conflicts_with_all = ["ids", "all_failed"])]
        all_pending: bool,
    },
    /// Send again every event of the messages received in [--since, --until), same event ids: the
    /// recovery after the app was down (the running server sends them within a second).
    Replay {
        /// `2026-11-01` or `2026-11-01T12:00:00Z` (included).
        #[arg(long, value_parser = super::messages::parse_date)]
        since: i64,
        /// `2026-11-02` or `2026-11-01T18:00:00.500Z` (excluded).
        #[arg(long, value_parser = super::messages::parse_date)]
        until: i64,
        /// Only this endpoint's deliveries.
        #[arg(long)]
        endpoint: Option<String>,
        /// Only deliveries in this state.
        #[arg(long, value_parser = ["pending", "succeeded", "failed"])]
        status: Option<String>,
    },
}

pub fn run(settings: &Settings, cmd: Cmd) -> anyhow::Result<ExitCode> {
    let store = open_store(settings)?;
    match cmd {
        Cmd::List { status, message, endpoint, limit, after, json } => {
            let filter =
                DeliveryFilter { status: status.as_deref().and_then(DeliveryStatus::parse), endpoint, message };
            let limit = limit as usize;
            let mut list = store.list_deliveries(&filter, after.as_ref(), limit + 1)?;
            let next = page_end(&mut list, limit, |d| Position { at: d.created_at, id: d.id.clone() });
            if json {
                print_json(&list.iter().map(delivery_json).collect::<Vec<_>>())?;
            } else {
                println!(
                    "{:<30}  {:<9}  {:>8}  {:<14}  {:<24}  {:<30}  LAST",
                    "ID", "STATUS", "ATTEMPTS", "ENDPOINT", "NEXT ATTEMPT", "MESSAGE"
                );
                for d in &list {
                    println!(
                        "{:<30}  {:<9}  {:>8}  {:<14}  {:<24}  {:<30}  {}",
                        d.id,
                        d.status,
                        d.attempts,
                        d.endpoint,
                        time_or_dash(d.next_attempt_at),
                        d.message_id,
                        last_outcome(d)
                    );
                }
            }
            print_next("deliveries", next);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Show { id, json } => {
            let Some(d) = store.delivery(&id)? else {
                eprintln!("no such delivery: {id}");
                return Ok(ExitCode::FAILURE);
            };
            let attempts = store.attempts(&id)?;
            if json {
                let mut v = delivery_json(&d);
                v["attempt_log"] = attempts.iter().map(attempt_json).collect();
                print_json(&v)?;
            } else {
                println!("delivery      {}", d.id);
                println!("status        {}", d.status);
                println!("message       {}", d.message_id);
                println!("event         {}", d.event_id);
                println!("endpoint      {}", d.endpoint);
                println!("attempts      {}", d.attempts);
                println!("next attempt  {}", time_or_dash(d.next_attempt_at));
                for a in &attempts {
                    let status = a.http_status.map_or("-".to_string(), |s| s.to_string());
                    println!(
                        "\n#{} at {}  HTTP {}  {} ms  {}",
                        a.attempt,
                        rfc3339(a.started_at),
                        status,
                        a.duration_ms,
                        a.error.as_deref().unwrap_or("ok")
                    );
                    if let Some(body) = &a.response_body {
                        println!("   response: {}", body.chars().take(200).collect::<String>().replace('\n', " "));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Retry { all_pending: true, .. } => flush_store(&store),
        Cmd::Retry { all_failed: true, .. } => {
            let n = store.retry_all(DeliveryStatus::Failed, &mut counter("retry scheduled"))?;
            end_counter(n);
            if n == 0 {
                println!("nothing to retry: no delivery has failed");
            } else {
                println!("retry scheduled: {n} failed deliveries");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Retry { ids, .. } => {
            if ids.is_empty() {
                eprintln!(
                    "nothing to retry: name deliveries (dlv_…, from `mxhook deliveries list`) or use --all-failed \
                     or --all-pending"
                );
                return Ok(ExitCode::from(2));
            }
            let mut code = ExitCode::SUCCESS;
            let mut progress = Progress::new("retry scheduled", ids.len());
            for id in ids {
                if store.request_retry(&id)? {
                    progress.step();
                    if !progress.on_terminal() {
                        println!("retry scheduled: {id}");
                    }
                } else {
                    eprintln!("no such delivery: {id}");
                    code = ExitCode::FAILURE;
                }
            }
            Ok(code)
        }
        Cmd::Replay { since, until, endpoint, status } => {
            if since >= until {
                eprintln!("--since must be before --until");
                return Ok(ExitCode::from(2));
            }
            let status = status.as_deref().and_then(DeliveryStatus::parse);
            let n = store.replay(since, until, endpoint.as_deref(), status)?;
            println!(
                "replay scheduled: {n} deliveries of messages received from {} to {}",
                rfc3339(since),
                rfc3339(until)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `mxhook flush`: every pending delivery due now.
pub fn flush(settings: &Settings) -> anyhow::Result<ExitCode> {
    flush_store(&open_store(settings)?)
}

fn flush_store(store: &Store) -> anyhow::Result<ExitCode> {
    let n = store.retry_all(DeliveryStatus::Pending, &mut counter("made due now"))?;
    end_counter(n);
    let (pending, _) = store.queue_stats()?;
    println!("flushed: {n} pending deliveries that waited for a later attempt are due now ({pending} pending in all)");
    Ok(ExitCode::SUCCESS)
}

/// A running count on a terminal's stderr for a bulk change whose total is not known in advance.
fn counter(label: &'static str) -> impl FnMut(usize) {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    move |n| {
        if terminal {
            eprint!("\r{label}: {n}");
        }
    }
}

fn end_counter(n: usize) {
    if n > 0 && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
}

/// The last attempt for the table: its HTTP status, or, without one (no answer), its error cut short.
fn last_outcome(d: &Delivery) -> String {
    const WIDTH: usize = 40;
    if let Some(status) = d.last_status {
        return status.to_string();
    }
    let Some(error) = d.last_error.as_deref() else { return "-".to_string() };
    // "connection failed: Connection refused (os error 111)" -> "Connection refused"
    let error = error.strip_prefix("connection failed: ").unwrap_or(error);
    let error = match error.rfind(" (os error ") {
        Some(at) if error.ends_with(')') => &error[..at],
        _ => error,
    };
    let error = error.replace('\n', " ");
    if error.chars().count() <= WIDTH { error } else { error.chars().take(WIDTH - 1).chain(['…']).collect() }
}
