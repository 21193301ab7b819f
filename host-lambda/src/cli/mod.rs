//! Command-line parsing: one subcommand per job.

pub mod aws;
pub mod limits;
pub mod migrate;
pub mod process;
pub mod progress;
pub mod sandbox;
pub mod serve;
pub mod sweep;
pub mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "imgsvc",
    version,
    about = "The imgsvc image service and its tools"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the upload pipeline on local files: writes DIR/<stem>.webp and
    /// DIR/<stem>.thumb.webp and prints one JSON object per input. Exit status: 0 when all
    /// succeeded, 1 when any input was refused, 2 for usage errors.
    Process(process::ProcessArgs),
    /// Serve the HTTP API locally, on embedded storage under the data directory.
    Serve(serve::ServeArgs),
    /// The migration from the legacy gallery: drain the outbox, backfill, verify,
    /// reconcile, reverse.
    Migrate(migrate::MigrateArgs),
    /// Set up the AWS stores: `aws init` creates the table and the bucket.
    Aws(aws::AwsArgs),
    /// Remove expired staged originals and image objects no record names (what a killed
    /// upload leaves), on `serve`'s settings; `--dry-run` only reports.
    Sweep(sweep::SweepArgs),
    /// Print a development token for the local server.
    Token(token::TokenArgs),
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
