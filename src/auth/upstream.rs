//! SPF as the upstream MTA saw it, for mail handed over by LMTP or `mxhook deliver`: SPF against the
//! local MTA's own address would mean nothing, so the verdict is read from the header that MTA added
//! (`Authentication-Results`, RFC 8601, or `Received-SPF`, RFC 7208 9.1) when its authserv-id (for
//! Received-SPF: `receiver=`) is one the operator trusts. Only the topmost such header counts: the
//! upstream prepends its own, and anything below it came with the message and could be forged.

use mail_auth::SpfResult;

/// The upstream's SPF verdict: the result and the domain it was for.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSpf {
    pub result: SpfResult,
    pub domain: String,
}

/// The topmost trusted `Authentication-Results` or `Received-SPF` SPF verdict in `raw`'s header.
pub fn spf(raw: &[u8], trusted: &[String]) -> Option<UpstreamSpf> {
    if trusted.is_empty() {
        return None;
    }
    let message = mail_parser::MessageParser::new().parse_headers(raw)?;
    for h in message.headers() {
        let name = h.name();
        let Some(value) = raw.get(h.offset_start() as usize..h.offset_end() as usize) else { continue };
        let value = unfold(&String::from_utf8_lossy(value));
        let found = if name.eq_ignore_ascii_case("Authentication-Results") {
            authentication_results(&value, trusted)
        } else if name.eq_ignore_ascii_case("Received-SPF") {
            received_spf(&value, trusted)
        } else {
            continue;
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn unfold(v: &str) -> String {
    v.split(['\r', '\n']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// `authserv-id [version]; spf=pass (comment) smtp.mailfrom=user@domain; dkim=…`.
fn authentication_results(value: &str, trusted: &[String]) -> Option<UpstreamSpf> {
    let value = strip_comments(value);
    let mut parts = value.split(';');
    let id = parts.next()?.split_whitespace().next()?.to_ascii_lowercase();
    if !trusted.contains(&id) {
        return None;
    }
    for resinfo in parts {
        let mut words = resinfo.split_whitespace();
        let Some(("spf", result)) = words.next().and_then(|w| w.split_once('=')) else { continue };
        let props: Vec<(&str, &str)> = words.filter_map(|w| w.split_once('=')).collect();
        let identity = props
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("smtp.mailfrom"))
            .or_else(|| props.iter().find(|(k, _)| k.eq_ignore_ascii_case("smtp.helo")))?;
        return Some(UpstreamSpf { result: result_of(result)?, domain: domain_of(identity.1) });
    }
    None
}

/// `pass (comment) client-ip=…; envelope-from=user@domain; helo=…; receiver=authserv-id;`.
fn received_spf(value: &str, trusted: &[String]) -> Option<UpstreamSpf> {
    let value = strip_comments(value);
    let result = result_of(value.split_whitespace().next()?)?;
    let rest = value.trim_start().split_once(char::is_whitespace).map_or("", |(_, r)| r);
    let pairs: Vec<(String, &str)> = rest
        .split(';')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"')))
        .collect();
    let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
    let receiver = get("receiver")?.to_ascii_lowercase();
    if !trusted.contains(&receiver) {
        return None;
    }
    let identity = get("envelope-from").filter(|v| !v.is_empty() && *v != "<>").or_else(|| get("helo"))?;
    Some(UpstreamSpf { result, domain: domain_of(identity) })
}

fn domain_of(identity: &str) -> String {
    let identity = identity.trim_matches(['<', '>']);
    identity.rsplit_once('@').map_or(identity, |(_, d)| d).to_ascii_lowercase()
}

fn result_of(word: &str) -> Option<SpfResult> {
    Some(match word.to_ascii_lowercase().as_str() {
        "pass" => SpfResult::Pass,
        "fail" | "hardfail" => SpfResult::Fail,
        "softfail" => SpfResult::SoftFail,
        "neutral" => SpfResult::Neutral,
        "none" => SpfResult::None,
        "temperror" => SpfResult::TempError,
        "permerror" => SpfResult::PermError,
        _ => return None,
    })
}

/// RFC 5322 comments (nested parentheses, `\` quoting) removed.
fn strip_comments(v: &str) -> String {
    let (mut out, mut depth, mut escaped) = (String::with_capacity(v.len()), 0u32, false);
    for c in v.chars() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') if depth > 0 => escaped = true,
            (false, '(') => depth += 1,
            (false, ')') if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<String> {
        vec!["mail.example.net".into()]
    }

    #[test]
    fn the_topmost_trusted_header_counts() {
        let raw = b"Authentication-Results: mail.example.net;\r\n\tspf=pass (sender SPF authorized) smtp.mailfrom=ada@sender.test;\r\n\tdkim=none\r\n\
            Authentication-Results: mail.example.net; spf=fail smtp.mailfrom=ada@forged.test\r\nSubject: x\r\n\r\nbody\r\n";
        assert_eq!(spf(raw, &ids()), Some(UpstreamSpf { result: SpfResult::Pass, domain: "sender.test".into() }));
        assert_eq!(spf(raw, &["other.example".into()]), None);
        assert_eq!(spf(raw, &[]), None);
    }

    #[test]
    fn untrusted_headers_are_skipped_and_received_spf_is_read() {
        let raw = b"Authentication-Results: evil.test; spf=pass smtp.mailfrom=a@evil.test\r\n\
            Received-SPF: Softfail (mailfrom) identity=mailfrom; client-ip=192.0.2.1; helo=h.test;\r\n envelope-from=\"bob@sender.test\"; receiver=mail.example.net\r\n\r\nbody\r\n";
        assert_eq!(spf(raw, &ids()), Some(UpstreamSpf { result: SpfResult::SoftFail, domain: "sender.test".into() }));
    }
}
