//! Recipient → endpoint. For now each configured domain sends every recipient to its catch-all
//! `endpoint`; a domain we do not serve is refused at RCPT (never an open relay).

use std::collections::BTreeMap;

use crate::smtp::Reply;

pub struct Router {
    /// Lower-case domain -> its catch-all endpoint (None: configured but no endpoint yet).
    domains: BTreeMap<String, Option<String>>,
}

impl Router {
    pub fn new(domains: BTreeMap<String, Option<String>>) -> Self {
        Self { domains }
    }

    /// The endpoint a recipient's mail goes to, or the reply that refuses it.
    pub fn route(&self, address: &str) -> Result<&str, Reply> {
        let shown: String = address.chars().take(256).map(|c| if c.is_control() { '?' } else { c }).collect();
        let relay = || Reply::new(550, format!("5.7.1 <{shown}>: Relay access denied"));
        let (local, domain) = address.rsplit_once('@').ok_or_else(relay)?;
        // Source routes, percent hacks, bang paths and quoted `@` are relaying tricks, not mailboxes.
        if local.is_empty() || local.contains(['@', '%', '!', ':', ',']) {
            return Err(relay());
        }
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        match self.domains.get(&domain) {
            None => Err(relay()),
            Some(None) => Err(Reply::new(550, format!("5.1.1 <{shown}>: Recipient address rejected: no route"))),
            Some(Some(endpoint)) => Ok(endpoint),
        }
    }

    /// The distinct endpoints a message goes to: one delivery each, however many recipients share one.
    pub fn endpoints(&self, rcpt_to: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in rcpt_to {
            if let Ok(e) = self.route(r)
                && !out.iter().any(|x| x == e)
            {
                out.push(e.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new([("example.test".to_string(), Some("app".to_string())), ("bare.test".into(), None)].into())
    }

    #[test]
    fn configured_domain_routes_to_its_endpoint() {
        assert_eq!(router().route("Anyone@Example.TEST"), Ok("app"));
    }

    #[test]
    fn foreign_domains_and_relay_tricks_are_refused() {
        for a in [
            "x@evil.test",
            "x%evil.test@example.test",
            "evil.test!x@example.test",
            "\"a@b\"@evil.test",
            "nodomain",
            "@example.test",
        ] {
            let r = router().route(a).unwrap_err();
            assert_eq!((r.code, &r.text[..5]), (550, "5.7.1"), "{a}");
        }
        assert!(router().route("x@bare.test").unwrap_err().text.starts_with("5.1.1"));
    }

    #[test]
    fn one_delivery_per_endpoint() {
        let r = vec!["a@example.test".to_string(), "b@example.test".into()];
        assert_eq!(router().endpoints(&r), vec!["app".to_string()]);
    }
}
