//! PROXY protocol behind a real HAProxy (Debian package `haproxy`): the gateway lists HAProxy's
//! address (127.0.0.1) in `[smtp] proxy_protocol`; clients bound to other loopback addresses connect
//! through HAProxy with `send-proxy-v2` and `send-proxy` (v1). The event's `client_ip` is the client's,
//! `proxy_ip` HAProxy's; SPF is evaluated for the client's address against the fixture DNS; per-IP
//! limits count the client's address. A PROXY header from an unlisted address is refused; a listed
//! address without one is closed.

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::dns::{DnsServer, Rec};
use crate::common::*;

/// HAProxy in the foreground (`-db`) with one frontend per PROXY version; killed on drop.
struct Haproxy {
    child: Child,
    v2: SocketAddr,
    v1: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(bin: &std::path::Path, backend: SocketAddr) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let v2: SocketAddr = format!("127.0.0.1:{}", crate::free_port()).parse().unwrap();
        let v1: SocketAddr = format!("127.0.0.1:{}", crate::free_port()).parse().unwrap();
        let cfg = format!(
            "global\n  maxconn 200\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             frontend v2\n  bind {v2}\n  default_backend gw_v2\nbackend gw_v2\n  server gw {backend} send-proxy-v2\n\
             frontend v1\n  bind {v1}\n  default_backend gw_v1\nbackend gw_v1\n  server gw {backend} send-proxy\n"
        );
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, cfg).unwrap();
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        let hp = Haproxy { child, v2, v1, _dir: dir };
        for addr in [v2, v1] {
            let up = poll(Duration::from_secs(20), || std::net::TcpStream::connect(addr).is_ok());
            assert!(up, "haproxy did not listen on {addr}");
        }
        hp
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn message(subject: &str) -> Vec<u8> {
    format!("From: Ada <ada@sender.test>\r\nTo: inbox@example.test\r\nSubject: {subject}\r\n\r\nHi.\r\n").into_bytes()
}

fn event_of(h: &Harness, id: &str) -> Value {
    h.event_for(id).1
}

#[test]
fn haproxy_v2_and_v1_give_the_real_client_for_spf_limits_and_the_event() {
    let Some(bin) = crate::tool("haproxy") else { return };
    let dns = DnsServer::start();
    dns.add("sender.test", Rec::Txt("v=spf1 ip4:127.0.0.5 -all".into()));
    let h = Harness::with(|c| {
        c.smtp_extra.extend(strings(&[
            "proxy_protocol = [\"127.0.0.1/32\"]",
            "trusted_networks = []",
            "max_messages_per_minute_per_ip = 2",
        ]));
        c.auth(&format!("dns = [\"{}\"]\ntimeout = \"2s\"", dns.addr));
    });
    let gw = h.start();
    let hp = Haproxy::start(&bin, gw.smtp);

    // v2 from 127.0.0.5: the SPF record allows that address (not HAProxy's).
    let mut c = SmtpClient::ready_from(ip("127.0.0.5"), hp.v2);
    let id = c.send_mail("ada@sender.test", &["inbox@example.test"], &message("v2"));
    let e = event_of(&h, &id);
    let smtp = &e["message"]["smtp"];
    assert_eq!(smtp["client_ip"], "127.0.0.5", "{e:#}");
    assert_eq!(smtp["proxy_ip"], "127.0.0.1", "{e:#}");
    assert_eq!(e["message"]["auth"]["spf"], json!({ "result": "pass", "domain": "sender.test" }), "{e:#}");
    assert_eq!(e["message"]["auth"]["source"], "smtp");

    // The second message from 127.0.0.5 fits its limit of 2 a minute; the third does not, while
    // 127.0.0.6 through the same balancer (v1 this time) is counted apart, and fails SPF.
    let id2 = c.send_mail("ada@sender.test", &["inbox@example.test"], &message("v2 again"));
    assert_eq!(event_of(&h, &id2)["message"]["smtp"]["client_ip"], "127.0.0.5");
    c.cmd("MAIL FROM:<ada@sender.test>").expect(450, "4.7.1");
    let mut other = SmtpClient::ready_from(ip("127.0.0.6"), hp.v1);
    let id3 = other.send_mail("ada@sender.test", &["inbox@example.test"], &message("v1"));
    // SPF fail makes it email.received.unauthenticated, which endpoint app does not subscribe to:
    // read the stored event message.
    let m = h.cli_json(&["messages", "show", &id3, "--json"])["event_message"].clone();
    assert_eq!(m["smtp"]["client_ip"], "127.0.0.6", "{m:#}");
    assert_eq!(m["smtp"]["proxy_ip"], "127.0.0.1", "{m:#}");
    assert_eq!(m["auth"]["spf"]["result"], "fail", "{m:#}");
}

#[test]
fn a_spoofed_header_is_refused_and_a_balancer_without_one_is_closed() {
    let h = Harness::with(|c| {
        c.smtp_extra.push("proxy_protocol = [\"127.0.0.9/32\"]".into());
    });
    let gw = h.start();

    // 127.0.0.7 is not a listed balancer: its PROXY line claiming another client is refused.
    let (mut spoof, greeting) = SmtpClient::connect_from(ip("127.0.0.7"), gw.smtp);
    assert_eq!(greeting.code, 220);
    let r = spoof.cmd("PROXY TCP4 198.51.100.1 127.0.0.1 4000 25");
    assert_eq!(r.code, 421, "{r}");
    assert!(spoof.is_closed(), "the spoofing connection is closed");

    // 127.0.0.9 is listed: without a header, it gets no banner and is closed.
    let mut bare = socket_from(ip("127.0.0.9"), gw.smtp);
    bare.set_read_timeout(Some(SHORT)).unwrap();
    std::io::Write::write_all(&mut bare, b"EHLO client.test\r\n").unwrap();
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut bare, &mut got);
    assert!(got.is_empty(), "a listed balancer without a header gets nothing: {}", String::from_utf8_lossy(&got));
    let metrics = scrape(&gw);
    assert_eq!(metrics.get("mxhook_messages_rejected_total{reason=\"proxy\"}"), Some(&2.0), "{metrics:?}");
}
