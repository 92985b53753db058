//! Sender block and allow lists: the rules (`rule.rs`), the lists and the standing they give a sender
//! (`lists.rs`), `[senders]` (`settings.rs`), and the live lists a running server asks, which take
//! in `mxhook senders` edits from the store within a second (`live.rs`).

mod lists;
mod live;
mod rule;
mod settings;

pub use lists::{Lists, Proven};
pub use live::Live;
pub use rule::Rule;
pub use settings::{BlockedAction, SendersSettings};
