//! The block and allow lists at one moment, and the standing they give a sender.

use std::net::IpAddr;

use super::Rule;
use crate::mail::Standing;

#[derive(Debug, Clone, Default)]
pub struct Lists {
    pub block: Vec<Rule>,
    pub allow: Vec<Rule>,
}

impl Lists {
    /// The sender's standing from its client IP, MAIL FROM (empty for `<>`) and, once the message is
    /// read, its From address: on the allow list by any of them wins over being blocked by another,
    /// so an operator can block a domain and still let one of its senders through.
    pub fn standing(&self, ip: IpAddr, mail_from: &str, from: Option<&str>) -> Standing {
        let on = |rules: &[Rule]| {
            rules
                .iter()
                .any(|r| r.matches_ip(ip) || r.matches_address(mail_from) || from.is_some_and(|f| r.matches_address(f)))
        };
        if on(&self.allow) {
            Standing::Allowed
        } else if on(&self.block) {
            Standing::Blocked
        } else {
            Standing::Unlisted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Lists, Rule};
    use crate::mail::Standing;

    #[test]
    fn allow_wins_over_block_whichever_part_of_the_sender_matched() {
        let rules = |r: &[&str]| r.iter().map(|s| Rule::parse(s).unwrap()).collect::<Vec<_>>();
        let lists = Lists { block: rules(&["example.com", "127.0.0.2"]), allow: rules(&["ok@example.com"]) };
        let ip = |s: &str| s.parse().unwrap();
        assert_eq!(lists.standing(ip("127.0.0.1"), "x@a.example.com", None), Standing::Blocked);
        assert_eq!(lists.standing(ip("127.0.0.2"), "", None), Standing::Blocked);
        assert_eq!(lists.standing(ip("127.0.0.1"), "x@other.test", Some("y@example.com")), Standing::Blocked);
        assert_eq!(lists.standing(ip("127.0.0.2"), "x@other.test", Some("ok@example.com")), Standing::Allowed);
        assert_eq!(lists.standing(ip("127.0.0.1"), "x@other.test", None), Standing::Unlisted);
    }
}
