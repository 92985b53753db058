//! The PostgreSQL URL from `[storage] database` (or `database_file`): parsed once by `config`, and
//! shown only with its password replaced, in every message, log line and Debug output. Its TLS
//! parameters (`sslmode`, `sslrootcert`) are taken out here and applied by `tls.rs`: the driver
//! knows fewer `sslmode`s than libpq and no `sslrootcert`.

use std::fmt;
use std::str::FromStr;

use super::tls::{SslMode, Tls};

/// A `postgres://` (or `postgresql://`) URL. Display and Debug never show its password.
#[derive(Clone)]
pub struct DatabaseUrl {
    url: String,
    /// The URL the driver reads: `sslmode` as it knows it, no `sslrootcert`.
    driver: String,
    tls: Tls,
}

impl DatabaseUrl {
    /// Checks `text` as the driver will read it. The error never repeats the text.
    pub fn parse(text: &str) -> Result<DatabaseUrl, String> {
        let text = text.trim();
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            return Err("must be a postgres:// URL (e.g. postgres://mxhook@db.internal/mxhook)".into());
        }
        let (driver, tls) = split_tls(text)?;
        postgres::Config::from_str(&driver).map_err(|e| format!("not a PostgreSQL URL the driver accepts: {e}"))?;
        Ok(DatabaseUrl { url: text.to_string(), driver, tls })
    }

    /// The driver's configuration (the text was checked by `parse`).
    pub(in crate::store) fn config(&self) -> anyhow::Result<postgres::Config> {
        postgres::Config::from_str(&self.driver).map_err(|e| anyhow::anyhow!("{self}: {e}"))
    }

    /// The URL's TLS settings (`sslmode`, `sslrootcert`).
    pub(in crate::store) fn tls(&self) -> &Tls {
        &self.tls
    }

    /// The URL with its password (in the user part or as `password=`) replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }
}

/// Takes `sslmode` and `sslrootcert` out of the URL's query: the URL for the driver (with the
/// `sslmode` it knows), and the TLS settings. libpq's default mode is `prefer`.
fn split_tls(url: &str) -> Result<(String, Tls), String> {
    let mut tls = Tls { mode: SslMode::Prefer, root_cert: None };
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_string(), tls)) };
    let mut kept = Vec::new();
    for kv in query.split('&') {
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
        match key {
            "sslmode" => {
                tls.mode = SslMode::parse(&value).ok_or_else(|| {
                    format!("sslmode `{value}` is not one of disable, prefer, require, verify-ca, verify-full")
                })?;
            }
            "sslrootcert" => tls.root_cert = Some(value.into_owned()),
            _ => kept.push(kv.to_string()),
        }
    }
    kept.push(format!("sslmode={}", tls.mode.for_driver()));
    Ok((format!("{base}?{}", kept.join("&")), tls))
}

fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    // The user part ends at the last `@` before the path, so an `@` inside the password is covered.
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            None => format!("{userinfo}@{hosts}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::DatabaseUrl;

    #[test]
    fn the_password_never_shows() {
        for (url, shown) in [
            ("postgres://mx:s3cr@t@db:5432/mx", "postgres://mx:***@db:5432/mx"),
            (
                "postgresql://mx@db/mx?password=s3cret&sslmode=require",
                "postgresql://mx@db/mx?password=***&sslmode=require",
            ),
            ("postgres://db/mx", "postgres://db/mx"),
            (
                "postgres://mx:pw@h1,h2/mx?target_session_attrs=read-write",
                "postgres://mx:***@h1,h2/mx?target_session_attrs=read-write",
            ),
        ] {
            let u = DatabaseUrl::parse(url).unwrap();
            assert_eq!(u.to_string(), shown);
            assert!(!format!("{u:?}").contains("s3cr") && !format!("{u:?}").contains(":pw@"));
        }
    }

    #[test]
    fn sslmode_and_sslrootcert_are_read_as_libpq_reads_them() {
        use crate::store::postgres::tls::{SslMode, Tls};
        let tls = |url: &str| DatabaseUrl::parse(url).map(|u| u.tls().clone());
        assert_eq!(tls("postgres://db/mx").unwrap(), Tls { mode: SslMode::Prefer, root_cert: None });
        assert_eq!(tls("postgres://db/mx?sslmode=disable").unwrap().mode, SslMode::Disable);
        assert_eq!(tls("postgres://db/mx?sslmode=require").unwrap().mode, SslMode::Require);
        assert_eq!(tls("postgres://db/mx?sslmode=verify-ca").unwrap().mode, SslMode::VerifyCa);
        let full = tls("postgres://db/mx?connect_timeout=3&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem").unwrap();
        assert_eq!(full, Tls { mode: SslMode::VerifyFull, root_cert: Some("/etc/ca.pem".into()) });
        let u =
            DatabaseUrl::parse("postgres://db/mx?connect_timeout=3&sslmode=verify-full&sslrootcert=system").unwrap();
        assert_eq!(u.config().unwrap().get_ssl_mode(), postgres::config::SslMode::Require);
        assert_eq!(u.to_string(), "postgres://db/mx?connect_timeout=3&sslmode=verify-full&sslrootcert=system");
        let e = tls("postgres://db/mx?sslmode=verify").unwrap_err();
        assert!(e.contains("verify-full"), "{e}");
    }

    #[test]
    fn only_postgres_urls_and_errors_do_not_repeat_them() {
        let e = DatabaseUrl::parse("mysql://u:hunter2@h/db").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        let e = DatabaseUrl::parse("postgres://u:hunter2@h:notaport/db").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
