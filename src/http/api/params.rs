//! The API's input, checked once at the edge: query strings (known keys only, each at most once),
//! RFC 3339 times, page sizes, cursors and path segments. Anything wrong is a 400 that says which
//! parameter and why, never a 500 and never a silent default.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::ApiError;
use crate::store::Position;

/// Items per page when `limit` is not given, and the most a page may hold.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;

/// A query string's parameters, each named at most once and known to the route.
pub struct Params(Vec<(String, String)>);

type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

impl Params {
    pub fn parse(query: RawQuery, known: &[&str]) -> Result<Params, ApiError> {
        let Query(pairs) = query.map_err(|e| ApiError::bad_request(format!("the query string is not valid: {e}")))?;
        for (i, (key, _)) in pairs.iter().enumerate() {
            if !known.contains(&key.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{key}` (this route takes: {})",
                    known.join(", ")
                )));
            }
            if pairs[..i].iter().any(|(k, _)| k == key) {
                return Err(ApiError::bad_request(format!("query parameter `{key}` is given more than once")));
            }
        }
        Ok(Params(pairs))
    }

    pub fn text(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// An RFC 3339 time (`2026-11-29T18:00:00Z`, fractions allowed) as Unix milliseconds.
    pub fn time(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.text(key).map(|v| parse_time(key, v)).transpose()
    }

    /// `limit`: 1 to MAX_LIMIT, DEFAULT_LIMIT when not given.
    pub fn limit(&self) -> Result<usize, ApiError> {
        let Some(v) = self.text("limit") else { return Ok(DEFAULT_LIMIT) };
        match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!("`limit` must be a whole number from 1 to {MAX_LIMIT}, not `{v}`"))),
        }
    }

    /// `after`: the `next` of the previous page.
    pub fn cursor(&self) -> Result<Option<Position>, ApiError> {
        self.text("after").map(decode_cursor).transpose()
    }

    /// A value that must be one of `allowed`.
    pub fn one_of<T>(
        &self,
        key: &str,
        parse: impl Fn(&str) -> Option<T>,
        allowed: &[&str],
    ) -> Result<Option<T>, ApiError> {
        let Some(v) = self.text(key) else { return Ok(None) };
        parse(v)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("`{key}` must be one of {}, not `{v}`", allowed.join(", "))))
    }
}

/// An RFC 3339 time as Unix milliseconds, or a 400 naming `key`.
pub fn parse_time(key: &str, v: &str) -> Result<i64, ApiError> {
    let bad = |why: String| {
        ApiError::bad_request(format!("`{key}` must be an RFC 3339 time like 2026-11-29T18:00:00Z: {why}"))
    };
    // humantime takes `Z` only; an offset is turned into UTC here.
    let t = humantime::parse_rfc3339_weak(&utc(v).ok_or_else(|| bad(format!("`{v}`")))?)
        .map_err(|e| bad(format!("`{v}`: {e}")))?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| bad(format!("`{v}` is before 1970")))?.as_millis();
    i64::try_from(ms).map_err(|_| bad(format!("`{v}` is too far away")))
}

/// `v` with its offset applied, ending in `Z` (None: not a date-time with `T`, and `Z` or an offset).
fn utc(v: &str) -> Option<String> {
    let v = v.trim();
    if !v.is_ascii() || v.len() < 20 || !matches!(v.as_bytes()[10], b'T' | b't') {
        return None;
    }
    if let Some(base) = v.strip_suffix(['Z', 'z']) {
        return Some(format!("{}Z", base.replace('t', "T")));
    }
    let (base, offset) = v.split_at(v.len() - 6);
    let sign = match offset.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = offset[1..].split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    let local = humantime::parse_rfc3339_weak(&format!("{base}Z")).ok()?;
    let secs = local.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64() - (sign * (h * 3600 + m * 60)) as f64;
    let t = std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs_f64(secs.max(0.0)))?;
    Some(humantime::format_rfc3339_nanos(t).to_string())
}

/// The opaque cursor of a page's last row: base64url of `<ms>:<id>`.
pub fn encode_cursor(at: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{at}:{id}"))
}

fn decode_cursor(v: &str) -> Result<Position, ApiError> {
    let bad = || ApiError::bad_request("`after` is not a cursor this API gave out (use the `next` of a page)");
    let text = URL_SAFE_NO_PAD.decode(v).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(bad)?;
    let (at, id) = text.split_once(':').ok_or_else(bad)?;
    Ok(Position { at: at.parse().map_err(|_| bad())?, id: id.to_string() })
}

/// A path segment; a malformed one (bad percent-encoding) is a 400.
pub fn segment<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(v)| v).map_err(|e| ApiError::bad_request(format!("the path is not valid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_z_fractions_and_offsets_are_read_and_others_refused() {
        assert_eq!(parse_time("since", "1970-01-01T00:00:01Z").unwrap(), 1_000);
        assert_eq!(parse_time("since", "1970-01-01T00:00:01.250Z").unwrap(), 1_250);
        assert_eq!(parse_time("since", "1970-01-01T01:00:01+01:00").unwrap(), 1_000);
        for bad in
            ["", "yesterday", "2026-11-29", "2026-11-29 10:00:00", "2026-13-01T00:00:00Z", "1969-12-31T23:00:00Z"]
        {
            assert!(parse_time("since", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_cursor_reads_back_and_a_forged_one_is_refused() {
        let c = encode_cursor(1_700_000_000_123, "msg_01abc");
        assert_eq!(decode_cursor(&c).unwrap(), Position { at: 1_700_000_000_123, id: "msg_01abc".into() });
        assert!(decode_cursor("not a cursor").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("x:msg_1")).is_err());
    }
}
