//! `imgsvc`: the one binary users run.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Usage errors exit with status 2 (clap's convention, and our documented contract).
    let args = cli::Cli::parse();
    match args.command {
        cli::Command::Process(process) => cli::process::run(&process),
    }
}
