//! A real HTTP webhook receiver: an axum server on 127.0.0.1:0 inside the test process.
//! It records every request (path, headers, body, arrival time) before answering, and answers with a
//! status (and optional delay) the test can change while the gateway runs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;
use tokio::sync::oneshot;

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("request to {} has no {name} header: {:?}", self.path, self.headers))
            .to_str()
            .expect("header is not visible ASCII")
    }

    pub fn webhook_id(&self) -> &str {
        self.header("webhook-id")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("webhook body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Checks the request with the stock Standard Webhooks verifier.
    pub fn verify(&self, secret: &str) -> Result<(), String> {
        let wh = standardwebhooks::Webhook::new(secret).map_err(|e| format!("bad test secret: {e}"))?;
        wh.verify(&self.body, &self.headers).map_err(|e| e.to_string())
    }

    /// Panics unless the stock verifier accepts the request with `secret`.
    pub fn assert_signed(&self, secret: &str) {
        if let Err(e) = self.verify(secret) {
            panic!(
                "standardwebhooks rejected the request to {}: {e}\nheaders: {:?}\nbody: {}",
                self.path,
                self.headers,
                String::from_utf8_lossy(&self.body)
            );
        }
    }
}

/// Answers a request by its event: Some(status) overrides `set_status` for it.
type Script = Arc<dyn Fn(&Value) -> Option<u16> + Send + Sync>;

struct Shared {
    script: Mutex<Option<Script>>,
    status: AtomicU16,
    delay_ms: AtomicU64,
    requests: Mutex<Vec<Request>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            script: Mutex::new(None),
            status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(record).with_state(state);
                tokio::select! {
                    r = axum::serve(listener, app) => r.expect("receiver server failed"),
                    _ = stopped => {}
                }
            });
            // Dropping the runtime cancels connections still being answered (e.g. a delayed one).
        });
        Receiver { addr, shared, stop: Some(stop), thread: Some(thread) }
    }

    /// URL for a path on this receiver, e.g. `url("/hooks/app")`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Status answered from now on.
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// From now on, the status for each request is `script(event)` when it says one (e.g. 500 to the
    /// first two attempts of one message), else the one `set_status` set.
    pub fn set_script(&self, script: impl Fn(&Value) -> Option<u16> + Send + Sync + 'static) {
        *self.shared.script.lock().unwrap() = Some(Arc::new(script));
    }

    /// Delay before answering, from now on (the request is recorded before the delay).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The requests after the first `n` (for a test that tallies thousands as they come).
    pub fn requests_since(&self, n: usize) -> Vec<Request> {
        self.shared.requests.lock().unwrap().get(n..).map(<[Request]>::to_vec).unwrap_or_default()
    }

    pub fn count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Requests whose body is an event for message `msg_id`.
    pub fn requests_for_message(&self, msg_id: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| serde_json::from_slice::<Value>(&r.body).ok().is_some_and(|v| v["message"]["id"] == msg_id))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn record(State(s): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let script = s.script.lock().unwrap().clone();
    let scripted = script.and_then(|f| f(&serde_json::from_slice(&body).unwrap_or(Value::Null)));
    s.requests.lock().unwrap().push(Request {
        path: uri.path().to_string(),
        headers,
        body: body.to_vec(),
        at: Instant::now(),
    });
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = scripted.unwrap_or_else(|| s.status.load(Ordering::SeqCst));
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, format!("receiver says {status}"))
}
