//! The value parsers of the config file: durations (`"30s"`), sizes (`"25MB"`), and the checks of
//! addresses (`host:port`, URLs, mail addresses, name servers, the forward relay); and `Secret`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A webhook signing secret; Debug never shows it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    HumanDuration::deserialize(d).map(|h| h.0)
}

pub(super) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// Each element read on its own, so that a bad one is reported where it stands in the list.
pub(super) fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    Ok(Vec::<HumanDuration>::deserialize(d)?.into_iter().map(|h| h.0).collect())
}

/// A duration as the file writes it: `"30s"`, `"5m"`.
struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, not `String::deserialize` then parse: an error raised while the value is being
        // visited carries that value's own span (the element, not the whole list).
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a duration like "30s", "5m", "2h", "1d""#)
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<HumanDuration, E> {
                parse_duration(s).map(HumanDuration).map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// humantime's own error lists its unit names "(and few variations)"; say what a config takes instead.
fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|_| format!("expected a duration like \"30s\", \"5m\", \"2h\", \"1d\", got `{s}`"))
}

pub(super) fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Human(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(n),
        Size::Human(s) => s
            .trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|e| serde::de::Error::custom(format!("`{s}` is not a size like \"25MB\": {e}"))),
    }
}

/// A list of networks (`"10.0.0.0/8"`, `"::1/128"`, or one address, taken as /32 or /128), each
/// element read on its own so that a bad one is reported where it stands in the list.
pub(super) fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    struct Net(ipnet::IpNet);
    impl<'de> Deserialize<'de> for Net {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl serde::de::Visitor<'_> for Visitor {
                type Value = Net;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str(r#"a network like "10.0.0.0/8" or an address"#)
                }
                fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Net, E> {
                    let s = s.trim();
                    s.parse::<ipnet::IpNet>()
                        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map(|n| Net(n.trunc()))
                        .map_err(|_| E::custom(format!("`{s}` is not a network like \"10.0.0.0/8\" or an address")))
                }
            }
            d.deserialize_str(Visitor)
        }
    }
    Ok(Vec::<Net>::deserialize(d)?.into_iter().map(|n| n.0).collect())
}

/// `http://` or `https://`.
pub(super) fn http_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// `host:port` with a host and a numeric port (not resolved here).
pub(super) fn host_port(s: &str) -> bool {
    s.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

/// A mail address like `a@b.example`.
pub(super) fn mail_address(s: &str) -> bool {
    s.parse::<lettre::Address>().is_ok()
}

/// A name server: `ip:port`, or an IP address alone (port 53). Names are not resolved.
pub(super) fn dns_server(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>().or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53))).ok()
}

/// `smtp://host:port` (port 25 when left out; `[v6]:port` for an IPv6 address): host and port.
pub(super) fn smtp_relay(s: &str) -> Option<(String, u16)> {
    let (host, port) = match s.trim().strip_prefix("smtp://").map(|r| r.trim_end_matches('/')) {
        Some(hp) => match hp.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => (h, p.parse::<u16>().ok()),
            _ => (hp, Some(25)),
        },
        None => ("", None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match port {
        Some(port) if !host.is_empty() => Some((host.to_string(), port)),
        _ => None,
    }
}
