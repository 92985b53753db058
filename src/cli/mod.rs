//! The command line (clap): `serve`, `check-config`, and Postfix-style small tools over the same
//! store the server uses (`messages`, `deliveries`, `endpoints`, `secret`). Commands other than
//! `serve` open the SQLite file directly; WAL lets them read and edit it while `serve` runs.

mod deliver;
mod deliveries;
mod doctor;
mod endpoints;
mod listen;
mod listen_stream;
mod messages;
mod routes;
mod senders;
mod store;
mod tokens;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::Settings;
use crate::store::{Position, Store};

#[derive(Parser)]
#[command(name = "mxhook", version, about = "Mail in over SMTP, signed JSON webhooks out")]
struct Cli {
    /// The configuration file.
    #[arg(long, global = true, env = "MXHOOK_CONFIG", default_value = "/etc/mxhook/gateway.toml")]
    config: PathBuf,
    /// Log lines as plain text or JSON (one object per line). Levels: RUST_LOG (default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: SMTP in, webhooks out, HTTP for health.
    Serve,
    /// Validate the configuration file; names the line and key of every problem.
    CheckConfig,
    /// Take one message on standard input (an MTA's pipe transport) into the store, as if received
    /// over SMTP. Exit codes (sysexits): 0 stored, 65 unreadable input, 67 no route for a recipient,
    /// 75 could not store (try again), 77 refused by policy.
    Deliver {
        /// The envelope sender (`""` or `<>` for the null sender).
        #[arg(long, allow_hyphen_values = true)]
        from: String,
        /// A recipient; repeat for several.
        #[arg(long, required = true)]
        to: Vec<String>,
    },
    /// Inspect stored messages, print raw mail, replay events.
    #[command(subcommand)]
    Messages(messages::Cmd),
    /// Inspect deliveries and their attempts; retry one now.
    #[command(subcommand)]
    Deliveries(deliveries::Cmd),
    /// Attempt every pending delivery now, as Postfix's `postqueue -f`: after an endpoint's outage,
    /// what waits for a later retry goes at once (a running gateway starts within a second). Event
    /// ids stay; the attempts use no step of the retry schedule.
    Flush,
    /// List endpoints; send one a signed test event.
    #[command(subcommand)]
    Endpoints(endpoints::Cmd),
    /// Show the routing table; test which route an address gets.
    #[command(subcommand)]
    Routes(routes::Cmd),
    /// Block or allow senders by IP, network, address or domain; list both lists.
    #[command(subcommand)]
    Senders(senders::Cmd),
    /// Check a live setup (config, data_dir, ports, DNS, certificate, endpoints) and say what to fix.
    Doctor {
        /// Name servers to ask (host:port), instead of the system's.
        #[arg(long, value_delimiter = ',')]
        dns: Vec<std::net::SocketAddr>,
        /// The server's public address, for the PTR check (default: the hostname's A/AAAA records).
        #[arg(long)]
        public_ip: Option<std::net::IpAddr>,
        /// Do not send test events to the endpoints.
        #[arg(long)]
        skip_endpoints: bool,
    },
    /// A local receiver for development: verifies signatures and prints each event. With
    /// `--stream`, reads a gateway's stream instead (nothing exposed) and prints each event, or
    /// POSTs it signed to `--forward-to`.
    Listen {
        /// The port to listen on (127.0.0.1).
        #[arg(long, default_value_t = 9000)]
        port: u16,
        /// The endpoint's secret (`whsec_…`): checks requests, or with `--forward-to` signs them.
        #[arg(long, env = "MXHOOK_LISTEN_SECRET")]
        secret: Option<String>,
        /// Print whole events as JSON.
        #[arg(long)]
        json: bool,
        /// A gateway's stream to read, e.g. `https://mx.example.com/v1/streams/dev`.
        #[arg(long, value_name = "URL")]
        stream: Option<String>,
        /// The API token for `--stream` (read scope).
        #[arg(long, env = "MXHOOK_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// A named consumer: the gateway keeps its place, so a restart continues where it stopped
        /// (without one, only events from now on).
        #[arg(long, value_name = "NAME")]
        consumer: Option<String>,
        /// POST each stream event here, signed with `--secret` as the gateway signs webhooks.
        #[arg(long, value_name = "URL")]
        forward_to: Option<String>,
    },
    /// Move the store: copy a SQLite data_dir into a PostgreSQL database.
    #[command(subcommand)]
    Store(store::Cmd),
    /// Webhook signing secrets.
    #[command(subcommand)]
    Secret(SecretCmd),
    /// API tokens for `/v1/`.
    #[command(subcommand)]
    Tokens(tokens::Cmd),
    /// Print the published JSON Schema (2020-12) of the event, or of one event type.
    Schema {
        /// One event type, e.g. `email.received` (default: every type).
        #[arg(value_name = "TYPE")]
        kind: Option<String>,
    },
}

#[derive(Subcommand)]
enum SecretCmd {
    /// Print a new random `whsec_…` secret.
    Generate,
}

pub fn run() -> anyhow::Result<ExitCode> {
    let cli = parse_args();
    let serving = matches!(cli.command, Command::Serve);
    init_logging(serving, cli.log_format);
    match cli.command {
        Command::Serve => {
            let settings = load(&cli.config)?;
            crate::memory::limit_arenas();
            // Blocking threads (delivery attempts, ingest) left idle after a burst exit after 2 s
            // instead of tokio's 10 s, and give their stacks back (RSS 5 s after a burst: -1.6 MiB).
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .thread_keep_alive(std::time::Duration::from_secs(2))
                .enable_all()
                .build()?;
            runtime.block_on(crate::serve::run(settings))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig => match Settings::load(&cli.config) {
            Ok(s) => {
                println!(
                    "ok: {} ({} domain(s), {} endpoint(s))",
                    cli.config.display(),
                    s.domains.len(),
                    s.endpoints.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                println!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Deliver { from, to } => match Settings::load(&cli.config) {
            Ok(settings) => Ok(deliver::run(&settings, &from, &to)),
            Err(e) => {
                // A broken config is the operator's to fix; the MTA keeps the message meanwhile.
                eprintln!("{e}");
                Ok(ExitCode::from(deliver::EX_TEMPFAIL))
            }
        },
        Command::Messages(cmd) => messages::run(&load(&cli.config)?, cmd),
        Command::Deliveries(cmd) => deliveries::run(&load(&cli.config)?, cmd),
        Command::Flush => deliveries::flush(&load(&cli.config)?),
        Command::Endpoints(cmd) => endpoints::run(&load(&cli.config)?, cmd),
        Command::Routes(cmd) => routes::run(&load(&cli.config)?, cmd),
        Command::Senders(cmd) => senders::run(&load(&cli.config)?, cmd),
        Command::Doctor { dns, public_ip, skip_endpoints } => {
            doctor::run(&load(&cli.config)?, &dns, public_ip, skip_endpoints)
        }
        Command::Listen { port, secret, json, stream: None, .. } => match secret {
            Some(secret) => listen::run(port, &secret, json),
            None => anyhow::bail!("`mxhook listen` needs --secret (or MXHOOK_LISTEN_SECRET), or --stream"),
        },
        Command::Listen { secret, json, stream: Some(url), token, consumer, forward_to, .. } => {
            let token = token.ok_or_else(|| anyhow::anyhow!("--stream needs --token (or MXHOOK_TOKEN)"))?;
            let forward = match (forward_to, secret) {
                (Some(to), Some(secret)) => Some((to, crate::mail::SigningKey::parse(&secret)?)),
                (Some(_), None) => anyhow::bail!("--forward-to needs --secret to sign the requests"),
                (None, _) => None,
            };
            listen_stream::run(&listen_stream::Options { url, token, consumer, forward, json })
        }
        Command::Tokens(cmd) => tokens::run(cmd),
        Command::Store(cmd) => store::run(cmd),
        Command::Secret(SecretCmd::Generate) => {
            println!("{}", crate::mail::generate_secret()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema { kind: None } => {
            println!("{}", crate::mail::schema::SCHEMA.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema { kind: Some(kind) } => match crate::mail::schema::for_type(&kind) {
            Some(schema) => print_json(&schema).map(|()| ExitCode::SUCCESS),
            None => {
                eprintln!("no event type `{kind}`; the types are: {}", crate::mail::schema::types().join(", "));
                Ok(ExitCode::from(2))
            }
        },
    }
}

/// Parses the command line. `--config` is global so that it may come after the subcommand, which
/// would also put it in the help of the commands that read no config. They get a hidden one of their
/// own instead (a global arg is not copied into a command that has one by that name), so
/// `--config` anywhere is still accepted.
fn parse_args() -> Cli {
    let hidden = || clap::Arg::new("config").long("config").hide(true).value_parser(clap::value_parser!(PathBuf));
    let cmd = Cli::command()
        .mut_subcommand("listen", |c| c.arg(hidden()))
        .mut_subcommand("schema", |c| c.arg(hidden()))
        .mut_subcommand("store", |c| c.arg(hidden()).mut_subcommand("copy", |c| c.arg(hidden())))
        .mut_subcommand("tokens", |c| c.arg(hidden()).mut_subcommand("create", |c| c.arg(hidden())))
        .mut_subcommand("secret", |c| c.arg(hidden()).mut_subcommand("generate", |c| c.arg(hidden())));
    Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit())
}

fn load(file: &Path) -> anyhow::Result<Settings> {
    Ok(Settings::load(file)?)
}

/// Opens the store of a configured data_dir; refuses to create one where none exists.
fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    if settings.database.is_none() {
        let db = settings.data_dir.join("mxhook.db");
        anyhow::ensure!(db.exists(), "no store at {} (has `mxhook serve` run with this config?)", db.display());
    }
    Store::open_configured(&settings.data_dir, settings.database.as_ref(), settings.lease)
}

fn init_logging(serving: bool, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let default = if serving { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
    };
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A one-line counter on a terminal's stderr for long operations; silent when not a terminal.
struct Progress {
    label: &'static str,
    done: usize,
    total: usize,
    terminal: bool,
    last: std::time::Instant,
}

impl Progress {
    fn new(label: &'static str, total: usize) -> Self {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        Self { label, done: 0, total, terminal, last: std::time::Instant::now() }
    }

    fn on_terminal(&self) -> bool {
        self.terminal
    }

    fn step(&mut self) {
        self.done += 1;
        let finished = self.done == self.total;
        if self.terminal && (finished || self.last.elapsed().as_millis() >= 100) {
            self.last = std::time::Instant::now();
            eprint!("\r{}: {}/{}", self.label, self.done, self.total);
            if finished {
                eprintln!();
            }
        }
    }
}

/// The rows past `limit` (a list asks for one more than it shows) are cut off; then the cursor of the
/// last row shown is where the next page starts. None: this was the last page.
fn page_end<T>(rows: &mut Vec<T>, limit: usize, position: impl Fn(&T) -> Position) -> Option<Position> {
    if rows.len() <= limit {
        return None;
    }
    rows.truncate(limit);
    rows.last().map(position)
}

/// Says on stderr (stdout stays the table or the JSON) how to ask for the next page.
fn print_next(list: &str, next: Option<Position>) {
    if let Some(p) = next {
        eprintln!("more {list}: add --after {} for the next page", p.cursor());
    }
}

/// `--after`: a cursor as `print_next` (or the API's `next`) gave it.
fn parse_cursor(v: &str) -> Result<Position, String> {
    Position::parse(v).ok_or_else(|| format!("`{v}` is not a cursor (use the one a previous page printed)"))
}

fn time_or_dash(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_string(), crate::time::rfc3339)
}
