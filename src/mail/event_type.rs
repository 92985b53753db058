//! What a message is, as the event's `type` says it: decided once at ingest (`classify/`), stored
//! with the message, and matched against each endpoint's `events` subscription. The wire names are
//! written here only.

/// One event type per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// Everything that is none of the others.
    Received,
    /// The spam verdict is `spam`.
    ReceivedSpam,
    /// The sender is on the block list.
    ReceivedBlocked,
    /// Nothing authenticates the From domain (DMARC `fail`, or no aligned SPF or DKIM pass).
    ReceivedUnauthenticated,
    /// A delivery status notification (RFC 3464, or a plain-text bounce).
    Bounced,
    /// An ARF feedback report (RFC 5965).
    Complained,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::Received,
        EventType::ReceivedSpam,
        EventType::ReceivedBlocked,
        EventType::ReceivedUnauthenticated,
        EventType::Bounced,
        EventType::Complained,
    ];

    /// What an endpoint without `events` gets: the ordinary types, not the ones an app must ask for.
    pub const DEFAULT_SUBSCRIPTION: [EventType; 3] = [EventType::Received, EventType::Bounced, EventType::Complained];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Received => "email.received",
            EventType::ReceivedSpam => "email.received.spam",
            EventType::ReceivedBlocked => "email.received.blocked",
            EventType::ReceivedUnauthenticated => "email.received.unauthenticated",
            EventType::Bounced => "email.bounced",
            EventType::Complained => "email.complained",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::EventType;

    #[test]
    fn every_type_reads_back_from_its_wire_name() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("email.received.other"), None);
    }
}
