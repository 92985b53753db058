//! Where the data lives: a relative `data_dir` is taken from the config file's directory (like every
//! path in the file), so `serve` and the CLI find the same store from anywhere; and a `serve` that cannot
//! start leaves no data_dir behind that it made itself.

use std::net::TcpListener;
use std::path::Path;

use crate::common::*;

#[test]
fn a_relative_data_dir_is_beside_the_config_file_whatever_the_working_directory() {
    let mut h = Harness::new();
    let etc = h.dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    h.config_path = etc.join("gateway.toml");
    h.write_config_with_data_dir(&Config::basic(&h.rx), Path::new("data"));

    let gw = h.start(); // runs in h.dir, not in etc/
    let msg_id =
        SmtpClient::ready(gw.smtp).send_mail("a@sender.test", &["inbox@example.test"], b"Subject: x\r\n\r\ny\r\n");
    h.wait_requests(1, SHORT);
    assert!(etc.join("data/mxhook.db").is_file(), "the store must be in etc/data:\n{}", gw.log());
    assert!(!h.dir.path().join("data").exists(), "nothing in the working directory of serve");

    // The CLI from a third directory finds the same store.
    let elsewhere = tempfile::tempdir().unwrap();
    let cfg = h.config_path.to_str().unwrap();
    let out = run_cli(&["--config", cfg, "messages", "list", "--json"], elsewhere.path());
    out.assert_ok(&h.logs());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["id"], msg_id.as_str(), "{}", out.describe());
    assert!(!elsewhere.path().join("data").exists());
}

/// The basic config with `data_dir` and one listener put on `busy`'s port.
fn config_on_a_taken_port(h: &Harness, data_dir: &Path, busy: &TcpListener, smtp: bool) -> std::path::PathBuf {
    let text = Config::basic(&h.rx).render(data_dir);
    let (free, taken) = match smtp {
        true => ("listen = [\"127.0.0.1:0\"]".to_string(), format!("listen = [\"{}\"]", busy.local_addr().unwrap())),
        false => ("listen = \"127.0.0.1:0\"".to_string(), format!("listen = \"{}\"", busy.local_addr().unwrap())),
    };
    assert!(text.contains(&free), "the spine's config renderer changed:\n{text}");
    let path = h.dir.path().join(if smtp { "smtp-taken.toml" } else { "http-taken.toml" });
    std::fs::write(&path, text.replacen(&free, &taken, 1)).unwrap();
    path
}

#[test]
fn a_serve_that_cannot_bind_removes_the_data_dir_it_made_and_only_that() {
    let h = Harness::new();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    for (smtp, protocol) in [(true, "SMTP"), (false, "HTTP")] {
        // Two levels that do not exist yet: both go.
        let fresh = h.dir.path().join(format!("fresh-{protocol}"));
        let path = config_on_a_taken_port(&h, &fresh.join("data"), &busy, smtp);
        let out = run_cli(&["--config", path.to_str().unwrap(), "serve"], h.dir.path());
        assert_eq!(out.code, Some(1), "{}", out.describe());
        let said = format!("cannot listen for {protocol} on {}", busy.local_addr().unwrap());
        assert!(out.stderr_str().contains(&said), "{}", out.describe());
        assert!(!fresh.exists(), "{} left behind after: {}", fresh.display(), out.describe());

        // A data_dir that was there keeps what it had.
        let kept = h.dir.path().join(format!("kept-{protocol}"));
        std::fs::create_dir(&kept).unwrap();
        std::fs::write(kept.join("mine"), b"x").unwrap();
        let path = config_on_a_taken_port(&h, &kept, &busy, smtp);
        let out = run_cli(&["--config", path.to_str().unwrap(), "serve"], h.dir.path());
        assert_eq!(out.code, Some(1), "{}", out.describe());
        assert_eq!(std::fs::read(kept.join("mine")).unwrap(), b"x", "{}", out.describe());
    }
}
