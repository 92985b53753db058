//! `mxhook doctor`: checks a live setup and says what is wrong in plain words. Each check is ok,
//! warn or fail, with the fix. It reads DNS (MX, A/AAAA, PTR, SPF) like the rest of the internet
//! will, so it can point at the record to change: from the name servers only, never /etc/hosts.
//!
//! The checks that wait on the network run at once, each under a deadline; their findings are
//! printed in a fixed order, each as soon as it (and those before it) are in, so a name server that
//! never answers costs a few seconds and says so, instead of a long silence.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::net::NetError;
use mail_auth::hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::hickory_resolver::proto::rr::RData;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::deliver::webhook;

/// How long one DNS check may wait for its answer.
const DNS_DEADLINE: Duration = Duration::from_secs(4);
/// The fixes for a check that did not finish.
const ASK: &str = "check the name servers (`--dns`, /etc/resolv.conf) and the network";
const START: &str = "start the gateway: `systemctl start mxhook` (or `mxhook serve`)";

/// The bound on the whole run: a check unfinished by then (an endpoint that never answers, say) is
/// reported as such.
const RUN_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
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

/// The findings of one check (or a few that belong together), in order.
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

/// Prints findings as they come (stdout is line-buffered, and flushed after each report) and counts
/// them for the summary.
#[derive(Default)]
struct Printer {
    checks: usize,
    fails: usize,
    warns: usize,
}

impl Printer {
    fn print(&mut self, report: Report) {
        use std::io::Write;
        for f in report.0 {
            let tag = match f.level {
                Level::Ok => "ok  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            println!("{tag}  {}", f.what);
            if let Some(fix) = &f.fix {
                println!("      fix: {fix}");
            }
            self.checks += 1;
            match f.level {
                Level::Fail => self.fails += 1,
                Level::Warn => self.warns += 1,
                Level::Ok => {}
            }
        }
        let _ = std::io::stdout().flush();
    }
}

pub fn run(
    settings: &Settings,
    dns: &[SocketAddr],
    public_ip: Option<IpAddr>,
    skip_endpoints: bool,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut out = Printer::default();
    let done = runtime.block_on(check_all(settings, dns, public_ip, skip_endpoints, &mut out));
    // An endpoint test cut off by RUN_DEADLINE still holds a blocking thread: do not wait for it.
    runtime.shutdown_background();
    done?;
    println!("\n{} checks: {} failed, {} warnings", out.checks, out.fails, out.warns);
    Ok(if out.fails > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// A check running in the background, and what to say if it has not finished by RUN_DEADLINE.
struct Pending {
    task: JoinHandle<Report>,
    what: String,
    fix: &'static str,
}

fn pending(
    what: impl Into<String>,
    fix: &'static str,
    check: impl Future<Output = Report> + Send + 'static,
) -> Pending {
    Pending { task: tokio::spawn(check), what: what.into(), fix }
}

async fn check_all(
    s: &Settings,
    dns: &[SocketAddr],
    public_ip: Option<IpAddr>,
    skip_endpoints: bool,
    out: &mut Printer,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + RUN_DEADLINE;
    let mut r = Report::default();
    r.ok(format!("config {} is valid", s.file.display()));
    if s.auth.is_none() {
        r.warn(
            "sender authentication is off ([auth] enabled = false): events carry no SPF, DKIM or DMARC verdict",
            "set [auth] enabled = true (it asks DNS about each message's sender)",
        );
    }
    check_trusted_networks(s, &mut r);
    check_data_dir(s, &mut r);
    out.print(r);

    // Everything that waits on the network starts now, at once.
    let dns = Arc::new(Dns::new(dns)?);
    let host = &s.smtp.hostname;
    let mut checks = vec![pending("the SMTP check", START, check_ports(s.listen.clone()))];
    let (ips_tx, ips_rx) = tokio::sync::oneshot::channel();
    let (d, h) = (dns.clone(), host.clone());
    checks.push(pending(format!("the lookup of {host}"), ASK, async move {
        let (r, ips) = check_hostname(d, h).await;
        let _ = ips_tx.send(ips);
        r
    }));
    let (d, h) = (dns.clone(), host.clone());
    checks.push(pending("the PTR lookup", ASK, async move {
        let ips = match public_ip {
            Some(ip) => vec![ip],
            None => ips_rx.await.unwrap_or_default(),
        };
        let lookups: Vec<_> = ips.into_iter().map(|ip| tokio::spawn(check_ptr(d.clone(), ip, h.clone()))).collect();
        let mut r = Report::default();
        for lookup in lookups {
            r.0.extend(lookup.await.expect("the PTR check panicked").0);
        }
        r
    }));
    for domain in s.domains.keys() {
        let mx = check_mx(dns.clone(), domain.clone(), host.clone());
        checks.push(pending(format!("the MX lookup of {domain}"), ASK, mx));
        checks.push(pending(format!("the SPF lookup of {domain}"), ASK, check_spf(dns.clone(), domain.clone())));
    }
    let mut tls = Report::default();
    check_tls(s, &mut tls);
    checks.push(pending("the certificate check", "check [smtp.tls]", async move { tls }));
    if !skip_endpoints {
        for ep in s.endpoints.values() {
            let what = format!("endpoint {} ({})", ep.name, ep.url);
            let ep = ep.clone();
            let task = tokio::task::spawn_blocking(move || {
                let mut r = Report::default();
                match test_endpoint(&ep) {
                    Ok(msg) => r.ok(msg),
                    Err((msg, fix)) => r.fail(msg, fix),
                }
                r
            });
            checks.push(Pending { task, what, fix: "make it answer POSTed events within its timeout" });
        }
    }

    // Printed in this order, each as soon as it is in.
    for check in checks {
        match tokio::time::timeout_at(deadline, check.task).await {
            Ok(report) => out.print(report?),
            Err(_) => {
                let mut r = Report::default();
                r.fail(
                    format!("{}: not finished within doctor's {} s limit", check.what, RUN_DEADLINE.as_secs()),
                    check.fix,
                );
                out.print(r);
            }
        }
    }
    Ok(())
}

/// A public network in `trusted_networks` lifts the per-IP limits for strangers on the internet.
fn check_trusted_networks(s: &Settings, r: &mut Report) {
    for net in &s.smtp.trusted_networks {
        if !private_network(net) {
            r.warn(
                format!("[smtp] trusted_networks lists {net}, which is not a private network: its clients skip the per-IP limits"),
                "list only loopback and private networks (your own proxies and servers)",
            );
        }
    }
}

/// Loopback, RFC 1918, link-local, or IPv6 unique-local: wholly inside one of them.
fn private_network(net: &ipnet::IpNet) -> bool {
    const PRIVATE: [&str; 8] = [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    ];
    PRIVATE.iter().filter_map(|p| p.parse::<ipnet::IpNet>().ok()).any(|p| p.contains(net))
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
async fn check_ports(listen: Vec<SocketAddr>) -> Report {
    let mut r = Report::default();
    for addr in &listen {
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
            _ => r.fail(format!("nothing answers SMTP on {addr}"), START),
        }
    }
    r
}

/// The name servers doctor asks (`--dns`, else the system's), each question under DNS_DEADLINE.
struct Dns {
    resolver: TokioResolver,
    /// Who is asked, for the findings: "127.0.0.1:53" or "the system's name servers".
    servers: String,
}

impl Dns {
    fn new(dns: &[SocketAddr]) -> anyhow::Result<Dns> {
        let mut opts = ResolverOpts::default();
        opts.timeout = DNS_DEADLINE;
        opts.attempts = 1;
        // What the internet sees: a PTR or an A record in /etc/hosts is no answer to them.
        opts.use_hosts_file = ResolveHosts::Never;
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
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let servers = if dns.is_empty() {
            "the system's name servers".to_string()
        } else {
            dns.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
        };
        Ok(Dns { resolver: builder.with_options(opts).build()?, servers })
    }

    /// One lookup: Ok(Some) the answer, Ok(None) no such records, Err what went wrong, in words
    /// (naming the deadline when there was no answer in time).
    async fn ask<T>(&self, lookup: impl Future<Output = Result<T, NetError>>) -> Result<Option<T>, String> {
        let no_answer = || format!("no answer from {} within {} s", self.servers, DNS_DEADLINE.as_secs());
        match tokio::time::timeout(DNS_DEADLINE, lookup).await {
            Ok(Ok(answer)) => Ok(Some(answer)),
            Ok(Err(e)) if e.is_no_records_found() => Ok(None),
            Ok(Err(NetError::Timeout)) | Err(_) => Err(no_answer()),
            Ok(Err(e)) => Err(e.to_string()),
        }
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') { name.to_string() } else { format!("{name}.") }
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.').eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// The hostname's A/AAAA records, and the addresses for the PTR check.
async fn check_hostname(dns: Arc<Dns>, host: String) -> (Report, Vec<IpAddr>) {
    let mut r = Report::default();
    let ips = match dns.ask(dns.resolver.lookup_ip(fqdn(&host))).await {
        Ok(Some(l)) => {
            let ips: Vec<IpAddr> = l.iter().collect();
            let shown: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
            r.ok(format!("hostname {host} resolves to {}", shown.join(", ")));
            ips
        }
        Err(e) => {
            r.fail(format!("cannot look up {host}: {e}"), ASK);
            Vec::new()
        }
        Ok(None) => {
            r.fail(
                format!("hostname {host} has no A/AAAA record"),
                format!("add `{host}. A <your server's public IPv4>` (and AAAA for IPv6) at your DNS provider"),
            );
            Vec::new()
        }
    };
    (r, ips)
}

async fn check_ptr(dns: Arc<Dns>, ip: IpAddr, host: String) -> Report {
    let mut r = Report::default();
    if ip.is_loopback() || ip.is_unspecified() {
        // Resolvers answer "localhost" for these themselves (RFC 6761): no name server is asked.
        r.warn(
            format!("{ip} is not a public address: senders cannot reach it, and it has no PTR to check"),
            format!("name the server's public address with --public-ip, or fix the A/AAAA record of {host}"),
        );
        return r;
    }
    let names: Vec<String> = match dns.ask(dns.resolver.reverse_lookup(ip)).await {
        Ok(Some(l)) => l
            .answers()
            .iter()
            .filter_map(|rec| match &rec.data {
                RData::PTR(p) => Some(p.0.to_string()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => {
            r.warn(format!("cannot look up the PTR of {ip}: {e}"), ASK);
            return r;
        }
    };
    if names.iter().any(|n| same_name(n, &host)) {
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
    r
}

async fn check_mx(dns: Arc<Dns>, domain: String, host: String) -> Report {
    let mut r = Report::default();
    let exchanges: Vec<String> = match dns.ask(dns.resolver.mx_lookup(fqdn(&domain))).await {
        Err(e) => {
            r.fail(format!("cannot look up the MX of {domain}: {e}"), ASK);
            return r;
        }
        Ok(Some(l)) => l
            .answers()
            .iter()
            .filter_map(|rec| match &rec.data {
                RData::MX(mx) => Some(mx.exchange.to_string().trim_end_matches('.').to_string()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
    };
    if exchanges.iter().any(|x| same_name(x, &host)) {
        r.ok(format!("MX of {domain} points at {host}"));
    } else if exchanges.is_empty() {
        r.fail(format!("{domain} has no MX record"), format!("add `{domain}. MX 10 {host}.` at your DNS provider"));
    } else {
        r.fail(
            format!("MX of {domain} is {}, not {host}", exchanges.join(", ")),
            format!("change it to `{domain}. MX 10 {host}.` (or set [smtp] hostname to the name the MX points at)"),
        );
    }
    r
}

async fn check_spf(dns: Arc<Dns>, domain: String) -> Report {
    let mut r = Report::default();
    let records: Vec<String> = match dns.ask(dns.resolver.txt_lookup(fqdn(&domain))).await {
        Err(e) => {
            r.warn(format!("cannot look up the SPF of {domain}: {e}"), ASK);
            return r;
        }
        Ok(Some(l)) => l
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
        Ok(None) => Vec::new(),
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
    r
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
    let now_ms = crate::time::now_ms();
    let now = crate::time::rfc3339(now_ms);
    let event_id = crate::ids::new_id("evt");
    let message = super::endpoints::sample_message(now_ms).map_err(|e| (e.to_string(), String::new()))?;
    let parts = webhook::EventParts {
        event_id: &event_id,
        event_type: crate::mail::EventType::Received,
        created_at: &now,
        delivery_id: "dlv_doctor",
        endpoint: &ep.name,
        attempt: 1,
        attempted_at: &now,
        message_json: &message,
    };
    let body = webhook::event_body(&parts).map_err(|e| (e.to_string(), String::new()))?;
    let resp = webhook::post(&webhook::agent(ep), ep, &event_id, &body);
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
