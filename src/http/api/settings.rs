//! The API's vocabulary as `[api]` spells it: the tokens (only their SHA-256 is ever kept) and the
//! limit on failed attempts. `config` reads and checks them; `auth.rs` applies them.

use std::fmt;

/// One `[[api.tokens]]`.
#[derive(Clone)]
pub struct Token {
    pub name: String,
    /// SHA-256 of the token: what the file holds, and what a presented token is hashed to.
    pub sha256: [u8; 32],
    /// The `write` scope (every token reads).
    pub write: bool,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").field("name", &self.name).field("write", &self.write).finish_non_exhaustive()
    }
}

impl Token {
    pub fn hash(token: &str) -> [u8; 32] {
        let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }

    /// `token_sha256` as the file writes it: 64 hex digits.
    pub fn hash_from_hex(hex: &str) -> Option<[u8; 32]> {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(out)
    }
}

/// The validated `[api]`.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub tokens: Vec<Token>,
    /// Requests with a missing or wrong token per client address and minute before 429.
    pub max_failed_auth_per_minute: u32,
}
