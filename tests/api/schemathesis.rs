//! schemathesis (PyPI, pinned in .ci/run) against the running gateway: it reads
//! `/v1/openapi.json`, generates valid and invalid requests for every operation, and checks every
//! answer: never a server error, every status, content type, header and body as the file says.
//! In CI a missing schemathesis fails the test; elsewhere it is skipped with a loud message.

use std::process::Command;
use std::time::Instant;

use crate::support::*;

fn schemathesis() -> Option<String> {
    let found = Command::new("schemathesis").arg("--version").output().ok().filter(|o| o.status.success());
    found.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

#[test]
fn the_api_answers_as_its_openapi_file_says() {
    let Some(version) = schemathesis() else {
        if std::env::var_os("CI").is_some() {
            panic!("schemathesis is not installed: `.ci/run` installs it with pip (pinned there)");
        }
        eprintln!(
            "\n*** SKIPPED the_api_answers_as_its_openapi_file_says: schemathesis is not installed \
             (`python3 -m pip install schemathesis`, as .ci/run does) ***\n"
        );
        return;
    };
    let h = setup(|_| {});
    let gw = h.start();
    // Some mail to find: a plain message, and one with an attachment.
    for n in 0..3 {
        let id = send(&gw, "inbox@example.test", &plain(&format!("note {n}"), "inbox@example.test", "hi\r\n"));
        h.event_for(&id);
    }
    let with_attachment = b"From: bob@other.test\r\nTo: inbox@example.test\r\nSubject: file\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\n\
        Content-Type: text/csv\r\nContent-Disposition: attachment; filename=\"a.csv\"\r\n\r\na,b\r\n--b--\r\n";
    let id = send(&gw, "inbox@example.test", with_attachment);
    h.event_for(&id);

    let started = Instant::now();
    let report = h.dir.path().join("schemathesis-report");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/schemathesis.toml");
    let out = Command::new("schemathesis")
        .args(["--config-file", config, "run", &format!("http://{}/v1/openapi.json", gw.http)])
        .args(["--header", &format!("Authorization: Bearer {WRITE}")])
        .args(["--max-examples", "20", "--seed", "17", "--workers", "1"])
        .args(["--request-timeout", "20", "--suppress-health-check", "all"])
        .args(["--report", "junit", "--report-dir", report.to_str().unwrap()])
        .current_dir(h.dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tail: String =
        stdout.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    eprintln!("{version} ran in {:?}:\n{tail}", started.elapsed());
    // The gateway's errors first: a CI log shows the start and the end of a long message.
    assert!(
        out.status.success(),
        "schemathesis found problems; the gateway's errors and warnings:\n{}\n\n{stdout}\n{}\n{}",
        gw.problems(),
        String::from_utf8_lossy(&out.stderr),
        h.logs()
    );
    assert!(!gw.log().contains("panicked"), "{}", gw.log());
}
