//! The wasm32-wasip1 guest: one request on stdin, one response on stdout (see `wire`).
//!
//! It touches nothing but those two streams (and stderr for a usage error), so a host can
//! give it no filesystem, environment, clock or network at all.

use std::io::{Read, Write};
use std::process::ExitCode;

use imgsvc_sandbox_guest::wire;

fn main() -> ExitCode {
    let mut request = Vec::new();
    if let Err(error) = std::io::stdin().read_to_end(&mut request) {
        eprintln!("imgsvc-sandbox-guest: reading stdin: {error}");
        return ExitCode::from(2);
    }
    let response = match wire::answer(&request) {
        Ok(response) => response,
        Err(error) => {
            eprintln!("imgsvc-sandbox-guest: {error}");
            return ExitCode::from(2);
        }
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_all(&response).and_then(|()| stdout.flush()) {
        eprintln!("imgsvc-sandbox-guest: writing stdout: {error}");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
