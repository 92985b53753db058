//! `mxhook senders block | allow | remove | list`: the sender block and allow lists kept in the
//! store. A running server takes an edit in within a second; the config file's `[senders]` rules are
//! shown by `list` and changed only in the file.

use std::process::ExitCode;

use clap::Subcommand;
use serde::Serialize;

use super::{open_store, print_json, time_or_dash};
use crate::config::Settings;
use crate::senders::Rule;

#[derive(Subcommand)]
pub enum Cmd {
    /// Block a sender: an IP, a CIDR network, `user@domain`, `*@domain`, or `domain` (with subdomains).
    Block { rule: String },
    /// Allow a sender (wins over any block): the same rule forms as `block`.
    Allow { rule: String },
    /// Take a rule added with `block` or `allow` off its list.
    Remove { rule: String },
    /// Both lists: the config file's rules and those added here.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Listed {
    list: &'static str,
    rule: String,
    /// `config` (the file's `[senders]`) or `store` (added with this command).
    source: &'static str,
    added_at: Option<String>,
}

pub fn run(settings: &Settings, cmd: Cmd) -> anyhow::Result<ExitCode> {
    let store = open_store(settings)?;
    match cmd {
        Cmd::Block { rule } => set(&store, &rule, false),
        Cmd::Allow { rule } => set(&store, &rule, true),
        Cmd::Remove { rule } => {
            let canonical = Rule::parse(&rule).map_or_else(|_| rule.trim().to_string(), |r| r.to_string());
            if store.remove_sender_rule(&canonical)? {
                println!("removed {canonical}");
                return Ok(ExitCode::SUCCESS);
            }
            let lists = &settings.senders.lists;
            if lists.block.iter().chain(&lists.allow).any(|r| r.to_string() == canonical) {
                eprintln!("error: {canonical} is in {}'s [senders]: remove it there", settings.file.display());
            } else {
                eprintln!("error: {canonical} is on neither list");
            }
            Ok(ExitCode::FAILURE)
        }
        Cmd::List { json } => {
            let lists = &settings.senders.lists;
            let from_config = |list: &'static str, rules: &[Rule]| {
                rules
                    .iter()
                    .map(|r| Listed { list, rule: r.to_string(), source: "config", added_at: None })
                    .collect::<Vec<_>>()
            };
            let mut listed = from_config("block", &lists.block);
            listed.extend(from_config("allow", &lists.allow));
            let (_, stored) = store.sender_rules()?;
            listed.extend(stored.into_iter().map(|s| Listed {
                list: if s.allow { "allow" } else { "block" },
                rule: s.rule,
                source: "store",
                added_at: Some(time_or_dash(Some(s.added_at))),
            }));
            listed.sort_by(|a, b| (a.list, &a.rule).cmp(&(b.list, &b.rule)));
            if json {
                print_json(&listed)?;
            } else {
                println!("{:<6}  {:<40}  {:<7}  ADDED", "LIST", "RULE", "SOURCE");
                for l in &listed {
                    let added = l.added_at.as_deref().unwrap_or("-");
                    println!("{:<6}  {:<40}  {:<7}  {added}", l.list, l.rule, l.source);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn set(store: &crate::store::Store, written: &str, allow: bool) -> anyhow::Result<ExitCode> {
    let rule = Rule::parse(written).map_err(anyhow::Error::msg)?.to_string();
    let list = if allow { "allow" } else { "block" };
    if store.set_sender_rule(&rule, allow)? {
        println!("{rule}: on the {list} list (a running server applies it within a second)");
    } else {
        println!("{rule}: already on the {list} list");
    }
    Ok(ExitCode::SUCCESS)
}
