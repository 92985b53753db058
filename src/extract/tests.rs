//! One case per pattern table entry kind and language, written for this repository in the spirit of
//! the public sets (which `measure_public_sets` runs, from a path, never copied here).

use super::{preview, reply_of, unquoted};

fn reply(text: &str) -> (String, Option<String>, bool) {
    let r = reply_of(text, None);
    (r.text.into_owned(), r.signature, r.quoted)
}

#[track_caller]
fn cuts(text: &str, expected: &str) {
    let r = reply_of(text, None);
    assert_eq!(r.text, expected, "from:\n{text}");
    assert!(r.quoted, "quoted should be true for:\n{text}");
}

#[test]
fn nothing_quoted_is_the_whole_text_less_the_signature() {
    assert_eq!(reply("Hello there.\n\nSee you.\n"), ("Hello there.\n\nSee you.".into(), None, false));
    assert_eq!(reply("Hi\n\n-- \nAda\n"), ("Hi".into(), Some("-- \nAda".into()), false));
}

#[test]
fn quote_headers_in_each_language() {
    let headers = [
        "On Mon, Nov 23, 2026 at 10:00 AM Ada Lovelace <ada@example.com> wrote:",
        "Am Mo., 23. Nov. 2026 um 10:00 Uhr schrieb Ada Lovelace <ada@example.com>:",
        "Le lun. 23 nov. 2026 à 10:00, Ada Lovelace <ada@example.com> a écrit :",
        "El lun, 23 nov 2026 a las 10:00, Ada Lovelace (<ada@example.com>) escribió:",
        "Il giorno lun 23 nov 2026 alle ore 10:00 Ada Lovelace <ada@example.com> ha scritto:",
        "Em seg., 23 de nov. de 2026 às 10:00, Ada Lovelace <ada@example.com> escreveu:",
        "Op ma 23 nov. 2026 om 10:00 schreef Ada Lovelace <ada@example.com>:",
        "Den mån 23 nov. 2026 kl 10:00 skrev Ada Lovelace <ada@example.com>:",
        "På man. 23. nov. 2026 kl. 10:00 skrev Ada Lovelace <ada@example.com>:",
        "Den man. 23. nov. 2026 kl. 10.00 skrev Ada Lovelace <ada@example.com>:",
        "W dniu pon., 23.11.2026 o 10:00 Ada Lovelace <ada@example.com> napisał(a):",
        "пн, 23 нояб. 2026 г. в 10:00, Ada Lovelace <ada@example.com>:",
        "23 нояб. 2026 г., в 10:00, Ада Лавлейс <ada@example.com> написал(а):",
        "2026年11月23日(月) 10:00 Ada Lovelace <ada@example.com>:",
        "Ada Lovelace <ada@example.com> 于2026年11月23日周一 10:00写道：",
        "在 2026年11月23日 10:00，Ada Lovelace <ada@example.com> 写道：",
        "-----Original Message-----",
        "-----Ursprüngliche Nachricht-----",
        "-----Message d'origine-----",
        "-----Mensaje original-----",
        "-----Oorspronkelijk bericht-----",
        "-----Исходное сообщение-----",
    ];
    for h in headers {
        cuts(&format!("Sounds good.\n\n{h}\n> Shall we meet?\n> Ada\n"), "Sounds good.");
        // The same header above an unquoted original (HTML turned into text, Outlook).
        cuts(&format!("Sounds good.\n\n{h}\n\nShall we meet?\nAda\n"), "Sounds good.");
    }
}

#[test]
fn quote_headers_wrapped_over_two_or_three_lines() {
    cuts("Yes.\n\nOn Mon, Nov 23, 2026 at 10:00 AM Ada Lovelace <\nada@example.com> wrote:\n\n> Shall we?\n", "Yes.");
    cuts(
        "Ja.\n\nAm Mo., 23. Nov. 2026 um 10:00 Uhr schrieb Ada Lovelace\n<ada@example.com>:\n\n> Treffen wir uns?\n",
        "Ja.",
    );
    cuts("Oui.\n\nLe lun. 23 nov. 2026 à 10:00, Ada Lovelace <ada@example.com> a\nécrit :\n\n> On se voit ?\n", "Oui.");
    cuts("Yes.\n\nOn Dec 16, 2011, at 12:47 PM, Corey\n<reply@example.com>\nwrote:\n\n> Was this it?\n", "Yes.");
}

#[test]
fn outlook_header_blocks_in_each_language() {
    let blocks = [
        "From: Ada Lovelace <ada@example.com>\nSent: Monday, November 23, 2026 10:00 AM\nTo: Bob\nSubject: Meeting",
        "Von: Ada Lovelace <ada@example.com>\nGesendet: Montag, 23. November 2026 10:00\nAn: Bob\nBetreff: Treffen",
        "De : Ada Lovelace <ada@example.com>\nEnvoyé : lundi 23 novembre 2026 10:00\nÀ : Bob\nObjet : Réunion",
        "De: Ada Lovelace <ada@example.com>\nEnviado: lunes, 23 de noviembre de 2026 10:00\nPara: Bob\nAsunto: Reunión",
        "Da: Ada Lovelace <ada@example.com>\nInviato: lunedì 23 novembre 2026 10:00\nA: Bob\nOggetto: Riunione",
        "De: Ada Lovelace <ada@example.com>\nEnviada em: segunda-feira, 23 de novembro de 2026 10:00\nPara: Bob\nAssunto: Reunião",
        "Van: Ada Lovelace <ada@example.com>\nVerzonden: maandag 23 november 2026 10:00\nAan: Bob\nOnderwerp: Vergadering",
        "Från: Ada Lovelace <ada@example.com>\nSkickat: den 23 november 2026 10:00\nTill: Bob\nÄmne: Möte",
        "Fra: Ada Lovelace <ada@example.com>\nSendt: 23. november 2026 10:00\nTil: Bob\nEmne: Møde",
        "Od: Ada Lovelace <ada@example.com>\nWysłano: poniedziałek, 23 listopada 2026 10:00\nDo: Bob\nTemat: Spotkanie",
        "От: Ada Lovelace <ada@example.com>\nОтправлено: 23 ноября 2026 г. 10:00\nКому: Bob\nТема: Встреча",
        "差出人: Ada Lovelace <ada@example.com>\n送信日時: 2026年11月23日 10:00\n宛先: Bob\n件名: 会議",
        "发件人: Ada Lovelace <ada@example.com>\n发送时间: 2026年11月23日 10:00\n收件人: Bob\n主题: 会议",
        "*From:* Ada Lovelace <ada@example.com>\n*Sent:* Monday, November 23, 2026 10:00 AM\n*To:* Bob",
    ];
    for b in blocks {
        cuts(&format!("Agreed.\n\n________________________________\n{b}\n\nShall we meet?\n"), "Agreed.");
    }
}

#[test]
fn signatures_with_and_without_the_delimiter() {
    assert_eq!(
        reply("Fine by me.\n\n-- \nAda Lovelace\nEngine Co.\n").1.as_deref(),
        Some("-- \nAda Lovelace\nEngine Co.")
    );
    assert_eq!(reply("Fine by me.\n\n__\nAda\n").1.as_deref(), Some("__\nAda"));
    assert_eq!(reply("Fine by me.\n\n-Ada\n").1.as_deref(), Some("-Ada"));
    for mobile in [
        "Sent from my iPhone",
        "Sent from my Samsung Galaxy smartphone.",
        "Get Outlook for iOS",
        "Von meinem iPhone gesendet",
        "Envoyé de mon iPhone",
        "Enviado desde mi iPhone",
        "Inviato da iPhone",
        "Enviado do meu iPhone",
        "Verzonden vanaf mijn iPhone",
        "Skickat från min iPhone",
        "Sendt fra min iPhone",
        "Wysłane z mojego iPhone",
        "Отправлено с iPhone",
        "iPhoneから送信",
        "发自我的iPhone",
    ] {
        let (text, sig, _) = reply(&format!("Fine by me.\n\n{mobile}\n"));
        assert_eq!((text.as_str(), sig.as_deref()), ("Fine by me.", Some(mobile)), "{mobile}");
    }
    for closing in [
        "Thanks,",
        "Best regards,",
        "Mit freundlichen Grüßen",
        "Cordialement,",
        "Saludos,",
        "Pozdrawiam,",
        "С уважением,",
    ] {
        let (text, sig, _) = reply(&format!("Fine by me.\n\n{closing}\nAda Lovelace\nEngine Co.\n"));
        assert_eq!(text, format!("Fine by me.\n\n{closing}"));
        assert_eq!(sig.as_deref(), Some("Ada Lovelace\nEngine Co."));
    }
    // Not signatures: a dash inside a sentence, "sent from" in a sentence, a closing word alone.
    assert_eq!(reply("Fix -- not a signature.\n\nBye\n").1, None);
    assert_eq!(reply("Hi\n\nSent from my desk, which is easier than my phone.\n").1, None);
    assert_eq!(reply("Thanks,\nAda\n"), ("Thanks,\nAda".into(), None, false));
}

#[test]
fn inline_answers_are_kept_and_trailing_quotes_cut() {
    let text = "On Mon, Nov 23, 2026 at 10:00 AM Ada <ada@example.com> wrote:\n> Question one?\n\nAnswer one.\n\n> Question two?\n\nAnswer two.\n\n> Old signature\n";
    let r = reply_of(text, None);
    assert!(r.text.ends_with("Answer two.") && r.text.contains("> Question two?"), "{}", r.text);
    assert!(r.quoted);
}

#[test]
fn a_text_after_the_quote_stays() {
    assert_eq!(unquoted("Reply\n\nOn Mon, Ada wrote:\n> a\n> b\n\nP.S. after\n"), "Reply\n\nP.S. after");
}

#[test]
fn forwards_inline_and_localised() {
    for marker in [
        "---------- Forwarded message ---------",
        "Begin forwarded message:",
        "---------- Weitergeleitete Nachricht ----------",
        "-------- Message transféré --------",
        "---------- Mensaje reenviado ---------",
        "Anfang der weitergeleiteten Nachricht:",
    ] {
        let text = format!(
            "See below.\n\n{marker}\nFrom: Ada <ada@example.com>\nDate: Mon, Nov 23, 2026 at 10:00 AM\nSubject: Plans\nTo: Bob <bob@example.com>\n\nThe plans are attached.\n"
        );
        let f = super::forward::inline(&text, Some("Fwd: Plans")).unwrap_or_else(|| panic!("{marker}"));
        assert_eq!(f.from.as_deref(), Some("Ada <ada@example.com>"), "{marker}");
        assert_eq!(f.date.as_deref(), Some("Mon, Nov 23, 2026 at 10:00 AM"));
        assert_eq!(f.subject.as_deref(), Some("Plans"));
        assert_eq!(f.to.as_deref(), Some("Bob <bob@example.com>"));
        assert_eq!(f.text.as_deref(), Some("The plans are attached."));
        assert_eq!(f.note.as_deref(), Some("See below."));
    }
    // Outlook: no marker line, the header block under a FW: subject.
    let outlook = "FYI\n\n________________________________\nFrom: Ada <ada@example.com>\nSent: Monday, November 23, 2026 10:00 AM\nTo: Bob\nSubject: Plans\n\nThe plans.\n";
    let f = super::forward::inline(outlook, Some("FW: Plans")).expect("outlook forward");
    assert_eq!(
        (f.from.as_deref(), f.text.as_deref(), f.note.as_deref()),
        (Some("Ada <ada@example.com>"), Some("The plans."), Some("FYI"))
    );
    assert!(super::forward::inline(outlook, Some("RE: Plans")).is_none(), "a reply is not a forward");
}

#[test]
fn preview_collapses_white_space_and_keeps_200_characters() {
    assert_eq!(preview("Hello\n\n  there\tyou"), "Hello there you");
    assert_eq!(preview(&"é".repeat(500)).chars().count(), 200);
}

/// Runs the extractor on each case of a JSON-lines file (`bench/reply_sets.py` writes it from the
/// public sets) and writes what it gave.
#[test]
#[ignore = "needs the public test sets: run bench/reply_sets.py"]
fn measure_public_sets() {
    use std::io::Write;
    let cases = std::env::var("MXHOOK_REPLY_CASES").expect("MXHOOK_REPLY_CASES");
    let out = std::env::var("MXHOOK_REPLY_RESULTS").expect("MXHOOK_REPLY_RESULTS");
    let mut w = std::fs::File::create(out).unwrap();
    for line in std::fs::read_to_string(cases).unwrap().lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let input = case["input"].as_str().unwrap();
        let t0 = std::time::Instant::now();
        let r = reply_of(input, None);
        let seconds = t0.elapsed().as_secs_f64();
        let result = serde_json::json!({"reply": r.text, "unquoted": unquoted(input), "seconds": seconds});
        writeln!(w, "{result}").unwrap();
    }
}

#[test]
fn line_ends_are_the_bodys_own() {
    let text = "One.\r\nTwo.\r\n\r\nThree.\r\n";
    assert_eq!(reply_of(text, None).text, "One.\r\nTwo.\r\n\r\nThree.");
    let r = reply_of("One.\r\nTwo.\r\n\r\n-- \r\nAda\r\n", None);
    assert_eq!((&*r.text, r.signature.as_deref()), ("One.\r\nTwo.", Some("-- \r\nAda")));
}

#[test]
fn a_reply_that_is_the_whole_text_borrows_it_and_mixed_line_ends_are_made_crlf() {
    let text = "One.\r\nTwo.\r\n\r\nThree.\r\n\r\n";
    let r = reply_of(text, None);
    assert!(matches!(r.text, std::borrow::Cow::Borrowed(_)) && r.text == text.trim_end());
    // A bare LF among CRLFs: the reply has CRLF throughout, so it differs from the text.
    assert_eq!(reply_of("One.\r\nTwo.\nThree.\r\n", None).text, "One.\r\nTwo.\r\nThree.");
    assert_eq!(reply_of("One.\nTwo.\r\n", None).text, "One.\r\nTwo.");
}

#[test]
fn a_signature_under_a_long_text_is_found_from_its_last_lines() {
    let long: String = (0..40).map(|i| format!("Line {i} of the text.\n\n")).collect();
    assert_eq!(reply(&format!("{long}-- \nAda\n")), (long.trim_end().to_string(), Some("-- \nAda".into()), false));
    let thanks = format!("{long}Thanks,\nAda Lovelace\nAnalyst\n");
    assert_eq!(reply(&thanks).1.as_deref(), Some("Ada Lovelace\nAnalyst"));
    // Twelve non-empty lines and a delimiter-like first line: the first line is never a signature.
    let short = "-- \nA\nB\nC\nD\nE\nF\nG\nH\nI\nJ\nK\n";
    assert_eq!(reply(short).1, None);
    assert_eq!(reply(&long).1, None);
}

#[test]
fn the_reply_field_is_null_when_it_is_the_text() {
    let fields = |text: &str| {
        let env = crate::mail::Envelope {
            client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            proxy_ip: None,
            ingress: crate::mail::Ingress::Smtp,
            helo: "h".into(),
            mail_from: "a@b.c".into(),
            rcpt_to: vec!["x@y.z".into()],
            tls: None,
            tls_cipher: None,
        };
        let raw = format!("From: a@b.c\r\nTo: x@y.z\r\nSubject: s\r\n\r\n{text}");
        let parsed = crate::parse::parse("msg_1", "t".into(), &env, raw.as_bytes());
        let mut out = super::Fields::default();
        super::extract(&parsed.event, &parsed.attachments, &mut out);
        out
    };
    let same = fields("Just a note.\r\nSee you.\r\n\r\n");
    assert_eq!(same.reply.as_ref().map(|r| r.text.as_deref()), Some(None));
    assert_eq!(same.preview.as_deref(), Some("Just a note. See you."));
    let signed = fields("Just a note.\r\n-- \r\nAda\r\n");
    assert_eq!(signed.reply.as_ref().and_then(|r| r.text.as_deref()), Some("Just a note."));
}

#[test]
fn a_field_has_its_colon_in_the_first_40_bytes() {
    let at = |n: usize, colon: &str| format!("{}{colon} x", "a".repeat(n));
    assert!(super::reply::may_be_field(&at(39, ":")) && !super::reply::may_be_field(&at(40, ":")));
    assert!(super::reply::may_be_field(&at(39, "：")) && !super::reply::may_be_field(&at(40, "：")));
    assert!(super::reply::may_be_field("日付：x") && !super::reply::may_be_field("日付 x"));
}

#[test]
#[ignore = "prints the memory the patterns take once compiled"]
fn pattern_memory() {
    let rss = || {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        s.lines().find(|l| l.starts_with("VmRSS")).unwrap().to_string()
    };
    let probe = |name: &str, f: &dyn Fn()| {
        let b = rss();
        f();
        eprintln!("{name}: {b} -> {}", rss());
    };
    probe("unquote", &|| {
        let _ = super::reply::unquote("Hi\n\nOn Mon, Ada <a@b.c> wrote:\n> x\n> y\n");
    });
    probe("signature", &|| {
        let _ = super::signature::split("Hi\n\nThanks,\nAda\n\nSent from my iPhone".into());
    });
    probe("html", &|| {
        let _ = super::html::new_part("<p>x</p><div class=gmail_quote>y</div>");
    });
    eprintln!("before {}", rss());
    let _ = reply_of("Hi\n\nOn Mon, Ada <a@b.c> wrote:\n> x\n> y\n\nThanks,\nAda\n", Some("<p>x</p>"));
    let _ = super::forward::inline("x\n---------- Forwarded message ---------\nFrom: a\n\nb", Some("Fwd: x"));
    eprintln!("after {}", rss());
}
