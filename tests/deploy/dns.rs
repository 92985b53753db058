//! A DNS server the test controls: a UDP responder on 127.0.0.1:0 answering A, AAAA, MX, PTR and TXT
//! questions from a fixed zone, written from RFC 1035 by hand (so the gateway's resolver library is not
//! also the test's oracle). A name with no record of the asked type gets NOERROR with no answer; an
//! unknown name gets NXDOMAIN. Every question is recorded.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum Rec {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Mx(u16, String),
    Ptr(String),
    Txt(String),
}

impl Rec {
    fn rtype(&self) -> u16 {
        match self {
            Rec::A(_) => 1,
            Rec::Aaaa(_) => 28,
            Rec::Mx(..) => 15,
            Rec::Ptr(_) => 12,
            Rec::Txt(_) => 16,
        }
    }

    fn rdata(&self) -> Vec<u8> {
        match self {
            Rec::A(ip) => ip.octets().to_vec(),
            Rec::Aaaa(ip) => ip.octets().to_vec(),
            Rec::Mx(pref, host) => {
                let mut v = pref.to_be_bytes().to_vec();
                v.extend(encode_name(host));
                v
            }
            Rec::Ptr(host) => encode_name(host),
            Rec::Txt(t) => t.as_bytes().chunks(255).flat_map(|c| [&[c.len() as u8][..], c].concat()).collect(),
        }
    }
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        v.push(label.len() as u8);
        v.extend_from_slice(label.as_bytes());
    }
    v.push(0);
    v
}

fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

pub struct DnsServer {
    pub addr: SocketAddr,
    /// (name, type number) of every question asked.
    pub asked: Arc<Mutex<Vec<(String, u16)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    /// Serves `zone`: (owner name, record) pairs.
    pub fn start(zone: Vec<(&str, Rec)>) -> DnsServer {
        let zone: Vec<(String, Rec)> = zone.into_iter().map(|(n, r)| (norm(n), r)).collect();
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the DNS fixture");
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = socket.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (asked2, stop2) = (asked.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop2.load(Ordering::SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                if let Some((answer, q)) = respond(&zone, &buf[..n]) {
                    asked2.lock().unwrap().push(q);
                    let _ = socket.send_to(&answer, from);
                }
            }
        });
        DnsServer { addr, asked, stop, thread: Some(thread) }
    }

    pub fn asked(&self) -> Vec<(String, u16)> {
        self.asked.lock().unwrap().clone()
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

/// The answer to one query: the question echoed as asked (case included), the matching records.
fn respond(zone: &[(String, Rec)], q: &[u8]) -> Option<(Vec<u8>, (String, u16))> {
    if q.len() < 12 || q[2] & 0x80 != 0 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    // The question: uncompressed labels, then QTYPE and QCLASS.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(q.get(at..at + len)?).into_owned());
        at += len;
    }
    let qtype = u16::from_be_bytes([*q.get(at)?, *q.get(at + 1)?]);
    let question = q.get(12..at + 4)?;
    let name = norm(&labels.join("."));

    let known = zone.iter().any(|(n, _)| *n == name);
    let answers: Vec<&Rec> = zone.iter().filter(|(n, r)| *n == name && r.rtype() == qtype).map(|(_, r)| r).collect();

    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&q[0..2]); // id
    let opcode = q[2] & 0x78;
    let rd = q[2] & 0x01;
    out.push(0x80 | opcode | 0x04 | rd); // QR, opcode, AA, RD
    out.push(0x80 | if known { 0 } else { 3 }); // RA, NOERROR / NXDOMAIN
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(question);
    for r in answers {
        out.extend_from_slice(&[0xC0, 0x0C]); // the question's name
        out.extend_from_slice(&r.rtype().to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // IN
        out.extend_from_slice(&60u32.to_be_bytes());
        let data = r.rdata();
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    Some((out, (name, qtype)))
}
