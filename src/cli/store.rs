//! `mxhook store copy`: moves a single host's SQLite store into PostgreSQL (the shared store of
//! several gateways), then prints each table's count on both sides; exits 1 when any differs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::Progress;
use crate::store::DatabaseUrl;

#[derive(Subcommand)]
pub enum Cmd {
    /// Copy a gateway's SQLite store (its data_dir) into an empty PostgreSQL database: messages and
    /// their bytes, deliveries as they stand, attempts, streams and consumers, sender rules, and the
    /// link key (links already sent keep working). Stop the gateway first.
    Copy {
        /// The data_dir of the SQLite store to copy (it is only read).
        #[arg(long, value_name = "DATA_DIR")]
        from: PathBuf,
        /// The PostgreSQL database, `postgres://user@host/db` (it must hold no mail yet).
        #[arg(long, value_name = "URL", required_unless_present = "to_file", conflicts_with = "to_file")]
        to: Option<String>,
        /// A file holding the URL (as `[storage] database_file`), to keep a password off the command line.
        #[arg(long, value_name = "FILE")]
        to_file: Option<PathBuf>,
    },
}

pub fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Copy { from, to, to_file } => {
            let text = match (to, to_file) {
                (Some(url), _) => url,
                (None, Some(file)) => {
                    std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
                }
                (None, None) => anyhow::bail!("name the database with --to or --to-file"),
            };
            let url = DatabaseUrl::parse(&text).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
            copy(&from, &url)
        }
    }
}

fn copy(from: &std::path::Path, url: &DatabaseUrl) -> anyhow::Result<ExitCode> {
    let mut bar: Option<Progress> = None;
    let mut progress = |done: usize, total: usize| {
        bar.get_or_insert_with(|| Progress::new("messages' bytes", total)).step();
        debug_assert!(done <= total);
    };
    let report = crate::store::copy_sqlite_to_postgres(from, url, &mut progress)
        .with_context(|| format!("copying {} into {url}", from.display()))?;
    println!("copied {} into {url}", from.display());
    println!("{:<18} {:>14} {:>14}", "table", "sqlite", "postgres");
    for (table, sqlite, postgres) in &report.tables {
        let mark = if sqlite == postgres { "" } else { "  MISMATCH" };
        println!("{table:<18} {sqlite:>14} {postgres:>14}{mark}");
    }
    let bad = report.mismatches();
    if bad.is_empty() {
        println!("ok: every count matches");
        return Ok(ExitCode::SUCCESS);
    }
    let names: Vec<&str> = bad.iter().map(|(t, _, _)| *t).collect();
    eprintln!(
        "error: the copy does not match the SQLite store in: {} (see above). The copy is committed: \
         empty the database (drop and create it) before trying again.",
        names.join(", ")
    );
    Ok(ExitCode::FAILURE)
}
