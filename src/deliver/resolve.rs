//! The endpoint's address, for ureq. ureq resolves the host before every request, even when a
//! pooled connection will carry it, and with a timeout set (we always set one) its resolver runs
//! `getaddrinfo` on a new thread each time, because getaddrinfo cannot be cancelled. That was a
//! thread and a full lookup per webhook. This resolver keeps each host's answer for `KEEP` and
//! asks ureq's own resolver (same timeout, same IP family rules) only when it has none.
//!
//! `ureq::unversioned` is ureq's semver-exempt API; Cargo.lock pins the version it was written for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long an answer is used. getaddrinfo gives no TTL; an endpoint that moves is followed within
/// this (connections already pooled keep going to the old address until they close, as before).
const KEEP: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct CachingResolver {
    lookup: DefaultResolver,
    answers: Mutex<HashMap<String, (ResolvedSocketAddrs, Instant)>>,
}

impl Resolver for CachingResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = format!("{}://{}", uri.scheme_str().unwrap_or_default(), uri.authority().map_or("", |a| a.as_str()));
        let now = Instant::now();
        // A poisoned map is still a valid cache.
        let cached = self.answers.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        if let Some((addrs, at)) = cached
            && now.duration_since(at) < KEEP
        {
            return Ok(addrs);
        }
        // Failures are not kept: the next attempt asks again.
        let addrs = self.lookup.resolve(uri, config, timeout)?;
        self.answers.lock().unwrap_or_else(|p| p.into_inner()).insert(key, (addrs.clone(), now));
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::unversioned::transport::time;

    fn no_timeout() -> NextTimeout {
        NextTimeout {
            after: time::Duration::NotHappening,
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        }
    }

    #[test]
    fn each_host_has_its_answer_and_a_kept_answer_is_used_without_a_lookup() {
        let resolver = CachingResolver::default();
        let config = Config::default();
        let a: Uri = "http://127.0.0.1:8080/hook".parse().unwrap();
        let b: Uri = "http://127.0.0.2:9090/hook".parse().unwrap();
        let first = resolver.resolve(&a, &config, no_timeout()).unwrap();
        assert_eq!(first.first().map(|s| s.to_string()).as_deref(), Some("127.0.0.1:8080"));
        let other = resolver.resolve(&b, &config, no_timeout()).unwrap();
        assert_eq!(other.first().map(|s| s.to_string()).as_deref(), Some("127.0.0.2:9090"));

        // A name no lookup can answer here (.invalid, no network): only the kept answer can.
        let kept: Uri = "http://hooks.mxhook.invalid:8080/hook".parse().unwrap();
        resolver
            .answers
            .lock()
            .unwrap()
            .insert("http://hooks.mxhook.invalid:8080".into(), (first.clone(), Instant::now()));
        let again = resolver.resolve(&kept, &config, no_timeout()).unwrap();
        assert_eq!(again.first().map(|s| s.to_string()).as_deref(), Some("127.0.0.1:8080"));
        let stale = Instant::now().checked_sub(KEEP + Duration::from_secs(1)).unwrap();
        resolver.answers.lock().unwrap().insert("http://hooks.mxhook.invalid:8080".into(), (first, stale));
        assert!(resolver.resolve(&kept, &config, no_timeout()).is_err(), "a stale answer is looked up again");
    }
}
