//! The PostgreSQL URL from `[storage] database` (or `database_file`): parsed once by `config`, and
//! shown only with its password replaced, in every message, log line and Debug output.

use std::fmt;
use std::str::FromStr;

/// A `postgres://` (or `postgresql://`) URL. Display and Debug never show its password.
#[derive(Clone)]
pub struct DatabaseUrl {
    url: String,
}

impl DatabaseUrl {
    /// Checks `text` as the driver will read it. The error never repeats the text.
    pub fn parse(text: &str) -> Result<DatabaseUrl, String> {
        let text = text.trim();
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            return Err("must be a postgres:// URL (e.g. postgres://mxhook@db.internal/mxhook)".into());
        }
        postgres::Config::from_str(text).map_err(|e| format!("not a PostgreSQL URL the driver accepts: {e}"))?;
        Ok(DatabaseUrl { url: text.to_string() })
    }

    /// The driver's configuration (the text was checked by `parse`).
    pub(in crate::store) fn config(&self) -> anyhow::Result<postgres::Config> {
        postgres::Config::from_str(&self.url).map_err(|e| anyhow::anyhow!("{self}: {e}"))
    }

    /// The URL with its password (in the user part or as `password=`) replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }
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
    fn only_postgres_urls_and_errors_do_not_repeat_them() {
        let e = DatabaseUrl::parse("mysql://u:hunter2@h/db").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        let e = DatabaseUrl::parse("postgres://u:hunter2@h:notaport/db").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
