//! `mxhook doctor` against a DNS server the test runs (`--dns 127.0.0.1:PORT`), a running gateway with
//! a certificate, and a reachable endpoint (the harness receiver).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::dns::{DnsServer, Rec};
use crate::helpers::*;
use crate::support::*;

const HOST: &str = "mx.example.test";
const PUBLIC_IP: &str = "192.0.2.10";

/// One `ok  `/`WARN`/`FAIL` line and its `fix:` line, if any.
#[derive(Debug)]
struct Finding {
    level: String,
    what: String,
    fix: Option<String>,
}

struct Doctor {
    out: CliOutput,
    findings: Vec<Finding>,
}

impl Doctor {
    fn text(&self) -> String {
        self.out.describe()
    }

    /// The one finding whose text starts with `prefix`.
    #[track_caller]
    fn find(&self, prefix: &str) -> &Finding {
        let found: Vec<&Finding> = self.findings.iter().filter(|f| f.what.starts_with(prefix)).collect();
        assert_eq!(found.len(), 1, "expected one finding starting with {prefix:?}\n{}", self.text());
        found[0]
    }

    #[track_caller]
    fn expect(&self, level: &str, prefix: &str) -> &Finding {
        let f = self.find(prefix);
        assert_eq!(f.level, level, "{prefix:?}: {f:?}\n{}", self.text());
        f
    }

    fn at(&self, level: &str) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.level == level).collect()
    }
}

/// A copy of the harness config whose `listen` is the gateway's real SMTP address (the gateway itself
/// was started on port 0), for doctor's "ports answer" check.
fn doctor_config(h: &Harness, smtp: SocketAddr) -> PathBuf {
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    let old = "listen = [\"127.0.0.1:0\"]";
    assert!(text.contains(old), "the spine's config renderer changed:\n{text}");
    let path = h.dir.path().join("doctor.toml");
    std::fs::write(&path, text.replacen(old, &format!("listen = [\"{smtp}\"]"), 1)).unwrap();
    path
}

fn run_doctor(h: &Harness, config: &std::path::Path, dns: &DnsServer, extra: &[&str]) -> Doctor {
    let dns = dns.addr.to_string();
    let mut args = vec!["--config", config.to_str().unwrap(), "doctor", "--dns", &dns];
    args.extend_from_slice(extra);
    let out = run_cli(&args, h.dir.path());
    let mut findings: Vec<Finding> = Vec::new();
    for line in out.stdout_str().lines() {
        if let Some(fix) = line.trim_start().strip_prefix("fix: ").filter(|_| line.starts_with(' ')) {
            let last = findings.last_mut().unwrap_or_else(|| panic!("fix before any finding:\n{}", out.describe()));
            last.fix = Some(fix.to_string());
        } else if let Some(level) = ["ok  ", "WARN", "FAIL"].into_iter().find(|t| line.starts_with(t)) {
            findings.push(Finding { level: level.trim().to_string(), what: line[4..].trim().to_string(), fix: None });
        }
    }
    assert!(!findings.is_empty(), "doctor printed no findings:\n{}", out.describe());
    Doctor { out, findings }
}

fn ip(s: &str) -> Rec {
    Rec::A(s.parse::<Ipv4Addr>().unwrap())
}

#[test]
fn doctor_says_ok_to_a_correct_setup() {
    let dns = DnsServer::start(vec![
        ("example.test", Rec::Mx(10, HOST.into())),
        ("example.test", Rec::Txt("google-site-verification=not-spf".into())),
        ("example.test", Rec::Txt("v=spf1 -all".into())),
        (HOST, ip(PUBLIC_IP)),
        ("10.2.0.192.in-addr.arpa", Rec::Ptr(HOST.into())),
    ]);
    let (h, _cert) = tls_harness(HOST, false, |c| c.hostname = HOST.into());
    let gw = h.start();
    let config = doctor_config(&h, gw.smtp);
    let d = run_doctor(&h, &config, &dns, &["--public-ip", PUBLIC_IP]);

    d.expect("ok", "config ");
    d.expect("ok", &format!("data_dir {} is writable", h.data_dir().display()));
    d.expect("ok", &format!("SMTP on {} answers: 220 {HOST} ESMTP mxhook", gw.smtp));
    d.expect("ok", &format!("hostname {HOST} resolves to {PUBLIC_IP}"));
    d.expect("ok", &format!("PTR of {PUBLIC_IP} is {HOST}"));
    d.expect("ok", &format!("MX of example.test points at {HOST}"));
    d.expect("ok", "SPF of example.test: v=spf1 -all");
    d.expect("ok", "the STARTTLS certificate is valid for ");
    let ep = d.expect("ok", "endpoint app ");
    assert!(ep.what.contains("accepted a signed test event: HTTP 200"), "{ep:?}");
    assert!(d.at("FAIL").is_empty(), "{}", d.text());
    // A small disk may warn about free space; nothing else should.
    let warns: Vec<_> = d.at("WARN").into_iter().filter(|f| !f.what.contains("free")).collect();
    assert!(warns.is_empty(), "unexpected warnings {warns:?}\n{}", d.text());
    assert_eq!(d.out.code, Some(0), "{}", d.text());

    // It asked our DNS server, not the system's.
    let asked = dns.asked();
    for q in [("example.test", 15), ("example.test", 16), (HOST, 1), ("10.2.0.192.in-addr.arpa", 12)] {
        assert!(asked.iter().any(|(n, t)| n == q.0 && *t == q.1), "no {q:?} question in {asked:?}");
    }
    // And the endpoint got one signed test event (the harness verifies its signature on drop).
    assert_eq!(h.rx.count(), 1, "one test event");
}

#[test]
fn doctor_fails_a_wrong_mx_and_warns_about_spf_ptr_and_the_certificate() {
    let dns = DnsServer::start(vec![
        ("example.test", Rec::Mx(10, "mail.elsewhere.test".into())),
        ("example.test", Rec::Txt("google-site-verification=not-spf".into())),
        ("mail.elsewhere.test", ip("198.51.100.7")),
        (HOST, ip(PUBLIC_IP)),
    ]);
    let h = Harness::new();
    // Five days left, and for another name.
    let cert = make_cert(h.dir.path(), "live", "other.test", &["other.test"], 5);
    let mut cfg = Config::basic(&h.rx);
    cfg.hostname = HOST.into();
    cfg.smtp_extra.extend(tls_lines(&cert, false));
    h.write_config(&cfg);
    let gw = h.start();
    let config = doctor_config(&h, gw.smtp);
    let d = run_doctor(&h, &config, &dns, &["--public-ip", PUBLIC_IP]);

    let mx = d.expect("FAIL", "MX of example.test is mail.elsewhere.test");
    assert!(mx.what.contains(&format!("not {HOST}")), "{mx:?}");
    let fix = mx.fix.as_deref().unwrap_or_else(|| panic!("no fix for {mx:?}"));
    assert!(fix.contains(&format!("MX 10 {HOST}.")), "the fix names the record to set: {fix}");
    let spf = d.expect("WARN", "example.test publishes no SPF record");
    assert!(spf.fix.as_deref().is_some_and(|f| f.contains("v=spf1")), "{spf:?}");
    d.expect("WARN", &format!("{PUBLIC_IP} has no PTR record"));
    // 5 × 86400 s minus the time since `openssl req`: 4 days, or 5 within the same second.
    let expiry = d.expect("WARN", "the STARTTLS certificate expires in ");
    assert!(expiry.what.ends_with(" 4 days") || expiry.what.ends_with(" 5 days"), "{expiry:?}");
    d.expect("WARN", &format!("the certificate does not name {HOST}"));
    d.expect("ok", &format!("hostname {HOST} resolves to {PUBLIC_IP}"));
    d.expect("ok", &format!("SMTP on {} answers", gw.smtp));
    assert_eq!(d.at("FAIL").len(), 1, "only the MX fails:\n{}", d.text());
    assert_eq!(d.out.code, Some(1), "a FAIL exits 1:\n{}", d.text());
}

#[test]
fn doctor_fails_without_a_server_and_records() {
    let dns = DnsServer::start(vec![]);
    let h = Harness::with(|c| c.hostname = HOST.into());
    // A port nothing listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = {
        let text = std::fs::read_to_string(&h.config_path).unwrap();
        let path = h.dir.path().join("doctor.toml");
        std::fs::write(&path, text.replacen("listen = [\"127.0.0.1:0\"]", &format!("listen = [\"{free}\"]"), 1))
            .unwrap();
        path
    };
    let d = run_doctor(&h, &config, &dns, &["--skip-endpoints"]);
    d.expect("FAIL", &format!("nothing answers SMTP on {free}"));
    d.expect("FAIL", &format!("hostname {HOST} has no A/AAAA record"));
    let mx = d.expect("FAIL", "example.test has no MX record");
    assert!(mx.fix.as_deref().is_some_and(|f| f.contains(&format!("MX 10 {HOST}."))), "{mx:?}");
    d.expect("WARN", "example.test publishes no SPF record");
    d.expect("WARN", "STARTTLS is not configured");
    assert!(d.findings.iter().all(|f| !f.what.starts_with("endpoint")), "--skip-endpoints:\n{}", d.text());
    assert_eq!(h.rx.count(), 0);
    assert_eq!(d.out.code, Some(1), "{}", d.text());
}
