//! Per-client-IP limits that keep one sender from taking the whole MX: concurrent sessions, and
//! messages per minute (a fixed one-minute window, like Postfix's anvil).

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
    /// 0: no limit.
    max_messages_per_minute: u32,
    peers: Mutex<HashMap<IpAddr, Peer>>,
}

/// Holds one session slot for an IP; gives it back when dropped.
pub struct SessionSlot {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut map = self.peers.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = map.get_mut(&self.ip) {
            p.sessions = p.sessions.saturating_sub(1);
            let idle = p.window_start.is_none_or(|t| t.elapsed() >= WINDOW);
            if p.sessions == 0 && idle {
                map.remove(&self.ip);
            }
        }
    }
}

impl Peers {
    pub fn new(max_sessions: usize, max_messages_per_minute: u32) -> Arc<Self> {
        Arc::new(Self { max_sessions, max_messages_per_minute, peers: Mutex::new(HashMap::new()) })
    }

    /// A session slot for `ip`, or None when it already has `max_sessions` open.
    pub fn open_session(self: &Arc<Self>, ip: IpAddr) -> Option<SessionSlot> {
        let mut map = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let p = map.entry(ip).or_default();
        if p.sessions >= self.max_sessions {
            return None;
        }
        p.sessions += 1;
        Some(SessionSlot { peers: self.clone(), ip })
    }

    /// Counts a message (at MAIL FROM); false when `ip` is over its rate for this minute.
    pub fn allow_message(&self, ip: IpAddr) -> bool {
        if self.max_messages_per_minute == 0 {
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
        let peers = Peers::new(2, 0);
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
        let peers = Peers::new(10, 3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..3).all(|_| peers.allow_message(ip)));
        assert!(!peers.allow_message(ip));
        assert!(peers.allow_message("192.0.2.2".parse().unwrap()));
    }
}
