//! Bearer tokens: `Authorization: Bearer <token>`, hashed and compared in constant time with every
//! configured hash. A missing or wrong token is 401 (with `WWW-Authenticate`), a token without the
//! scope a route needs is 403, and a client address that keeps presenting wrong tokens is held off
//! with 429 for the rest of the minute. Neither the token nor its hash is ever logged.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use super::error::ApiError;
use super::settings::{ApiSettings, Token};
use crate::http::App;

/// The API's state: its tokens and the failed attempts per client address.
pub struct Api {
    pub settings: ApiSettings,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    /// The configured `[streams.NAME]`: any other name is 404.
    pub streams: BTreeSet<String>,
    /// Becomes true when the server stops: open SSE and WebSocket readers end instead of holding
    /// the graceful shutdown open for ever.
    pub stopping: watch::Receiver<bool>,
    /// Each stream's shared tail for its readers.
    pub fanout: super::fanout::Fanout,
}

impl Api {
    pub fn new(settings: ApiSettings) -> Self {
        Api {
            settings,
            failures: Mutex::new(HashMap::new()),
            streams: BTreeSet::new(),
            stopping: watch::channel(false).1,
            fanout: Default::default(),
        }
    }

    /// The streams readers may read, and the signal that ends their connections.
    pub fn with_streams(mut self, names: impl IntoIterator<Item = String>, stopping: watch::Receiver<bool>) -> Self {
        self.streams = names.into_iter().collect();
        self.stopping = stopping;
        self
    }

    /// The token `presented` matches, if any. Every configured hash is compared, whichever matches.
    fn token(&self, presented: &str) -> Option<&Token> {
        let hash = Token::hash(presented);
        let mut found = None;
        for t in &self.settings.tokens {
            if bool::from(t.sha256.ct_eq(&hash)) {
                found = Some(t);
            }
        }
        found
    }

    fn limited(&self, ip: IpAddr) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.get(&ip).is_some_and(|(since, n)| {
            since.elapsed() < Duration::from_secs(60) && *n >= self.settings.max_failed_auth_per_minute
        })
    }

    fn failed(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Forget windows that are over, so a scan from many addresses cannot grow the map for ever.
        if failures.len() > 10_000 {
            failures.retain(|_, (since, _)| since.elapsed() < Duration::from_secs(60));
        }
        let entry = failures.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= Duration::from_secs(60) {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

/// The caller of a route that reads (every token may): its token's name and whether it may write.
pub struct Reader {
    pub name: String,
    pub write: bool,
}

/// The caller of a route that changes something (`scopes = ["read", "write"]`).
pub struct Writer {
    pub name: String,
}

fn authenticate(parts: &Parts, app: &App) -> Result<Token, ApiError> {
    let Some(api) = &app.api else {
        return Err(ApiError::not_found("route"));
    };
    let ip =
        parts.extensions.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(a)| a.ip());
    if api.limited(ip) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests with a wrong token from this address; wait a minute",
        )
        .with_header(header::RETRY_AFTER, "60"));
    }
    let presented = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let unauthorized = |message: &str, challenge: &'static str| {
        api.failed(ip);
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            .with_header(header::WWW_AUTHENTICATE, challenge)
    };
    match presented {
        None => Err(unauthorized("an `Authorization: Bearer <token>` header is needed", "Bearer realm=\"mxhook\"")),
        Some(p) => api
            .token(p)
            .cloned()
            .ok_or_else(|| unauthorized("the token is not valid", "Bearer realm=\"mxhook\", error=\"invalid_token\"")),
    }
}

impl FromRequestParts<Arc<App>> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        authenticate(parts, app).map(|t| Reader { name: t.name, write: t.write })
    }
}

impl FromRequestParts<Arc<App>> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let t = authenticate(parts, app)?;
        if !t.write {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token has the read scope only; this route needs write",
            ));
        }
        Ok(Writer { name: t.name })
    }
}
