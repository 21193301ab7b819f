//! `imgsvc`: the one binary users run.

use std::process::ExitCode;

use clap::Parser;
use imgsvc_lambda::{cli, settings};

fn main() -> ExitCode {
    // Before any thread exists: one malloc arena, image-sized buffers kept in it (allocator.rs).
    imgsvc_lambda::allocator::configure_malloc();
    // Usage errors exit with status 2 (clap's convention, and our documented contract).
    cli::run(settings::Settings::parse())
}
