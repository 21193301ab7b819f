//! The commands: one runner per subcommand, each given its settings (`crate::settings`,
//! parsed once in `main.rs`) and asking the composition root (`crate::wiring`) for only
//! what it needs.

pub mod aws;
pub mod migrate;
pub mod process;
pub mod progress;
pub mod serve;
pub mod sweep;
pub mod token;

use std::process::ExitCode;

use crate::settings::{Command, Settings};

/// Run the command the settings name; its exit status.
pub fn run(settings: Settings) -> ExitCode {
    match settings.command {
        Command::Process(process) => process::run(&process),
        Command::Serve(serve) => report(serve::run(serve)),
        Command::Token(token) => report(token::run(&token)),
        Command::Migrate(migrate) => migrate::run(migrate),
        Command::Aws(aws) => report(aws::run(aws)),
        Command::Sweep(sweep) => report(sweep::run(sweep)),
    }
}

/// Exit status for a command that either works or fails with a message.
pub fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
