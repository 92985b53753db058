//! `mxhook listen`: a local development receiver, like the Stripe CLI's `listen`. It verifies each
//! request's Standard Webhooks signature (and timestamp) and prints the event readably, so a user
//! sees mail arrive before writing any code.

use std::process::ExitCode;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

use crate::mail::SigningKey;

/// Standard Webhooks' default tolerance for the timestamp.
const TOLERANCE_SECS: i64 = 300;

struct Listener {
    key: SigningKey,
    json: bool,
}

pub fn run(port: u16, secret: &str, json: bool) -> anyhow::Result<ExitCode> {
    let key = SigningKey::parse(secret)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        eprintln!("listening on http://{}/ (POST any path); Ctrl-C to stop", listener.local_addr()?);
        let state = std::sync::Arc::new(Listener { key, json });
        let app = Router::new().fallback(post(receive)).with_state(state);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

async fn receive(State(l): State<std::sync::Arc<Listener>>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    match verify(&l.key, &headers, &body) {
        Ok(()) => {}
        Err(why) => {
            println!("REJECTED  {why}");
            return (StatusCode::BAD_REQUEST, format!("{why}\n"));
        }
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        println!("REJECTED  signed, but the body is not JSON");
        return (StatusCode::BAD_REQUEST, "not JSON\n".into());
    };
    if l.json {
        println!("{}", serde_json::to_string_pretty(&event).unwrap_or_default());
    } else {
        println!("{}", summary(&event));
    }
    (StatusCode::OK, "ok\n".into())
}

fn verify(key: &SigningKey, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).ok_or(format!("missing {name} header"));
    let id = get("webhook-id")?;
    let ts: i64 = get("webhook-timestamp")?.parse().map_err(|_| "webhook-timestamp is not a number".to_string())?;
    let sig = get("webhook-signature")?;
    let now = crate::time::now_ms() / 1000;
    if (now - ts).abs() > TOLERANCE_SECS {
        return Err(format!("{id}: timestamp {ts} is {}s away from now (replay?)", now - ts));
    }
    if !key.verify(id, ts, body, sig) {
        return Err(format!("{id}: signature does not match (wrong secret, or the body was altered)"));
    }
    Ok(())
}

/// A readable few lines of an event (a webhook's, or a stream's: `mxhook listen --stream`).
pub(super) fn summary(e: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let m = &e["message"];
    let rcpts: Vec<String> = m["smtp"]["rcpt_to"].as_array().map(|a| a.iter().map(s).collect()).unwrap_or_default();
    let atts = m["attachments"].as_array().map_or(0, |a| a.len());
    let (at, via) = match e.get("stream") {
        Some(st) => (s(&e["created_at"]), format!("stream {} #{}", s(&st["name"]), st["cursor"])),
        None => (s(&e["delivery"]["attempted_at"]), format!("attempt {}", e["delivery"]["attempt"])),
    };
    let mut out = format!(
        "{}  {} {}  {}\n  from {} to {}\n  subject {}\n  parsed {}, {} attachment(s), {} bytes",
        at,
        s(&e["id"]),
        via,
        s(&m["id"]),
        s(&m["from"]["address"]),
        rcpts.join(", "),
        s(&m["subject"]),
        s(&m["parsed"]["status"]),
        atts,
        m["raw"]["size"],
    );
    if let Some(dmarc) = m["auth"]["dmarc"]["result"].as_str() {
        out.push_str(&format!(", dmarc {dmarc}"));
    }
    if let Some(text) = m["text"].as_str() {
        let preview: String = text.chars().take(160).map(|c| if c.is_control() { ' ' } else { c }).collect();
        out.push_str(&format!("\n  text {preview}"));
    }
    out
}
