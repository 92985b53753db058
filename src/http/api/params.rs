//! The API's input, checked once at the edge: query strings (known keys only, each at most once),
//! RFC 3339 times, page sizes, cursors and path segments. Anything wrong is a 400 that says which
//! parameter and why, never a 500 and never a silent default.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};

use super::error::ApiError;
use crate::store::Position;

/// Items per page when `limit` is not given, and the most a page may hold.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;

/// A query string's parameters, each named at most once and known to the route.
pub struct Params(Vec<(String, String)>);

/// A route's query string as axum hands it over: `Params::parse` turns a rejection into a 400.
pub type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

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
    rfc3339_ms(v).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`{key}` must be an RFC 3339 time like 2026-11-29T18:00:00Z or 2026-11-29T19:00:00.250+01:00, not `{v}`"
        ))
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as Unix milliseconds (negative before 1970). Any
/// year from 0000 to 9999, as the format allows; a leap second counts as the next second.
fn rfc3339_ms(v: &str) -> Option<i64> {
    let b = v.as_bytes();
    if b.len() < 20 || !v.is_ascii() {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r.clone()].iter().all(u8::is_ascii_digit).then(|| v[r].parse().ok()).flatten()
    };
    let seps = b[4] == b'-' && b[7] == b'-' && matches!(b[10], b'T' | b't') && b[13] == b':' && b[16] == b':';
    if !seps {
        return None;
    }
    let (y, mo, d, h, mi, s) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days_in = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > days_in[(mo - 1) as usize] || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &v[19..];
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        ms = frac[..digits.min(3)].parse::<i64>().ok()? * 10_i64.pow(3 - digits.min(3) as u32);
        rest = &frac[digits..];
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [h1, h2, m1, m2];
            if !digits.iter().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let (oh, om) = (((h1 - b'0') * 10 + (h2 - b'0')) as i64, ((m1 - b'0') * 10 + (m2 - b'0')) as i64);
            if oh > 23 || om > 59 {
                return None;
            }
            if *sign == b'+' { oh * 60 + om } else { -(oh * 60 + om) }
        }
        _ => return None,
    };
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let (y2, m2) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some(((days * 24 + h) * 60 + mi - offset) * 60_000 + s * 1000 + ms)
}

/// The cursor of a page's last row (`Position::cursor`: the CLI gives out the same ones).
pub fn encode_cursor(at: i64, id: &str) -> String {
    Position { at, id: id.to_string() }.cursor()
}

fn decode_cursor(v: &str) -> Result<Position, ApiError> {
    Position::parse(v).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`after` is not a cursor this API gave out (use the `next` of a page), not `{v}`"
        ))
    })
}

/// `Query<T>` whose rejection (a value of the wrong kind, a key given twice) is the API's JSON 400,
/// not axum's plain-text one: for routes that read their query into a struct.
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(q)) => Ok(ApiQuery(q)),
            Err(e) => Err(ApiError::bad_request(format!("the query string is not valid: {}", e.body_text()))),
        }
    }
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
        assert_eq!(parse_time("since", "1969-12-31T23:59:59Z").unwrap(), -1_000);
        assert_eq!(parse_time("since", "2026-11-29T18:00:00.5Z").unwrap(), 1_795_975_200_500);
        for bad in
            ["", "yesterday", "2026-11-29", "2026-11-29 10:00:00", "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z"]
        {
            assert!(parse_time("since", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_cursor_reads_back_and_a_forged_one_is_refused() {
        let c = encode_cursor(1_700_000_000_123, "msg_01abc");
        assert_eq!(decode_cursor(&c).unwrap(), Position { at: 1_700_000_000_123, id: "msg_01abc".into() });
        for bad in ["", "not a cursor", "x.msg_1", "12.", ".msg_1", "12.msg/1", "1234567890123456.msg_1"] {
            assert!(decode_cursor(bad).is_err(), "{bad:?}");
        }
    }
}
