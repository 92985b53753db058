//! What is new in a message, end to end: replies from Gmail (HTML only), Outlook and a German client
//! with its quote header wrapped over two lines, and forwards inline and attached, sent over SMTP to the
//! real binary; the fields asserted on the webhook that arrived (validated against the schema by the
//! receiver, as every event is).

use serde_json::{Value, json};

use crate::common::*;

fn send(h: &Harness, gw: &Gateway, raw: &str) -> Value {
    let mut c = SmtpClient::ready(gw.smtp);
    let id = c.send_mail("ada@sender.test", &["anyone@example.test"], raw.replace('\n', "\r\n").as_bytes());
    c.cmd("QUIT").expect(221, "2.0.0");
    let (req, ev) = h.event_for(&id);
    req.assert_signed(SECRET_A);
    ev["message"].clone()
}

const GMAIL_HTML: &str = r#"From: Ada <ada@sender.test>
To: anyone@example.test
Subject: Re: Lunch
MIME-Version: 1.0
Content-Type: text/html; charset=UTF-8

<div dir="ltr">Sounds good, see you at noon.<br></div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, Nov 23, 2026 at 10:00 AM Bob &lt;bob@example.test&gt; wrote:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex">Lunch tomorrow?<br>Bob</blockquote></div>
"#;

const OUTLOOK: &str = "From: Bob <bob@sender.test>
To: anyone@example.test
Subject: RE: Invoice 42
Content-Type: text/plain; charset=utf-8

Thanks, the invoice is paid.

Best regards,
Bob Smith
Acme Ltd.

________________________________
From: Ada Lovelace <ada@example.test>
Sent: Monday, November 23, 2026 10:00 AM
To: Bob Smith <bob@sender.test>
Subject: Invoice 42

Please find invoice 42 attached.
";

const GERMAN: &str = "From: Bob <bob@sender.test>
To: anyone@example.test
Subject: AW: Termin
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Passt mir gut.

Von meinem iPhone gesendet

Am Mo., 23. Nov. 2026 um 10:00 Uhr schrieb Ada Lovelace <
ada@example.test>:

> Passt dir Dienstag?
> Ada
";

const FORWARD_INLINE: &str = "From: Bob <bob@sender.test>
To: anyone@example.test
Subject: Fwd: Plans
Content-Type: text/plain; charset=utf-8

Please have a look.

---------- Forwarded message ---------
From: Ada Lovelace <ada@example.test>
Date: Mon, Nov 23, 2026 at 10:00 AM
Subject: Plans
To: Bob <bob@sender.test>

The plans for next week.
";

const FORWARD_ATTACHED: &str = "From: Bob <bob@sender.test>
To: anyone@example.test
Subject: Fw: Plans
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=\"b1\"

--b1
Content-Type: text/plain; charset=utf-8

See the attached message.

--b1
Content-Type: message/rfc822
Content-Disposition: attachment; filename=\"plans.eml\"

From: Ada Lovelace <ada@example.test>
To: Bob <bob@sender.test>
Subject: Plans
Date: Mon, 23 Nov 2026 10:00:00 +0000
Content-Type: text/plain; charset=utf-8

The plans for next week.

--b1--
";

#[test]
fn replies_and_forwards_arrive_with_their_new_text() {
    let h = Harness::basic();
    let gw = h.start();

    let m = send(&h, &gw, GMAIL_HTML);
    assert_eq!(m["reply"]["text"], "Sounds good, see you at noon.", "{}", m["reply"]);
    assert_eq!(m["reply"]["quoted"], true);
    let html = m["reply"]["html"].as_str().expect("reply.html for an HTML message");
    assert!(html.contains("Sounds good, see you at noon.") && !html.contains("Lunch tomorrow"), "{html}");
    assert!(!html.contains("gmail_quote"), "{html}");
    assert_eq!(m["preview"], "Sounds good, see you at noon.");
    assert_eq!(m["forward"], Value::Null);

    let m = send(&h, &gw, OUTLOOK);
    assert_eq!(
        m["reply"],
        json!({"text": "Thanks, the invoice is paid.\r\n\r\nBest regards,", "html": null,
               "signature": "Bob Smith\r\nAcme Ltd.", "quoted": true})
    );
    assert_eq!(m["forward"], Value::Null, "an RE: with a header block is a reply");

    let m = send(&h, &gw, GERMAN);
    assert_eq!(
        m["reply"],
        json!({"text": "Passt mir gut.", "html": null, "signature": "Von meinem iPhone gesendet", "quoted": true})
    );
    assert_eq!(m["preview"], "Passt mir gut.");

    let m = send(&h, &gw, FORWARD_INLINE);
    assert_eq!(
        m["forward"],
        json!({"from": "Ada Lovelace <ada@example.test>", "to": "Bob <bob@sender.test>",
               "date": "Mon, Nov 23, 2026 at 10:00 AM", "subject": "Plans",
               "text": "The plans for next week.", "note": "Please have a look."})
    );
    assert_eq!(m["reply"]["text"], "Please have a look.");

    let m = send(&h, &gw, FORWARD_ATTACHED);
    assert_eq!(
        m["forward"],
        json!({"from": "Ada Lovelace <ada@example.test>", "to": "Bob <bob@sender.test>",
               "date": "2026-11-23T10:00:00Z", "subject": "Plans",
               "text": "The plans for next week.", "note": "See the attached message."})
    );
    // The forwarder's note is the whole text: reply.text null, the same as text.
    assert_eq!(m["reply"], json!({"text": null, "html": null, "signature": null, "quoted": false}));
    assert_eq!(m["text"].as_str().map(str::trim_end), Some("See the attached message."));
}

#[test]
fn a_message_that_quotes_nothing_has_its_text_as_reply() {
    let h = Harness::basic();
    let gw = h.start();
    let m = send(&h, &gw, "From: a@sender.test\nTo: anyone@example.test\nSubject: hi\n\nJust a note.\n\n-- \nAda\n");
    assert_eq!(m["reply"], json!({"text": "Just a note.", "html": null, "signature": "-- \r\nAda", "quoted": false}));
    assert_eq!(m["text"], "Just a note.\r\n\r\n-- \r\nAda\r\n");
}

/// Most mail: nothing quoted and no signature. `reply.text` is null rather than a second copy of the
/// text (read `reply.text ?? text`); the preview is still made from it.
#[test]
fn a_reply_that_is_the_whole_text_is_null_not_a_copy() {
    let h = Harness::basic();
    let gw = h.start();
    let m = send(&h, &gw, "From: a@sender.test\nTo: anyone@example.test\nSubject: hi\n\nJust a note.\nSee you.\n\n");
    assert_eq!(m["reply"], json!({"text": null, "html": null, "signature": null, "quoted": false}));
    assert_eq!(m["text"], "Just a note.\r\nSee you.\r\n\r\n");
    assert_eq!(m["preview"], "Just a note. See you.");
    // A body whose line ends are mixed is not the same once they are made its own: the string stays.
    let mixed = "From: a@sender.test\r\nTo: anyone@example.test\r\nSubject: hi\r\n\r\nOne.\r\nTwo.\nThree.\r\n";
    let mut c = SmtpClient::ready(gw.smtp);
    let id = c.send_mail("ada@sender.test", &["anyone@example.test"], mixed.as_bytes());
    let (_, ev) = h.event_for(&id);
    assert_eq!(ev["message"]["reply"]["text"], "One.\r\nTwo.\r\nThree.");
}
