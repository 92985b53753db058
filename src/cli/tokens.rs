//! `mxhook tokens create NAME [--write]`: a new API token, printed once with the `[[api.tokens]]`
//! lines to paste into the config. Only the token's SHA-256 goes into the file: a config that leaks
//! gives nobody access.

use std::process::ExitCode;

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};

use crate::http::api::Token;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Print a new token and the config lines for it.
    Create {
        /// The token's name, shown in `whoami` (e.g. the app that uses it).
        name: String,
        /// Also allow changes: delete, retry, replay (acking a stream needs only read).
        #[arg(long)]
        write: bool,
    },
}

pub fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    let Cmd::Create { name, write } = cmd;
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    let token = format!("mxh_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let hash: String = Token::hash(&token).iter().map(|b| format!("{b:02x}")).collect();
    let scopes = if write { r#"["read", "write"]"# } else { r#"["read"]"# };
    println!("{token}");
    eprintln!("\nThe token above is shown once; keep it in your app's secrets. Add this to the config:\n");
    eprintln!("[[api.tokens]]\nname = {}\ntoken_sha256 = \"{hash}\"\nscopes = {scopes}", toml_string(&name));
    Ok(ExitCode::SUCCESS)
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
