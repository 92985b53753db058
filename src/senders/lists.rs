//! The block and allow lists at one moment, and the standing they give a sender.

use std::net::IpAddr;

use super::Rule;
use crate::mail::Standing;

/// Which of the sender's addresses are proven (SPF pass for MAIL FROM, DMARC pass for From, or
/// `[auth]` off: the operator verifies nothing). An allow rule on an address counts only for a proven
/// one: anyone can write any From, and an allow rule lifts blocks, spam and DMARC policies.
#[derive(Debug, Clone, Copy, Default)]
pub struct Proven {
    pub mail_from: bool,
    pub from: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Lists {
    pub block: Vec<Rule>,
    pub allow: Vec<Rule>,
}

impl Lists {
    /// The sender's standing from its client IP, MAIL FROM (empty for `<>`) and, once the message is
    /// read, its From address: on the allow list by any of them wins over being blocked by another,
    /// so an operator can block a domain and still let one of its senders through.
    pub fn standing(&self, ip: IpAddr, mail_from: &str, from: Option<&str>, proven: Proven) -> Standing {
        let on = |rules: &[Rule], proven: Proven| {
            rules.iter().any(|r| {
                r.matches_ip(ip)
                    || (proven.mail_from && r.matches_address(mail_from))
                    || (proven.from && from.is_some_and(|f| r.matches_address(f)))
            })
        };
        if on(&self.allow, proven) {
            Standing::Allowed
        } else if on(&self.block, Proven { mail_from: true, from: true }) {
            Standing::Blocked
        } else {
            Standing::Unlisted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Lists, Proven, Rule};
    use crate::mail::Standing;

    #[test]
    fn allow_wins_over_block_whichever_part_of_the_sender_matched() {
        let rules = |r: &[&str]| r.iter().map(|s| Rule::parse(s).unwrap()).collect::<Vec<_>>();
        let lists = Lists { block: rules(&["example.com", "127.0.0.2"]), allow: rules(&["ok@example.com"]) };
        let ip = |s: &str| s.parse().unwrap();
        let all = Proven { mail_from: true, from: true };
        assert_eq!(lists.standing(ip("127.0.0.1"), "x@a.example.com", None, all), Standing::Blocked);
        assert_eq!(lists.standing(ip("127.0.0.2"), "", None, all), Standing::Blocked);
        assert_eq!(lists.standing(ip("127.0.0.1"), "x@other.test", Some("y@example.com"), all), Standing::Blocked);
        assert_eq!(lists.standing(ip("127.0.0.2"), "x@other.test", Some("ok@example.com"), all), Standing::Allowed);
        assert_eq!(lists.standing(ip("127.0.0.1"), "x@other.test", None, all), Standing::Unlisted);
        // A forged From on the allow list lifts nothing; blocks need no proof.
        let none = Proven::default();
        assert_eq!(lists.standing(ip("127.0.0.2"), "x@other.test", Some("ok@example.com"), none), Standing::Blocked);
        assert_eq!(lists.standing(ip("127.0.0.1"), "x@a.example.com", None, none), Standing::Blocked);
    }
}
