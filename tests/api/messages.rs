//! `/v1/messages`: pages and filters, one message whole, raw bytes, attachments, delete.

use serde_json::Value;

use crate::common::*;
use crate::support::*;

/// A message with one attachment whose sender-given file name tries to be a path.
fn with_attachment(subject: &str) -> Vec<u8> {
    format!(
        "From: Bob <bob@other.test>\r\nTo: sales@example.test\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
         --b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"../../etc/passwd\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcOkw7zDtsOf\r\n--b1--\r\n"
    )
    .into_bytes()
}

fn ids(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn pages_filters_one_message_raw_and_attachments() {
    let h = setup(|_| {});
    let gw = h.start();
    let api = Api::of(&gw);
    let first = send(&gw, "inbox@example.test", &plain("first note", "inbox@example.test", "one\r\n"));
    let second = send(&gw, "sales@example.test", &with_attachment("Invoice 42"));
    let third = send(&gw, "inbox@example.test", &plain("third note", "inbox@example.test", "three\r\n"));
    for id in [&first, &second, &third] {
        h.event_for(id);
    }

    // Newest first, two to a page, then the last one, and no `next` after it.
    let page = api.json("/messages?limit=2");
    assert_eq!(ids(&page), [third.clone(), second.clone()]);
    let next = page["next"].as_str().expect("a next cursor").to_string();
    let page = api.json(&format!("/messages?limit=2&after={next}"));
    assert_eq!(ids(&page), [first.as_str()]);
    assert!(page["next"].is_null(), "{page}");

    // Filters.
    assert_eq!(ids(&api.json("/messages?to=SALES@example.test")), [second.as_str()]);
    assert_eq!(ids(&api.json("/messages?from=bob@other.test")), [second.as_str()]);
    assert_eq!(ids(&api.json("/messages?subject=NOTE")), [third.clone(), first.clone()]);
    assert_eq!(ids(&api.json("/messages?type=email.bounced")), Vec::<String>::new());
    let m = api.json(&format!("/messages/{second}"));
    let at = m["received_at"].as_str().unwrap();
    let since = ids(&api.json(&format!("/messages?since={at}")));
    assert!(since.contains(&second) && !since.contains(&first), "{since:?}");
    assert!(!ids(&api.json(&format!("/messages?until={at}"))).contains(&second));

    // One message whole, with its deliveries.
    assert_eq!(m["type"], "email.received");
    assert_eq!(m["disposition"], "queued");
    assert_eq!(m["message"]["subject"], "Invoice 42");
    assert_eq!(m["message"]["text"], "see attached");
    assert_eq!(m["deliveries"][0]["endpoint"], "app");
    let (_, event) = h.event_for(&second);
    assert_eq!(m["deliveries"][0]["event_id"], event["id"]);

    // The raw message, byte for byte.
    let raw = api.get(&format!("/messages/{first}/raw"));
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("content-type").as_deref(), Some("message/rfc822"));
    assert_eq!(raw.body, h.stored_raw(&first).unwrap());

    // The attachment: its bytes and type, a file name that is no path.
    let att = api.get(&format!("/messages/{second}/attachments/0"));
    assert_eq!(att.status, 200);
    assert_eq!(att.header("content-type").as_deref(), Some("application/pdf"));
    assert_eq!(att.body, b"%PDF-1.4\n%\xc3\xa4\xc3\xbc\xc3\xb6\xc3\x9f");
    let cd = att.header("content-disposition").unwrap();
    assert!(cd.starts_with("attachment;") && !cd.contains('/'), "{cd}");
    assert_eq!(att.header("x-content-type-options").as_deref(), Some("nosniff"));

    // Bad input is a 400 that says what; unknown ids are 404.
    for (path, says) in [
        ("/messages?limit=0", "limit"),
        ("/messages?limit=501", "limit"),
        ("/messages?limit=ten", "limit"),
        ("/messages?since=yesterday", "since"),
        ("/messages?until=2026-11-29", "until"),
        ("/messages?type=email.nope", "type"),
        ("/messages?after=not-a-cursor", "after"),
        ("/messages?colour=blue", "colour"),
        ("/messages?to=a&to=b", "more than once"),
        (&format!("/messages/{second}/attachments/first"), "index"),
        (&format!("/messages/{second}/attachments/-1"), "index"),
    ] {
        let (status, message) = api.error("GET", path, Some(READ), None);
        assert_eq!(status, 400, "{path}: {message}");
        assert!(message.contains(says), "{path}: {message}");
    }
    for path in [
        "/messages/msg_00000000000000000000000000".to_string(),
        "/messages/msg_00000000000000000000000000/raw".to_string(),
        format!("/messages/{second}/attachments/1"),
        format!("/messages/{first}/attachments/0"),
        "/messages/..%2F..%2Fetc%2Fpasswd/raw".to_string(),
        "/nothing/here".to_string(),
    ] {
        assert_eq!(api.error("GET", &path, Some(READ), None).0, 404, "{path}");
    }
}

#[test]
fn a_2_mb_text_the_webhook_withheld_is_whole_through_the_api() {
    let h = setup(|_| {});
    let gw = h.start();
    let api = Api::of(&gw);
    let line = "All work and no play makes Jack a dull boy, all work and no play makes Jack a dull boy.\r\n";
    let body = line.repeat(2_000_000 / line.len() + 1);
    let raw = plain("long letter", "inbox@example.test", &body);
    let id = send(&gw, "inbox@example.test", &raw);

    let (_, event) = h.event_for(&id);
    assert!(event["message"]["text"].is_null(), "the webhook leaves a 2 MB text out");
    assert!(
        event["message"]["omitted"].as_array().unwrap().iter().any(|o| o == "text"),
        "{}",
        event["message"]["omitted"]
    );

    let m = api.json(&format!("/messages/{id}"));
    let text = m["message"]["text"].as_str().expect("the API has the text");
    let expected = oracle(&as_sent(&raw)).unwrap().body_text(0).unwrap().into_owned();
    assert_eq!(text.len(), expected.len());
    assert!(text == expected, "the text differs from what the message says");
    assert!(text.len() > 2_000_000);
    assert!(!m["message"]["omitted"].as_array().unwrap().iter().any(|o| o == "text"), "{}", m["message"]["omitted"]);
    assert_eq!(m["message"]["subject"], "long letter");
}

#[test]
fn delete_removes_the_message_its_bytes_and_files_and_cancels_its_pending_delivery() {
    // An endpoint that refuses, with its next attempt an hour away: the delivery stays pending.
    let h = setup(|cfg| cfg.endpoint("app").retry = strings(&["0s", "1h"]));
    h.rx.set_status(503);
    let gw = h.start();
    let api = Api::of(&gw);
    // Over 1 MiB: with SQLite its bytes are files in the spool and attachments directories.
    let big = "x".repeat(1_200_000);
    let raw = format!(
        "From: ada@sender.test\r\nTo: inbox@example.test\r\nSubject: big\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
         --b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"x.txt\"\r\n\r\n{big}\r\n--b--\r\n"
    );
    let id = send(&gw, "inbox@example.test", raw.as_bytes());
    let keep = send(&gw, "inbox@example.test", &plain("keep me", "inbox@example.test", "hi\r\n"));
    h.wait_until(SHORT, "the first attempt of both to fail", || {
        h.deliveries(&[]).iter().all(|d| d["attempts"] == 1 && d["status"] == "pending")
    });
    // Its bytes as the store keeps them (spool files with SQLite, chunk rows with PostgreSQL).
    assert_eq!(h.stored_raw(&id).map(|b| b.len()), Some(as_sent(raw.as_bytes()).len()), "stored before the delete");

    let (status, message) = api.error("DELETE", &format!("/messages/{id}"), Some(READ), None);
    assert_eq!(status, 403, "{message}");
    let got = api.call("DELETE", &format!("/messages/{id}"), Some(WRITE), None);
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let v: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(v, serde_json::json!({ "id": id, "deleted": true, "cancelled_deliveries": 1 }));

    assert_eq!(api.get(&format!("/messages/{id}")).status, 404);
    assert_eq!(api.get(&format!("/messages/{id}/raw")).status, 404);
    assert_eq!(api.get(&format!("/messages/{id}/attachments/0")).status, 404);
    assert_eq!(api.call("DELETE", &format!("/messages/{id}"), Some(WRITE), None).status, 404);
    assert!(api.json(&format!("/deliveries?message={id}"))["data"].as_array().unwrap().is_empty());
    assert_eq!(h.stored_raw(&id), None, "the bytes are gone from the store");
    assert!(!files_under(&h.data_dir()).iter().any(|f| f.contains(&id)), "{:?}", files_under(&h.data_dir()));
    assert_eq!(h.deliveries(&[]).len(), 1, "the other message's delivery stays");
    assert_eq!(api.json(&format!("/messages/{keep}"))["message"]["subject"], "keep me");
}
