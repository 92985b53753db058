//! A real (if tiny) authoritative DNS server over UDP on 127.0.0.1:0, in the test process: TXT and A
//! records the test publishes, NXDOMAIN/NODATA with an SOA (so resolvers may cache the negative
//! answer), SERVFAIL or silence for names the test breaks, and a log of every query it was asked.
//! It speaks just enough RFC 1035 for a stub resolver (hickory) asking one question per message.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const TYPE_A: u16 = 1;
const TYPE_SOA: u16 = 6;
const TYPE_TXT: u16 = 16;
const RCODE_SERVFAIL: u16 = 2;
const RCODE_NXDOMAIN: u16 = 3;
/// TTL of every answer and of negative answers (the SOA minimum).
const TTL: u32 = 300;

#[derive(Clone, Debug)]
enum Entry {
    Txt(String),
    A([u8; 4]),
    ServFail,
    Silent,
}

#[derive(Default)]
struct Zone {
    /// Lower-case name without the trailing dot -> its records.
    names: HashMap<String, Vec<Entry>>,
    /// Every query as (name, type), in arrival order.
    queries: Vec<(String, u16)>,
    /// Answer nothing at all (a black-holed resolver).
    silent: bool,
}

pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    pub fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind DNS socket");
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = socket.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (z, s) = (zone.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::SeqCst) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else { continue };
                if let Some(reply) = answer(&z, &buf[..n]) {
                    let _ = socket.send_to(&reply, peer);
                }
            }
        });
        DnsServer { addr, zone, stop, thread: Some(thread) }
    }

    fn add(&self, name: &str, e: Entry) {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        self.zone.lock().unwrap().names.entry(key).or_default().push(e);
    }

    pub fn txt(&self, name: &str, value: &str) -> &Self {
        self.add(name, Entry::Txt(value.to_string()));
        self
    }

    pub fn a(&self, name: &str, ip: [u8; 4]) -> &Self {
        self.add(name, Entry::A(ip));
        self
    }

    /// Every query for `name` gets SERVFAIL.
    pub fn servfail(&self, name: &str) -> &Self {
        self.add(name, Entry::ServFail);
        self
    }

    /// Queries for `name` are never answered.
    pub fn silent_for(&self, name: &str) -> &Self {
        self.add(name, Entry::Silent);
        self
    }

    /// No query is ever answered (a resolver that is down or black-holed).
    pub fn go_silent(&self) {
        self.zone.lock().unwrap().silent = true;
    }

    /// Answers again after `go_silent`.
    pub fn go_live(&self) {
        self.zone.lock().unwrap().silent = false;
    }

    /// Every query so far, as lower-case "name" (no trailing dot).
    pub fn queries(&self) -> Vec<String> {
        self.zone.lock().unwrap().queries.iter().map(|(n, _)| n.clone()).collect()
    }

    pub fn query_count(&self) -> usize {
        self.zone.lock().unwrap().queries.len()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(zone: &Mutex<Zone>, q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    let (labels, end) = read_name(q, 12)?;
    let qtype = u16::from_be_bytes([*q.get(end)?, *q.get(end + 1)?]);
    let question_end = end + 4;
    if q.len() < question_end {
        return None;
    }
    let name = labels.join(".").to_ascii_lowercase();
    let mut z = zone.lock().unwrap();
    z.queries.push((name.clone(), qtype));
    if z.silent {
        return None;
    }
    let entries = z.names.get(&name).cloned();
    drop(z);

    let mut answers: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut rcode = 0;
    match &entries {
        None => rcode = RCODE_NXDOMAIN,
        Some(list) => {
            for e in list {
                match e {
                    Entry::Silent => return None,
                    Entry::ServFail => rcode = RCODE_SERVFAIL,
                    Entry::Txt(t) if qtype == TYPE_TXT => answers.push((TYPE_TXT, txt_rdata(t))),
                    Entry::A(ip) if qtype == TYPE_A => answers.push((TYPE_A, ip.to_vec())),
                    _ => {}
                }
            }
        }
    }
    if rcode == RCODE_SERVFAIL {
        answers.clear();
    }
    let negative = rcode == RCODE_NXDOMAIN || (rcode == 0 && answers.is_empty());

    let mut r = Vec::with_capacity(512);
    r.extend_from_slice(&q[0..2]); // id
    let rd = u16::from_be_bytes([q[2], q[3]]) & 0x0100;
    r.extend_from_slice(&(0x8000 | 0x0400 | rd | 0x0080 | rcode).to_be_bytes()); // QR AA RD RA rcode
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    r.extend_from_slice(&(negative as u16).to_be_bytes());
    r.extend_from_slice(&0u16.to_be_bytes());
    r.extend_from_slice(&q[12..question_end]);
    for (rtype, rdata) in answers {
        r.extend_from_slice(&[0xC0, 0x0C]); // the question's name
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&TTL.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(&rdata);
    }
    if negative {
        // The SOA of the query's top-level "zone", so the negative answer has a TTL.
        let zone_name = labels.last().cloned().unwrap_or_default();
        write_name(&mut r, &[zone_name.as_str()]);
        r.extend_from_slice(&TYPE_SOA.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&TTL.to_be_bytes());
        let mut rdata = Vec::new();
        write_name(&mut rdata, &["ns", "test"]);
        write_name(&mut rdata, &["hostmaster", "test"]);
        for v in [1u32, 3600, 600, 86400, TTL] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(&rdata);
    }
    Some(r)
}

fn read_name(q: &[u8], mut at: usize) -> Option<(Vec<String>, usize)> {
    let mut labels = Vec::new();
    loop {
        let len = *q.get(at)? as usize;
        at += 1;
        if len == 0 {
            return Some((labels, at));
        }
        if len & 0xC0 != 0 {
            return None; // no compression in questions
        }
        labels.push(String::from_utf8_lossy(q.get(at..at + len)?).into_owned());
        at += len;
    }
}

fn write_name(out: &mut Vec<u8>, labels: &[&str]) {
    for l in labels.iter().filter(|l| !l.is_empty()) {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
}

/// TXT RDATA: the text in character-strings of at most 255 octets (long DKIM keys need several).
fn txt_rdata(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(255) {
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
    out
}
