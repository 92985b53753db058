//! `mxhook doctor`: checks a live setup and says what is wrong in plain words. Each check is ok,
//! warn or fail, with the fix. It reads DNS (MX, A/AAAA, PTR, SPF) like the rest of the internet
//! will, so it can point at the record to change.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::hickory_resolver::proto::rr::RData;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::config::Settings;
use crate::deliver::webhook;
use crate::mail::SigningKey;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Finding {
    level: Level,
    what: String,
    fix: Option<String>,
}

#[derive(Default)]
struct Report(Vec<Finding>);

impl Report {
    fn ok(&mut self, what: impl Into<String>) {
        self.0.push(Finding { level: Level::Ok, what: what.into(), fix: None });
    }
    fn warn(&mut self, what: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Finding { level: Level::Warn, what: what.into(), fix: Some(fix.into()) });
    }
    fn fail(&mut self, what: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Finding { level: Level::Fail, what: what.into(), fix: Some(fix.into()) });
    }
}

pub fn run(
    settings: &Settings,
    dns: &[SocketAddr],
    public_ip: Option<IpAddr>,
    skip_endpoints: bool,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let report = runtime.block_on(check_all(settings, dns, public_ip, skip_endpoints))?;
    let mut worst = Level::Ok;
    for f in &report.0 {
        let tag = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        println!("{tag}  {}", f.what);
        if let Some(fix) = &f.fix {
            println!("      fix: {fix}");
        }
        worst = worst.max(f.level);
    }
    let (fails, warns) = report.0.iter().fold((0, 0), |(f, w), x| match x.level {
        Level::Fail => (f + 1, w),
        Level::Warn => (f, w + 1),
        Level::Ok => (f, w),
    });
    println!("\n{} checks: {fails} failed, {warns} warnings", report.0.len());
    Ok(if worst == Level::Fail { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

async fn check_all(
    s: &Settings,
    dns: &[SocketAddr],
    public_ip: Option<IpAddr>,
    skip_endpoints: bool,
) -> anyhow::Result<Report> {
    let mut r = Report::default();
    r.ok(format!("config {} is valid", s.file.display()));
    check_data_dir(s, &mut r);
    check_ports(s, &mut r).await;
    let resolver = resolver(dns)?;
    let host_ips = check_hostname(&resolver, &s.smtp.hostname, &mut r).await;
    let ips: Vec<IpAddr> = public_ip.map_or(host_ips, |ip| vec![ip]);
    for ip in &ips {
        check_ptr(&resolver, *ip, &s.smtp.hostname, &mut r).await;
    }
    for domain in s.domains.keys() {
        check_mx(&resolver, domain, &s.smtp.hostname, &mut r).await;
        check_spf(&resolver, domain, &mut r).await;
    }
    check_tls(s, &mut r);
    if !skip_endpoints {
        for ep in s.endpoints.values() {
            let ep = ep.clone();
            let found = tokio::task::spawn_blocking(move || test_endpoint(&ep)).await?;
            match found {
                Ok(msg) => r.ok(msg),
                Err((msg, fix)) => r.fail(msg, fix),
            }
        }
    }
    Ok(r)
}

fn check_data_dir(s: &Settings, r: &mut Report) {
    let dir = &s.data_dir;
    if let Err(e) = std::fs::create_dir_all(dir) {
        return r.fail(
            format!("data_dir {} cannot be created: {e}", dir.display()),
            "create it and give the mxhook user write access",
        );
    }
    let probe = dir.join(".doctor-probe");
    match std::fs::write(&probe, b"probe").and_then(|_| std::fs::remove_file(&probe)) {
        Ok(()) => r.ok(format!("data_dir {} is writable", dir.display())),
        Err(e) => {
            return r.fail(
                format!("data_dir {} is not writable: {e}", dir.display()),
                "chown it to the user mxhook runs as (systemd: StateDirectory=mxhook does this)",
            );
        }
    }
    match free_bytes(dir) {
        Some(free) if free < 1 << 30 => r.warn(
            format!("data_dir has {} MB free", free >> 20),
            "free space or move data_dir: when it is full, mail is refused with 451",
        ),
        Some(free) => r.ok(format!("data_dir has {} GB free", free >> 30)),
        None => {}
    }
}

fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `st` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// Are the configured SMTP addresses answered by a server (ours, running)?
async fn check_ports(s: &Settings, r: &mut Report) {
    for addr in &s.listen {
        let target =
            if addr.ip().is_unspecified() { SocketAddr::new([127, 0, 0, 1].into(), addr.port()) } else { *addr };
        let greeting = tokio::time::timeout(Duration::from_secs(3), async {
            let stream = tokio::net::TcpStream::connect(target).await?;
            let mut lines = BufReader::new(stream);
            let mut line = String::new();
            lines.read_line(&mut line).await?;
            let _ = lines.get_mut().write_all(b"QUIT\r\n").await;
            std::io::Result::Ok(line)
        })
        .await;
        match greeting {
            Ok(Ok(l)) if l.starts_with("220") && l.contains("mxhook") => {
                r.ok(format!("SMTP on {addr} answers: {}", l.trim()))
            }
            Ok(Ok(l)) => r.warn(
                format!("something else answers on {addr}: {}", l.trim()),
                "stop the other mail server (e.g. `systemctl disable --now postfix exim4`) or change [smtp] listen",
            ),
            _ => r.fail(
                format!("nothing answers SMTP on {addr}"),
                "start the gateway: `systemctl start mxhook` (or `mxhook serve`)",
            ),
        }
    }
}

fn resolver(dns: &[SocketAddr]) -> anyhow::Result<TokioResolver> {
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(3);
    opts.attempts = 1;
    let builder = if dns.is_empty() {
        TokioResolver::builder_tokio()?
    } else {
        let servers = dns
            .iter()
            .map(|a| {
                let mut ns = NameServerConfig::udp(a.ip());
                for c in ns.connections.iter_mut() {
                    c.port = a.port();
                }
                ns
            })
            .collect();
        TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), TokioRuntimeProvider::default())
    };
    Ok(builder.with_options(opts).build()?)
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') { name.to_string() } else { format!("{name}.") }
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.').eq_ignore_ascii_case(b.trim_end_matches('.'))
}

async fn check_hostname(resolver: &TokioResolver, host: &str, r: &mut Report) -> Vec<IpAddr> {
    match resolver.lookup_ip(fqdn(host)).await {
        Ok(l) => {
            let ips: Vec<IpAddr> = l.iter().collect();
            let shown: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
            r.ok(format!("hostname {host} resolves to {}", shown.join(", ")));
            ips
        }
        Err(e) if !e.is_no_records_found() => {
            r.fail(
                format!("cannot look up {host}: {e}"),
                "check the name servers (`--dns`, /etc/resolv.conf) and the network",
            );
            Vec::new()
        }
        Err(_) => {
            r.fail(
                format!("hostname {host} has no A/AAAA record"),
                format!("add `{host}. A <your server's public IPv4>` (and AAAA for IPv6) at your DNS provider"),
            );
            Vec::new()
        }
    }
}

async fn check_ptr(resolver: &TokioResolver, ip: IpAddr, host: &str, r: &mut Report) {
    let names: Vec<String> = match resolver.reverse_lookup(ip).await {
        Ok(l) => l
            .answers()
            .iter()
            .filter_map(|rec| match &rec.data {
                RData::PTR(p) => Some(p.0.to_string()),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    if names.iter().any(|n| same_name(n, host)) {
        r.ok(format!("PTR of {ip} is {host}"));
    } else if names.is_empty() {
        r.warn(
            format!("{ip} has no PTR record"),
            format!("ask your hosting provider to set the reverse DNS of {ip} to {host} (senders trust it more)"),
        );
    } else {
        r.warn(
            format!(
                "PTR of {ip} is {}, not {host}",
                names.iter().map(|n| n.trim_end_matches('.')).collect::<Vec<_>>().join(", ")
            ),
            format!("set the reverse DNS of {ip} to {host}"),
        );
    }
}

async fn check_mx(resolver: &TokioResolver, domain: &str, host: &str, r: &mut Report) {
    let exchanges: Vec<String> = match resolver.mx_lookup(fqdn(domain)).await {
        Err(e) if !e.is_no_records_found() => {
            return r.fail(format!("cannot look up the MX of {domain}: {e}"), "check the name servers and the network");
        }
        Ok(l) => l
            .answers()
            .iter()
            .filter_map(|rec| match &rec.data {
                RData::MX(mx) => Some(mx.exchange.to_string().trim_end_matches('.').to_string()),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    if exchanges.iter().any(|x| same_name(x, host)) {
        r.ok(format!("MX of {domain} points at {host}"));
    } else if exchanges.is_empty() {
        r.fail(format!("{domain} has no MX record"), format!("add `{domain}. MX 10 {host}.` at your DNS provider"));
    } else {
        r.fail(
            format!("MX of {domain} is {}, not {host}", exchanges.join(", ")),
            format!("change it to `{domain}. MX 10 {host}.` (or set [smtp] hostname to the name the MX points at)"),
        );
    }
}

async fn check_spf(resolver: &TokioResolver, domain: &str, r: &mut Report) {
    let records: Vec<String> = match resolver.txt_lookup(fqdn(domain)).await {
        Err(e) if !e.is_no_records_found() => {
            return r
                .warn(format!("cannot look up the SPF of {domain}: {e}"), "check the name servers and the network");
        }
        Ok(l) => l
            .answers()
            .iter()
            .filter_map(|rec| match &rec.data {
                RData::TXT(t) => {
                    Some(t.txt_data.iter().map(|d| String::from_utf8_lossy(d).into_owned()).collect::<String>())
                }
                _ => None,
            })
            .filter(|t| t.to_ascii_lowercase().starts_with("v=spf1"))
            .collect(),
        Err(_) => Vec::new(),
    };
    match records.len() {
        1 => r.ok(format!("SPF of {domain}: {}", records[0])),
        0 => r.warn(
            format!("{domain} publishes no SPF record"),
            format!("if the domain sends no mail: `{domain}. TXT \"v=spf1 -all\"`; else list your senders"),
        ),
        _ => r.fail(
            format!("{domain} publishes {} SPF records", records.len()),
            "merge them into one (several make SPF permerror)",
        ),
    }
}

fn check_tls(s: &Settings, r: &mut Report) {
    let Some(t) = &s.smtp.tls else {
        return r.warn(
            "STARTTLS is not configured: mail reaches you unencrypted",
            "set [smtp.tls] cert and key (e.g. from Let's Encrypt for the MX hostname)",
        );
    };
    let pem = match std::fs::read(&t.cert) {
        Ok(p) => p,
        Err(e) => return r.fail(format!("cannot read {}: {e}", t.cert.display()), "fix [smtp.tls] cert"),
    };
    let Some(der) = x509_parser::pem::Pem::iter_from_buffer(&pem).next().and_then(|p| p.ok()) else {
        return r.fail(
            format!("{} holds no PEM certificate", t.cert.display()),
            "point [smtp.tls] cert at the full chain PEM",
        );
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der.contents) else {
        return r.fail(format!("{} is not a valid certificate", t.cert.display()), "replace it");
    };
    let not_after = cert.validity().not_after.timestamp();
    let days = (not_after - crate::time::now_ms() / 1000) / 86400;
    let names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if days < 0 {
        r.fail(
            format!("the STARTTLS certificate expired {} days ago", -days),
            "renew it, then `systemctl reload mxhook`",
        );
    } else if days < 14 {
        r.warn(format!("the STARTTLS certificate expires in {days} days"), "renew it, then `systemctl reload mxhook`");
    } else {
        r.ok(format!("the STARTTLS certificate is valid for {days} more days"));
    }
    let host = &s.smtp.hostname;
    let covers = names.iter().any(|n| {
        same_name(n, host)
            || n.strip_prefix("*.").is_some_and(|d| host.split_once('.').is_some_and(|(_, h)| same_name(h, d)))
    });
    if !covers {
        r.warn(
            format!("the certificate does not name {host} (it names {})", names.join(", ")),
            format!("get a certificate for {host}"),
        );
    }
}

fn test_endpoint(ep: &crate::config::Endpoint) -> Result<String, (String, String)> {
    let key = SigningKey::parse(&ep.secret.0)
        .map_err(|e| (format!("endpoint {}: {e}", ep.name), "fix its secret".to_string()))?;
    let now = crate::time::rfc3339(crate::time::now_ms());
    let event_id = crate::ids::new_id("evt");
    let message = super::endpoints::sample_message(&now).to_string();
    let parts = webhook::EventParts {
        event_id: &event_id,
        created_at: &now,
        delivery_id: "dlv_doctor",
        endpoint: &ep.name,
        attempt: 1,
        attempted_at: &now,
        message_json: &message,
    };
    let body = webhook::event_body(&parts).map_err(|e| (e.to_string(), String::new()))?;
    let resp = webhook::post(&webhook::agent(ep), ep, &key, &event_id, &body);
    match resp.status {
        Some(s) if resp.is_success() => Ok(format!(
            "endpoint {} ({}) accepted a signed test event: HTTP {s} in {} ms",
            ep.name, ep.url, resp.duration_ms
        )),
        Some(401 | 403) => Err((
            format!("endpoint {} ({}) refused a signed test event", ep.name, ep.url),
            "check that the app verifies with the same secret as [endpoints.NAME] secret".into(),
        )),
        Some(s) => Err((
            format!("endpoint {} ({}) answered HTTP {s}", ep.name, ep.url),
            "make it answer 2xx to POSTed events".into(),
        )),
        None => Err((
            format!("endpoint {} ({}) is unreachable: {}", ep.name, ep.url, resp.error.unwrap_or_default()),
            "start the app, or fix the url".into(),
        )),
    }
}
