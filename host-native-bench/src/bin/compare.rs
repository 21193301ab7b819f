//! `compare`: imgsvc beside sharp on the same photos in the same run, against two sharp
//! pipelines: the reference design's (two decodes per upload) and the one an expert writes
//! (one decode: `rotate().resize(2048, inside).raw()`, display and thumbnail from those
//! pixels). `host-native-bench/sharp/compare.sh` installs sharp and runs this.
//!
//! 1. imgsvc's pipeline per photo, `--runs` times after a warm-up: on one thread
//!    (`Sequential`) and with the parallel encode (two threads); then this process's peak
//!    RSS (nothing else big has been allocated yet).
//! 2. sharp's (`sharp/run.mjs`) in four child processes: each pipeline with
//!    `sharp.concurrency(1)` and `UV_THREADPOOL_SIZE=1`, and at defaults; each reports its
//!    own peak RSS.
//! 3. Quality: every output against a reference made without either pipeline's resampler
//!    or encoder — the source decoded and oriented, resized with `image`'s Lanczos3 to the
//!    output's size (the thumbnail: the centre square first) — scored with image-compare's
//!    hybrid SSIM (1 = identical). sharp's thumbnail, which the seeds make without
//!    `.rotate()`, is judged against the unoriented reference: what it was asked to depict.
//!
//! Prints the table (photo, imgsvc ms, sharp ms, ratio, sizes, SSIM) and the summary
//! (median and P95 of per-photo medians, ratios, peak RSS); `--json` writes it all.
//! `--imgsvc-only` skips step 2, for a before/after of an imgsvc change.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use image::{DynamicImage, imageops::FilterType};
use imgsvc_core::{Policy, Sequential, stages};
use imgsvc_lambda::pipeline::HostRuntime;
use imgsvc_native_bench::{
    corpus_dir, corpus_photos, median, name_of, peak_rss_mib, percentile, repo_root, round2,
};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
struct Args {
    /// Timed runs per photo and pipeline (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The photo corpus (default: ../shared/corpus beside the repository).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Only the first N photos (by name), for a quick smoke.
    #[arg(long)]
    limit: Option<usize>,
    /// Where outputs go (default: a temporary directory).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The node binary.
    #[arg(long, default_value = "node")]
    node: String,
    /// Skip sharp: imgsvc's times, sizes and SSIM only (a before/after of an imgsvc change,
    /// where sharp's side would be the same both times).
    #[arg(long)]
    imgsvc_only: bool,
}

/// One pipeline's result for one photo.
#[derive(Debug, Default, Clone)]
struct Run {
    millis: Vec<f64>,
    display: PathBuf,
    thumbnail: PathBuf,
    display_bytes: u64,
    thumbnail_bytes: u64,
}

fn main() -> anyhow::Result<()> {
    // As the service does: its pipeline, measured with its allocator settings.
    imgsvc_lambda::allocator::configure_malloc();
    let args = Args::parse();
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let policy = Policy::default();
    let corpus = args.corpus.clone().unwrap_or_else(corpus_dir);
    let mut photos: Vec<PathBuf> = corpus_photos(&corpus)?
        .into_iter()
        // Only what imgsvc accepts (sharp would take the 16 MB photo; the service refuses it).
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() <= policy.max_input_bytes))
        .collect();
    if let Some(limit) = args.limit {
        photos.truncate(limit);
    }
    let temp = tempfile::tempdir()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    for dir in [
        "imgsvc",
        "sharp-single",
        "sharp-default",
        "sharp-one-decode-single",
        "sharp-one-decode-default",
    ] {
        std::fs::create_dir_all(out.join(dir))?;
    }

    // 1. imgsvc, before anything else grows this process.
    let mut single = Vec::new();
    let mut parallel = Vec::new();
    for photo in &photos {
        let bytes = std::fs::read(photo)?;
        single.push(time_imgsvc(&bytes, &policy, args.runs, false, None)?);
        parallel.push(time_imgsvc(
            &bytes,
            &policy,
            args.runs,
            true,
            Some((&out.join("imgsvc"), photo)),
        )?);
    }
    let imgsvc_peak_mib = peak_rss_mib();

    // 2. sharp (with --imgsvc-only, no runs: every sharp column is left empty).
    let sharp = |dir: &str, single: bool, one_decode: bool| {
        if args.imgsvc_only {
            Ok((vec![None; photos.len()], Value::Null))
        } else {
            run_sharp(&args, &out.join(dir), &photos, single, one_decode)
        }
    };
    let (sharp_single, sharp_single_summary) = sharp("sharp-single", true, false)?;
    let (sharp_default, sharp_default_summary) = sharp("sharp-default", false, false)?;
    let (one_decode_single, one_decode_single_summary) =
        sharp("sharp-one-decode-single", true, true)?;
    let (one_decode_default, _) = sharp("sharp-one-decode-default", false, true)?;

    // 3. Quality, and the table.
    let mut rows = Vec::new();
    for (i, photo) in photos.iter().enumerate() {
        let ours = &parallel[i];
        let theirs = &sharp_single[i];
        let quality = quality(photo, ours, theirs.as_ref())?;
        let imgsvc_1 = median(&single[i].millis);
        let imgsvc_2 = median(&parallel[i].millis);
        // A photo sharp failed on has no time (NaN: left out of the statistics).
        let sharp_ms =
            |runs: &[Option<Run>]| runs[i].as_ref().map_or(f64::NAN, |r| median(&r.millis));
        let sharp_1 = sharp_ms(&sharp_single);
        let sharp_d = sharp_ms(&sharp_default);
        let one_1 = sharp_ms(&one_decode_single);
        let one_d = sharp_ms(&one_decode_default);
        rows.push(json!({
            "photo": name_of(photo),
            "bytes": std::fs::metadata(photo)?.len(),
            "imgsvc_1thread_ms": round2(imgsvc_1),
            "sharp_1thread_ms": round2(sharp_1),
            "ratio_1thread": round2(imgsvc_1 / sharp_1),
            "imgsvc_parallel_ms": round2(imgsvc_2),
            "sharp_default_ms": round2(sharp_d),
            "ratio_default": round2(imgsvc_2 / sharp_d),
            "sharp_one_decode_1thread_ms": round2(one_1),
            "ratio_one_decode_1thread": round2(imgsvc_1 / one_1),
            "sharp_one_decode_default_ms": round2(one_d),
            "ratio_one_decode_default": round2(imgsvc_2 / one_d),
            "imgsvc_display_bytes": ours.display_bytes,
            "sharp_display_bytes": theirs.as_ref().map(|r| r.display_bytes),
            "imgsvc_thumbnail_bytes": ours.thumbnail_bytes,
            "sharp_thumbnail_bytes": theirs.as_ref().map(|r| r.thumbnail_bytes),
            "quality": quality,
        }));
    }
    let column = |key: &str| -> Vec<f64> {
        rows.iter()
            .filter_map(|r| r[key].as_f64())
            .filter(|v| v.is_finite())
            .collect()
    };
    let stats = |key: &str| {
        let mut values = column(key);
        values.sort_by(f64::total_cmp);
        json!({"median": round2(percentile(&values, 50.0)), "p95": round2(percentile(&values, 95.0))})
    };
    let summary = json!({
        "photos": rows.len(),
        "runs": args.runs,
        "imgsvc_1thread_ms": stats("imgsvc_1thread_ms"),
        "sharp_1thread_ms": stats("sharp_1thread_ms"),
        "imgsvc_parallel_ms": stats("imgsvc_parallel_ms"),
        "sharp_default_ms": stats("sharp_default_ms"),
        "ratio_1thread_per_photo": stats("ratio_1thread"),
        "ratio_default_per_photo": stats("ratio_default"),
        "sharp_one_decode_1thread_ms": stats("sharp_one_decode_1thread_ms"),
        "sharp_one_decode_default_ms": stats("sharp_one_decode_default_ms"),
        "ratio_one_decode_1thread_per_photo": stats("ratio_one_decode_1thread"),
        "ratio_one_decode_default_per_photo": stats("ratio_one_decode_default"),
        "ratio_one_decode_1thread_worst": column("ratio_one_decode_1thread")
            .into_iter()
            .fold(f64::NAN, f64::max),
        "imgsvc_peak_rss_mib": imgsvc_peak_mib.map(round2),
        "sharp_1thread_peak_rss_mib": sharp_single_summary["peak_rss_mib"].as_f64().map(round2),
        "sharp_default_peak_rss_mib": sharp_default_summary["peak_rss_mib"].as_f64().map(round2),
        "sharp_one_decode_1thread_peak_rss_mib": one_decode_single_summary["peak_rss_mib"].as_f64().map(round2),
        "sharp_versions": sharp_single_summary["versions"],
    });
    print_table(&rows, &summary);
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&json!({"rows": rows, "summary": summary}))?,
        )?;
    }
    Ok(())
}

/// Time imgsvc's pipeline on one photo; with `save`, write the last run's outputs.
fn time_imgsvc(
    bytes: &[u8],
    policy: &Policy,
    runs: usize,
    parallel: bool,
    save: Option<(&Path, &PathBuf)>,
) -> anyhow::Result<Run> {
    let once = || -> anyhow::Result<imgsvc_core::Processed> {
        let processed = if parallel {
            imgsvc_core::process_with(bytes, policy, &HostRuntime::new(true))
        } else {
            imgsvc_core::process_with(bytes, policy, &Sequential)
        };
        processed.map_err(|e| anyhow::anyhow!("imgsvc refused it: {e}"))
    };
    once()?; // warm-up
    let mut run = Run::default();
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        let processed = once()?;
        run.millis.push(started.elapsed().as_secs_f64() * 1000.0);
        last = Some(processed);
    }
    if let (Some(processed), Some((dir, photo))) = (last, save) {
        let stem = photo
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        run.display = dir.join(format!("{stem}.webp"));
        run.thumbnail = dir.join(format!("{stem}.thumb.webp"));
        std::fs::write(&run.display, &processed.display.data)?;
        std::fs::write(&run.thumbnail, &processed.thumbnail.data)?;
        run.display_bytes = processed.display.data.len() as u64;
        run.thumbnail_bytes = processed.thumbnail.data.len() as u64;
    }
    Ok(run)
}

/// Run `sharp/run.mjs` over the photos (`one_decode`: the expert's pipeline, else the
/// reference design's); per photo its run (None if sharp failed), and the summary line
/// (peak RSS, versions).
fn run_sharp(
    args: &Args,
    out: &Path,
    photos: &[PathBuf],
    single: bool,
    one_decode: bool,
) -> anyhow::Result<(Vec<Option<Run>>, Value)> {
    let script = repo_root().join("host-native-bench/sharp/run.mjs");
    let mut command = Command::new(&args.node);
    command
        .arg(&script)
        .arg("--out")
        .arg(out)
        .args(["--runs", &args.runs.to_string()])
        .args(photos);
    if single {
        command.arg("--single").env("UV_THREADPOOL_SIZE", "1");
    }
    if one_decode {
        command.arg("--one-decode");
    }
    let output = command
        .output()
        .with_context(|| format!("running {} {}", args.node, script.display()))?;
    if !output.status.success() {
        bail!(
            "sharp failed ({}): {}\n(install it: npm ci --prefix host-native-bench/sharp)",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("parsing run.mjs output")?;
    let summary = lines
        .iter()
        .find(|l| l["summary"] == json!(true))
        .cloned()
        .unwrap_or(Value::Null);
    let runs = photos
        .iter()
        .map(|photo| {
            let line = lines.iter().find(|l| l["photo"] == json!(name_of(photo)))?;
            if line["ok"] != json!(true) {
                return None;
            }
            Some(Run {
                millis: serde_json::from_value(line["millis"].clone()).ok()?,
                display: PathBuf::from(line["display"]["path"].as_str()?),
                thumbnail: PathBuf::from(line["thumbnail"]["path"].as_str()?),
                display_bytes: line["display"]["bytes"].as_u64()?,
                thumbnail_bytes: line["thumbnail"]["bytes"].as_u64()?,
            })
        })
        .collect();
    Ok((runs, summary))
}

/// Hybrid SSIM of each output against the reference downscale.
fn quality(photo: &Path, ours: &Run, theirs: Option<&Run>) -> anyhow::Result<Value> {
    let bytes = std::fs::read(photo)?;
    let decoded = stages::decode(&bytes, &Policy::default())
        .map_err(|e| anyhow::anyhow!("decoding {}: {e}", photo.display()))?;
    let orientation = decoded.orientation();
    let raw = to_dynamic(&decoded.pixels)?;
    let oriented = to_dynamic(&stages::orient(decoded.pixels, orientation))?;
    let score = |reference: &DynamicImage, output: &Path, cover: bool| -> anyhow::Result<f64> {
        let output = image::open(output).with_context(|| format!("{}", output.display()))?;
        let base = if cover {
            let side = reference.width().min(reference.height());
            reference.crop_imm(
                (reference.width() - side) / 2,
                (reference.height() - side) / 2,
                side,
                side,
            )
        } else {
            reference.clone()
        };
        let expected = base.resize_exact(output.width(), output.height(), FilterType::Lanczos3);
        let similarity = image_compare::rgb_hybrid_compare(&expected.to_rgb8(), &output.to_rgb8())
            .map_err(|e| anyhow::anyhow!("comparing: {e}"))?;
        Ok(round4(similarity.score))
    };
    Ok(json!({
        "imgsvc_display": score(&oriented, &ours.display, false)?,
        "imgsvc_thumbnail": score(&oriented, &ours.thumbnail, true)?,
        "sharp_display": theirs.map(|r| score(&oriented, &r.display, false)).transpose()?,
        "sharp_thumbnail": theirs.map(|r| score(&raw, &r.thumbnail, true)).transpose()?,
    }))
}

fn to_dynamic(pixels: &stages::Pixels) -> anyhow::Result<DynamicImage> {
    let (w, h, data) = (pixels.width(), pixels.height(), pixels.as_bytes().to_vec());
    let image = if pixels.has_alpha() {
        image::RgbaImage::from_raw(w, h, data).map(DynamicImage::ImageRgba8)
    } else {
        image::RgbImage::from_raw(w, h, data).map(DynamicImage::ImageRgb8)
    };
    image.context("pixel buffer of the wrong size")
}

fn round4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

fn print_table(rows: &[Value], summary: &Value) {
    println!(
        "| photo | MB | imgsvc ms (1 thread) | sharp ms (1 thread) | ratio | sharp one decode ms (1 thread) | ratio | imgsvc ms (parallel) | sharp ms (default) | ratio | sharp one decode ms (default) | ratio | display KB imgsvc / sharp | thumb KB imgsvc / sharp | SSIM display imgsvc / sharp | SSIM thumb imgsvc / sharp |"
    );
    println!(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let kb = |v: &Value| {
        v.as_f64()
            .map_or("–".to_owned(), |b| format!("{:.0}", b / 1000.0))
    };
    let num = |v: &Value| v.as_f64().map_or("–".to_owned(), |x| format!("{x}"));
    for r in rows {
        println!(
            "| {} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} / {} | {} / {} |",
            r["photo"].as_str().unwrap_or_default(),
            r["bytes"].as_f64().unwrap_or_default() / 1e6,
            num(&r["imgsvc_1thread_ms"]),
            num(&r["sharp_1thread_ms"]),
            num(&r["ratio_1thread"]),
            num(&r["sharp_one_decode_1thread_ms"]),
            num(&r["ratio_one_decode_1thread"]),
            num(&r["imgsvc_parallel_ms"]),
            num(&r["sharp_default_ms"]),
            num(&r["ratio_default"]),
            num(&r["sharp_one_decode_default_ms"]),
            num(&r["ratio_one_decode_default"]),
            kb(&r["imgsvc_display_bytes"]),
            kb(&r["sharp_display_bytes"]),
            kb(&r["imgsvc_thumbnail_bytes"]),
            kb(&r["sharp_thumbnail_bytes"]),
            num(&r["quality"]["imgsvc_display"]),
            num(&r["quality"]["sharp_display"]),
            num(&r["quality"]["imgsvc_thumbnail"]),
            num(&r["quality"]["sharp_thumbnail"]),
        );
    }
    println!();
    println!(
        "{}",
        serde_json::to_string_pretty(summary).unwrap_or_default()
    );
}
