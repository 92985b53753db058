//! A real (if tiny) authoritative DNS server over UDP on 127.0.0.1:0, in the test process, written from
//! RFC 1035 by hand (so the gateway's resolver library is not also the test's oracle): A, AAAA, MX, PTR
//! and TXT records the test publishes (at start or later), NXDOMAIN for an unknown name and NODATA for a
//! known name without the asked type (both with an SOA, so resolvers may cache the negative answer),
//! SERVFAIL or silence for names the test breaks, and a log of every question it was asked. It speaks
//! just enough for a stub resolver asking one question per message.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const TYPE_A: u16 = 1;
const TYPE_SOA: u16 = 6;
const TYPE_PTR: u16 = 12;
const TYPE_MX: u16 = 15;
const TYPE_TXT: u16 = 16;
const TYPE_AAAA: u16 = 28;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NXDOMAIN: u8 = 3;
/// TTL of every answer and of negative answers (the SOA minimum).
const TTL: u32 = 300;

/// What a name has: a record, or a way to fail.
#[derive(Clone, Debug)]
pub enum Rec {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Mx(u16, String),
    Ptr(String),
    Txt(String),
    /// Every question for the name gets SERVFAIL.
    ServFail,
    /// Questions for the name are never answered.
    Silent,
}

impl Rec {
    /// (type number, RDATA), for records.
    fn answer(&self) -> Option<(u16, Vec<u8>)> {
        Some(match self {
            Rec::A(ip) => (TYPE_A, ip.octets().to_vec()),
            Rec::Aaaa(ip) => (TYPE_AAAA, ip.octets().to_vec()),
            Rec::Mx(pref, host) => {
                let mut v = pref.to_be_bytes().to_vec();
                write_name(&mut v, host);
                (TYPE_MX, v)
            }
            Rec::Ptr(host) => {
                let mut v = Vec::new();
                write_name(&mut v, host);
                (TYPE_PTR, v)
            }
            // Character-strings of at most 255 octets (long DKIM keys need several).
            Rec::Txt(t) => {
                (TYPE_TXT, t.as_bytes().chunks(255).flat_map(|c| [&[c.len() as u8][..], c].concat()).collect())
            }
            Rec::ServFail | Rec::Silent => return None,
        })
    }
}

#[derive(Default)]
struct Zone {
    /// Lower-case name without the trailing dot -> its records, in the order published.
    names: HashMap<String, Vec<Rec>>,
    /// Every question as (name, type), in arrival order.
    asked: Vec<(String, u16)>,
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
    /// A server with an empty zone (publish with `txt`, `a`, `add`…).
    pub fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the DNS fixture");
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = socket.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (z, s) = (zone.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::SeqCst) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else { continue };
                if let Some(reply) = respond(&z, &buf[..n]) {
                    let _ = socket.send_to(&reply, peer);
                }
            }
        });
        DnsServer { addr, zone, stop, thread: Some(thread) }
    }

    /// A server for `zone`: (owner name, record) pairs.
    pub fn serving(zone: Vec<(&str, Rec)>) -> DnsServer {
        let dns = DnsServer::start();
        for (name, rec) in zone {
            dns.add(name, rec);
        }
        dns
    }

    /// Publishes `rec` at `name` (case and a trailing dot do not matter).
    pub fn add(&self, name: &str, rec: Rec) -> &Self {
        self.zone.lock().unwrap().names.entry(norm(name)).or_default().push(rec);
        self
    }

    pub fn txt(&self, name: &str, value: &str) -> &Self {
        self.add(name, Rec::Txt(value.to_string()))
    }

    pub fn a(&self, name: &str, ip: impl Into<Ipv4Addr>) -> &Self {
        self.add(name, Rec::A(ip.into()))
    }

    /// Every question for `name` gets SERVFAIL.
    pub fn servfail(&self, name: &str) -> &Self {
        self.add(name, Rec::ServFail)
    }

    /// Questions for `name` are never answered.
    pub fn silent_for(&self, name: &str) -> &Self {
        self.add(name, Rec::Silent)
    }

    /// No question is ever answered (a resolver that is down or black-holed).
    pub fn go_silent(&self) {
        self.zone.lock().unwrap().silent = true;
    }

    /// Answers again after `go_silent`.
    pub fn go_live(&self) {
        self.zone.lock().unwrap().silent = false;
    }

    /// Every question so far as (lower-case name without the trailing dot, type number).
    pub fn asked(&self) -> Vec<(String, u16)> {
        self.zone.lock().unwrap().asked.clone()
    }

    /// Every question so far, names only.
    pub fn queries(&self) -> Vec<String> {
        self.asked().into_iter().map(|(n, _)| n).collect()
    }

    pub fn query_count(&self) -> usize {
        self.zone.lock().unwrap().asked.len()
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

fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The answer to one query: the question echoed as asked (case included), the matching records; None
/// for what is not a one-question query, and for a question that is to go unanswered.
fn respond(zone: &Mutex<Zone>, q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    let (labels, end) = read_name(q, 12)?;
    let qtype = u16::from_be_bytes([*q.get(end)?, *q.get(end + 1)?]);
    let question = q.get(12..end + 4)?;
    let name = norm(&labels.join("."));
    let mut z = zone.lock().unwrap();
    z.asked.push((name.clone(), qtype));
    if z.silent {
        return None;
    }
    let records = z.names.get(&name).cloned();
    drop(z);

    let mut answers: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut rcode = 0;
    match &records {
        None => rcode = RCODE_NXDOMAIN,
        Some(list) => {
            for r in list {
                match r {
                    Rec::Silent => return None,
                    Rec::ServFail => rcode = RCODE_SERVFAIL,
                    r => answers.extend(r.answer().filter(|(t, _)| *t == qtype)),
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
    r.push(0x80 | (q[2] & 0x78) | 0x04 | (q[2] & 0x01)); // QR, opcode, AA, RD
    r.push(0x80 | rcode); // RA, rcode
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    r.extend_from_slice(&(negative as u16).to_be_bytes());
    r.extend_from_slice(&0u16.to_be_bytes());
    r.extend_from_slice(question);
    for (rtype, rdata) in answers {
        r.extend_from_slice(&[0xC0, 0x0C]); // the question's name
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes()); // IN
        r.extend_from_slice(&TTL.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(&rdata);
    }
    if negative {
        // The SOA of the question's top-level "zone", so the negative answer has a TTL.
        write_name(&mut r, labels.last().map_or("", |l| l.as_str()));
        r.extend_from_slice(&TYPE_SOA.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&TTL.to_be_bytes());
        let mut rdata = Vec::new();
        write_name(&mut rdata, "ns.test");
        write_name(&mut rdata, "hostmaster.test");
        for v in [1u32, 3600, 600, 86400, TTL] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(&rdata);
    }
    Some(r)
}

/// The question's name: uncompressed labels, and the offset after them.
fn read_name(q: &[u8], mut at: usize) -> Option<(Vec<String>, usize)> {
    let mut labels = Vec::new();
    loop {
        let len = *q.get(at)? as usize;
        at += 1;
        if len == 0 {
            return Some((labels, at));
        }
        if len > 63 {
            return None; // no compression in questions
        }
        labels.push(String::from_utf8_lossy(q.get(at..at + len)?).into_owned());
        at += len;
    }
}

fn write_name(out: &mut Vec<u8>, name: &str) {
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}
