use std::process::ExitCode;

fn main() -> ExitCode {
    match mxhook::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mxhook: {e:#}");
            ExitCode::FAILURE
        }
    }
}
