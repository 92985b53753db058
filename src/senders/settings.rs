//! `[senders]` as validated by `config`: the lists from the file and what a blocked sender gets.

use serde::Deserialize;

use super::Lists;

/// What happens to mail from a blocked sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockedAction {
    /// Accept and store it, marked blocked in the event (`message.sender_list`), for the app to decide.
    #[default]
    Accept,
    /// `550 5.7.1` at MAIL FROM (client IP or MAIL FROM blocked) or after DATA (From blocked).
    Reject,
}

#[derive(Debug, Clone, Default)]
pub struct SendersSettings {
    /// The rules from the file; `mxhook senders` adds more in the store.
    pub lists: Lists,
    pub blocked_action: BlockedAction,
}
