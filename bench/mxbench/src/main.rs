//! Benchmark helpers for mxhook (see bench/README.md):
//!
//! - `mxbench receive`: a small, fast HTTP/1.1 webhook receiver. Counts POSTs, records each one's
//!   arrival time and the `mxb-N` tag found in its body (the Subject the sender put in), and can be
//!   slow (`--delay-ms`), failing (`--status 503`) or a black hole (`--blackhole`: reads, never answers).
//!   Control: `GET /_stats` (JSON), `GET /_dump` (`tag arrival_us` lines), `POST /_reset`.
//! - `mxbench send`: a paced SMTP sender. Message N carries `Subject: mxb-N`; it records when the
//!   final `.` was written and when the reply came, then joins that with the receiver's dump and
//!   prints end-to-end latency (end of DATA -> webhook received) percentiles as JSON.
//!
//! Both use the wall clock in microseconds: they run on the same machine.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

fn usage() -> ! {
    eprintln!(
        "usage:\n  mxbench receive --port P [--delay-ms N] [--status CODE] [--blackhole]\n  \
         mxbench send --server HOST:PORT --rcpt ADDR [--size BYTES] [--count N] [--rate MSGS_PER_S]\n               \
         [--sessions N] [--reuse] [--receiver HOST:PORT] [--wait-secs N] [--tag-base N]\n               \
         [--sent-file PATH]"
    );
    std::process::exit(2)
}

struct Args(Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<String> {
        self.0.iter().position(|a| a == name).map(|i| self.0.get(i + 1).cloned().unwrap_or_else(|| usage()))
    }
    fn num(&self, name: &str, default: u64) -> u64 {
        self.value(name).map_or(default, |v| v.parse().unwrap_or_else(|_| usage()))
    }
    fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first().cloned() else { usage() };
    let args = Args(argv);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    match cmd.as_str() {
        "receive" => rt.block_on(receive(args)),
        "send" => rt.block_on(send(args)),
        _ => usage(),
    }
}

// ---------------------------------------------------------------- receiver

#[derive(Default)]
struct Recorded {
    count: AtomicU64,
    first_us: AtomicU64,
    last_us: AtomicU64,
    bytes: AtomicU64,
    tags: Mutex<Vec<(u64, u64)>>,
}

struct ReceiverConfig {
    delay: Duration,
    status: u16,
    blackhole: bool,
}

async fn receive(args: Args) {
    let port = args.num("--port", 9100);
    let cfg = Arc::new(ReceiverConfig {
        delay: Duration::from_millis(args.num("--delay-ms", 0)),
        status: args.num("--status", 200) as u16,
        blackhole: args.flag("--blackhole"),
    });
    let rec = Arc::new(Recorded::default());
    let listener = TcpListener::bind(("127.0.0.1", port as u16)).await.expect("bind");
    eprintln!("mxbench receive: listening on 127.0.0.1:{port}");
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let (rec, cfg) = (rec.clone(), cfg.clone());
        tokio::spawn(async move {
            let _ = connection(stream, rec, cfg).await;
        });
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn tag_of(body: &[u8]) -> Option<u64> {
    let at = find(body, b"mxb-")? + 4;
    let digits: Vec<u8> = body[at..].iter().take_while(|b| b.is_ascii_digit()).copied().collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

async fn connection(stream: TcpStream, rec: Arc<Recorded>, cfg: Arc<ReceiverConfig>) -> std::io::Result<()> {
    let mut io = BufReader::with_capacity(64 * 1024, stream);
    let mut body = Vec::new();
    loop {
        // Request line and headers.
        let mut line = String::new();
        if io.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut length = 0usize;
        let mut close = false;
        loop {
            let mut h = String::new();
            if io.read_line(&mut h).await? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (name, value) = h.split_once(':').unwrap_or((h, ""));
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                close = true;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                eprintln!("mxbench receive: chunked bodies are not supported");
                return Ok(());
            }
        }
        body.resize(length, 0);
        io.read_exact(&mut body).await?;
        let arrived = now_us();
        let (status, answer) = if path.starts_with("/_") {
            (200, control(&method, &path, &rec))
        } else {
            if cfg.blackhole {
                // Read whatever comes and never answer: the endpoint that hangs until the client's timeout.
                let mut sink = vec![0u8; 64 * 1024];
                while io.read(&mut sink).await? > 0 {}
                return Ok(());
            }
            rec.count.fetch_add(1, Ordering::Relaxed);
            rec.bytes.fetch_add(length as u64, Ordering::Relaxed);
            let _ = rec.first_us.compare_exchange(0, arrived, Ordering::Relaxed, Ordering::Relaxed);
            rec.last_us.fetch_max(arrived, Ordering::Relaxed);
            if let Some(tag) = tag_of(&body) {
                rec.tags.lock().unwrap().push((tag, arrived));
            }
            if !cfg.delay.is_zero() {
                tokio::time::sleep(cfg.delay).await;
            }
            (cfg.status, "ok".to_string())
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n",
            answer.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        let s = io.get_mut();
        s.write_all(head.as_bytes()).await?;
        s.write_all(answer.as_bytes()).await?;
        if close {
            return Ok(());
        }
    }
}

fn control(method: &str, path: &str, rec: &Recorded) -> String {
    match (method, path) {
        ("POST", "/_reset") => {
            rec.count.store(0, Ordering::Relaxed);
            rec.bytes.store(0, Ordering::Relaxed);
            rec.first_us.store(0, Ordering::Relaxed);
            rec.last_us.store(0, Ordering::Relaxed);
            rec.tags.lock().unwrap().clear();
            "reset".into()
        }
        ("GET", "/_dump") => {
            let tags = rec.tags.lock().unwrap();
            tags.iter().map(|(t, at)| format!("{t} {at}\n")).collect()
        }
        _ => format!(
            "{{\"count\":{},\"bytes\":{},\"first_us\":{},\"last_us\":{}}}",
            rec.count.load(Ordering::Relaxed),
            rec.bytes.load(Ordering::Relaxed),
            rec.first_us.load(Ordering::Relaxed),
            rec.last_us.load(Ordering::Relaxed)
        ),
    }
}

/// One request to the receiver's control side (fresh connection, `connection: close`).
async fn http(addr: &str, method: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

// ---------------------------------------------------------------- sender

struct Sent {
    tag: u64,
    dot_us: u64,
    reply_us: u64,
    code: u16,
}

struct SendConfig {
    server: String,
    rcpt: String,
    body: Vec<u8>,
    count: u64,
    rate: f64,
    reuse: bool,
    tag_base: u64,
}

async fn send(args: Args) {
    let size = args.num("--size", 5120) as usize;
    let cfg = Arc::new(SendConfig {
        server: args.value("--server").unwrap_or_else(|| usage()),
        rcpt: args.value("--rcpt").unwrap_or_else(|| usage()),
        body: body(size),
        count: args.num("--count", 1000),
        rate: args.value("--rate").map_or(0.0, |r| r.parse().unwrap_or_else(|_| usage())),
        reuse: args.flag("--reuse"),
        tag_base: args.num("--tag-base", 0),
    });
    let sessions = args.num("--sessions", 1);
    let receiver = args.value("--receiver");
    let wait = Duration::from_secs(args.num("--wait-secs", 30));
    if let Some(r) = &receiver {
        http(r, "POST", "/_reset").await.expect("receiver reset");
    }
    let next = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let start_us = now_us() + 20_000;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..sessions {
        let (cfg, next) = (cfg.clone(), next.clone());
        workers.spawn(async move { worker(cfg, next, start).await });
    }
    let mut sent: Vec<Sent> = Vec::new();
    let mut errors = 0u64;
    while let Some(r) = workers.join_next().await {
        match r.unwrap() {
            Ok(mut s) => sent.append(&mut s),
            Err(e) => {
                errors += 1;
                eprintln!("mxbench send: session failed: {e}");
            }
        }
    }
    let done_us = now_us();
    let accepted: Vec<&Sent> = sent.iter().filter(|s| s.code == 250).collect();
    // `tag dot_us` per accepted message: for joining with arrivals measured elsewhere (SSE readers).
    if let Some(path) = args.value("--sent-file") {
        let lines: String = accepted.iter().map(|s| format!("{} {}\n", s.tag, s.dot_us)).collect();
        std::fs::write(path, lines).expect("--sent-file");
    }
    let smtp_secs = (done_us - start_us) as f64 / 1e6;
    let mut dot_to_reply: Vec<u64> = accepted.iter().map(|s| s.reply_us - s.dot_us).collect();
    let mut out = vec![
        format!("\"sent\":{}", sent.len()),
        format!("\"accepted\":{}", accepted.len()),
        format!("\"session_errors\":{errors}"),
        format!("\"smtp_secs\":{smtp_secs:.3}"),
        format!("\"smtp_msgs_per_s\":{:.1}", accepted.len() as f64 / smtp_secs),
        format!("\"dot_to_reply_ms\":{}", percentiles(&mut dot_to_reply)),
    ];
    if let Some(r) = &receiver {
        // Wait until every accepted message has arrived (or the wait runs out).
        let deadline = tokio::time::Instant::now() + wait;
        let want: HashMap<u64, u64> = accepted.iter().map(|s| (s.tag, s.dot_us)).collect();
        let mut e2e = Vec::new();
        let mut last_arrival = 0;
        loop {
            let dump = http(r, "GET", "/_dump").await.unwrap_or_default();
            e2e.clear();
            let mut seen = std::collections::HashSet::new();
            for line in dump.lines() {
                let mut it = line.split(' ');
                let (Some(Ok(tag)), Some(Ok(at))) = (it.next().map(str::parse::<u64>), it.next().map(str::parse::<u64>))
                else {
                    continue;
                };
                // At-least-once: count a message's first arrival only.
                if let Some(dot) = want.get(&tag)
                    && seen.insert(tag)
                {
                    e2e.push(at.saturating_sub(*dot));
                    last_arrival = last_arrival.max(at);
                }
            }
            if e2e.len() >= want.len() || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let e2e_secs = (last_arrival.saturating_sub(start_us)) as f64 / 1e6;
        out.push(format!("\"delivered\":{}", e2e.len()));
        out.push(format!("\"e2e_secs\":{e2e_secs:.3}"));
        out.push(format!("\"e2e_msgs_per_s\":{:.1}", e2e.len() as f64 / e2e_secs.max(1e-9)));
        out.push(format!("\"e2e_ms\":{}", percentiles(&mut e2e)));
    }
    println!("{{{}}}", out.join(","));
}

fn percentiles(v: &mut [u64]) -> String {
    if v.is_empty() {
        return "null".into();
    }
    v.sort_unstable();
    let p = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1000.0;
    format!(
        "{{\"p50\":{:.2},\"p90\":{:.2},\"p99\":{:.2},\"max\":{:.2},\"n\":{}}}",
        p(0.5),
        p(0.9),
        p(0.99),
        p(1.0),
        v.len()
    )
}

/// A plain-text body of `size` bytes in 78-octet lines.
fn body(size: usize) -> Vec<u8> {
    let line = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs\r\n";
    let mut b = Vec::with_capacity(size + line.len());
    while b.len() < size {
        b.extend_from_slice(line);
    }
    b.truncate(size.saturating_sub(2));
    b.extend_from_slice(b"\r\n");
    b
}

struct Smtp {
    io: BufReader<TcpStream>,
}

impl Smtp {
    async fn connect(server: &str) -> std::io::Result<Self> {
        let addr: SocketAddr = server.parse().map_err(|_| std::io::Error::other("bad --server"))?;
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let mut c = Smtp { io: BufReader::new(s) };
        c.expect(220).await?;
        c.cmd("EHLO mxbench.test\r\n", 250).await?;
        Ok(c)
    }

    /// Reads a (multi-line) reply; returns its code.
    async fn reply(&mut self) -> std::io::Result<u16> {
        loop {
            let mut line = String::new();
            if self.io.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return line.get(..3).and_then(|c| c.parse().ok()).ok_or_else(|| std::io::Error::other(line.clone()));
            }
        }
    }

    async fn expect(&mut self, code: u16) -> std::io::Result<()> {
        let got = self.reply().await?;
        if got != code { Err(std::io::Error::other(format!("expected {code}, got {got}"))) } else { Ok(()) }
    }

    async fn cmd(&mut self, line: &str, code: u16) -> std::io::Result<()> {
        self.io.get_mut().write_all(line.as_bytes()).await?;
        self.expect(code).await
    }
}

async fn worker(cfg: Arc<SendConfig>, next: Arc<AtomicU64>, start: tokio::time::Instant) -> std::io::Result<Vec<Sent>> {
    let mut out = Vec::new();
    let mut conn: Option<Smtp> = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= cfg.count {
            break;
        }
        if cfg.rate > 0.0 {
            tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / cfg.rate)).await;
        }
        let tag = cfg.tag_base + i;
        if conn.is_none() {
            conn = Some(Smtp::connect(&cfg.server).await?);
        }
        let c = conn.as_mut().unwrap();
        c.cmd(&format!("MAIL FROM:<sender@mxbench.test> SIZE={}\r\n", cfg.body.len() + 300), 250).await?;
        c.cmd(&format!("RCPT TO:<{}>\r\n", cfg.rcpt), 250).await?;
        c.cmd("DATA\r\n", 354).await?;
        let head = format!(
            "From: Bench <sender@mxbench.test>\r\nTo: <{}>\r\nSubject: mxb-{tag}\r\nMessage-ID: <mxb-{tag}@mxbench.test>\r\n\
             Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
            cfg.rcpt
        );
        let w = c.io.get_mut();
        w.write_all(head.as_bytes()).await?;
        w.write_all(&cfg.body).await?;
        w.write_all(b".\r\n").await?;
        let dot_us = now_us();
        let code = c.reply().await?;
        let reply_us = now_us();
        out.push(Sent { tag, dot_us, reply_us, code });
        if !cfg.reuse {
            let mut c = conn.take().unwrap();
            let _ = c.cmd("QUIT\r\n", 221).await;
        }
    }
    if let Some(mut c) = conn {
        let _ = c.cmd("QUIT\r\n", 221).await;
    }
    Ok(out)
}
