//! The operator surfaces: the CLI (replay, endpoints list/test, secret generate, check-config, unknown
//! ids, how the config file is found) and the HTTP side's /healthz.

use std::time::Duration;

use crate::common::*;

#[test]
fn messages_replay_sends_the_same_event_id_again() {
    let h = Harness::basic();
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let msg_id = c.send_mail("a@sender.test", &["inbox@example.test"], b"Subject: replay me\r\n\r\nhi\r\n");
    let first = h.wait_requests(1, SHORT)[0].clone();
    first.assert_signed(SECRET_A);
    h.wait_delivery_status(&msg_id, "succeeded", SHORT);

    let out = h.cli(&["messages", "replay", &msg_id]);
    out.assert_ok(&h.logs());
    let reqs = h.wait_requests(2, Duration::from_secs(5));
    reqs[1].assert_signed(SECRET_A);
    assert_eq!(reqs[1].webhook_id(), first.webhook_id(), "a replay carries the same event id");
    assert_eq!(reqs[1].json()["id"], first.json()["id"]);
    assert_eq!(reqs[1].json()["message"]["id"], msg_id.as_str());
    h.wait_until(SHORT, "the replayed delivery to be recorded", || {
        let d = h.deliveries(&["--message", &msg_id]);
        d.len() == 1 && d[0]["attempts"] == 2 && d[0]["status"] == "succeeded"
    });
    assert_eq!(h.rx.count(), 2);
}

#[test]
fn endpoints_test_prints_the_status_and_exits_by_it() {
    let h = Harness::basic();
    let out = h.cli(&["endpoints", "test", "app"]);
    out.assert_ok("");
    assert!(out.stdout_str().contains("app: HTTP 200"), "{}", out.describe());
    let req = h.wait_requests(1, SHORT)[0].clone();
    req.assert_signed(SECRET_A);
    assert_eq!(req.path, "/hooks/app");
    assert_eq!(req.json()["id"].as_str(), Some(req.webhook_id()), "sample event id must match webhook-id");

    h.rx.set_status(503);
    let out = h.cli(&["endpoints", "test", "app"]);
    assert_eq!(out.code, Some(1), "non-2xx must exit 1: {}", out.describe());
    assert!(out.all_output().contains("app: HTTP 503"), "{}", out.describe());
    h.wait_requests(2, SHORT)[1].assert_signed(SECRET_A);

    let out = h.cli(&["endpoints", "test", "no-such-endpoint"]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
}

#[test]
fn endpoints_list_shows_the_configured_endpoints() {
    let h = Harness::basic();
    let list = as_array(h.cli_json(&["endpoints", "list", "--json"]));
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["name"], "app");
    assert_eq!(list[0]["url"], h.rx.url("/hooks/app").as_str());
    assert_eq!(list[0]["timeout_ms"], 5000);
    assert_eq!(list[0]["retry"], serde_json::json!([0, 200, 400]));
    // The default subscription (README "Event types").
    assert_eq!(list[0]["events"], serde_json::json!(["email.received", "email.bounced", "email.complained"]));
    let text = h.cli(&["endpoints", "list"]).stdout_str();
    assert!(text.contains("events email.received email.bounced email.complained"), "{text}");
    assert!(
        !String::from_utf8_lossy(&h.cli(&["endpoints", "list", "--json"]).stdout).contains(SECRET_A),
        "secrets must not be printed"
    );
}

#[test]
fn secret_generate_prints_a_fresh_32_byte_whsec_secret() {
    let h = Harness::basic();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let out = h.cli(&["secret", "generate"]);
        out.assert_ok("");
        let s = out.stdout_str().trim().to_string();
        let b64 = s.strip_prefix("whsec_").unwrap_or_else(|| panic!("`{s}` does not start with whsec_"));
        let key = base64_decode(b64).unwrap_or_else(|| panic!("`{b64}` is not base64"));
        assert_eq!(key.len(), 32, "`{s}` decodes to {} bytes", key.len());
        assert!(standardwebhooks::Webhook::new(&s).is_ok(), "the stock library must accept `{s}`");
        seen.push(s);
    }
    assert_ne!(seen[0], seen[1], "two generated secrets must differ");
}

#[test]
fn check_config_accepts_the_example_and_a_test_config() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.example.toml");
    let out = run_cli(&["check-config", "--config", example.to_str().unwrap()], std::env::temp_dir().as_path());
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.stdout_str().contains("ok: "), "{}", out.describe());

    let h = Harness::basic();
    let out = h.cli(&["check-config"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.stdout_str().contains(&format!("ok: {}", h.config_path.display())), "{}", out.describe());
}

/// Writes the basic config with `line` inserted after line `after` (1-based); returns the path and the
/// 1-based line number of the inserted line.
fn config_with_line(h: &Harness, after_header: &str, line: &str) -> (std::path::PathBuf, usize) {
    let text = Config::basic(&h.rx).render(&h.data_dir());
    let mut lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| *l == after_header).expect("header in rendered config") + 1;
    lines.insert(at, line);
    let path = h.dir.path().join(format!("bad-{}.toml", at));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    (path, at + 1)
}

#[test]
fn check_config_names_file_line_and_key_of_an_unknown_key() {
    let h = Harness::basic();
    for (header, line, key) in [
        ("[smtp]", "max_recipents = 5", "max_recipents"),
        ("[endpoints.app]", "retries = [\"1s\"]", "retries"),
        ("[storage]", "datadir = \"/tmp/x\"", "datadir"),
    ] {
        let (path, lineno) = config_with_line(&h, header, line);
        let out = run_cli(&["check-config", "--config", path.to_str().unwrap()], h.dir.path());
        assert_eq!(out.code, Some(1), "unknown key `{key}` must fail check-config: {}", out.describe());
        let all = out.all_output();
        let loc = format!("{}:{lineno}:", path.display());
        assert!(
            all.lines().any(|l| l.contains(&loc) && l.contains(key)),
            "expected a line with `{loc}` naming `{key}`:\n{}",
            out.describe()
        );
        // `serve` refuses the same file.
        let serve = run_cli(&["serve", "--config", path.to_str().unwrap()], h.dir.path());
        assert_ne!(serve.code, Some(0), "serve must refuse a config with unknown key `{key}`");
    }
}

/// Five problems of four kinds, in one run, one line each, in file order: two unknown keys (found by
/// serde one at a time), an endpoint without a secret (at its section's header), a URL that is not
/// http(s), and a bad duration in a retry list (at the element).
#[test]
fn check_config_reports_every_problem_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("five.toml");
    let text = format!(
        r#"[smtp]
listen = ["127.0.0.1:2525"]
max_recipents = 5

[storage]
data_dir = "data"
retension = "7d"

[[domains]]
name = "example.test"
endpoint = "app"

[endpoints.app]
url = "http://127.0.0.1:9000/hooks/app"

[endpoints.billing]
url = "ftp://billing.example.test/hooks"
secret = "{SECRET_A}"
retry = ["0s", "1m", "5x"]
"#
    );
    std::fs::write(&path, text).unwrap();
    let out = run_cli(&["check-config", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let f = path.display();
    let expected = [
        format!(
            "{f}:3:1: smtp.max_recipents: unknown field `max_recipents`, expected one of `listen`, `hostname`, \
             `max_message_size`, `max_recipients`, `max_sessions`, `max_sessions_per_ip`, \
             `max_messages_per_minute_per_ip`, `max_errors`, `command_timeout`, `data_timeout`, `session_timeout`, `trusted_networks`, `proxy_protocol`, `tls`"
        ),
        format!(
            "{f}:7:1: storage.retension: unknown field `retension`, expected one of `data_dir`, `database`, \
             `database_file`, `retention`, `keep_metadata`, `lease`"
        ),
        format!(
            "{f}:13:1: endpoints.app: set exactly one of `secret`, `secret_file` or `secrets` (make one with \
             `mxhook secret generate`)"
        ),
        format!("{f}:17:7: endpoints.billing.url: must start with http:// or https://"),
        format!(
            "{f}:19:22: endpoints.billing.retry: expected a duration like \"30s\", \"5m\", \"2h\", \"1d\", got `5x`"
        ),
    ];
    let stdout = out.stdout_str();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, expected, "{}", out.describe());
}

#[test]
fn check_config_on_a_missing_file_says_no_such_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nowhere.toml");
    let out = run_cli(&["check-config", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert_eq!(out.stdout_str(), format!("{}: no such file\n", path.display()), "{}", out.describe());
    // Every other command says the same (once, through anyhow).
    let out = run_cli(&["messages", "list", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stderr_str().contains(&format!("{}: no such file", path.display())), "{}", out.describe());
}

#[test]
fn unknown_ids_exit_1_with_a_message() {
    let h = Harness::basic();
    let gw = h.start(); // the store exists, so exit 1 is about the id
    let mut c = SmtpClient::ready(gw.smtp);
    c.send_mail("a@sender.test", &["inbox@example.test"], b"Subject: x\r\n\r\ny\r\n");
    assert_eq!(h.messages().len(), 1);
    for args in [
        &["deliveries", "show", "dlv_doesnotexist", "--json"][..],
        &["deliveries", "retry", "dlv_doesnotexist"],
        &["messages", "show", "msg_doesnotexist", "--json"],
        &["messages", "show", "msg_doesnotexist", "--raw"],
        &["messages", "replay", "msg_doesnotexist"],
    ] {
        let out = h.cli(args);
        assert_eq!(out.code, Some(1), "{}", out.describe());
        assert!(!out.stderr_str().trim().is_empty(), "a message on stderr expected: {}", out.describe());
    }
}

#[test]
fn config_is_found_by_flag_in_any_position_or_by_env() {
    let h = Harness::basic();
    let cfg = h.config_path.to_str().unwrap();
    let names = |out: &CliOutput| -> Vec<String> {
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().map(|a| a.iter().filter_map(|e| e["name"].as_str().map(String::from)).collect()))
            .unwrap_or_else(|| panic!("not a JSON array: {}", out.describe()))
    };
    let out = run_cli(&["endpoints", "list", "--json", "--config", cfg], h.dir.path());
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert_eq!(names(&out), vec!["app".to_string()]);

    let mut child = std::process::Command::new(BIN)
        .args(["endpoints", "list", "--json"])
        .current_dir(h.dir.path())
        .env("MXHOOK_CONFIG", cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_cli(&mut child, &["endpoints", "list", "--json", "(config from MXHOOK_CONFIG)"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert_eq!(names(&out), vec!["app".to_string()]);
}

#[test]
fn http_healthz_answers_200() {
    use std::io::{Read, Write};
    let h = Harness::basic();
    let gw = h.start();
    let mut s = std::net::TcpStream::connect(gw.http).unwrap();
    s.set_read_timeout(Some(SHORT)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "GET /healthz: {resp}");
}

/// An address nothing listens on (bound, then let go): a connection there is refused.
fn refused_url() -> String {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    format!("http://{addr}/hook")
}

/// The row of `id` in a CLI table, split on whitespace.
#[track_caller]
fn row<'a>(out: &'a CliOutput, id: &str) -> &'a str {
    let text = std::str::from_utf8(&out.stdout).unwrap();
    text.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("no row for {id}:\n{}", out.describe()))
}

#[test]
fn messages_say_what_became_of_them_and_deliveries_show_the_last_error() {
    let h = Harness::new();
    let mut cfg = Config::basic(&h.rx);
    for (name, retry) in [("dead", &["0s"][..]), ("later", &["0s", "1h"])] {
        cfg.endpoints.push(Endpoint { retry: strings(retry), ..Endpoint::new(name, refused_url(), SECRET_B) });
        cfg.domains.push((format!("{name}.test"), name.into()));
    }
    h.write_config(&cfg);
    let routes = "\n[[routes]]\nmatch = \"keep@example.test\"\naction = \"store\"\n\n\
                  [[routes]]\nmatch = \"bin@example.test\"\naction = \"drop\"\n";
    let text = std::fs::read_to_string(&h.config_path).unwrap() + routes;
    std::fs::write(&h.config_path, text).unwrap();
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let mut send = |rcpt: &str| c.send_mail("a@sender.test", &[rcpt], b"Subject: what became of me\r\n\r\nx\r\n");
    let delivered = send("inbox@example.test");
    let failed = send("x@dead.test");
    let retrying = send("x@later.test");
    let stored = send("keep@example.test");
    let dropped = send("bin@example.test");
    h.wait_delivery_status(&delivered, "succeeded", SHORT);
    h.wait_delivery_status(&failed, "failed", SHORT);
    h.wait_until(SHORT, "the first attempt to `later` to fail", || {
        let d = h.deliveries(&["--message", &retrying]);
        d.len() == 1 && d[0]["status"] == "pending" && d[0]["attempts"] == 1
    });

    // `messages list`: the STATE column is what became of each message, not its disposition.
    let expected = [
        (&delivered, "delivered", "queued"),
        (&failed, "failed", "queued"),
        (&retrying, "retrying", "queued"),
        (&stored, "stored", "stored"),
        (&dropped, "dropped", "dropped"),
    ];
    let list = h.cli(&["messages", "list"]);
    list.assert_ok(&h.logs());
    assert!(list.stdout_str().lines().next().is_some_and(|l| l.contains(" STATE ")), "{}", list.describe());
    for (id, state, _) in expected {
        let cols: Vec<&str> = row(&list, id).split_whitespace().collect();
        assert_eq!(cols[4], state, "STATE of {id}:\n{}", list.describe());
    }
    let json = h.messages();
    for (id, state, disposition) in expected {
        let m = json.iter().find(|m| m["id"] == id.as_str()).unwrap_or_else(|| panic!("{id} in {json:?}"));
        assert_eq!((m["state"].as_str(), m["disposition"].as_str()), (Some(state), Some(disposition)), "{m}");
    }

    // `messages show`: the state and, as its own field, the disposition.
    let show = h.cli(&["messages", "show", &delivered]);
    show.assert_ok("");
    let text = show.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"state      delivered"), "{}", show.describe());
    assert!(lines.contains(&"disposition queued"), "{}", show.describe());
    let v = h.cli_json(&["messages", "show", &failed, "--json"]);
    assert_eq!((v["state"].as_str(), v["disposition"].as_str()), (Some("failed"), Some("queued")), "{v}");

    // `deliveries list`: the last HTTP status, or the error when there was none.
    let list = h.cli(&["deliveries", "list"]);
    list.assert_ok("");
    assert!(list.stdout_str().lines().next().is_some_and(|l| l.contains("LAST")), "{}", list.describe());
    let by_message = |msg: &str| h.deliveries(&["--message", msg])[0]["id"].as_str().unwrap().to_string();
    let ok_row = row(&list, &by_message(&delivered)).to_string();
    assert!(ok_row.ends_with(" 200"), "{ok_row}\n{}", list.describe());
    for msg in [&failed, &retrying] {
        let r = row(&list, &by_message(msg)).to_string();
        assert!(r.ends_with("  Connection refused"), "the refused connection in the table: {r}\n{}", list.describe());
    }
}

#[test]
fn deliveries_retry_says_what_it_did() {
    let h = Harness::basic();
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let msg = c.send_mail("a@sender.test", &["inbox@example.test"], b"Subject: x\r\n\r\ny\r\n");
    h.wait_delivery_status(&msg, "succeeded", SHORT);

    let out = h.cli(&["deliveries", "retry"]);
    assert_eq!(out.code, Some(2), "no ids is a usage error: {}", out.describe());
    assert!(out.stderr_str().contains("nothing to retry"), "{}", out.describe());
    assert!(out.stderr_str().contains("--all-failed"), "it says how to name what to retry: {}", out.describe());

    let out = h.cli(&["deliveries", "retry", "--all-failed"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert_eq!(out.stdout_str().trim(), "nothing to retry: no delivery has failed", "{}", out.describe());
    assert_eq!(h.rx.count(), 1, "nothing was sent again");
}

#[test]
fn help_advertises_config_only_where_it_is_read_and_explains_retry_ids() {
    let h = Harness::basic();
    let help = |args: &[&str]| {
        let out = run_cli(args, h.dir.path());
        out.assert_ok("");
        out.stdout_str()
    };
    for args in [&["listen", "--help"][..], &["secret", "generate", "--help"], &["secret", "--help"]] {
        let text = help(args);
        assert!(!text.contains("--config"), "`mxhook {}` reads no config:\n{text}", args.join(" "));
    }
    for args in [&["messages", "list", "--help"][..], &["doctor", "--help"], &["--help"]] {
        let text = help(args);
        assert!(text.contains("--config"), "`mxhook {}` reads the config:\n{text}", args.join(" "));
    }
    // Still accepted where it is not shown (scripts may pass it to every command).
    let out = h.cli(&["secret", "generate", "--config", h.config_path.to_str().unwrap()]);
    out.assert_ok("");

    let text = help(&["deliveries", "retry", "--help"]);
    let ids = text.lines().find(|l| l.trim_start().starts_with("[IDS]...")).unwrap_or_else(|| panic!("{text}"));
    assert!(ids.trim_start().trim_start_matches("[IDS]...").trim().len() > 10, "[IDS]... needs help text:\n{text}");
}

#[test]
fn the_example_config_has_sender_authentication_off_and_says_how_to_turn_it_on() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.example.toml");
    let text = std::fs::read_to_string(example).unwrap();
    let start = text.find("\n[auth]\n").expect("an [auth] section");
    let section = &text[start + 1..];
    let section = &section[..section[1..].find("\n[").map_or(section.len(), |e| e + 1)];
    let enabled: Vec<&str> = section.lines().filter(|l| l.starts_with("enabled")).collect();
    assert_eq!(enabled, ["enabled = false"], "no DNS queries from the Quick start:\n{section}");
    assert!(
        section.lines().any(|l| l.starts_with('#') && l.contains("enabled = true")),
        "a comment says how to turn it on:\n{section}"
    );
}

/// The `--after` a listing printed on stderr for its next page (None: it was the last).
fn next_after(out: &CliOutput) -> Option<String> {
    let err = out.stderr_str();
    let at = err.find("--after ")?;
    Some(err[at + "--after ".len()..].split_whitespace().next()?.to_string())
}

/// Every page of `mxhook <list> --json --limit 2`, following `--after`, as one list of ids.
fn all_pages(h: &Harness, list: &[&str]) -> (Vec<String>, usize) {
    let (mut ids, mut pages, mut after) = (Vec::new(), 0, None::<String>);
    loop {
        let mut args = list.to_vec();
        args.extend(["--json", "--limit", "2"]);
        if let Some(a) = &after {
            args.extend(["--after", a.as_str()]);
        }
        let out = h.cli(&args);
        out.assert_ok(&h.logs());
        let page = as_array(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.describe())));
        assert!(page.len() <= 2, "a page holds at most --limit rows: {}", out.describe());
        ids.extend(page.iter().map(|v| v["id"].as_str().unwrap().to_string()));
        pages += 1;
        after = next_after(&out);
        if after.is_none() {
            return (ids, pages);
        }
        assert!(pages < 10, "the pages never end: {ids:?}");
    }
}

#[test]
fn listings_come_a_page_at_a_time_newest_first_and_say_how_to_get_the_next() {
    let h = Harness::basic();
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let sent: Vec<String> = (0..5)
        .map(|i| c.send_mail("a@sender.test", &["inbox@example.test"], format!("Subject: {i}\r\n\r\nx\r\n").as_bytes()))
        .collect();
    for id in &sent {
        h.wait_delivery_status(id, "succeeded", SHORT);
    }

    // Messages: five, two a page, newest first, each once.
    let (ids, pages) = all_pages(&h, &["messages", "list"]);
    assert_eq!(pages, 3, "{ids:?}");
    let mut sorted = ids.clone();
    sorted.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(sorted, expected, "every message once");
    let full = h.messages();
    assert_eq!(full.iter().map(|m| m["id"].as_str().unwrap()).collect::<Vec<_>>(), ids, "the pages make up the list");
    let times: Vec<&str> = full.iter().map(|m| m["received_at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");

    // Deliveries: the same, by their message's arrival.
    let (dlv, pages) = all_pages(&h, &["deliveries", "list"]);
    assert_eq!(pages, 3, "{dlv:?}");
    let by_message: Vec<String> = h.deliveries(&[]).iter().map(|d| d["message_id"].as_str().unwrap().into()).collect();
    assert_eq!(by_message, ids, "deliveries newest first, as their messages");
    assert_eq!(h.deliveries(&[]).iter().map(|d| d["id"].as_str().unwrap()).collect::<Vec<_>>(), dlv);
    let (failed, _) = all_pages(&h, &["deliveries", "list", "--status", "failed"]);
    assert!(failed.is_empty());

    // The table: the header, --limit rows, and the next page's cursor on stderr, not in the table.
    let out = h.cli(&["messages", "list", "--limit", "3"]);
    out.assert_ok("");
    assert_eq!(out.stdout_str().lines().count(), 4, "{}", out.describe());
    assert!(out.stderr_str().contains("--after "), "{}", out.describe());
    let out = h.cli(&["deliveries", "list"]);
    assert_eq!(out.stdout_str().lines().count(), 6, "all five fit the default page: {}", out.describe());
    assert_eq!(next_after(&out), None, "{}", out.describe());

    for bad in [&["messages", "list", "--limit", "0"][..], &["deliveries", "list", "--after", "yesterday"]] {
        let out = h.cli(bad);
        assert_eq!(out.code, Some(2), "a usage error: {}", out.describe());
    }
}

/// A harness whose endpoint `app` has `retry` as its schedule, answering 503 until told otherwise.
fn failing_endpoint(retry: &[&str]) -> Harness {
    let h = Harness::with(|cfg| cfg.endpoint("app").retry = strings(retry));
    h.rx.set_status(503);
    h
}

#[test]
fn flush_sends_what_waits_for_a_later_retry_now_through_the_running_gateway() {
    let h = failing_endpoint(&["0s", "1h"]);
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let mut send = |n: usize| -> Vec<String> {
        (0..n).map(|_| c.send_mail("a@sender.test", &["inbox@example.test"], b"Subject: later\r\n\r\nx\r\n")).collect()
    };
    let waiting = |h: &Harness, ids: &[String]| {
        h.wait_until(SHORT, "the first attempts to fail", || {
            ids.iter().all(|id| {
                let d = h.deliveries(&["--message", id]);
                d.len() == 1 && d[0]["attempts"] == 1 && d[0]["status"] == "pending"
            })
        })
    };
    let first = send(3);
    waiting(&h, &first);
    h.rx.set_status(200);

    let out = h.cli(&["flush"]);
    out.assert_ok(&h.logs());
    assert!(out.stdout_str().starts_with("flushed: 3 pending deliveries"), "{}", out.describe());
    // Due in an hour; sent now, by the gateway that was already running.
    for id in &first {
        let d = h.wait_delivery_status(id, "succeeded", SHORT);
        assert_eq!(d["attempts"], 2, "{d}");
    }
    assert_eq!(h.rx.count(), 6);

    // `deliveries retry --all-pending` is the same.
    h.rx.set_status(503);
    let second = send(2);
    waiting(&h, &second);
    h.rx.set_status(200);
    let out = h.cli(&["deliveries", "retry", "--all-pending"]);
    out.assert_ok(&h.logs());
    assert!(out.stdout_str().starts_with("flushed: 2 pending deliveries"), "{}", out.describe());
    for id in &second {
        h.wait_delivery_status(id, "succeeded", SHORT);
    }
    let out = h.cli(&["flush"]);
    assert!(out.stdout_str().starts_with("flushed: 0 pending deliveries"), "nothing waits: {}", out.describe());
    assert_eq!(h.rx.count(), 10, "each delivery sent once more, no more");
}

#[test]
fn retry_all_failed_counts_what_it_schedules_and_the_running_gateway_sends_them() {
    let h = failing_endpoint(&["0s"]);
    let gw = h.start();
    let mut c = SmtpClient::ready(gw.smtp);
    let ids: Vec<String> =
        (0..3).map(|_| c.send_mail("a@sender.test", &["inbox@example.test"], b"Subject: gone\r\n\r\nx\r\n")).collect();
    for id in &ids {
        h.wait_delivery_status(id, "failed", SHORT);
    }
    h.rx.set_status(200);
    let out = h.cli(&["deliveries", "retry", "--all-failed"]);
    out.assert_ok(&h.logs());
    assert_eq!(out.stdout_str().trim(), "retry scheduled: 3 failed deliveries", "{}", out.describe());
    for id in &ids {
        let d = h.wait_delivery_status(id, "succeeded", SHORT);
        assert_eq!(d["attempts"], 2, "{d}");
    }
    let out = h.cli(&["deliveries", "retry", "--all-failed"]);
    assert_eq!(out.stdout_str().trim(), "nothing to retry: no delivery has failed", "{}", out.describe());
    assert_eq!(h.rx.count(), 6);
}
