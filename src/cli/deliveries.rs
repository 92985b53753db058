//! `mxhook deliveries list | show | retry | replay`.

use std::process::ExitCode;

use clap::Subcommand;

use super::{Progress, open_store, print_json, time_or_dash};
use crate::config::Settings;
pub use crate::http::api::{attempt_json, delivery_json};
use crate::mail::DeliveryStatus;
use crate::store::Delivery;
use crate::time::rfc3339;

#[derive(Subcommand)]
pub enum Cmd {
    /// List deliveries, oldest first, with the last attempt's HTTP status or error.
    List {
        /// Only deliveries in this state.
        #[arg(long, value_parser = ["pending", "succeeded", "failed"])]
        status: Option<String>,
        /// Only deliveries of this message.
        #[arg(long)]
        message: Option<String>,
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
        Cmd::List { status, message, json } => {
            let list = store.deliveries(status.as_deref().and_then(DeliveryStatus::parse), message.as_deref())?;
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
        Cmd::Retry { ids, all_failed } => {
            if ids.is_empty() && !all_failed {
                eprintln!(
                    "nothing to retry: name deliveries (dlv_…, from `mxhook deliveries list`) or use --all-failed"
                );
                return Ok(ExitCode::from(2));
            }
            let mut code = ExitCode::SUCCESS;
            let ids: Vec<String> = if all_failed {
                store.deliveries(Some(DeliveryStatus::Failed), None)?.into_iter().map(|d| d.id).collect()
            } else {
                ids
            };
            if ids.is_empty() {
                println!("nothing to retry: no delivery has failed");
                return Ok(code);
            }
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
