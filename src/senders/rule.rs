//! One block or allow rule, as written in `[senders]` or given to `mxhook senders block|allow`:
//!
//! | rule | matches |
//! |---|---|
//! | `203.0.113.7`, `2001:db8::1` | that client IP |
//! | `203.0.113.0/24`, `2001:db8::/32` | client IPs in that network |
//! | `ada@example.com` | that address exactly (MAIL FROM or From) |
//! | `*@example.com` | any address at `example.com`, not at its subdomains |
//! | `example.com` | any address at `example.com` or at any of its subdomains (`a.example.com`) |
//!
//! Addresses and domains are compared without regard to case. A bare domain takes its subdomains
//! because that is what blocking a sender's organisation needs (`mail.example.com`,
//! `bounce.example.com`); `*@` is the narrow form for one domain.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// A client IP network (a single address is a /32 or /128).
    Ip(IpNet),
    /// An exact address, lower-case.
    Address(String),
    /// `*@domain`: the domain alone, lower-case.
    AtDomain(String),
    /// A bare domain: it and its subdomains, lower-case.
    Domain(String),
}

impl Rule {
    /// Reads a rule; the error says what is wrong with it, for check-config and the CLI.
    pub fn parse(s: &str) -> Result<Rule, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty rule (use an IP, a CIDR network, an address, `*@domain` or a domain)".into());
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Rule::Ip(IpNet::from(ip)));
        }
        if s.contains('/') {
            return match s.parse::<IpNet>() {
                // `10.1.2.3/8` is taken as the network it names, 10.0.0.0/8.
                Ok(net) => Ok(Rule::Ip(net.trunc())),
                Err(_) => Err(format!("`{s}` is not a CIDR network like 203.0.113.0/24")),
            };
        }
        let lower = s.trim_end_matches('.').to_ascii_lowercase();
        match lower.rsplit_once('@') {
            Some(("*", domain)) => domain_name(domain).map(|d| Rule::AtDomain(d.to_string())),
            Some((local, domain)) => {
                if local.is_empty() || local.contains(['*', '@', ' ', '<', '>']) {
                    return Err(format!("`{s}` is not an address (use `user@domain`, `*@domain` for a whole domain)"));
                }
                domain_name(domain).map(|d| Rule::Address(format!("{local}@{d}")))
            }
            None => domain_name(&lower).map(|d| Rule::Domain(d.to_string())),
        }
    }

    /// Whether a client IP is in this rule's network (address rules match no IP).
    pub fn matches_ip(&self, ip: IpAddr) -> bool {
        // An IPv4 client seen on an IPv6 socket (`::ffff:203.0.113.7`) is matched as IPv4.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        matches!(self, Rule::Ip(net) if net.contains(&ip))
    }

    /// Whether an address (`user@domain`, any case) matches this rule (IP rules match no address).
    pub fn matches_address(&self, address: &str) -> bool {
        let address = address.trim().to_ascii_lowercase();
        let Some((_, domain)) = address.rsplit_once('@') else { return false };
        let domain = domain.trim_end_matches('.');
        match self {
            Rule::Ip(_) => false,
            Rule::Address(a) => *a == address,
            Rule::AtDomain(d) => d == domain,
            Rule::Domain(d) => domain == d || domain.strip_suffix(d.as_str()).is_some_and(|sub| sub.ends_with('.')),
        }
    }
}

/// The canonical text of a rule: what the store keeps and `senders list` shows.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Ip(net) if net.prefix_len() == net.max_prefix_len() => write!(f, "{}", net.addr()),
            Rule::Ip(net) => write!(f, "{net}"),
            Rule::Address(a) => f.write_str(a),
            Rule::AtDomain(d) => write!(f, "*@{d}"),
            Rule::Domain(d) => f.write_str(d),
        }
    }
}

/// A domain name: dot-separated labels of letters, digits, `-` and `_`.
fn domain_name(d: &str) -> Result<&str, String> {
    let ok = !d.is_empty()
        && d.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    if ok {
        Ok(d)
    } else {
        Err(format!("`{d}` is not a domain (rules are an IP, a CIDR network, `user@domain`, `*@domain` or `domain`)"))
    }
}

#[cfg(test)]
mod tests {
    use super::Rule;

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_form_matches_what_it_says_and_nothing_more() {
        let r = Rule::parse("203.0.113.0/24").unwrap();
        assert!(r.matches_ip(ip("203.0.113.9")) && !r.matches_ip(ip("203.0.114.9")));
        assert!(r.matches_ip(ip("::ffff:203.0.113.9")), "IPv4-mapped clients match IPv4 rules");
        assert!(!r.matches_address("a@203.0.113.9"));

        let r = Rule::parse("Ada@Example.com").unwrap();
        assert!(r.matches_address("ada@EXAMPLE.com") && !r.matches_address("bob@example.com"));

        let r = Rule::parse("*@example.com").unwrap();
        assert!(r.matches_address("x@example.com") && !r.matches_address("x@a.example.com"));

        let r = Rule::parse("example.com").unwrap();
        assert!(r.matches_address("x@example.com") && r.matches_address("x@a.b.example.com"));
        assert!(!r.matches_address("x@badexample.com") && !r.matches_address("x@example.com.evil"));
        assert!(!r.matches_address("") && !r.matches_ip(ip("127.0.0.1")));
    }

    #[test]
    fn rules_read_back_in_one_canonical_form() {
        for (written, canonical) in [
            ("127.0.0.2", "127.0.0.2"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("2001:DB8::/32", "2001:db8::/32"),
            (" *@Example.COM ", "*@example.com"),
            ("Example.com.", "example.com"),
        ] {
            assert_eq!(Rule::parse(written).unwrap().to_string(), canonical);
        }
        for bad in ["", "10.0.0.0/33", "a@", "@x.com", "a*b@x.com", "exa mple.com", "*.example.com", "x@y@"] {
            assert!(Rule::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
