//! `imgsvc`: the one binary users run.

use std::process::ExitCode;

use clap::Parser;
use imgsvc_lambda::{cli, settings};

fn main() -> ExitCode {
    // Before any thread exists: one malloc arena, unless MALLOC_ARENA_MAX says otherwise.
    imgsvc_lambda::allocator::limit_malloc_arenas();
    // Usage errors exit with status 2 (clap's convention, and our documented contract).
    cli::run(settings::Settings::parse())
}
