//! A small SMTP server standing in for the `[forward] relay`: it records every transaction (envelope
//! and the exact data after dot-unstuffing) and answers each one as the test scripted it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the sink answers one transaction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Answer {
    /// 250 at the end of data.
    Accept,
    /// 451 at the end of data: the client should retry later.
    TempFail,
    /// 550 to every RCPT: the client should give up.
    Refuse,
}

#[derive(Clone, Debug)]
pub struct Transaction {
    pub helo: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
    pub answer: Answer,
    /// `user:password` from `AUTH PLAIN`, if the client authenticated.
    pub auth: Option<String>,
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Answer>>,
    done: Mutex<Vec<Transaction>>,
}

pub struct Sink {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    /// Listens on 127.0.0.1:0; accepts every transaction unless `script` says otherwise.
    pub fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(conn) = conn {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        let _ = session(conn, &s);
                    });
                }
            }
        });
        Sink { addr, shared, stop, thread: Some(thread) }
    }

    /// `smtp://127.0.0.1:PORT`, for `[forward] relay`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The answers to the next transactions, in order; after them, Accept.
    pub fn script(&self, answers: &[Answer]) {
        self.shared.script.lock().unwrap().extend(answers.iter().copied());
    }

    /// Every transaction that reached the end of data or had its first RCPT refused, in order.
    pub fn transactions(&self) -> Vec<Transaction> {
        self.shared.done.lock().unwrap().clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop so it sees `stop`
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn session(conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = conn.try_clone()?;
    let mut input = BufReader::new(conn);
    out.write_all(b"220 sink.test ESMTP test sink\r\n")?;
    let mut t = Transaction {
        helo: String::new(),
        mail_from: String::new(),
        rcpt_to: Vec::new(),
        data: Vec::new(),
        answer: Answer::Accept,
        auth: None,
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let verb = text.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => {
                t.helo = text[4..].trim().to_string();
                b"250-sink.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-AUTH PLAIN\r\n250 SIZE 100000000\r\n"
            }
            "AUTH" => {
                // `AUTH PLAIN base64(authzid NUL user NUL password)`, the initial-response form lettre uses.
                let decoded = text.split_whitespace().nth(2).and_then(crate::common::base64_decode).unwrap_or_default();
                let parts: Vec<String> =
                    decoded.split(|b| *b == 0).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
                t.auth = (parts.len() == 3).then(|| format!("{}:{}", parts[1], parts[2]));
                b"235 2.7.0 Authentication successful\r\n"
            }
            "MAIL" => {
                t.mail_from = angle(&text);
                t.rcpt_to.clear();
                t.answer = shared.script.lock().unwrap().pop_front().unwrap_or(Answer::Accept);
                b"250 2.1.0 Ok\r\n"
            }
            "RCPT" if t.answer == Answer::Refuse => {
                t.rcpt_to.push(angle(&text));
                if t.rcpt_to.len() == 1 {
                    shared.done.lock().unwrap().push(t.clone());
                }
                b"550 5.1.1 No such user here\r\n"
            }
            "RCPT" => {
                t.rcpt_to.push(angle(&text));
                b"250 2.1.5 Ok\r\n"
            }
            "DATA" if t.answer == Answer::Refuse => b"554 5.5.1 No valid recipients\r\n",
            "DATA" => {
                out.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                t.data = read_data(&mut input)?;
                shared.done.lock().unwrap().push(t.clone());
                match t.answer {
                    Answer::TempFail => b"451 4.3.0 Try again later\r\n",
                    _ => b"250 2.0.0 Ok: queued as SINK1\r\n",
                }
            }
            "RSET" | "NOOP" => b"250 2.0.0 Ok\r\n",
            "QUIT" => {
                out.write_all(b"221 2.0.0 Bye\r\n")?;
                return Ok(());
            }
            _ => b"502 5.5.2 Not implemented\r\n",
        };
        out.write_all(reply)?;
    }
}

/// The data up to the `.` line, dot-unstuffed: the bytes of the message as sent.
fn read_data(input: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    // Only CRLF starts a line: a `.` after a bare LF is content.
    let mut line_start = true;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line_start && line == b".\r\n" {
            return Ok(data);
        }
        let unstuffed = if line_start && line.starts_with(b".") { &line[1..] } else { &line[..] };
        data.extend_from_slice(unstuffed);
        line_start = line.ends_with(b"\r\n");
    }
}

/// The address between `<` and `>`.
fn angle(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line[start..].find('>').map_or(line.len(), |i| start + i);
    line[start..end].to_string()
}
