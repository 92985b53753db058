//! The SMTP client of every test binary, line-based over a real TcpStream: send a command, read the
//! whole (multi-line) reply, return code and text, so tests can assert exact reply codes. DATA is
//! dot-stuffed here. It can connect from a chosen loopback address (127.0.0.2 is "another IP"), and
//! `Wire` is the same client with a face that never panics. STARTTLS sessions: `super::starttls`.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// How long any single reply may take before the test fails (a hung server must not hang the suite).
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone, Debug)]
pub struct Reply {
    pub code: u16,
    /// Text of each reply line, without the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The enhanced status code (second token of the last line), or "" if there is none.
    pub fn enhanced(&self) -> &str {
        self.lines.last().and_then(|l| l.split_whitespace().next()).unwrap_or("")
    }

    /// Panics unless the reply has this code and enhanced code.
    #[track_caller]
    pub fn expect(&self, code: u16, enhanced: &str) -> &Self {
        assert!(self.code == code && self.enhanced() == enhanced, "expected reply `{code} {enhanced} …`, got `{self}`");
        self
    }

    /// The value of the `SIZE` an EHLO reply advertises.
    #[track_caller]
    pub fn size_limit(&self) -> u64 {
        let size = self.lines[1..]
            .iter()
            .find_map(|l| l.to_ascii_uppercase().strip_prefix("SIZE ").map(str::to_string))
            .unwrap_or_else(|| panic!("no SIZE in {self}"));
        size.trim().parse().unwrap_or_else(|_| panic!("SIZE value: {size}"))
    }

    /// The id in `250 2.0.0 Ok: queued as msg_…`.
    #[track_caller]
    pub fn queued_id(&self) -> String {
        self.expect(250, "2.0.0");
        let text = self.text();
        let at = text.find("queued as ").unwrap_or_else(|| panic!("no `queued as` in `{self}`"));
        let id: String = text[at + "queued as ".len()..].chars().take_while(|c| !c.is_whitespace()).collect();
        assert!(id.starts_with("msg_"), "queued id `{id}` does not start with msg_ in `{self}`");
        id
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" | "))
    }
}

pub struct SmtpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl SmtpClient {
    fn over(stream: TcpStream, timeout: Duration) -> io::Result<SmtpClient> {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(SmtpClient { reader: BufReader::new(stream.try_clone()?), writer: stream })
    }

    /// Connects and reads the greeting (whatever it is).
    pub fn connect(addr: SocketAddr) -> (SmtpClient, Reply) {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to SMTP {addr}: {e}"));
        let mut c = SmtpClient::over(stream, REPLY_TIMEOUT).unwrap();
        let greeting = c.read_reply();
        (c, greeting)
    }

    /// Connects from the local address `from` (any of 127.0.0.0/8 on Linux: another client) and
    /// reads the greeting.
    #[track_caller]
    pub fn connect_from(from: IpAddr, addr: SocketAddr) -> (SmtpClient, Reply) {
        let mut c = SmtpClient::over(socket_from(from, addr), REPLY_TIMEOUT).unwrap();
        let greeting = c.read_reply();
        (c, greeting)
    }

    /// Connects, expects the 220 greeting and says EHLO `client.test`.
    pub fn ready(addr: SocketAddr) -> SmtpClient {
        SmtpClient::ready_as(addr, "client.test")
    }

    /// Connects, expects the 220 greeting and says EHLO `helo`.
    pub fn ready_as(addr: SocketAddr, helo: &str) -> SmtpClient {
        let (c, greeting) = SmtpClient::connect(addr);
        c.hello(greeting, helo, "")
    }

    /// Connects from `from`, expects 220 and says EHLO `client.test`.
    #[track_caller]
    pub fn ready_from(from: IpAddr, addr: SocketAddr) -> SmtpClient {
        let (c, greeting) = SmtpClient::connect_from(from, addr);
        c.hello(greeting, "client.test", &format!(" to a client from {from}"))
    }

    #[track_caller]
    fn hello(mut self, greeting: Reply, helo: &str, whose: &str) -> SmtpClient {
        assert_eq!(greeting.code, 220, "greeting{whose}: {greeting}");
        let ehlo = self.cmd(&format!("EHLO {helo}"));
        assert_eq!(ehlo.code, 250, "EHLO: {ehlo}");
        self
    }

    /// The connection (e.g. to write from another thread).
    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }

    pub fn try_read_reply(&mut self) -> io::Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut raw = Vec::new();
            let n = self.reader.read_until(b'\n', &mut raw)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed (reply so far: {lines:?})"),
                ));
            }
            let line = String::from_utf8_lossy(&raw).trim_end_matches(['\r', '\n']).to_string();
            if line.len() < 3 || !line.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("not a reply line: {line:?}")));
            }
            let code: u16 = line[..3].parse().unwrap();
            let sep = line.as_bytes().get(3).copied();
            lines.push((code, line.get(4..).unwrap_or("").to_string()));
            if sep != Some(b'-') {
                let codes_agree = lines.iter().all(|(c, _)| *c == code);
                if !codes_agree {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, format!("mixed codes: {lines:?}")));
                }
                return Ok(Reply { code, lines: lines.into_iter().map(|(_, t)| t).collect() });
            }
        }
    }

    /// Reads until the server closes the connection (EOF or reset) and returns what came; panics if it
    /// stays open past the read timeout.
    #[track_caller]
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => rest,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => rest,
            Err(e) => panic!("the connection was not closed ({e}); got {rest:?}"),
        }
    }

    /// True if the server has closed the connection (EOF within the reply timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.reader.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted),
        }
    }
}

/// An SMTP conversation, over plain TCP (`SmtpClient`) or TLS (`starttls::TlsSession`): the commands,
/// DATA and whole transactions, built on sending bytes and reading a reply.
pub trait Session {
    fn send_raw(&mut self, bytes: &[u8]);

    /// The next whole (multi-line) reply; panics when none comes in time.
    fn read_reply(&mut self) -> Reply;

    /// Sends `line` + CRLF and reads the reply.
    #[track_caller]
    fn cmd(&mut self, line: &str) -> Reply {
        let mut bytes = line.as_bytes().to_vec();
        bytes.extend_from_slice(b"\r\n");
        self.send_raw(&bytes);
        self.read_reply()
    }

    /// DATA, then the dot-stuffed body and the terminator; returns the reply after the final dot.
    /// `body` must use CRLF line endings; a CRLF is added if it doesn't end with one.
    #[track_caller]
    fn data(&mut self, body: &[u8]) -> Reply {
        let r = self.cmd("DATA");
        assert_eq!(r.code, 354, "DATA: expected 354, got `{r}`");
        self.send_raw(&data_stream(body));
        self.read_reply()
    }

    /// A whole transaction that must succeed; returns the queued message id.
    #[track_caller]
    fn send_mail(&mut self, from: &str, rcpts: &[&str], body: &[u8]) -> String {
        self.cmd(&format!("MAIL FROM:<{from}>")).expect(250, "2.1.0");
        for r in rcpts {
            self.cmd(&format!("RCPT TO:<{r}>")).expect(250, "2.1.5");
        }
        self.data(body).queued_id()
    }

    /// Sends each `(name, message)` in this one session, RSET after each transaction, then QUIT;
    /// returns `(name, message, queued id)` in order.
    #[track_caller]
    fn send_each(mut self, files: &[(String, Vec<u8>)]) -> Vec<(&String, &Vec<u8>, String)>
    where
        Self: Sized,
    {
        let mut sent = Vec::new();
        for (name, bytes) in files {
            let id = self.send_mail("corpus@sender.test", &["inbox@example.test"], bytes);
            self.cmd("RSET").expect(250, "2.0.0");
            sent.push((name, bytes, id));
        }
        self.cmd("QUIT").expect(221, "2.0.0");
        sent
    }
}

impl Session for SmtpClient {
    fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap_or_else(|e| panic!("SMTP write: {e}"));
        self.writer.flush().unwrap();
    }

    #[track_caller]
    fn read_reply(&mut self) -> Reply {
        self.try_read_reply().unwrap_or_else(|e| panic!("reading SMTP reply: {e}"))
    }
}

/// The client with a face that never panics and waits as long as it is told: for gateways that are
/// killed under it, and for answers that may take longer than 15 s. A reply is (code, its last line).
pub struct Wire(SmtpClient);

impl Wire {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Wire> {
        SmtpClient::over(TcpStream::connect(addr)?, timeout).map(Wire)
    }

    /// A connection from the local address `from` (any of 127.0.0.0/8 on Linux): another client.
    #[track_caller]
    pub fn connect_from(from: &str, addr: SocketAddr) -> Wire {
        Wire(SmtpClient::over(socket_from(from.parse().unwrap(), addr), REPLY_TIMEOUT).unwrap())
    }

    pub fn stream(&self) -> &TcpStream {
        self.0.stream()
    }

    /// One (possibly multi-line) reply: (code, last line without CRLF).
    pub fn reply(&mut self) -> io::Result<(u16, String)> {
        let r = self.0.try_read_reply()?;
        let last = format!("{} {}", r.code, r.lines.last().map_or("", |l| l.as_str()));
        Ok((r.code, last.trim_end().to_string()))
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.writer.write_all(bytes)
    }

    /// `line` + CRLF, then its reply.
    pub fn cmd(&mut self, line: &str) -> io::Result<(u16, String)> {
        self.send(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// The greeting and EHLO; true when both were positive.
    pub fn hello(&mut self) -> bool {
        matches!(self.reply(), Ok((220, _))) && matches!(self.cmd("EHLO wire.test"), Ok((250, _)))
    }

    /// MAIL, RCPT, DATA and the dot-stuffed message; the reply to the data, or the first refusal.
    pub fn mail(&mut self, rcpt: &str, raw: &[u8]) -> io::Result<(u16, String)> {
        for line in ["MAIL FROM:<wire@sender.test>".to_string(), format!("RCPT TO:<{rcpt}>")] {
            let r = self.cmd(&line)?;
            if r.0 != 250 {
                return Ok(r);
            }
        }
        self.data(raw)
    }

    /// DATA and the dot-stuffed message: the reply to the data (or the refusal of DATA).
    pub fn data(&mut self, raw: &[u8]) -> io::Result<(u16, String)> {
        let r = self.cmd("DATA")?;
        if r.0 != 354 {
            return Ok(r);
        }
        self.send(&data_stream(raw))?;
        self.reply()
    }
}

/// A TCP connection to `addr` from the local address `from` (any port).
#[track_caller]
pub fn socket_from(from: IpAddr, addr: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stream = rt
        .block_on(async {
            let s = if from.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
            s.bind(SocketAddr::new(from, 0))?;
            s.connect(addr).await
        })
        .unwrap_or_else(|e| panic!("connect from {from} to {addr}: {e}"));
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// The bytes sent after `354`: dot-stuffed body (a CRLF added if missing) plus `.` CRLF.
pub fn data_stream(body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    if !body.ends_with(b"\r\n") {
        body.extend_from_slice(b"\r\n");
    }
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut at_line_start = true;
    let mut i = 0;
    while i < body.len() {
        if at_line_start && body[i] == b'.' {
            out.push(b'.');
        }
        out.push(body[i]);
        // A new line starts only after CRLF: a bare LF is data, as the server must treat it.
        at_line_start = body[i] == b'\n' && i > 0 && body[i - 1] == b'\r';
        i += 1;
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Converts bare LF (and keeps existing CRLF) to CRLF, as an SMTP client does when sending a file.
pub fn to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 20);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// The message bytes the server is expected to store for `body` sent with `SmtpClient::data`.
pub fn as_sent(body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    if !body.ends_with(b"\r\n") {
        body.extend_from_slice(b"\r\n");
    }
    body
}

#[test]
fn dot_stuffing_only_after_crlf() {
    assert_eq!(data_stream(b".a\r\nb\n.c\r\n..d\r\n"), b"..a\r\nb\n.c\r\n...d\r\n.\r\n".to_vec());
    assert_eq!(data_stream(b"x"), b"x\r\n.\r\n".to_vec());
    assert_eq!(to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n".to_vec());
}
