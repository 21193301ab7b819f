//! `imgsvc`: the one binary users run.

use std::process::ExitCode;

use clap::Parser;
use imgsvc_lambda::cli;

fn main() -> ExitCode {
    // Usage errors exit with status 2 (clap's convention, and our documented contract).
    let args = cli::Cli::parse();
    match args.command {
        cli::Command::Process(process) => cli::process::run(&process),
        cli::Command::Serve(serve) => cli::report(cli::serve::run(serve)),
        cli::Command::Token(token) => cli::report(cli::token::run(&token)),
        cli::Command::Migrate(migrate) => cli::migrate::run(migrate),
        cli::Command::Aws(aws) => cli::report(cli::aws::run(aws)),
        cli::Command::Sweep(sweep) => cli::report(cli::sweep::run(sweep)),
    }
}
