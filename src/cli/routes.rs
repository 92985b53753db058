//! `mxhook routes list | test`: the effective routing table, and what one address would get.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::print_json;
use crate::config::Settings;
use crate::route::Action;
use crate::route::Router;

#[derive(Subcommand)]
pub enum Cmd {
    /// The effective table, most specific first (domains' own endpoints appear as `*@domain`).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Which route, action and endpoints an address would get.
    Test {
        address: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(settings: &Settings, cmd: Cmd) -> anyhow::Result<ExitCode> {
    let router = Router::new(settings.domains.clone(), &settings.routes);
    match cmd {
        Cmd::List { json } => {
            let table = router.table();
            if json {
                print_json(&table)?;
            } else {
                println!(
                    "{:<36}  {:<8}  {:<6}  {:<10}  {:<13}  ENDPOINTS / DESTINATION",
                    "MATCH", "ACTION", "MODE", "ON_SPAM", "ON_DMARC_FAIL"
                );
                for r in table {
                    println!(
                        "{:<36}  {:<8}  {:<6}  {:<10}  {:<13}  {}",
                        r.pattern,
                        label(&r.action),
                        label(&r.mode),
                        label(&r.on_spam),
                        label(&r.on_dmarc_fail),
                        if r.action == Action::Forward { r.destination.join(", ") } else { r.endpoints.join(", ") }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Test { address, json } => match router.route(&address) {
            Ok(d) => {
                if json {
                    print_json(&json!({ "address": address, "accepted": true, "match": d.route.pattern, "via": d.via,
                        "tag": d.tag, "route": d.route }))?;
                } else {
                    println!("{address}: accepted");
                    println!("  match      {} ({})", d.route.pattern, d.via);
                    if let Some(t) = &d.tag {
                        println!("  tag        {t}");
                    }
                    println!("  action     {}", label(&d.route.action));
                    if d.route.action == Action::Webhook {
                        println!("  endpoints  {} ({} mode)", d.route.endpoints.join(", "), label(&d.route.mode));
                    }
                    if d.route.action == Action::Forward {
                        println!("  forward to {}", d.route.destination.join(", "));
                    }
                    println!("  on_spam {}, on_dmarc_fail {}", label(&d.route.on_spam), label(&d.route.on_dmarc_fail));
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(reply) => {
                if json {
                    print_json(
                        &json!({ "address": address, "accepted": false, "reply": format!("{} {}", reply.code, reply.text) }),
                    )?;
                } else {
                    println!("{address}: refused at RCPT with {} {}", reply.code, reply.text);
                }
                Ok(ExitCode::FAILURE)
            }
        },
    }
}

fn label(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}
