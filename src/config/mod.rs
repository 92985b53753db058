//! The one TOML file: typed sections with defaults next to the fields, unknown keys refused,
//! and every semantic problem reported at once with its file, line and key (`mxhook check-config`).
//! Read by `serve` and by every CLI command; nothing else parses configuration.
//!
//! `Settings::load` reads a file in three passes: `problems` parses the TOML syntax and deserialises
//! the file model (`file`), taking out each entry serde refuses; `settings` checks what is left and
//! builds the validated `Settings`; `values` holds the parsers of durations, sizes and addresses.
//! The stages own their vocabulary (`route::{Action, Policy, Mode, Route}`, `auth::{AuthSettings,
//! DmarcReject, SpfMode}`): config only reads and checks it.

use std::path::Path;

mod file;
mod problems;
mod settings;
mod values;

pub use file::{SmtpConfig, WebhookConfig, default_retry};
pub use problems::{ConfigError, Problem};
pub use settings::{Endpoint, Forward, Settings, Spam, SpamEngine, Stream};
pub use settings::{ListenAddr, Lmtp};
pub use values::Secret;
// The auth test binaries name these through `config`.
pub use crate::auth::{AuthSettings, DmarcReject, SpfMode};

use file::Config;
use problems::Doc;

impl Settings {
    pub fn load(file: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            let message = match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                _ => format!("cannot read: {e}"),
            };
            ConfigError {
                file: file.to_path_buf(),
                problems: vec![Problem { line: 0, column: 0, key: "-".into(), message }],
            }
        })?;
        Self::from_str(file, &text)
    }

    /// Every problem at once: syntax; then each unknown key and bad value (taken out, so the next
    /// is found too); then the semantic checks on the rest. Sorted in file order.
    pub fn from_str(file: &Path, text: &str) -> Result<Settings, ConfigError> {
        let fail = |problems| ConfigError { file: file.to_path_buf(), problems };
        let doc = Doc::parse(text).map_err(fail)?;
        let mut problems = Vec::new();
        let raw = doc.deserialize::<Config>(&mut problems);
        let read = problems.len();
        let settings = raw.map(|raw| Self::check(file, &doc, raw, &mut problems));
        if problems.is_empty()
            && let Some(settings) = settings
        {
            return Ok(settings);
        }
        // A value taken out or filled in while reading can trip a semantic check at the same place
        // (an empty `url` in place of a missing one): the first report says it.
        let semantic = problems.split_off(read);
        let echo = |p: &Problem| problems.iter().any(|r| r.line == p.line && r.key == p.key);
        let semantic: Vec<Problem> = semantic.into_iter().filter(|p| !echo(p)).collect();
        problems.extend(semantic);
        problems.sort_by_key(|p| (p.line, p.column));
        Err(fail(problems))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A valid signing secret.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn load(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_str(Path::new("t.toml"), text)
    }

    #[test]
    fn example_file_is_valid() {
        let s = load(include_str!("../../gateway.example.toml")).expect("example config");
        assert_eq!(s.smtp.max_message_size, 25_000_000);
        assert_eq!(s.endpoints["app"].retry, default_retry());
        assert_eq!(s.domains["example.test"].as_deref(), Some("app"));
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = load("[smtp]\nhostname = \"x\"\nbogus = 1\n").unwrap_err().to_string();
        assert!(e.starts_with("t.toml:3:1: smtp.bogus: unknown field `bogus`"), "{e}");
    }

    #[test]
    fn a_postgres_database_is_checked_and_its_password_never_printed() {
        let s = load("[storage]\ndatabase = \"postgres://mx:hunter2@db.internal/mx\"\n").unwrap();
        let url = s.database.expect("database");
        assert_eq!(url.to_string(), "postgres://mx:***@db.internal/mx");
        assert!(!format!("{s:?}", s = url).contains("hunter2"));
        assert!(load("").unwrap().database.is_none(), "SQLite in data_dir by default");

        let e = load("[storage]\ndata_dir = \"d\"\ndatabase = \"mysql://mx:hunter2@db/mx\"\n").unwrap_err();
        assert_eq!(located(&e), ["3:12: storage.database"]);
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = load("[storage]\ndatabase = \"postgres://db/mx\"\ndatabase_file = \"url\"\n").unwrap_err();
        assert_eq!(located(&e), ["3:17: storage.database_file"]);

        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("gw.toml");
        std::fs::write(dir.path().join("db.url"), "postgres://mx:hunter2@db/mx\n").unwrap();
        let s = Settings::from_str(&conf, "[storage]\ndatabase_file = \"db.url\"\n").unwrap();
        assert_eq!(s.database.unwrap().to_string(), "postgres://mx:***@db/mx");
        let e = Settings::from_str(&conf, "[storage]\ndatabase_file = \"missing\"\n").unwrap_err();
        assert_eq!(located(&e), ["2:17: storage.database_file"]);
    }

    #[test]
    fn the_lease_is_a_duration_of_at_least_a_second() {
        assert_eq!(load("").unwrap().lease, std::time::Duration::from_secs(30));
        let s = load("[storage]\ndatabase = \"postgres://db/mx\"\nlease = \"3s\"\n").unwrap();
        assert_eq!(s.lease, std::time::Duration::from_secs(3));
        let e = load("[storage]\ndata_dir = \"d\"\nlease = \"500ms\"\n").unwrap_err();
        assert_eq!(located(&e), ["3:1: storage.lease"]);
        let e = load("[storage]\nlease = \"soon\"\n").unwrap_err();
        assert_eq!(located(&e), ["2:9: storage.lease"]);
    }

    /// `FILE:LINE:COL: key` of each problem, in the order printed.
    fn located(e: &ConfigError) -> Vec<String> {
        e.problems.iter().map(|p| format!("{}:{}: {}", p.line, p.column, p.key)).collect()
    }

    #[test]
    fn every_unknown_key_and_bad_value_is_reported_in_file_order() {
        let text = format!(
            "[endpoints.x]\nurl = \"ftp://x\"\nsecret = \"{SECRET}\"\nretry = [\"0s\", \"5x\"]\ntimeuot = \"1s\"\n\
             [smtp]\nmax_recipents = 5\ncommand_timeout = 30\n{DOMAIN}\
             [[routes]]\nmatch = \"a@a.test\"\naction = \"bounce\"\nendpoints = [\"x\"]\n[auth]\ndmarc_reject = \"bounce\"\n"
        );
        let e = load(&text).unwrap_err();
        assert_eq!(
            located(&e),
            [
                "2:7: endpoints.x.url",
                "4:16: endpoints.x.retry",
                "5:1: endpoints.x.timeuot",
                "7:1: smtp.max_recipents",
                "8:19: smtp.command_timeout",
                "13:10: routes.action",
                "16:16: auth.dmarc_reject",
            ],
            "{e}"
        );
        let retry = &e.problems[1].message;
        assert_eq!(retry, "expected a duration like \"30s\", \"5m\", \"2h\", \"1d\", got `5x`");
    }

    #[test]
    fn a_missing_required_key_is_reported_once_at_its_table() {
        // `url` missing: reported at the header, and the empty stand-in adds no "must start with http://".
        let e = load(&format!("[endpoints.x]\nsecret = \"{SECRET}\"\n")).unwrap_err();
        assert_eq!(located(&e), ["1:1: endpoints.x.url"], "{e}");
        assert_eq!(e.problems[0].message, "missing field `url`");
        // `name` of the wrong type: one problem at the value, not a second one for the missing field.
        let e = load("[[domains]]\nname = 5\n[[domains]]\nname = \"b.test\"\nendpoit = \"x\"\n").unwrap_err();
        assert_eq!(located(&e), ["2:8: domains.name", "5:1: domains.endpoit"], "{e}");
    }

    #[test]
    fn a_missing_secret_points_at_its_endpoint_section() {
        let e = load("[smtp]\nhostname = \"x\"\n\n[endpoints.app]\nurl = \"http://x\"\n").unwrap_err();
        assert_eq!(located(&e), ["4:1: endpoints.app"], "{e}");
    }

    #[test]
    fn secrets_are_each_checked_at_their_line_and_exclude_secret() {
        let text = format!("[endpoints.app]\nurl = \"http://x\"\nsecrets = [\n  \"{SECRET}\",\n  \"whsec_AAAA\",\n]\n");
        let e = load(&text).unwrap_err();
        assert_eq!(located(&e), ["5:3: endpoints.app.secrets"], "{e}");
        let both = format!("[endpoints.app]\nurl = \"http://x\"\nsecret = \"{SECRET}\"\nsecrets = [\"{SECRET}\"]\n");
        let e = load(&both).unwrap_err();
        assert_eq!(located(&e), ["1:1: endpoints.app"], "{e}");
        assert!(e.problems[0].message.contains("exactly one of `secret`, `secret_file` or `secrets`"), "{e}");
        let e = load("[endpoints.app]\nurl = \"http://x\"\nsecrets = []\n").unwrap_err();
        assert_eq!(located(&e), ["3:11: endpoints.app.secrets"], "{e}");
        // A secret where a list belongs: serde's message would quote it; the problem must not.
        let e = load(&format!("[endpoints.app]\nurl = \"http://x\"\nsecrets = \"{SECRET}\"\n")).unwrap_err();
        assert!(!e.to_string().contains("whsec_"), "{e}");
        assert!(located(&e).contains(&"3:11: endpoints.app.secrets".to_string()), "{e}");
        let two = format!("[endpoints.app]\nurl = \"http://x\"\nsecrets = [\"{SECRET}\", \"{SECRET}\"]\n");
        assert!(load(&two).unwrap().endpoints["app"].keys.sign("e", 1, b"").contains(' '));
    }

    #[test]
    fn fifo_endpoints_send_one_at_a_time() {
        let text = format!(
            "[endpoints.app]\nurl = \"http://x\"\nsecret = \"{SECRET}\"\nordering = \"fifo\"\nconcurrency = 8\n"
        );
        let s = load(&text).unwrap();
        assert_eq!((s.endpoints["app"].ordering, s.endpoints["app"].concurrency), (crate::deliver::Ordering::Fifo, 1));
        let sync = format!(
            "{text}[[domains]]\nname = \"a.test\"\n[[routes]]\nmatch = \"*@a.test\"\nendpoints = [\"app\"]\nmode = \"sync\"\n"
        );
        let e = load(&sync).unwrap_err();
        assert_eq!(located(&e), ["10:14: routes.endpoints"], "{e}");
        let e = load(&text.replace("\"fifo\"", "\"lifo\"")).unwrap_err();
        assert_eq!(located(&e)[0], "4:12: endpoints.app.ordering", "{e}");
    }

    #[test]
    fn syntax_errors_are_reported_one_per_line() {
        let e = load("[smtp]\nhostname = x\nmax_recipients = = 5\n").unwrap_err();
        let lines: Vec<usize> = e.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [2, 3], "{e}");
    }

    #[test]
    fn a_missing_file_says_so_without_a_position() {
        let e = Settings::load(Path::new("/nonexistent/gateway.toml")).unwrap_err().to_string();
        assert_eq!(e, "/nonexistent/gateway.toml: no such file");
    }

    #[test]
    fn semantic_problems_are_all_reported() {
        let text = "[[domains]]\nname = \"a.test\"\nendpoint = \"nope\"\n[endpoints.x]\nurl = \"ftp://x\"\nsecret = \"whsec_AAAA\"\n";
        let e = load(text).unwrap_err();
        let keys: Vec<_> = e.problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
        assert!(keys.contains(&("domains.endpoint", 3)), "{e}");
        assert!(keys.contains(&("endpoints.x.url", 5)), "{e}");
    }

    #[test]
    fn relative_paths_are_taken_from_the_config_files_directory() {
        let file = Path::new("/etc/mxhook/gateway.toml");
        let s = Settings::from_str(file, "[storage]\ndata_dir = \"data\"\n").unwrap();
        assert_eq!(s.data_dir, Path::new("/etc/mxhook/data"));
        let s = Settings::from_str(file, "[storage]\ndata_dir = \"/srv/mx\"\n").unwrap();
        assert_eq!(s.data_dir, Path::new("/srv/mx"));
        // The file named without a directory (the README's quick start): `./data` beside it.
        assert_eq!(load("").unwrap().data_dir, Path::new("./data"));
    }

    /// The .deb installs packaging/gateway.toml: the example's keys and values with an absolute data_dir
    /// (a relative one would be taken from /etc/mxhook), and sender authentication on (the example has
    /// it off so that trying mxhook out sends no DNS queries).
    #[test]
    fn packaged_config_is_the_example_with_an_absolute_data_dir() {
        let packaged = include_str!("../../packaging/gateway.toml");
        let s = Settings::from_str(Path::new("/etc/mxhook/gateway.toml"), packaged).expect("packaged config");
        assert_eq!(s.data_dir, Path::new("/var/lib/mxhook/data"));
        assert!(s.auth.is_some(), "the installed gateway authenticates senders");
        let settings = |text: &'static str| -> Vec<&'static str> {
            let differ = ["data_dir = ", "enabled = "];
            text.lines().filter(|l| !l.starts_with('#') && !differ.iter().any(|d| l.starts_with(d))).collect()
        };
        assert_eq!(
            settings(packaged),
            settings(include_str!("../../gateway.example.toml")),
            "packaging/gateway.toml must be gateway.example.toml but for data_dir, [auth] enabled and comments"
        );
    }

    /// Both files carry the same commented `[streams.dev]` example, and it is a valid one.
    #[test]
    fn the_commented_stream_example_is_in_both_files_and_valid() {
        let example = |text: &str| -> String {
            let start = text.find("# [streams.dev]").expect("a commented [streams.dev] example");
            text[start..]
                .lines()
                .take_while(|l| l.starts_with("# ") && !l[2..].trim().is_empty())
                .map(|l| l[2..].split("  #").next().unwrap_or("").trim_end().to_string() + "\n")
                .collect()
        };
        let packaged = example(include_str!("../../packaging/gateway.toml"));
        assert_eq!(packaged, example(include_str!("../../gateway.example.toml")));
        let s = load(&packaged).expect("the example is a valid [streams.dev]");
        assert_eq!(s.streams["dev"].retention, Duration::from_secs(7 * 86400));
        assert!(s.streams["dev"].wants(crate::mail::EventType::Bounced));
    }

    const DOMAIN: &str = "[[domains]]\nname = \"a.test\"\n";

    #[test]
    fn spam_engines() {
        let s = load(&format!("{DOMAIN}[spam]\nspamd = \"127.0.0.1:783\"\ntimeout = \"2s\"\n")).unwrap();
        let spam = s.spam.unwrap();
        assert_eq!((spam.engine, spam.timeout), (SpamEngine::Spamd("127.0.0.1:783".into()), Duration::from_secs(2)));
        let s = load("[spam]\nrspamd = \"http://127.0.0.1:11333/\"\n").unwrap();
        assert_eq!(s.spam.unwrap().engine, SpamEngine::Rspamd("http://127.0.0.1:11333".into()));
        assert!(load("").unwrap().spam.is_none());
        let e = load("[spam]\nrspamd = \"http://x\"\nspamd = \"x:1\"\n").unwrap_err().to_string();
        assert!(e.contains("spam.spamd: set one engine"), "{e}");
        assert!(load("[spam]\nspamd = \"nohost\"\n").is_err());
    }

    #[test]
    fn forward_routes_need_a_relay_and_addresses() {
        let route = "[[routes]]\nmatch = \"x@a.test\"\naction = \"forward\"\ndestination = [\"ops@b.test\"]\n";
        let e = load(&format!("{DOMAIN}{route}")).unwrap_err().to_string();
        assert!(e.contains("routes.action: forwarding needs a `[forward] relay"), "{e}");
        let s =
            load(&format!("{DOMAIN}{route}[forward]\nrelay = \"smtp://127.0.0.1:2526\"\nmail_from = \"\"\n")).unwrap();
        let f = s.forward.unwrap();
        assert_eq!((f.host.as_str(), f.port, f.starttls, f.mail_from.as_deref()), ("127.0.0.1", 2526, false, Some("")));
        assert_eq!(s.routes[0].destination, vec!["ops@b.test".to_string()]);
        let s =
            load("[forward]\nrelay = \"smtp://relay.b.test\"\nstarttls = true\nusername = \"u\"\npassword = \"p\"\n");
        assert_eq!(s.unwrap().forward.unwrap().port, 25);
        let bad = format!(
            "{DOMAIN}[[routes]]\nmatch = \"x@a.test\"\naction = \"forward\"\ndestination = [\"not an address\"]\n\
             [[routes]]\nmatch = \"y@a.test\"\naction = \"store\"\ndestination = [\"a@b.test\"]\n\
             [forward]\nrelay = \"http://x\"\nusername = \"u\"\n"
        );
        let e = load(&bad).unwrap_err().to_string();
        for needle in ["not an address", "only a forward route", "forward.relay", "forward.username"] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn auth_defaults_and_problems() {
        let a = load("").unwrap().auth.expect("auth is on by default");
        assert!(a.dns.is_empty());
        assert_eq!(a.timeout, Duration::from_secs(5));
        assert_eq!((a.dmarc_reject, a.spf), (DmarcReject::Accept, SpfMode::Relaxed));
        let a = load("[auth]\ndns = [\"127.0.0.1:5353\", \"::1\"]\nspf = \"strict\"\n").unwrap().auth.unwrap();
        assert_eq!(a.dns, vec!["127.0.0.1:5353".parse().unwrap(), "[::1]:53".parse().unwrap()]);
        assert_eq!(a.spf, SpfMode::Strict);
        assert!(load("[auth]\nenabled = false\n").unwrap().auth.is_none());
        let e = load("[auth]\ntimeout = \"0s\"\ndns = [\"ns.example:53\"]\n").unwrap_err();
        let keys: Vec<_> = e.problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
        assert!(keys.contains(&("auth.dns", 3)) && keys.contains(&("auth.timeout", 2)), "{e}");
        let e = load("[auth]\ndmarc_reject = \"bounce\"\n").unwrap_err().to_string();
        assert!(e.starts_with("t.toml:2:"), "{e}");
    }

    #[test]
    fn human_sizes_and_durations() {
        let s = load("[smtp]\nmax_message_size = \"10KB\"\ncommand_timeout = \"1m\"\n").unwrap();
        assert_eq!(s.smtp.max_message_size, 10_000);
        assert_eq!(s.smtp.command_timeout, Duration::from_secs(60));
        assert!(load("[smtp]\nmax_message_size = \"lots\"\n").is_err());
    }
}
