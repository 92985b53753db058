//! Per-client-IP limits that keep one sender from taking the whole MX: concurrent sessions, and
//! messages per minute (a fixed one-minute window, like Postfix's anvil). Clients in
//! `trusted_networks` (localhost by default, Postfix's `mynetworks`) are not counted: a local proxy
//! or a load test is not one sender among many.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Peer {
    sessions: usize,
    window_start: Option<Instant>,
    messages: u32,
}

pub struct Peers {
    max_sessions: usize,
    /// Exempt from both limits (never from relay rules: routing does not look here).
    trusted: Vec<ipnet::IpNet>,
    /// 0: no limit.
    max_messages_per_minute: u32,
    peers: Mutex<HashMap<IpAddr, Peer>>,
}

/// Holds one session slot for an IP; gives it back when dropped. A trusted client's holds nothing.
pub struct SessionSlot {
    peers: Arc<Peers>,
    ip: Option<IpAddr>,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut map = self.peers.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = map.get_mut(&ip) {
            p.sessions = p.sessions.saturating_sub(1);
            let idle = p.window_start.is_none_or(|t| t.elapsed() >= WINDOW);
            if p.sessions == 0 && idle {
                map.remove(&ip);
            }
        }
    }
}

impl Peers {
    pub fn new(max_sessions: usize, max_messages_per_minute: u32, trusted: Vec<ipnet::IpNet>) -> Arc<Self> {
        Arc::new(Self { max_sessions, max_messages_per_minute, trusted, peers: Mutex::new(HashMap::new()) })
    }

    /// Whether `ip` is in `trusted_networks` (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// A session slot for `ip`, or None when it already has `max_sessions` open.
    pub fn open_session(self: &Arc<Self>, ip: IpAddr) -> Option<SessionSlot> {
        if self.trusted(ip) {
            return Some(SessionSlot { peers: self.clone(), ip: None });
        }
        let mut map = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let p = map.entry(ip).or_default();
        if p.sessions >= self.max_sessions {
            return None;
        }
        p.sessions += 1;
        Some(SessionSlot { peers: self.clone(), ip: Some(ip) })
    }

    /// Counts a message (at MAIL FROM); false when `ip` is over its rate for this minute.
    pub fn allow_message(&self, ip: IpAddr) -> bool {
        if self.max_messages_per_minute == 0 || self.trusted(ip) {
            return true;
        }
        let mut map = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let p = map.entry(ip).or_default();
        let now = Instant::now();
        if p.window_start.is_none_or(|t| now.duration_since(t) >= WINDOW) {
            p.window_start = Some(now);
            p.messages = 0;
        }
        if p.messages >= self.max_messages_per_minute {
            return false;
        }
        p.messages += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_per_ip_are_capped_and_given_back() {
        let peers = Peers::new(2, 0, Vec::new());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = peers.open_session(ip).unwrap();
        let _b = peers.open_session(ip).unwrap();
        assert!(peers.open_session(ip).is_none());
        assert!(peers.open_session("192.0.2.2".parse().unwrap()).is_some());
        drop(a);
        assert!(peers.open_session(ip).is_some());
    }

    #[test]
    fn messages_per_minute_are_capped() {
        let peers = Peers::new(10, 3, Vec::new());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..3).all(|_| peers.allow_message(ip)));
        assert!(!peers.allow_message(ip));
        assert!(peers.allow_message("192.0.2.2".parse().unwrap()));
    }

    #[test]
    fn trusted_networks_are_not_counted() {
        let peers = Peers::new(1, 1, vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]);
        let local: IpAddr = "127.0.0.5".parse().unwrap();
        let slots: Vec<_> = (0..50).map(|_| peers.open_session(local).unwrap()).collect();
        assert!((0..50).all(|_| peers.allow_message(local)));
        assert!((0..5).all(|_| peers.allow_message("::ffff:127.0.0.1".parse().unwrap())));
        drop(slots);
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        let _slot = peers.open_session(other).unwrap();
        assert!(peers.open_session(other).is_none());
        assert!(peers.allow_message(other) && !peers.allow_message(other));
    }
}
