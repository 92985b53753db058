//! `mxhook deliver` as an MTA's pipe: exit codes (sysexits) for each case, the running `serve`
//! sending what it stored, and a real Postfix `pipe` transport calling it.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use crate::common::postfix::{self, POSTFIX_TIMEOUT, Postfix};
use crate::common::*;

const MESSAGE: &[u8] = b"From: Ada <ada@sender.test>\nTo: inbox@example.test\nSubject: piped\n\
    Message-ID: <piped@sender.test>\n\nThrough a pipe.\n";

/// Runs `mxhook deliver` with `args` and `input` on stdin: (exit code, stdout, stderr).
fn deliver(h: &Harness, args: &[&str], input: &[u8]) -> (i32, String, String) {
    let mut full = vec!["--config", h.config_path.to_str().unwrap(), "deliver"];
    full.extend_from_slice(args);
    let mut child = cli::mxhook(&full, h.dir.path()).stdin(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = cli::wait_cli(&mut child, &full);
    (out.code.unwrap_or(-1), out.stdout_str(), out.stderr_str())
}

#[test]
fn exit_codes_and_the_running_serve_sends_what_was_stored() {
    let h = Harness::basic();
    let gw = h.start();

    let (code, out, err) = deliver(&h, &["--from", "ada@sender.test", "--to", "inbox@example.test"], MESSAGE);
    assert_eq!(code, 0, "stored: {out} {err}");
    let id = out.trim().strip_prefix("queued as ").unwrap_or_else(|| panic!("stdout: {out}")).to_string();
    let (_, e) = h.event_for(&id);
    assert_eq!(e["message"]["subject"], "piped");
    assert_eq!(e["message"]["smtp"]["mail_from"], "ada@sender.test");
    assert_eq!(e["message"]["smtp"]["rcpt_to"], serde_json::json!(["inbox@example.test"]));
    assert_eq!(e["message"]["auth"]["source"], "upstream", "{e:#}");
    assert_eq!(h.raw(&id), to_crlf(MESSAGE), "kept with CRLF line ends, as SMTP carries it");

    let (code, out, err) = deliver(&h, &["--from", "ada@sender.test", "--to", "x@nowhere.test"], MESSAGE);
    assert_eq!(code, 67, "EX_NOUSER for a recipient without a route: {out} {err}");
    assert!(out.is_empty() && err.contains("550"), "{out} | {err}");

    let (code, out, err) = deliver(&h, &["--from", "ada@sender.test", "--to", "inbox@example.test"], b"");
    assert_eq!(code, 65, "EX_DATAERR for no message: {out} {err}");

    // The store cannot take the message: EX_TEMPFAIL, nothing printed, nothing kept.
    let before = h.messages().len();
    let db = rusqlite::Connection::open(h.data_dir().join("mxhook.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (code, out, err) = deliver(&h, &["--from", "ada@sender.test", "--to", "inbox@example.test"], MESSAGE);
    db.execute_batch("ROLLBACK").unwrap();
    assert_eq!(code, 75, "EX_TEMPFAIL while the store is locked: {out} {err}");
    assert!(out.is_empty(), "nothing on stdout before the message is durable: {out}");
    assert_eq!(h.messages().len(), before);
    drop(gw);
}

#[test]
fn a_real_postfix_pipe_transport_calls_mxhook_deliver() {
    if !postfix::available() {
        return;
    }
    let h = Harness::basic();
    // The pipe runs as `nobody`: it must read the config and own the store it creates.
    for p in [h.dir.path(), &h.config_path] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::create_dir(h.data_dir()).unwrap();
    let chown = std::process::Command::new("chown").arg("nobody").arg(h.data_dir()).status().unwrap();
    assert!(chown.success());
    let service = format!(
        "mxhook    unix  -       n       n       -       -       pipe\n  flags=Rq user=nobody argv={} --config {} deliver --from ${{sender}} --to ${{recipient}}\n",
        BIN,
        h.config_path.display()
    );
    let pf =
        Postfix::start(&[("example.test", "mxhook:".to_string()), ("other.test", "mxhook:".to_string())], &service);
    let context =
        || format!("{}\n----- Postfix queue -----\n{}\n----- maillog -----\n{}", h.logs(), pf.queue(), pf.maillog());

    // Stored by the pipe (exit 0): Postfix says sent; a serve started later sends it.
    pf.submit("ada@sender.test", "inbox@example.test", &to_crlf(MESSAGE));
    wait_for(POSTFIX_TIMEOUT, "Postfix: status=sent via the pipe", context, || pf.maillog().contains("status=sent"));
    // A recipient without a route (exit 67): Postfix bounces it at once, it does not retry.
    pf.submit("ada@sender.test", "x@other.test", &to_crlf(MESSAGE));
    wait_for(POSTFIX_TIMEOUT, "Postfix: status=bounced for x@other.test", context, || {
        pf.maillog().lines().any(|l| l.contains("to=<x@other.test>") && l.contains("status=bounced"))
    });
    let gw = h.start();
    let requests = h.wait_requests(1, SHORT);
    assert_eq!(requests[0].json()["message"]["subject"], "piped");
    wait_for(POSTFIX_TIMEOUT, "the queue empty", context, || pf.queue().contains("empty"));
    drop(gw);
}
