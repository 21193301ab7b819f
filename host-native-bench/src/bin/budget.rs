//! `budget`: the P95 upload-budget report. Runs the upload path — the core with its timed
//! stages and parallel encode, then both objects and the record written to the embedded
//! stores (filesystem + SQLite), exactly as `POST /images` does after reading the body —
//! over every corpus photo, `--runs` times, one upload at a time.
//!
//! Prints per-photo medians, the corpus-wide P50/P95/P99/max over every upload, peak RSS,
//! and the verdict against the seeds' budget (P95 upload < 1000 ms); `--json` writes the
//! same for machines.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use imgsvc_lambda::upload;
use imgsvc_native_bench::{
    corpus_dir, corpus_photos, median, name_of, peak_rss_mib, percentile, round2,
};
use serde_json::{Value, json};

/// The seeds' budget: P95 upload latency under one second.
const BUDGET_P95_MS: f64 = 1000.0;

#[derive(Debug, Parser)]
struct Args {
    /// Uploads per photo.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The photo corpus (default: ../shared/corpus beside the repository).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Only the first N photos (by name), for a quick smoke.
    #[arg(long)]
    limit: Option<usize>,
    /// Where to write the JSON report.
    #[arg(long)]
    json: Option<PathBuf>,
}

struct PhotoResult {
    name: String,
    bytes: u64,
    outcome: Result<(u32, u32), String>,
    millis: Vec<f64>,
}

fn main() -> anyhow::Result<()> {
    // As the service does, before any thread exists (the runtime's included).
    imgsvc_lambda::allocator::configure_malloc();
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let corpus = args.corpus.clone().unwrap_or_else(corpus_dir);
    let mut photos = corpus_photos(&corpus)?;
    if let Some(limit) = args.limit {
        photos.truncate(limit);
    }
    let data = tempfile::tempdir().context("creating a data dir")?;
    let app = imgsvc_lambda::wiring::embedded_app(data.path(), "http://127.0.0.1:0").await?;

    let mut results = Vec::new();
    for path in &photos {
        let original =
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut result = PhotoResult {
            name: name_of(path),
            bytes: original.len() as u64,
            outcome: Err(String::new()),
            millis: Vec::new(),
        };
        for _ in 0..args.runs {
            let started = Instant::now();
            match upload_once(&app, Bytes::from(original.clone())).await {
                Ok(dimensions) => {
                    result.millis.push(started.elapsed().as_secs_f64() * 1000.0);
                    result.outcome = Ok(dimensions);
                }
                Err(code) => {
                    result.outcome = Err(code);
                    break;
                }
            }
        }
        results.push(result);
    }
    let report = report(&args, &results);
    print_table(&results, &report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// One upload through the service's upload path; the display size, or the refusal's code.
async fn upload_once(app: &imgsvc_lambda::app::App, original: Bytes) -> Result<(u32, u32), String> {
    // The refusal's code as the API would answer it.
    let record = upload::create(app, "budget", original, upload::UploadFields::default())
        .await
        .map_err(|e| imgsvc_lambda::api::error::ApiError::from(e).code.to_owned())?;
    Ok((record.width, record.height))
}

fn report(args: &Args, results: &[PhotoResult]) -> Value {
    let mut all: Vec<f64> = results
        .iter()
        .flat_map(|r| r.millis.iter().copied())
        .collect();
    all.sort_by(f64::total_cmp);
    let p95 = percentile(&all, 95.0);
    json!({
        "runs_per_photo": args.runs,
        "photos": results.iter().map(|r| json!({
            "photo": r.name,
            "bytes": r.bytes,
            "ok": r.outcome.is_ok(),
            "refused": r.outcome.as_ref().err(),
            "display": r.outcome.as_ref().ok().map(|(w, h)| format!("{w}x{h}")),
            "median_ms": round2(median(&r.millis)),
            "max_ms": round2(r.millis.iter().copied().fold(f64::NAN, f64::max)),
        })).collect::<Vec<_>>(),
        "uploads": all.len(),
        "refused": results.iter().filter(|r| r.outcome.is_err()).count(),
        "p50_ms": round2(percentile(&all, 50.0)),
        "p95_ms": round2(p95),
        "p99_ms": round2(percentile(&all, 99.0)),
        "max_ms": round2(all.last().copied().unwrap_or(f64::NAN)),
        "peak_rss_mib": peak_rss_mib().map(round2),
        "budget_p95_ms": BUDGET_P95_MS,
        "within_budget": p95 < BUDGET_P95_MS,
    })
}

fn print_table(results: &[PhotoResult], report: &Value) {
    println!("| photo | MB | display | median ms | max ms |");
    println!("| --- | ---: | --- | ---: | ---: |");
    for r in results {
        let mb = r.bytes as f64 / 1e6;
        match &r.outcome {
            Ok((w, h)) => println!(
                "| {} | {mb:.2} | {w}×{h} | {:.1} | {:.1} |",
                r.name,
                median(&r.millis),
                r.millis.iter().copied().fold(f64::NAN, f64::max)
            ),
            Err(code) => println!("| {} | {mb:.2} | refused: {code} | – | – |", r.name),
        }
    }
    println!();
    println!(
        "{} uploads ({} photos refused): P50 {} ms, P95 {} ms, P99 {} ms, max {} ms; peak RSS {} MiB",
        report["uploads"],
        report["refused"],
        report["p50_ms"],
        report["p95_ms"],
        report["p99_ms"],
        report["max_ms"],
        report["peak_rss_mib"]
    );
    let verdict = if report["within_budget"] == json!(true) {
        "within"
    } else {
        "OVER"
    };
    println!("budget: P95 < {BUDGET_P95_MS} ms — {verdict} budget");
}
