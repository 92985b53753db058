//! `mxhook doctor` against a DNS server the test runs (`--dns 127.0.0.1:PORT`), a running gateway with
//! a certificate, and a reachable endpoint (the harness receiver).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::common::dns::{DnsServer, Rec};
use crate::common::*;
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
    let dns = DnsServer::serving(vec![
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
    let dns = DnsServer::serving(vec![
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
    cfg.tls_cert(&cert, false);
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
    let dns = DnsServer::serving(vec![]);
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

/// A child process killed when the test ends early.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads what `out` holds now, without waiting for more.
fn read_available(out: &mut std::process::ChildStdout) -> String {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let fd = out.as_raw_fd();
    // SAFETY: fcntl on a pipe this process owns; the flags are restored before returning.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(flags >= 0 && unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } == 0);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("reading doctor's stdout: {e}"),
        }
    }
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) }, 0);
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn doctor_prints_as_it_goes_and_names_each_dns_check_that_got_no_answer() {
    // A name server that never answers: it only takes the questions.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    silent.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let server = silent.local_addr().unwrap().to_string();
    let h = Harness::with(|c| c.hostname = HOST.into());
    let config = h.config_path.to_str().unwrap();
    let args = ["--config", config, "doctor", "--dns", &server, "--public-ip", PUBLIC_IP, "--skip-endpoints"];
    let mut child = KillOnDrop(
        std::process::Command::new(BIN)
            .args(args)
            .current_dir(h.dir.path())
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );

    // Its first question means the checks before DNS are done: they are printed already.
    let mut buf = [0u8; 512];
    silent.recv_from(&mut buf).expect("doctor asks the given name server");
    let mut stdout = child.0.stdout.take().unwrap();
    let early = read_available(&mut stdout);
    assert!(early.contains("ok    config "), "the config check is printed before DNS is asked:\n{early}");
    assert!(early.contains("data_dir "), "the data_dir check is printed before DNS is asked:\n{early}");
    child.0.stdout = Some(stdout);
    let mut out = wait_cli(&mut child.0, &args);
    out.stdout = [early.as_bytes(), &out.stdout].concat();
    let text = out.describe();

    let no_answer = format!("no answer from {server} within ");
    for (level, what) in [
        ("FAIL", format!("cannot look up {HOST}: ")),
        ("WARN", format!("cannot look up the PTR of {PUBLIC_IP}: ")),
        ("FAIL", "cannot look up the MX of example.test: ".to_string()),
        ("WARN", "cannot look up the SPF of example.test: ".to_string()),
    ] {
        let line = format!("{level}  {what}{no_answer}");
        assert!(out.stdout_str().lines().any(|l| l.starts_with(&line)), "expected `{line}…`:\n{text}");
    }
    assert!(out.stdout_str().lines().any(|l| l.contains(" checks: ") && l.ends_with(" warnings")), "{text}");
    assert_eq!(out.code, Some(1), "{text}");
}

#[test]
fn doctor_asks_the_name_server_for_the_ptr_and_calls_a_loopback_address_what_it_is() {
    // The fixture's PTR names another host: doctor says so (the answer is the fixture's, not a local one).
    let dns = DnsServer::serving(vec![
        (HOST, ip(PUBLIC_IP)),
        ("10.2.0.192.in-addr.arpa", Rec::Ptr("vps-1234.hosting.test".into())),
        ("1.0.0.127.in-addr.arpa", Rec::Ptr(HOST.into())),
    ]);
    let h = Harness::with(|c| c.hostname = HOST.into());
    let d = run_doctor(&h, &h.config_path, &dns, &["--skip-endpoints"]);
    let ptr = d.expect("WARN", &format!("PTR of {PUBLIC_IP} is vps-1234.hosting.test, not {HOST}"));
    assert!(
        ptr.fix.as_deref().is_some_and(|f| f.contains(&format!("reverse DNS of {PUBLIC_IP} to {HOST}"))),
        "{ptr:?}"
    );
    assert!(dns.asked().iter().any(|(n, t)| n == "10.2.0.192.in-addr.arpa" && *t == 12), "{:?}", dns.asked());

    // 127.0.0.1: /etc/hosts and the resolver's own RFC 6761 answer both say "localhost"; neither is
    // what senders see, and no name server is asked.
    let d = run_doctor(&h, &h.config_path, &dns, &["--skip-endpoints", "--public-ip", "127.0.0.1"]);
    d.expect("WARN", "127.0.0.1 is not a public address");
    assert!(d.findings.iter().all(|f| !f.what.starts_with("PTR of 127.0.0.1")), "{}", d.text());

    // A name /etc/hosts knows (the machine's own, say) is looked up in DNS all the same.
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let local =
        hosts.lines().filter(|l| !l.trim_start().starts_with('#')).flat_map(|l| l.split_whitespace().skip(1)).find(
            |n| {
                !n.starts_with("localhost")
                    && !n.starts_with("ip6-")
                    && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            },
        );
    if let Some(name) = local {
        let h = Harness::with(|c| c.hostname = name.into());
        let d = run_doctor(&h, &h.config_path, &dns, &["--skip-endpoints"]);
        d.expect("FAIL", &format!("hostname {name} has no A/AAAA record"));
    } else {
        eprintln!("/etc/hosts names no host but localhost: the /etc/hosts part of this test did not run");
    }
}
