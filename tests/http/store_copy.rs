//! `mxhook store copy`: a gateway's SQLite store, filled over SMTP (a large message with an
//! attachment, spooled on disk; a small one whose delivery failed and waits for its retry), copied
//! into PostgreSQL; a gateway started on PostgreSQL with the same config otherwise lists the same
//! messages, serves the links sent before the copy, and delivers the pending delivery with its
//! original event id. Runs the same whichever backend the run's other gateways use.

use std::time::Duration;

use crate::common::*;
use crate::support::*;

#[test]
fn a_sqlite_store_copied_into_postgres_keeps_its_mail_links_and_queue() {
    let mut h = Harness::new();
    let url = h.database.take().unwrap_or_else(|| postgres::shared().new_database().expect("a database"));
    let mut cfg = Config::basic(&h.rx);
    cfg.public_url = PUBLIC.into();
    // The failed first attempt's retry comes after the copy (the first gateway is stopped by then).
    cfg.endpoint("app").retry = vec!["0s".into(), "3s".into()];
    h.write_config(&cfg);
    let gw = h.start();

    // Over 1 MiB: SQLite keeps it in spool/ and attachments/, which the copy streams.
    let bytes = Rng::new(7).noise(1_500_000);
    let big = multipart("big", &[attachment_part("application/pdf", "attachment; filename=\"po.pdf\"", &bytes)]);
    let mut c = SmtpClient::ready(gw.smtp);
    let big_id = c.send_mail("ada@sender.test", &["inbox@example.test"], &big);
    let (_, ev) = h.event_for(&big_id);
    h.wait_delivery_status(&big_id, "succeeded", SHORT);
    let att_link = ev["message"]["attachments"][0]["url"].as_str().expect("attachment url").to_string();
    let raw_link = ev["message"]["raw"]["url"].as_str().expect("raw url").to_string();

    h.rx.set_status(503);
    let small_id = c.send_mail("bob@sender.test", &["inbox@example.test"], b"Subject: retry me\r\n\r\nhello\r\n");
    let (failed, _) = h.event_for(&small_id);
    let original_event = failed.webhook_id().to_string();
    h.wait_until(SHORT, "the first attempt recorded as failed", || {
        let d = h.deliveries(&["--message", &small_id]);
        d.len() == 1 && d[0]["attempts"] == 1 && d[0]["status"] == "pending"
    });
    drop(c);
    gw.signal(libc::SIGTERM);
    let mut gw = gw;
    gw.wait_exit(SHORT);
    let before = h.messages();

    // Into the database, counted.
    let data_dir = h.data_dir();
    let url_file = h.dir.path().join("db.url");
    std::fs::write(&url_file, format!("{url}\n")).unwrap();
    let out = h.cli(&["store", "copy", "--from", data_dir.to_str().unwrap(), "--to-file", url_file.to_str().unwrap()]);
    out.assert_ok("");
    let text = out.stdout_str();
    for (table, n) in [("messages", 2), ("attachments", 1), ("contents (parts)", 3), ("deliveries", 2), ("attempts", 2)]
    {
        let line = text.lines().find(|l| l.starts_with(&format!("{table} "))).unwrap_or_else(|| panic!("{text}"));
        let counts: Vec<&str> = line[table.len()..].split_whitespace().collect();
        assert_eq!(counts, [n.to_string(), n.to_string()], "{table}: {text}");
    }
    assert!(text.contains("link_key") && text.contains("ok: every count matches"), "{text}");

    // A second copy into the same database is refused: nothing is written twice.
    let again = h.cli(&["store", "copy", "--from", data_dir.to_str().unwrap(), "--to", &url]);
    assert_eq!(again.code, Some(1), "{}", again.describe());
    assert!(again.stderr_str().contains("is not empty (rows in: messages"), "{}", again.describe());
    assert!(!again.all_output().contains("ok: every count"), "{}", again.describe());

    // The same config on PostgreSQL.
    h.rx.set_status(200);
    h.database = Some(url);
    h.write_config(&cfg);
    let gw = h.start();
    // Each message as listed, but its `state`: the pending delivery may be delivered by now.
    let stable = |list: Vec<serde_json::Value>| {
        list.into_iter()
            .map(|mut m| {
                m.as_object_mut().expect("a message object").remove("state");
                m
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(stable(h.messages()), stable(before), "the same messages, listed the same, newest first");

    let agent = agent();
    let got = get(&agent, &local(&gw, &att_link), &[]);
    assert_eq!(got.status, 200, "the attachment link from before the copy");
    assert_eq!(got.body, bytes);
    let got = get(&agent, &local(&gw, &raw_link), &[]);
    assert_eq!(got.status, 200, "the raw link from before the copy");
    assert_eq!(got.body, as_sent(&big));

    h.wait_until(Duration::from_secs(20), "the pending delivery delivered from PostgreSQL", || {
        h.rx.requests_for_message(&small_id).len() == 2
    });
    let retried = h.rx.requests_for_message(&small_id).remove(1);
    assert_eq!(retried.webhook_id(), original_event, "the retry carries the original event id");
    let d = h.wait_delivery_status(&small_id, "succeeded", SHORT);
    assert_eq!(d["attempts"], 2, "the attempt count goes on from the copy: {d}");
    assert_eq!(h.rx.requests_for_message(&big_id).len(), 1, "a delivered message is not sent again");
}
