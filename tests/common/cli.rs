//! The CLI as a subprocess: `run_cli` with a 30 s deadline, and what it printed.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BIN;

pub struct CliOutput {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl CliOutput {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// stdout and stderr together, for matching messages wherever the CLI prints them.
    pub fn all_output(&self) -> String {
        format!("{}{}", self.stdout_str(), self.stderr_str())
    }
    pub fn describe(&self) -> String {
        format!(
            "`mxhook {}` exited {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            String::from_utf8_lossy(&self.stdout[..self.stdout.len().min(4000)]),
            self.stderr_str()
        )
    }
    #[track_caller]
    pub fn assert_ok(&self, context: &str) {
        assert_eq!(self.code, Some(0), "{}\n{context}", self.describe());
    }
}

/// The binary with the environment cleared of what would change its behaviour (log level, config
/// path, colours), in `cwd`, stdin closed.
pub fn mxhook(args: &[&str], cwd: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("MXHOOK_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs the binary with `args` (no config injected) and a 30 s deadline.
pub fn run_cli(args: &[&str], cwd: &Path) -> CliOutput {
    let mut child = mxhook(args, cwd).spawn().unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
    wait_cli(&mut child, args)
}

pub fn wait_cli(child: &mut Child, args: &[&str]) -> CliOutput {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`mxhook {}` did not finish within 30 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    CliOutput {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: status.code(),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}
