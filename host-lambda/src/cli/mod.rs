//! Command-line parsing: one subcommand per job.

pub mod process;

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
}
