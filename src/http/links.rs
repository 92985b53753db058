//! Signed, expiring links to the bytes we keep: `/att/{message_id}/{index}`, `/zip/{message_id}` (all
//! attachments) and `/raw/{message_id}`,
//! each with `?exp=UNIX&sig=…`, where sig = base64url(HMAC-SHA256(url key, "{path}?exp={exp}")).
//! The key lives in data_dir (made on first start, mode 0600) or in `[http] url_secret_file`.
//! Ingest builds the links; the HTTP side checks them.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

pub struct UrlSigner {
    key: hmac::Key,
    public_url: String,
    /// How long a link works after the message arrived, in seconds.
    ttl_secs: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    Valid,
    /// Missing, malformed or wrong signature (or `exp` altered): 403.
    Forged,
    /// Signed by us, but past its `exp`: 410.
    Expired,
}

impl UrlSigner {
    pub fn new(key_bytes: &[u8], public_url: &str, ttl_secs: i64) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key_bytes),
            public_url: public_url.trim_end_matches('/').to_string(),
            ttl_secs,
        }
    }

    /// Reads the key file, creating it (32 random bytes, 0600) when it does not exist yet.
    /// The link key: the store's shared one (PostgreSQL: every gateway signs and checks with the
    /// same) unless `[http] url_secret_file` names a file, else `key_file` (made on first start).
    pub fn key_for(store: &crate::store::Store, configured: Option<&Path>, key_file: &Path) -> anyhow::Result<Vec<u8>> {
        if configured.is_none()
            && let Some(key) = store.shared_link_key(&new_key)?
        {
            return Ok(key);
        }
        UrlSigner::load_or_create_key(key_file)
    }

    pub fn load_or_create_key(path: &Path) -> anyhow::Result<Vec<u8>> {
        match std::fs::read(path) {
            Ok(k) if k.len() >= 32 => return Ok(k),
            Ok(_) => anyhow::bail!("{} is shorter than 32 bytes; remove it to make a new one", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        let key = new_key()?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(&key)?;
        f.sync_all()?;
        Ok(key)
    }

    fn sig(&self, path: &str, exp: i64) -> String {
        B64URL.encode(hmac::sign(&self.key, format!("{path}?exp={exp}").as_bytes()).as_ref())
    }

    /// A full link to `path` (which starts with `/`), valid until `received_at_ms` + ttl.
    pub fn link(&self, path: &str, received_at_ms: i64) -> String {
        let exp = received_at_ms / 1000 + self.ttl_secs;
        format!("{}{path}?exp={exp}&sig={}", self.public_url, self.sig(path, exp))
    }

    pub fn attachment(&self, message_id: &str, index: usize, received_at_ms: i64) -> String {
        self.link(&format!("/att/{message_id}/{index}"), received_at_ms)
    }

    /// Every attachment of the message as one zip archive.
    pub fn attachments_zip(&self, message_id: &str, received_at_ms: i64) -> String {
        self.link(&format!("/zip/{message_id}"), received_at_ms)
    }

    pub fn raw(&self, message_id: &str, received_at_ms: i64) -> String {
        self.link(&format!("/raw/{message_id}"), received_at_ms)
    }

    /// Checks a request's path and query values. Constant-time comparison of the signature.
    pub fn check(&self, path: &str, exp: Option<&str>, sig: Option<&str>, now_secs: i64) -> Check {
        let (Some(exp), Some(sig)) = (exp, sig) else { return Check::Forged };
        let Ok(exp_n) = exp.parse::<i64>() else { return Check::Forged };
        // Only the canonical spelling of exp was signed: "+5", "05" are forgeries.
        if exp_n.to_string() != exp {
            return Check::Forged;
        }
        let Ok(given) = B64URL.decode(sig) else { return Check::Forged };
        let msg = format!("{path}?exp={exp_n}");
        if hmac::verify(&self.key, msg.as_bytes(), &given).is_err() {
            return Check::Forged;
        }
        if now_secs > exp_n { Check::Expired } else { Check::Valid }
    }
}

/// 32 fresh random bytes.
fn new_key() -> anyhow::Result<Vec<u8>> {
    let mut key = vec![0u8; 32];
    SystemRandom::new().fill(&mut key).map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> UrlSigner {
        UrlSigner::new(&[7u8; 32], "https://mx.example.test/", 3600)
    }

    fn parts(link: &str) -> (String, String, String) {
        let rest = link.strip_prefix("https://mx.example.test").unwrap();
        let (path, q) = rest.split_once('?').unwrap();
        let (e, s) = q.split_once('&').unwrap();
        (path.into(), e.strip_prefix("exp=").unwrap().into(), s.strip_prefix("sig=").unwrap().into())
    }

    #[test]
    fn a_link_checks_until_it_expires() {
        let (path, exp, sig) = parts(&signer().attachment("msg_abc", 2, 1_000_000));
        assert_eq!(path, "/att/msg_abc/2");
        assert_eq!(exp, "4600");
        assert_eq!(signer().check(&path, Some(&exp), Some(&sig), 4600), Check::Valid);
        assert_eq!(signer().check(&path, Some(&exp), Some(&sig), 4601), Check::Expired);
    }

    #[test]
    fn any_change_is_refused() {
        let (path, exp, sig) = parts(&signer().raw("msg_abc", 1_000_000));
        let s = signer();
        assert_eq!(s.check("/raw/msg_abd", Some(&exp), Some(&sig), 0), Check::Forged);
        assert_eq!(s.check(&path, Some("4601"), Some(&sig), 0), Check::Forged);
        assert_eq!(s.check(&path, Some("+4600"), Some(&sig), 0), Check::Forged);
        assert_eq!(s.check(&path, Some(&exp), None, 0), Check::Forged);
        assert_eq!(s.check(&path, None, Some(&sig), 0), Check::Forged);
        let mut bad = sig.clone().into_bytes();
        bad[3] ^= 1;
        assert_eq!(s.check(&path, Some(&exp), Some(&String::from_utf8_lossy(&bad)), 0), Check::Forged);
        let other = UrlSigner::new(&[8u8; 32], "https://mx.example.test", 3600);
        assert_eq!(other.check(&path, Some(&exp), Some(&sig), 0), Check::Forged);
    }
}
