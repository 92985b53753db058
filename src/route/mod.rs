//! Recipient → route. The most specific match wins, whatever the order in the file: an exact
//! address, then the address without its `+tag` (plus-addressing), then the domain's catch-all
//! (`*@domain`, else the domain's own `endpoint`). A domain we do not serve is refused at RCPT
//! (never an open relay). Policies (`on_spam`, `on_dmarc_fail`) are applied once the verdicts exist.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::mail::{Destination, Reason, Reply, printable};

mod settings;
pub use settings::{Action, Mode, Policy, Route};

pub struct Router {
    /// Lower-case `local@domain` → route.
    exact: HashMap<String, Route>,
    /// Lower-case domain → its catch-all: an explicit `*@domain` route, else the domain's endpoint.
    catch_all: HashMap<String, Route>,
    domains: BTreeMap<String, Option<String>>,
}

/// The route a recipient got, and how.
#[derive(Debug, Clone)]
pub struct Decision {
    pub rcpt: String,
    pub route: Route,
    /// `exact`, `plus` (matched without its tag) or `catch-all`.
    pub via: &'static str,
    pub tag: Option<String>,
}

/// What the event says about one recipient's route (`message.routes[]`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Applied {
    pub rcpt: String,
    #[serde(rename = "match")]
    pub pattern: String,
    pub action: Action,
    /// `route` (the route's own action), `on_spam` or `on_dmarc_fail` (a policy changed it).
    pub rule: &'static str,
    pub tag: Option<String>,
}

/// What a message's recipients add up to.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// One delivery per distinct endpoint, and one per forward route (`forward:<match>`).
    pub endpoints: Vec<(String, Mode)>,
    /// The streams that get the event (routes whose action stayed `webhook`).
    pub streams: Vec<String>,
    /// Some recipient wants the message kept (webhook or store); else only the record stays.
    pub keep: bool,
    /// Every recipient's policy says reject: answer 550 after DATA, store nothing.
    pub reject: bool,
    pub applied: Vec<Applied>,
    pub sync_timeout: Option<std::time::Duration>,
}

impl Router {
    pub fn new(domains: BTreeMap<String, Option<String>>, routes: &[Route]) -> Self {
        let mut exact = HashMap::new();
        let mut catch_all = HashMap::new();
        for (domain, endpoint) in &domains {
            if let Some(e) = endpoint {
                catch_all.insert(
                    domain.clone(),
                    Route {
                        pattern: format!("*@{domain}"),
                        action: Action::Webhook,
                        endpoints: vec![e.clone()],
                        on_spam: Policy::Deliver,
                        on_dmarc_fail: Policy::Deliver,
                        mode: Mode::Queue,
                        sync_timeout: std::time::Duration::from_secs(20),
                        destination: Vec::new(),
                        streams: Vec::new(),
                    },
                );
            }
        }
        for r in routes {
            match r.pattern.strip_prefix("*@") {
                Some(domain) => catch_all.insert(domain.to_string(), r.clone()),
                None => exact.insert(r.pattern.clone(), r.clone()),
            };
        }
        Self { exact, catch_all, domains }
    }

    /// The route for a recipient, or the reply that refuses it at RCPT.
    pub fn route(&self, address: &str) -> Result<Decision, Reply> {
        let shown = printable(address);
        let relay = || Reply::new(550, format!("5.7.1 <{shown}>: Relay access denied"), Reason::Relay);
        let (local, domain) = address.rsplit_once('@').ok_or_else(relay)?;
        // Source routes, percent hacks, bang paths and quoted `@` are relaying tricks, not mailboxes.
        if local.is_empty() || local.contains(['@', '%', '!', ':', ',']) {
            return Err(relay());
        }
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if !self.domains.contains_key(&domain) {
            return Err(relay());
        }
        let local = local.to_ascii_lowercase();
        let decision = |route: &Route, via, tag: Option<&str>| Decision {
            rcpt: address.to_string(),
            route: route.clone(),
            via,
            tag: tag.map(str::to_string),
        };
        let found = if let Some(r) = self.exact.get(&format!("{local}@{domain}")) {
            decision(r, "exact", None)
        } else if let Some((base, tag)) = local.split_once('+')
            && let Some(r) = self.exact.get(&format!("{base}@{domain}"))
        {
            decision(r, "plus", Some(tag))
        } else if let Some(r) = self.catch_all.get(&domain) {
            let tag = local.split_once('+').map(|(_, t)| t);
            decision(r, "catch-all", tag)
        } else {
            return Err(Reply::new(
                550,
                format!("5.1.1 <{shown}>: Recipient address rejected: no route"),
                Reason::Recipient,
            ));
        };
        if found.route.action == Action::Reject {
            return Err(Reply::new(550, format!("5.1.1 <{shown}>: Recipient address rejected"), Reason::Recipient));
        }
        Ok(found)
    }

    /// Routes every recipient and applies the policies to what auth and spam checking found.
    pub fn plan(&self, rcpt_to: &[String], is_spam: bool, dmarc_failed: bool) -> Plan {
        let mut plan = Plan::default();
        let mut rejects = 0;
        for rcpt in rcpt_to {
            let Ok(d) = self.route(rcpt) else { continue };
            let (action, rule) = apply_policies(&d.route, is_spam, dmarc_failed);
            match action {
                Action::Webhook => {
                    plan.keep = true;
                    for e in &d.route.endpoints {
                        if !plan.endpoints.iter().any(|(x, _)| x == e) {
                            plan.endpoints.push((e.clone(), d.route.mode));
                        }
                    }
                    for s in &d.route.streams {
                        if !plan.streams.contains(s) {
                            plan.streams.push(s.clone());
                        }
                    }
                    if d.route.mode == Mode::Sync {
                        plan.sync_timeout =
                            Some(plan.sync_timeout.map_or(d.route.sync_timeout, |t| t.min(d.route.sync_timeout)));
                    }
                }
                Action::Forward => {
                    plan.keep = true;
                    let target = Destination::Forward(&d.route.pattern).key();
                    if !plan.endpoints.iter().any(|(x, _)| *x == target) {
                        plan.endpoints.push((target, Mode::Queue));
                    }
                }
                Action::Store => plan.keep = true,
                Action::Drop => {}
                Action::Reject => rejects += 1,
            }
            plan.applied.push(Applied { rcpt: d.rcpt, pattern: d.route.pattern, action, rule, tag: d.tag });
        }
        plan.reject = rejects > 0 && rejects == plan.applied.len();
        plan
    }

    /// The effective table, most specific first, for `mxhook routes list`.
    pub fn table(&self) -> Vec<&Route> {
        let mut exact: Vec<_> = self.exact.values().collect();
        exact.sort_by(|a, b| a.pattern.cmp(&b.pattern));
        let mut all: Vec<_> = self.catch_all.values().collect();
        all.sort_by(|a, b| a.pattern.cmp(&b.pattern));
        exact.into_iter().chain(all).collect()
    }
}

/// A condemned message follows the route's policy; spam is checked first.
fn apply_policies(route: &Route, is_spam: bool, dmarc_failed: bool) -> (Action, &'static str) {
    let policy = |p: Policy| match p {
        Policy::Deliver => None,
        Policy::Store => Some(Action::Store),
        Policy::Drop => Some(Action::Drop),
        Policy::Reject => Some(Action::Reject),
    };
    if is_spam && let Some(a) = policy(route.on_spam) {
        return (a, "on_spam");
    }
    if dmarc_failed && let Some(a) = policy(route.on_dmarc_fail) {
        return (a, "on_dmarc_fail");
    }
    (route.action, "route")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Settings;

    const BASE: &str = r#"
[[domains]]
name = "myapp.test"
endpoint = "app"
[[domains]]
name = "bare.test"
[endpoints.app]
url = "http://127.0.0.1:1/a"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
[endpoints.support]
url = "http://127.0.0.1:1/s"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"#;

    fn router(routes: &str) -> Router {
        let s = Settings::from_str(Path::new("t.toml"), &format!("{BASE}{routes}")).expect("config");
        Router::new(s.domains, &s.routes)
    }

    #[test]
    fn domain_endpoint_is_the_default_catch_all() {
        let d = router("").route("Anyone@MyApp.TEST").unwrap();
        assert_eq!((d.route.endpoints[0].as_str(), d.via), ("app", "catch-all"));
    }

    #[test]
    fn foreign_domains_and_relay_tricks_are_refused() {
        let r = router("");
        for a in [
            "x@evil.test",
            "x%evil.test@myapp.test",
            "evil.test!x@myapp.test",
            "\"a@b\"@evil.test",
            "nodomain",
            "@myapp.test",
        ] {
            let e = r.route(a).unwrap_err();
            assert_eq!((e.code, &e.text[..5]), (550, "5.7.1"), "{a}");
        }
        assert!(r.route("x@bare.test").unwrap_err().text.starts_with("5.1.1"));
    }

    #[test]
    fn most_specific_wins_whatever_the_order() {
        let r = router(
            r#"
[[routes]]
match = "*@myapp.test"
action = "store"
[[routes]]
match = "support@myapp.test"
endpoints = ["support"]
[[routes]]
match = "support+vip@myapp.test"
action = "drop"
[[routes]]
match = "spam@myapp.test"
action = "reject"
"#,
        );
        let d = r.route("support@myapp.test").unwrap();
        assert_eq!(
            (d.route.action, d.via, d.route.endpoints.clone()),
            (Action::Webhook, "exact", vec!["support".to_string()])
        );
        let d = r.route("Support+Acme@myapp.test").unwrap();
        assert_eq!((d.via, d.tag.as_deref()), ("plus", Some("acme")));
        assert_eq!(r.route("support+vip@myapp.test").unwrap().route.action, Action::Drop);
        let d = r.route("other@myapp.test").unwrap();
        assert_eq!((d.route.action, d.via), (Action::Store, "catch-all"));
        let e = r.route("spam@myapp.test").unwrap_err();
        assert_eq!((e.code, &e.text[..5]), (550, "5.1.1"));
    }

    #[test]
    fn ties_and_unknown_names_are_config_errors() {
        let text = format!(
            "{BASE}[[routes]]\nmatch = \"a@myapp.test\"\nendpoints = [\"app\"]\n[[routes]]\nmatch = \"A@myapp.test\"\nendpoints = [\"nope\"]\n[[routes]]\nmatch = \"x@other.test\"\naction = \"store\"\n"
        );
        let e = Settings::from_str(Path::new("t.toml"), &text).unwrap_err().to_string();
        assert!(e.contains("same match"), "{e}");
        assert!(e.contains("no [endpoints.nope]"), "{e}");
        assert!(e.contains("not in [[domains]]"), "{e}");
    }

    #[test]
    fn plans_add_up_recipients_and_policies() {
        let r = router(
            r#"
[[routes]]
match = "support@myapp.test"
endpoints = ["support", "app"]
on_dmarc_fail = "store"
on_spam = "reject"
[[routes]]
match = "log@myapp.test"
action = "drop"
"#,
        );
        let rcpts = ["support@myapp.test".to_string(), "x@myapp.test".into(), "log@myapp.test".into()];
        let p = r.plan(&rcpts, false, false);
        assert_eq!(p.endpoints, vec![("support".to_string(), Mode::Queue), ("app".to_string(), Mode::Queue)]);
        assert!(p.keep && !p.reject);
        let p = r.plan(&rcpts[..1], false, true);
        assert_eq!((p.endpoints.len(), p.keep, p.applied[0].rule), (0, true, "on_dmarc_fail"));
        let p = r.plan(&rcpts[..1], true, true);
        assert!(p.reject && p.applied[0].rule == "on_spam");
        let p = r.plan(&rcpts[2..], false, false);
        assert!(!p.keep && p.endpoints.is_empty() && !p.reject);
    }
}
