//! `decode_time`: the core's decode alone (headers, limits, the one decode to 8-bit RGB(A);
//! no resize, no encode), per file, on this thread: the figure to set beside another
//! decoder's (e.g. libheif's, timed the same way by `scripts/decode-time-libheif.py`).
//!
//!   cargo run --release -p imgsvc-native-bench --bin decode_time -- --runs 5 FILE...
//!
//! Prints one line per file: name, size, median and min of `--runs` decodes (after one
//! warm-up), in milliseconds; then the median of the per-file medians.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use imgsvc_core::{Policy, stages};
use imgsvc_native_bench::{median, name_of};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 5)]
    runs: usize,
    files: Vec<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let mut medians = Vec::new();
    for path in &args.files {
        let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
        let mut times = Vec::with_capacity(args.runs);
        let mut size = (0, 0);
        for run in 0..=args.runs {
            let started = Instant::now();
            let decoded = stages::decode(&bytes, &Policy::default())
                .with_context(|| path.display().to_string())?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            size = (decoded.pixels.width(), decoded.pixels.height());
            if run > 0 {
                times.push(ms);
            }
        }
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        let med = median(&times);
        medians.push(med);
        println!(
            "{:<32} {:>5}x{:<5} median {med:>8.1} ms  min {min:>8.1} ms",
            name_of(path),
            size.0,
            size.1
        );
    }
    println!("median of medians: {:.1} ms", median(&medians));
    Ok(())
}
