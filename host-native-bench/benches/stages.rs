//! Criterion benches: each stage of the pipeline on three corpus photos (see
//! `BENCH_PHOTOS`), the whole pipeline sequential and with the parallel encode, and the
//! same pipeline in the wasmtime sandbox (the core's `wasm32-wasip1` build).
//!
//! `cargo bench -p imgsvc-native-bench --bench stages -- --save-baseline main`, then after a
//! change `… -- --baseline main` (docs/development.md, "Benchmarks"). `cargo test --benches`
//! runs each once, as CI's smoke.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use imgsvc_core::stages::{self, Pixels};
use imgsvc_core::{DISPLAY_MAX_SIDE, DISPLAY_QUALITY, Policy, THUMBNAIL_QUALITY, THUMBNAIL_SIDE};
use imgsvc_lambda::pipeline;
use imgsvc_native_bench::{BENCH_PHOTOS, corpus_dir, guest_module};
use imgsvc_sandbox::Sandbox;

struct Photo {
    label: &'static str,
    bytes: Vec<u8>,
    decoded: Pixels,
    orientation: u8,
    /// Fit inside 2048, not yet oriented: what the orientation stage gets.
    resized: Pixels,
    display: Pixels,
    thumbnail: Pixels,
}

fn photos() -> Vec<Photo> {
    let policy = Policy::default();
    BENCH_PHOTOS
        .iter()
        .map(|(label, file)| {
            let bytes = std::fs::read(corpus_dir().join(file)).unwrap();
            let decoded = stages::decode(&bytes, &policy).unwrap();
            let orientation = decoded.orientation();
            let pixels = decoded.pixels.clone();
            let resized = stages::fit_inside(&pixels, DISPLAY_MAX_SIDE).unwrap();
            let display = stages::display(decoded).unwrap().display;
            let thumbnail = stages::cover(&display, THUMBNAIL_SIDE).unwrap();
            Photo {
                label,
                bytes,
                decoded: pixels,
                orientation,
                resized,
                display,
                thumbnail,
            }
        })
        .collect()
}

fn stages_bench(c: &mut Criterion) {
    let policy = Policy::default();
    let photos = photos();
    let mut group = c.benchmark_group("stage");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for photo in &photos {
        let id = |name: &str| BenchmarkId::new(name, photo.label);
        group.bench_function(id("probe"), |b| {
            b.iter(|| imgsvc_core::probe(black_box(&photo.bytes)).unwrap())
        });
        group.bench_function(id("decode"), |b| {
            b.iter(|| stages::decode(black_box(&photo.bytes), &policy).unwrap())
        });
        group.bench_function(id("orientation"), |b| {
            b.iter_batched(
                || photo.resized.clone(),
                // Orientation 6 when the photo has none, so every photo measures a rotation.
                |pixels| stages::orient(pixels, photo.orientation.max(6)),
                criterion::BatchSize::LargeInput,
            )
        });
        group.bench_function(id("fit_inside_2048"), |b| {
            b.iter(|| stages::fit_inside(black_box(&photo.decoded), DISPLAY_MAX_SIDE).unwrap())
        });
        group.bench_function(id("cover_400"), |b| {
            b.iter(|| stages::cover(black_box(&photo.display), THUMBNAIL_SIDE).unwrap())
        });
        group.bench_function(id("webp_q85_display"), |b| {
            b.iter(|| stages::encode_webp(black_box(&photo.display), DISPLAY_QUALITY).unwrap())
        });
        group.bench_function(id("webp_q80_thumbnail"), |b| {
            b.iter(|| stages::encode_webp(black_box(&photo.thumbnail), THUMBNAIL_QUALITY).unwrap())
        });
    }
    group.finish();
}

fn pipeline_bench(c: &mut Criterion) {
    let policy = Policy::default();
    let photos = photos();
    let sandbox = Sandbox::new(&guest_module().unwrap()).unwrap();
    let mut group = c.benchmark_group("process");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for photo in &photos {
        group.bench_function(BenchmarkId::new("native_sequential", photo.label), |b| {
            b.iter(|| imgsvc_core::process(black_box(&photo.bytes), &policy).unwrap())
        });
        group.bench_function(BenchmarkId::new("native_parallel", photo.label), |b| {
            b.iter(|| {
                let (result, _) = pipeline::process_timed(black_box(&photo.bytes), &policy, true);
                result.unwrap()
            })
        });
        // A fresh instance per call, as the service's sandbox mode runs it.
        group.bench_function(BenchmarkId::new("wasmtime_sandbox", photo.label), |b| {
            b.iter(|| sandbox.process(black_box(&photo.bytes), &policy).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, stages_bench, pipeline_bench);
criterion_main!(benches);
