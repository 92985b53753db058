//! Is the resolver answering at all? UDP to a dead or black-holed name server fails only by timeout,
//! so without this every message would wait out its whole DNS budget. When a message runs out of
//! budget, one probe asks the resolver for a random name that no cache holds (any answer, even
//! NXDOMAIN, means alive). While it is down, messages get no DNS time at all: cached records still
//! answer, the rest is `temperror` at once, and a probe every few seconds notices the recovery.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mail_auth::MessageAuthenticator;
use mail_auth::hickory_resolver::net::NetError;

/// Least time between two probes.
const PROBE_EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
struct State {
    down: bool,
    probing: bool,
    last_probe: Option<Instant>,
}

#[derive(Default)]
pub(super) struct Health {
    state: Mutex<State>,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn is_down(&self) -> bool {
        self.lock().down
    }

    /// A message ran out of DNS time: unless a probe ran lately, find out whether the resolver answers
    /// within `timeout`. The probe runs in the background; no session waits for it.
    pub(super) fn suspect(self: &Arc<Self>, resolver: &MessageAuthenticator, timeout: Duration) {
        {
            let mut s = self.lock();
            if s.probing || s.last_probe.is_some_and(|t| t.elapsed() < PROBE_EVERY) {
                return;
            }
            s.probing = true;
            s.last_probe = Some(Instant::now());
        }
        let (health, resolver) = (self.clone(), resolver.clone());
        tokio::spawn(async move {
            let alive = probe(&resolver, timeout).await;
            let mut s = health.lock();
            s.probing = false;
            if s.down == alive {
                if alive {
                    tracing::info!("DNS resolver answers again: auth checks use their full budget");
                } else {
                    tracing::warn!(
                        "DNS resolver does not answer: auth verdicts needing a lookup are temperror at once until it does"
                    );
                }
            }
            s.down = !alive;
        });
    }
}

/// Any answer within `timeout` (NXDOMAIN and other error codes included) means the resolver is
/// alive; so does failing at once (no name server configured: lookups cost no time either).
async fn probe(resolver: &MessageAuthenticator, timeout: Duration) -> bool {
    // A random label under a TLD that does not exist: never cached, answered NXDOMAIN by any
    // working resolver (often from its aggressive NSEC cache). `.invalid` would be answered by
    // hickory itself without asking anyone.
    let name = format!("{}.mxhook-probe.", ulid::Ulid::new().to_string().to_ascii_lowercase());
    match tokio::time::timeout(timeout, resolver.resolver().txt_lookup(name)).await {
        Ok(Ok(_)) => true,
        Ok(Err(NetError::Timeout)) | Err(_) => false,
        Ok(Err(_)) => true,
    }
}
