//! A sender's standing with the operator's block and allow lists (`[senders]`, `mxhook senders`).

/// Whether the sender (client IP, MAIL FROM or From address) is on a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Standing {
    /// On neither list.
    #[default]
    Unlisted,
    /// On the allow list: never classified spam, unauthenticated or blocked.
    Allowed,
    /// On the block list (and not allowed).
    Blocked,
}
