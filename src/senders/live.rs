//! The lists a running server asks: the config file's rules plus those `mxhook senders` keeps in the
//! store. A CLI edit bumps the store's generation number; the server looks at that number at most
//! every 500 ms, when a sender is checked, and reads the rules again only when it moved. So an edit
//! applies within a second without a restart, and an idle or busy server costs at most two tiny
//! reads a second.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::{BlockedAction, Lists, Proven, Rule, SendersSettings};
use crate::mail::Standing;
use crate::store::Store;

/// How stale the lists may be after a CLI edit.
const CHECK_EVERY: Duration = Duration::from_millis(500);

pub struct Live {
    config: Lists,
    blocked_action: BlockedAction,
    store: Arc<Store>,
    state: Mutex<State>,
    /// The lists last read, for callers that find another one reading the store.
    snapshot: RwLock<Arc<Lists>>,
}

struct State {
    checked: Option<Instant>,
    /// The store generation `lists` was read at (None: not read yet).
    generation: Option<i64>,
    lists: Arc<Lists>,
}

impl Live {
    pub fn new(settings: &SendersSettings, store: Arc<Store>) -> Live {
        let state = State { checked: None, generation: None, lists: Arc::new(settings.lists.clone()) };
        Live {
            config: settings.lists.clone(),
            blocked_action: settings.blocked_action,
            store,
            snapshot: RwLock::new(state.lists.clone()),
            state: Mutex::new(state),
        }
    }

    /// Whether a blocked sender is refused (`blocked_action = "reject"`) rather than marked.
    pub fn rejects(&self) -> bool {
        self.blocked_action == BlockedAction::Reject
    }

    /// The sender's standing by the lists as they are now (see `Lists::standing`).
    pub fn standing(&self, ip: IpAddr, mail_from: &str, from: Option<&str>, proven: Proven) -> Standing {
        self.current().standing(ip, mail_from, from, proven)
    }

    fn current(&self) -> Arc<Lists> {
        // One caller at a time looks at the store; the others, SMTP sessions among them, take the
        // lists as they are rather than wait behind a read that may wait for the store's lock.
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                return self.snapshot.read().unwrap_or_else(|p| p.into_inner()).clone();
            }
        };
        if state.checked.is_some_and(|t| t.elapsed() < CHECK_EVERY) {
            return state.lists.clone();
        }
        state.checked = Some(Instant::now());
        // Reads of a few rows; the previous lists stay in force if the store cannot answer.
        let generation = match in_place(|| self.store.sender_rules_generation()) {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the sender lists' generation; keeping the lists");
                return state.lists.clone();
            }
        };
        if state.generation != Some(generation) {
            match in_place(|| self.store.sender_rules()) {
                Ok((generation, rules)) => {
                    state.lists = Arc::new(self.merged(&rules));
                    *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = state.lists.clone();
                    state.generation = Some(generation);
                    tracing::info!(generation, rules = rules.len(), "sender lists read from the store");
                }
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot read the sender lists; keeping them"),
            }
        }
        state.lists.clone()
    }

    /// The config's rules with the stored ones added; a stored rule that no longer parses (written by
    /// a later version) is skipped with a warning rather than stopping mail.
    fn merged(&self, stored: &[crate::store::SenderRule]) -> Lists {
        let mut lists = self.config.clone();
        for s in stored {
            match Rule::parse(&s.rule) {
                Ok(rule) if s.allow => lists.allow.push(rule),
                Ok(rule) => lists.block.push(rule),
                Err(e) => tracing::warn!(rule = %s.rule, error = %e, "skipping a stored sender rule"),
            }
        }
        lists
    }
}

/// Runs a short blocking read from async code: on a multi-threaded runtime the worker lets its other
/// tasks move elsewhere meanwhile; anywhere else it simply runs.
fn in_place<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
