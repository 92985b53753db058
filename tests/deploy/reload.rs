//! SIGHUP re-reads the STARTTLS certificate: new handshakes get the new one, sessions already open go
//! on, a broken file keeps the old one, and SIGHUP without `[smtp.tls]` does nothing harmful.

use std::path::Path;

use crate::common::*;
use crate::support::*;

/// Replaces `live.crt`/`live.key` with a fresh certificate `CN=cn`, each by an atomic rename.
fn replace_cert(dir: &Path, live: &Cert, cn: &str) {
    let next = make_cert(dir, "next", cn, &[cn], 30);
    std::fs::rename(&next.key, &live.key).unwrap();
    std::fs::rename(&next.cert, &live.cert).unwrap();
}

#[track_caller]
fn wait_log(h: &Harness, gw: &Gateway, what: &str, needle: &str, count: usize) {
    h.wait_until(WAIT, what, || gw.log().matches(needle).count() >= count);
}

#[test]
fn sighup_swaps_the_certificate_without_dropping_sessions() {
    let (h, live) = tls_harness("mx-a.test", false, |_| {});
    let gw = h.start();
    assert_eq!(presented_cert(gw.smtp), "CN = mx-a.test");

    // Sessions opened before the reload: one in TLS mid-transaction, one plaintext.
    let mut early = TlsSession::start(gw.smtp, &[]);
    assert_eq!(early.peer_certificate(), "CN = mx-a.test");
    assert_eq!(early.cmd("EHLO early.test").code, 250);
    early.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
    let mut plain = SmtpClient::ready(gw.smtp);

    replace_cert(h.dir.path(), &live, "mx-b.test");
    gw.signal(libc::SIGHUP);
    let mut last = String::new();
    h.wait_until(WAIT, "a new handshake to present CN = mx-b.test after SIGHUP", || {
        last = presented_cert(gw.smtp);
        last == "CN = mx-b.test"
    });
    assert!(gw.log().contains("SIGHUP: STARTTLS certificate reloaded"), "{}", gw.log());

    // The TLS session from before the reload finishes its message.
    early.cmd("RCPT TO:<inbox@example.test>").expect(250, "2.1.5");
    let id = early.data(b"Subject: across the reload\r\n\r\nhi\r\n").queued_id();
    early.quit();
    assert_eq!(h.event_for(&id).1["message"]["smtp"]["tls"], "TLSv1.3");
    // So does the plaintext one.
    let id = plain.send_mail("ada@sender.test", &["inbox@example.test"], b"Subject: plain across\r\n\r\nhi\r\n");
    h.event_for(&id);
    assert!(alive(gw.pid()), "the gateway died:\n{}", gw.log());
}

#[test]
fn a_broken_certificate_on_sighup_keeps_the_old_one() {
    let (h, live) = tls_harness("mx-a.test", false, |_| {});
    let gw = h.start();
    assert_eq!(presented_cert(gw.smtp), "CN = mx-a.test");

    // Garbage instead of a certificate.
    std::fs::write(&live.cert, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
        .unwrap();
    gw.signal(libc::SIGHUP);
    wait_log(&h, &gw, "the failed reload to be logged", "reload failed", 1);
    assert!(alive(gw.pid()), "a broken certificate killed the gateway:\n{}", gw.log());
    assert_eq!(presented_cert(gw.smtp), "CN = mx-a.test", "the old certificate must stay in use");

    // A missing key file.
    replace_cert(h.dir.path(), &live, "mx-b.test");
    let key = std::fs::read(&live.key).unwrap();
    std::fs::remove_file(&live.key).unwrap();
    gw.signal(libc::SIGHUP);
    wait_log(&h, &gw, "the second failed reload to be logged", "reload failed", 2);
    assert!(alive(gw.pid()), "a missing key killed the gateway:\n{}", gw.log());
    assert_eq!(presented_cert(gw.smtp), "CN = mx-a.test", "the old certificate must stay in use");

    // Fixed files and another SIGHUP: the new certificate.
    std::fs::write(&live.key, key).unwrap();
    gw.signal(libc::SIGHUP);
    let mut last = String::new();
    h.wait_until(WAIT, "CN = mx-b.test after the files were fixed", || {
        last = presented_cert(gw.smtp);
        last == "CN = mx-b.test"
    });
    // Mail still flows over TLS.
    let mut tls = TlsSession::start(gw.smtp, &[]);
    assert_eq!(tls.cmd("EHLO client.test").code, 250);
    tls.cmd("MAIL FROM:<ada@sender.test>").expect(250, "2.1.0");
    tls.cmd("RCPT TO:<inbox@example.test>").expect(250, "2.1.5");
    let id = tls.data(b"Subject: after repair\r\n\r\nhi\r\n").queued_id();
    tls.quit();
    h.event_for(&id);
}

#[test]
fn sighup_without_tls_is_harmless() {
    let h = Harness::basic();
    let gw = h.start();
    let mut before = SmtpClient::ready(gw.smtp);
    for n in 1..=2 {
        gw.signal(libc::SIGHUP);
        wait_log(&h, &gw, "SIGHUP to be noticed", "SIGHUP: nothing to reload", n);
    }
    assert!(alive(gw.pid()), "SIGHUP killed the gateway:\n{}", gw.log());
    let id = before.send_mail("ada@sender.test", &["inbox@example.test"], b"Subject: after hup\r\n\r\nhi\r\n");
    h.event_for(&id);
    let mut after = SmtpClient::ready(gw.smtp);
    after.cmd("QUIT").expect(221, "2.0.0");
}
