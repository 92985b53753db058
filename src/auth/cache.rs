//! The record cache shared by every session: parsed SPF records, DKIM keys, DMARC policies and
//! addresses, each kept until its DNS TTL runs out, so a repeated sender costs no lookups.
//! mail-auth consults it through its `ResolverCache` trait; hickory keeps a response cache of its
//! own underneath (that one also remembers NXDOMAIN answers, which mail-auth never stores here).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mail_auth::common::resolver::ToFqdn;
use mail_auth::{DnssecStatus, MX, Parameters, RecordSet, ResolverCache, Txt};

/// Entries per record type; past it, expired entries go first, then the ones expiring soonest.
const CAPACITY: usize = 20_000;
/// Nothing is trusted for longer than a day, whatever TTL a zone publishes.
const MAX_TTL: Duration = Duration::from_secs(86_400);

pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    fn new() -> Self {
        Self { entries: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        // A panic elsewhere while holding the lock leaves a map that is still a valid cache.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.lock();
        match entries.get(key) {
            Some((value, expires)) if *expires > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().remove(key).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let now = Instant::now();
        if valid_until <= now {
            return; // TTL 0: the zone asked us not to keep it
        }
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.retain(|_, (_, expires)| *expires > now);
            // O(n), but only when the cache is full of live entries: rare and bounded.
            if entries.len() >= CAPACITY
                && let Some(soonest) = entries.iter().min_by_key(|(_, (_, e))| *e).map(|(k, _)| k.clone())
            {
                entries.remove(&soonest);
            }
        }
        entries.insert(key, (value, valid_until.min(now + MAX_TTL)));
    }
}

/// One cache per record type, as mail-auth's `Parameters` wants them.
pub struct Caches {
    txt: TtlCache<Box<str>, Txt>,
    mx: TtlCache<Box<str>, RecordSet<MX>>,
    ipv4: TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    ptr: TtlCache<IpAddr, RecordSet<Box<str>>>,
}

type Params<'x, P> = Parameters<
    'x,
    P,
    TtlCache<Box<str>, Txt>,
    TtlCache<Box<str>, RecordSet<MX>>,
    TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    TtlCache<IpAddr, RecordSet<Box<str>>>,
>;

impl Caches {
    pub(super) fn new() -> Self {
        Self {
            txt: TtlCache::new(),
            mx: TtlCache::new(),
            ipv4: TtlCache::new(),
            ipv6: TtlCache::new(),
            ptr: TtlCache::new(),
        }
    }

    /// mail-auth's parameters for one check, reading and filling these caches.
    pub(super) fn params<P>(&self, params: P) -> Params<'_, P> {
        Parameters::new(params)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }

    /// Puts a TXT answer (a parsed record, or `Txt::Error` for a negative or failed lookup) in the
    /// cache, as if resolved just now: for tests and fixtures.
    pub fn insert_txt(&self, name: &str, value: impl Into<Txt>, ttl: Duration) {
        self.txt.insert(fqdn(name), value.into(), Instant::now() + ttl);
    }

    /// Puts an A answer in the cache (see `insert_txt`).
    pub fn insert_ipv4(&self, name: &str, addrs: Vec<Ipv4Addr>, ttl: Duration) {
        let set = RecordSet { rrset: Arc::from(addrs), dnssec_status: DnssecStatus::Indeterminate };
        self.ipv4.insert(fqdn(name), set, Instant::now() + ttl);
    }

    /// Live and expired-but-not-yet-dropped entries across all record types.
    pub fn len(&self) -> usize {
        self.txt.len() + self.mx.len() + self.ipv4.len() + self.ipv6.len() + self.ptr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn fqdn(name: &str) -> Box<str> {
    name.to_fqdn().into_owned().into_boxed_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_zero_ttl_is_not_kept() {
        let c: TtlCache<Box<str>, u32> = TtlCache::new();
        c.insert("a.".into(), 1, Instant::now() + Duration::from_secs(60));
        c.insert("b.".into(), 2, Instant::now());
        c.insert("c.".into(), 3, Instant::now() + Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5)); // the entry's TTL, not synchronisation
        assert_eq!(c.get("a."), Some(1));
        assert_eq!(c.get("b."), None);
        assert_eq!(c.get("c."), None);
        assert_eq!(c.len(), 1, "an expired entry is dropped when read");
    }

    #[test]
    fn a_full_cache_drops_the_soonest_to_expire() {
        let c: TtlCache<u32, u32> = TtlCache::new();
        let now = Instant::now();
        for i in 0..CAPACITY as u32 {
            c.insert(i, i, now + Duration::from_secs(1000 + i as u64));
        }
        c.insert(u32::MAX, 0, now + Duration::from_secs(10));
        assert_eq!(c.len(), CAPACITY);
        assert_eq!(c.get(&0), None, "the entry closest to expiry made room");
        assert_eq!(c.get(&1), Some(1));
        assert_eq!(c.get(&u32::MAX), Some(0));
    }
}
