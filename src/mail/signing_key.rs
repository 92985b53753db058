//! The endpoint signing key and Standard Webhooks signatures (https://www.standardwebhooks.com):
//! `v1,` + base64 HMAC-SHA256 over `id.timestamp.body`, keyed by the bytes after `whsec_`. Any stock
//! verifier accepts what this signs. Parsed once, when the config is read.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("a webhook secret looks like `whsec_` followed by base64 (make one with `mxhook secret generate`)")]
    Format,
    #[error("the secret is too short: use at least 24 random bytes (`mxhook secret generate` makes 32)")]
    TooShort,
}

pub struct SigningKey(hmac::Key);

/// Never shows the key.
impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

impl SigningKey {
    pub fn parse(secret: &str) -> Result<Self, KeyError> {
        let b64 = secret.strip_prefix("whsec_").ok_or(KeyError::Format)?;
        let bytes = B64.decode(b64).map_err(|_| KeyError::Format)?;
        if bytes.len() < 24 {
            return Err(KeyError::TooShort);
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }

    /// The value of the `webhook-signature` header.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(id.as_bytes());
        ctx.update(b".");
        ctx.update(timestamp.to_string().as_bytes());
        ctx.update(b".");
        ctx.update(body);
        format!("v1,{}", B64.encode(ctx.sign().as_ref()))
    }

    /// Checks a `webhook-signature` header (space-separated `v1,…` values, any may match) in
    /// constant time. The caller checks the timestamp's age.
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        let mut signed = Vec::with_capacity(id.len() + body.len() + 24);
        signed.extend_from_slice(format!("{id}.{timestamp}.").as_bytes());
        signed.extend_from_slice(body);
        header
            .split_whitespace()
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|b| B64.decode(b).ok())
            .any(|sig| hmac::verify(&self.0, &signed, &sig).is_ok())
    }
}

/// An endpoint's keys, newest first: one while nothing rotates, two or more while the app switches
/// over (`secrets = [new, old]`). Every request carries one signature per key, space-separated as
/// the Standard Webhooks spec allows, so a verifier holding any one of them accepts it.
#[derive(Debug)]
pub struct SigningKeys(Vec<SigningKey>);

impl SigningKeys {
    /// None when `keys` is empty: an endpoint always signs with at least one key.
    pub fn new(keys: Vec<SigningKey>) -> Option<Self> {
        (!keys.is_empty()).then_some(Self(keys))
    }

    /// The value of the `webhook-signature` header: `v1,<sig>` per key, separated by spaces.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let signatures: Vec<String> = self.0.iter().map(|k| k.sign(id, timestamp, body)).collect();
        signatures.join(" ")
    }
}

/// A fresh `whsec_` secret of 32 random bytes.
pub fn generate_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    Ok(format!("whsec_{}", B64.encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // From the Standard Webhooks spec's reference implementations' test suite.
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn verifies_what_it_signs_and_nothing_else() {
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = key.sign("evt_1", 100, b"{}");
        assert!(key.verify("evt_1", 100, b"{}", &sig));
        assert!(key.verify("evt_1", 100, b"{}", &format!("v1,AAAA {sig}")));
        assert!(!key.verify("evt_1", 101, b"{}", &sig));
        assert!(!key.verify("evt_2", 100, b"{}", &sig));
        assert!(!key.verify("evt_1", 100, b"{ }", &sig));
    }

    #[test]
    fn several_keys_sign_once_each_and_either_verifies() {
        let new = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let old = generate_secret().unwrap();
        let keys = SigningKeys::new(vec![SigningKey::parse(new).unwrap(), SigningKey::parse(&old).unwrap()]).unwrap();
        let header = keys.sign("evt_1", 100, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.split(' ').all(|s| s.starts_with("v1,")));
        assert!(SigningKey::parse(new).unwrap().verify("evt_1", 100, b"{}", &header));
        assert!(SigningKey::parse(&old).unwrap().verify("evt_1", 100, b"{}", &header));
        let third = SigningKey::parse(&generate_secret().unwrap()).unwrap();
        assert!(!third.verify("evt_1", 100, b"{}", &header));
        assert!(SigningKeys::new(Vec::new()).is_none());
    }

    #[test]
    fn rejects_malformed_secrets() {
        assert!(SigningKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(SigningKey::parse("whsec_!!!").is_err());
        assert!(SigningKey::parse("whsec_AAAA").is_err());
        assert!(SigningKey::parse(&generate_secret().unwrap()).is_ok());
    }
}
