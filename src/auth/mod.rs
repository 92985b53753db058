//! Sender authentication, between `smtp` and `parse`: SPF for the HELO name and MAIL FROM, every
//! DKIM signature, ARC, then DMARC over those, by mail-auth. The verdicts become the event's
//! `message.auth`; policy (`[auth] spf = "strict"`, `dmarc_reject = "reject"`) becomes an SMTP refusal.
//!
//! DNS is bounded: one budget (`[auth] timeout`) per message; a check still waiting when it runs out
//! is `temperror`, as is any resolver failure. Auth never loses a message: only the operator's
//! policy refuses one. One `Authenticator` serves every session, so its caches are shared.

mod cache;
mod health;
mod settings;
mod upstream;
mod verdict;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mail_auth::hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::system_conf::read_system_conf;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput, DmarcResult, DnsError,
    Error, MessageAuthenticator, SpfOutput, SpfResult, dmarc::Policy, dmarc::verify::DmarcParameters,
};
use tokio::time::Instant;

use crate::mail::{
    ArcVerdict, Auth, AuthSource, DkimVerdict, DmarcVerdict, Envelope, Ingress, Reason, Reply, SpfVerdict, printable,
};

pub use cache::Caches;
pub use settings::{AuthSettings, DmarcReject, SpfMode};

pub struct Authenticator {
    /// mail-auth over hickory; hickory also keeps a response cache (with negative answers).
    resolver: MessageAuthenticator,
    /// Parsed records with their TTLs, shared by every session: repeated senders cost no lookups.
    caches: Caches,
    /// Whether the resolver answers at all: a dead one must not cost every message its whole budget.
    health: Arc<health::Health>,
    /// Our name: the authserv-id of `Authentication-Results` and SPF's `%{r}`.
    hostname: String,
    settings: AuthSettings,
}

/// The SPF verdicts of a strict-mode MAIL FROM check, carried to the end of DATA so the event
/// reports what the client was told, and the DNS time they took out of the message's budget.
#[derive(Debug, Clone)]
pub struct SenderChecks {
    helo: SpfOutput,
    mail_from: SpfOutput,
    spent: Duration,
}

impl Authenticator {
    /// Builds the resolver. A system resolver that cannot be read is not fatal: every lookup is then
    /// `temperror` and mail still flows.
    pub fn new(settings: &AuthSettings, hostname: &str) -> anyhow::Result<Self> {
        let (config, mut opts) = if settings.dns.is_empty() {
            read_system_conf().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "no usable system resolver: SPF, DKIM and DMARC will be temperror until [auth] dns is set");
                (ResolverConfig::from_name_servers(Vec::new()), ResolverOpts::default())
            })
        } else {
            (ResolverConfig::from_name_servers(settings.dns.iter().map(name_server).collect()), ResolverOpts::default())
        };
        // Two tries fit in the budget; the budget itself is enforced around each check.
        opts.timeout = (settings.timeout / 2).max(Duration::from_millis(100));
        opts.attempts = 2;
        opts.use_hosts_file = ResolveHosts::Never;
        let resolver = MessageAuthenticator::new(config, opts)
            .map_err(|e| anyhow::anyhow!("cannot set up the DNS resolver for [auth]: {e}"))?;
        Ok(Self {
            resolver,
            caches: Caches::new(),
            health: Arc::default(),
            hostname: hostname.to_string(),
            settings: settings.clone(),
        })
    }

    /// True while the resolver does not answer (see `health`): lookups are then skipped.
    pub fn dns_is_down(&self) -> bool {
        self.health.is_down()
    }

    /// This message's DNS time: the configured budget, or none while the resolver is down
    /// (cached records still answer: a check that needs no lookup completes within no time).
    fn deadline(&self, spent: Duration) -> Instant {
        let budget = if self.health.is_down() { Duration::ZERO } else { self.settings.timeout.saturating_sub(spent) };
        Instant::now() + budget
    }

    /// Called when a message is done with DNS: if it used up its budget, the resolver may be dead.
    fn ran_out(&self, deadline: Instant) {
        if Instant::now() >= deadline {
            self.health.suspect(&self.resolver, self.settings.timeout);
        }
    }

    /// The shared record cache (tests and benchmarks fill it with fixtures).
    pub fn caches(&self) -> &Caches {
        &self.caches
    }

    /// At MAIL FROM, only with `spf = "strict"`: refuses a sender whose SPF fails (550 5.7.1) or
    /// cannot be checked now (451 4.7.1). None in other modes: SPF then runs at the end of DATA.
    /// Mail handed over by a mail server in front is never checked here: its address says nothing.
    pub async fn check_mail(
        &self,
        ip: IpAddr,
        ingress: Ingress,
        helo: &str,
        mail_from: &str,
    ) -> Result<Option<SenderChecks>, Reply> {
        if self.settings.spf != SpfMode::Strict || ingress.from_upstream() {
            return Ok(None);
        }
        let started = Instant::now();
        let deadline = self.deadline(Duration::ZERO);
        let (helo_out, from_out) =
            tokio::join!(self.spf_helo(ip, helo, deadline), self.spf_mail_from(ip, helo, mail_from, deadline));
        self.ran_out(deadline);
        let spent = started.elapsed();
        let domain = printable(from_out.domain());
        match from_out.result() {
            SpfResult::Fail => {
                tracing::info!(%ip, mail_from = %printable(mail_from), "SPF fail at MAIL FROM; refusing (spf = strict)");
                Err(Reply::new(
                    550,
                    format!("5.7.1 SPF: {ip} is not allowed to send mail for {domain}"),
                    Reason::Sender,
                ))
            }
            SpfResult::TempError => Err(Reply::new(
                451,
                format!("4.7.1 SPF: temporary error checking {domain}, try again later"),
                Reason::Sender,
            )),
            _ => Ok(Some(SenderChecks { helo: helo_out, mail_from: from_out, spent })),
        }
    }

    /// At the end of DATA: every verdict for the event, or the refusal the operator's DMARC policy
    /// asks for. `sender` is what `check_mail` found, if it ran.
    ///
    /// HELO SPF runs beside the rest, which DMARC needs: MAIL FROM SPF, DKIM and ARC side by side
    /// (with the From domain's DMARC records fetched meanwhile), then DMARC. A slow name costs
    /// only the verdicts that depend on it.
    pub async fn verify(&self, envelope: &Envelope, sender: Option<SenderChecks>, raw: &[u8]) -> Result<Auth, Reply> {
        let deadline = self.deadline(sender.as_ref().map_or(Duration::ZERO, |s| s.spent));
        let (ip, helo, mail_from) = (envelope.client_ip, envelope.helo.as_str(), envelope.mail_from.as_str());
        let message = AuthenticatedMessage::parse(raw);
        let from_domain = message.as_ref().and_then(from_domain);
        // DMARC's SPF identity is the one SPF checked: MAIL FROM's domain, or HELO for `<>`.
        let spf_domain = mail_from.rsplit_once('@').map_or(helo, |(_, d)| d);
        let upstream = envelope.ingress.from_upstream();
        let check_spf = self.settings.spf != SpfMode::Off && !upstream;
        let (checked_helo, mut checked_from) = sender.map(|s| (s.helo, s.mail_from)).unzip();
        if upstream && self.settings.spf != SpfMode::Off {
            // The upstream's verdict stands in for ours, DMARC's SPF side included.
            checked_from = Some(match upstream::spf(raw, &self.settings.trusted_authserv_ids) {
                Some(u) => SpfOutput::new(u.domain).with_result(u.result),
                None => SpfOutput::new(spf_domain.to_ascii_lowercase()).with_result(SpfResult::None),
            });
        }

        let helo_spf = async {
            match checked_helo {
                Some(out) => Some(out),
                None if check_spf => Some(self.spf_helo(ip, helo, deadline).await),
                None => None,
            }
        };
        let from_spf = async {
            match checked_from {
                Some(out) => Some(out),
                None if check_spf => Some(self.spf_mail_from(ip, helo, mail_from, deadline).await),
                None => None,
            }
        };
        let dkim = async {
            let Some(m) = &message else { return Vec::new() };
            let checked = tokio::time::timeout_at(deadline, self.resolver.verify_dkim(self.caches.params(m))).await;
            checked.unwrap_or_else(|_| {
                m.dkim_headers.iter().map(|h| DkimOutput::temp_err(out_of_time()).with_signature(&h.header)).collect()
            })
        };
        let arc = async {
            let Some(m) = &message else { return ArcOutput::default() };
            let checked = tokio::time::timeout_at(deadline, self.resolver.verify_arc(self.caches.params(m))).await;
            checked.unwrap_or_else(|_| match m.ams_headers.is_empty() {
                true => ArcOutput::default(),
                false => ArcOutput::default().with_result(DkimResult::TempError(out_of_time())),
            })
        };
        // A dry run with nothing aligned: it walks the From domain's DMARC records into the cache.
        let dmarc_records = async {
            let (Some(m), nothing) = (&message, SpfOutput::default()) else { return };
            let dry_run =
                self.resolver.verify_dmarc(self.caches.params(DmarcParameters::new(m, &[], spf_domain, &nothing)));
            let _ = tokio::time::timeout_at(deadline, dry_run).await;
        };
        let dmarc_chain = async {
            let (from_spf, dkim, arc, ()) = tokio::join!(from_spf, dkim, arc, dmarc_records);
            let dmarc = match &message {
                None => DmarcOutput::default(),
                Some(m) => {
                    let spf = from_spf.clone().unwrap_or_default();
                    let check = self
                        .resolver
                        .verify_dmarc(self.caches.params(DmarcParameters::new(m, &dkim, spf_domain, &spf)));
                    // Polled once even past the deadline: with the records cached it needs no waiting.
                    tokio::time::timeout_at(deadline, check).await.unwrap_or_else(|_| {
                        let e = DmarcResult::TempError(out_of_time());
                        DmarcOutput::new(from_domain.clone().unwrap_or_default())
                            .with_spf_result(e.clone())
                            .with_dkim_result(e)
                    })
                }
            };
            (from_spf, dkim, arc, dmarc)
        };
        let (helo_spf, (from_spf, dkim, arc, dmarc)) = tokio::join!(helo_spf, dmarc_chain);
        self.ran_out(deadline);

        let mut header = AuthenticationResults::new(&self.hostname);
        if let Some(out) = &from_spf {
            header = header.with_spf_mailfrom_result(out, ip, mail_from, helo);
        }
        if let Some(out) = &helo_spf {
            header = header.with_spf_ehlo_result(out, ip, helo);
        }
        let header = header
            .with_dkim_results(&dkim, from_domain.as_deref().unwrap_or_default())
            .with_arc_result(&arc, ip)
            .with_dmarc_result(&dmarc)
            .to_string()
            .replace("\r\n\t", " ");
        let auth = Auth {
            spf: from_spf.as_ref().map(SpfVerdict::new),
            spf_helo: helo_spf.as_ref().map(SpfVerdict::new),
            dkim: dkim.iter().map(DkimVerdict::new).collect(),
            dmarc: DmarcVerdict::new(&dmarc, from_domain.as_deref()),
            arc: ArcVerdict::new(&arc),
            header,
            source: if upstream { AuthSource::Upstream } else { AuthSource::Smtp },
        };

        let dmarc_rejects = matches!(dmarc.result(), DmarcResult::Fail(_))
            && dmarc.dmarc_record().is_some()
            && dmarc.policy() == Policy::Reject;
        if dmarc_rejects && self.settings.dmarc_reject == DmarcReject::Reject {
            let domain = printable(auth.dmarc.from_domain.as_deref().unwrap_or("the From domain"));
            tracing::info!(%ip, from_domain = %domain, "DMARC fail under p=reject; refusing (dmarc_reject = reject)");
            return Err(Reply::new(550, format!("5.7.1 Email rejected per DMARC policy for {domain}"), Reason::Policy));
        }
        Ok(auth)
    }

    async fn spf_helo(&self, ip: IpAddr, helo: &str, deadline: Instant) -> SpfOutput {
        let params = SpfParameters::verify_ehlo(ip, helo, &self.hostname);
        self.spf(params, helo, deadline).await
    }

    async fn spf_mail_from(&self, ip: IpAddr, helo: &str, mail_from: &str, deadline: Instant) -> SpfOutput {
        let params = SpfParameters::verify_mail_from(ip, helo, &self.hostname, mail_from);
        self.spf(params, mail_from.rsplit_once('@').map_or(helo, |(_, d)| d), deadline).await
    }

    /// One SPF check of `domain`, `temperror` if still unanswered at `deadline`.
    async fn spf(&self, params: SpfParameters<'_>, domain: &str, deadline: Instant) -> SpfOutput {
        let check = self.resolver.verify_spf(self.caches.params(params));
        let late = || SpfOutput::new(domain.to_string()).with_result(SpfResult::TempError);
        tokio::time::timeout_at(deadline, check).await.unwrap_or_else(|_| late())
    }
}

/// The one domain of the From header (DMARC does not apply to a From with several domains).
fn from_domain(m: &AuthenticatedMessage) -> Option<String> {
    let mut domains = m.from.iter().filter_map(|a| a.rsplit_once('@')).map(|(_, d)| d.to_ascii_lowercase());
    let first = domains.next()?;
    domains.all(|d| d == first).then_some(first)
}

fn name_server(addr: &SocketAddr) -> NameServerConfig {
    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
    for c in &mut ns.connections {
        c.port = addr.port();
    }
    ns
}

fn out_of_time() -> Error {
    Error::Dns(DnsError::Resolver("DNS time budget for this message ran out".into()))
}
