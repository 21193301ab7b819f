//! `load`: a bounded load generator for a running `imgsvc serve`, over loopback.
//!
//! Two scenarios:
//! - `api`: each operation on its own, in phases (upload a ~1 MB photo, get, list(20),
//!   patch, delete, upload a ~10 MB photo), so each gets clean percentiles;
//! - `mixed`: the production mix (uploads of corpus photos, gets, lists, patches, deletes)
//!   drawn at random, with the server's memory sampled over time.
//!
//! Bounded in count; refuses non-loopback URLs. Prints a table and writes JSON.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use imgsvc_native_bench::{percentile, status_kib};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scenario {
    Api,
    Mixed,
    /// The seeds' `upload-test-images`: `--uploads` real uploads of corpus photos from
    /// 100 KB to 10 MB through the legacy gallery API (`/gallery/images`).
    Gallery,
}

#[derive(Debug, Parser)]
struct Args {
    /// Base URL of the server (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A bearer token (`imgsvc token --user load`).
    #[arg(long, env = "IMGSVC_TOKEN")]
    token: String,
    #[arg(long, value_enum, default_value = "api")]
    scenario: Scenario,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Requests per operation (`api`) or in all (`mixed`).
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Uploads per photo size (`api`).
    #[arg(long, default_value_t = 20)]
    uploads: usize,
    /// The photo corpus.
    #[arg(long, default_value = "../shared/corpus")]
    corpus: PathBuf,
    /// PID of the server, to sample its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Where to write the JSON report.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Latencies and failures of one operation.
#[derive(Default)]
struct Samples {
    millis: Vec<f64>,
    errors: usize,
}

impl Samples {
    fn summary(&self, name: &str) -> Value {
        let mut sorted = self.millis.clone();
        sorted.sort_by(f64::total_cmp);
        let round = |v: f64| (v * 100.0).round() / 100.0;
        json!({
            "operation": name,
            "count": sorted.len() + self.errors,
            "errors": self.errors,
            "p50_ms": round(percentile(&sorted, 50.0)),
            "p95_ms": round(percentile(&sorted, 95.0)),
            "p99_ms": round(percentile(&sorted, 99.0)),
            "max_ms": round(sorted.last().copied().unwrap_or(f64::NAN)),
        })
    }
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

/// One timed request: its latency, and the JSON body when it succeeded.
async fn timed(request: reqwest::RequestBuilder, expect: u16) -> (f64, Option<Value>) {
    let started = Instant::now();
    let result = request.send().await;
    let outcome = match result {
        Ok(response) if response.status().as_u16() == expect => {
            let body = response.bytes().await.ok();
            Some(
                body.and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or(Value::Null),
            )
        }
        _ => None,
    };
    (started.elapsed().as_secs_f64() * 1000.0, outcome)
}

impl Client {
    fn upload(&self, name: &str, bytes: &[u8]) -> reqwest::RequestBuilder {
        let form = Form::new()
            .part(
                "file",
                Part::bytes(bytes.to_vec()).file_name(name.to_owned()),
            )
            .text("title", "load test")
            .text("tags", "load,test");
        self.http
            .post(format!("{}/images", self.url))
            .bearer_auth(&self.token)
            .multipart(form)
    }
    fn get(&self, id: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}/images/{id}", self.url))
            .bearer_auth(&self.token)
    }
    fn list(&self) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}/images?limit=20", self.url))
            .bearer_auth(&self.token)
    }
    fn patch(&self, id: &str, version: u64, title: &str) -> reqwest::RequestBuilder {
        self.http
            .patch(format!("{}/images/{id}", self.url))
            .bearer_auth(&self.token)
            .json(&json!({"title": title, "version": version}))
    }
    fn delete(&self, id: &str) -> reqwest::RequestBuilder {
        self.http
            .delete(format!("{}/images/{id}", self.url))
            .bearer_auth(&self.token)
    }
}

/// Run `count` jobs with `concurrency` in flight; `job(i)` returns (latency, ok).
async fn run_phase<F, Fut>(count: usize, concurrency: usize, job: F) -> Samples
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (f64, bool)> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Samples::default()));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (job, next, samples) = (job.clone(), next.clone(), samples.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let (ms, ok) = job(i).await;
                let mut samples = samples.lock().await;
                if ok {
                    samples.millis.push(ms);
                } else {
                    samples.errors += 1;
                }
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    Arc::try_unwrap(samples)
        .map(Mutex::into_inner)
        .unwrap_or_default()
}

fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(&pid.to_string(), "VmRSS")
}

fn hwm_kib(pid: u32) -> Option<u64> {
    status_kib(&pid.to_string(), "VmHWM")
}

fn read_photo(corpus: &std::path::Path, name: &str) -> anyhow::Result<(String, Vec<u8>)> {
    let path = corpus.join(name);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok((name.to_owned(), bytes))
}

/// The photo near 1 MB and the largest one under the 10 MiB limit.
const PHOTO_1MB: &str = "mate_RainDrops.jpg";
const PHOTO_10MB: &str = "mate_Elephants_3840x2160.jpg";

async fn api_scenario(args: &Args, client: Arc<Client>) -> anyhow::Result<Vec<Value>> {
    let mut report = Vec::new();
    let c = args.concurrency;
    let n = args.requests;

    for (label, file) in [("upload_1mb", PHOTO_1MB), ("upload_10mb", PHOTO_10MB)] {
        let (name, bytes) = read_photo(&args.corpus, file)?;
        let photo_bytes = bytes.len();
        let (name, bytes) = (Arc::new(name), Arc::new(bytes));
        let cl = client.clone();
        let samples = run_phase(args.uploads, c.min(4), move |_| {
            let (cl, name, bytes) = (cl.clone(), name.clone(), bytes.clone());
            async move {
                let (ms, body) = timed(cl.upload(&name, &bytes), 201).await;
                // Keep the store small: each upload's record is removed again, untimed.
                if let Some(id) = body.as_ref().and_then(|b| b["id"].as_str()) {
                    let _ = cl.delete(id).send().await;
                }
                (ms, body.is_some())
            }
        })
        .await;
        let mut row = samples.summary(label);
        row["photo"] = json!(file);
        row["photo_bytes"] = json!(photo_bytes);
        report.push(row);
    }

    // Records to read and change: small photo uploads, untimed.
    let (seed_name, seed) = read_photo(&args.corpus, "skimage_rocket.jpg")?;
    let seeds = n.clamp(20, 200);
    let ids = Arc::new(Mutex::new(Vec::new()));
    {
        let (cl, ids, seed, seed_name) = (
            client.clone(),
            ids.clone(),
            Arc::new(seed),
            Arc::new(seed_name),
        );
        run_phase(seeds, c.min(4), move |_| {
            let (cl, ids, seed, seed_name) =
                (cl.clone(), ids.clone(), seed.clone(), seed_name.clone());
            async move {
                let (ms, body) = timed(cl.upload(&seed_name, &seed), 201).await;
                if let Some(id) = body.as_ref().and_then(|b| b["id"].as_str()) {
                    ids.lock().await.push(id.to_owned());
                }
                (ms, body.is_some())
            }
        })
        .await;
    }
    let ids: Arc<Vec<String>> = Arc::new(ids.lock().await.clone());
    if ids.is_empty() {
        bail!("no seed upload succeeded: is the server up and the token valid?");
    }

    let (cl, id_list) = (client.clone(), ids.clone());
    let gets = run_phase(n, c, move |i| {
        let (cl, id_list) = (cl.clone(), id_list.clone());
        async move {
            let (ms, body) = timed(cl.get(&id_list[i % id_list.len()]), 200).await;
            (ms, body.is_some())
        }
    })
    .await;
    report.push(gets.summary("get"));

    let cl = client.clone();
    let lists = run_phase(n, c, move |_| {
        let cl = cl.clone();
        async move {
            let (ms, body) = timed(cl.list(), 200).await;
            let full = body
                .as_ref()
                .and_then(|b| b["items"].as_array())
                .is_some_and(|items| items.len() == 20);
            (ms, full)
        }
    })
    .await;
    report.push(lists.summary("list_20"));

    // One patch per record (version 1 → 2), then one delete per record.
    let (cl, id_list) = (client.clone(), ids.clone());
    let patches = run_phase(ids.len(), c, move |i| {
        let (cl, id_list) = (cl.clone(), id_list.clone());
        async move {
            let (ms, body) = timed(cl.patch(&id_list[i], 1, "patched"), 200).await;
            (ms, body.is_some())
        }
    })
    .await;
    report.push(patches.summary("patch"));

    let (cl, id_list) = (client.clone(), ids.clone());
    let deletes = run_phase(ids.len(), c, move |i| {
        let (cl, id_list) = (cl.clone(), id_list.clone());
        async move {
            let (ms, body) = timed(cl.delete(&id_list[i]), 204).await;
            (ms, body.is_some())
        }
    })
    .await;
    report.push(deletes.summary("delete"));
    Ok(report)
}

/// Corpus photos from 100 KB to 10 MB, in name order.
fn test_images(corpus: &std::path::Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut photos = Vec::new();
    for entry in std::fs::read_dir(corpus)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let size = std::fs::metadata(&path)?.len();
        let is_image = [".jpg", ".png", ".webp", ".gif"]
            .iter()
            .any(|ext| name.ends_with(ext));
        if is_image && (100 * 1024..=10 * 1024 * 1024).contains(&size) {
            photos.push((name, std::fs::read(&path)?));
        }
    }
    photos.sort();
    Ok(photos)
}

async fn gallery_scenario(args: &Args, client: Arc<Client>) -> anyhow::Result<Vec<Value>> {
    let photos = Arc::new(test_images(&args.corpus)?);
    if photos.is_empty() {
        bail!("no corpus photos between 100 KB and 10 MB");
    }
    let cl = client.clone();
    let samples = run_phase(args.uploads, args.concurrency, move |i| {
        let (cl, photos) = (cl.clone(), photos.clone());
        async move {
            let (name, bytes) = &photos[i % photos.len()];
            let form = Form::new()
                .part("file", Part::bytes(bytes.clone()).file_name(name.clone()))
                .text("title", format!("test image {i}"));
            let request = cl
                .http
                .post(format!("{}/gallery/images", cl.url))
                .bearer_auth(&cl.token)
                .multipart(form);
            let (ms, body) = timed(request, 201).await;
            (ms, body.is_some())
        }
    })
    .await;
    Ok(vec![samples.summary("gallery_upload")])
}

/// The production mix: 5 % uploads (corpus photos under the limit), 50 % gets, 25 % lists,
/// 10 % patches, 10 % deletes — deletes and patches pick from what exists.
async fn mixed_scenario(args: &Args, client: Arc<Client>) -> anyhow::Result<Vec<Value>> {
    let mut photos = Vec::new();
    for entry in std::fs::read_dir(&args.corpus)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let is_image = ["jpg", "png", "webp", "gif"]
            .iter()
            .any(|ext| name.ends_with(ext));
        if is_image && std::fs::metadata(&path)?.len() <= 10 * 1024 * 1024 {
            photos.push((name, std::fs::read(&path)?));
        }
    }
    photos.sort();
    let photos = Arc::new(photos);
    let live: Arc<Mutex<Vec<(String, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let per_op: Arc<Mutex<std::collections::BTreeMap<&'static str, Samples>>> =
        Arc::new(Mutex::new(Default::default()));

    // Seed a page's worth so early reads have something to read.
    let (seed_name, seed) = read_photo(&args.corpus, "skimage_rocket.jpg")?;
    for _ in 0..20 {
        let (_, body) = timed(client.upload(&seed_name, &seed), 201).await;
        if let Some(id) = body.as_ref().and_then(|b| b["id"].as_str()) {
            live.lock().await.push((id.to_owned(), 1));
        }
    }

    let memory = Arc::new(Mutex::new(Vec::new()));
    let sampler = args.server_pid.map(|pid| {
        let memory = memory.clone();
        let started = Instant::now();
        tokio::spawn(async move {
            loop {
                if let Some(kib) = rss_kib(pid) {
                    memory
                        .lock()
                        .await
                        .push(json!({"t_s": started.elapsed().as_secs_f64().round(), "rss_mib": kib / 1024}));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    });

    let started = Instant::now();
    let (cl, live2, per_op2) = (client.clone(), live.clone(), per_op.clone());
    run_phase(args.requests, args.concurrency, move |i| {
        let (cl, live, per_op, photos) =
            (cl.clone(), live2.clone(), per_op2.clone(), photos.clone());
        async move {
            // A fixed, reproducible draw per request index.
            let roll = (i.wrapping_mul(2654435761) >> 8) % 100;
            let pick = |len: usize| (i.wrapping_mul(40503) >> 4) % len.max(1);
            let (op, ms, ok): (&'static str, f64, bool) = if roll < 5 {
                let (name, bytes) = &photos[pick(photos.len())];
                let (ms, body) = timed(cl.upload(name, bytes), 201).await;
                if let Some(id) = body.as_ref().and_then(|b| b["id"].as_str()) {
                    live.lock().await.push((id.to_owned(), 1));
                }
                ("upload", ms, body.is_some())
            } else if roll < 55 {
                let id = {
                    let l = live.lock().await;
                    l.get(pick(l.len())).map(|e| e.0.clone())
                };
                match id {
                    Some(id) => {
                        let (ms, body) = timed(cl.get(&id), 200).await;
                        // A concurrent delete may have won: a 404 then is not an error.
                        (
                            "get",
                            ms,
                            body.is_some() || !live.lock().await.iter().any(|e| e.0 == id),
                        )
                    }
                    None => ("get", 0.0, true),
                }
            } else if roll < 80 {
                let (ms, body) = timed(cl.list(), 200).await;
                ("list_20", ms, body.is_some())
            } else if roll < 90 {
                let entry = {
                    let mut l = live.lock().await;
                    let n = l.len();
                    if n == 0 {
                        None
                    } else {
                        let k = pick(n);
                        Some(l.swap_remove(k))
                    }
                };
                match entry {
                    Some((id, version)) => {
                        let (ms, body) = timed(cl.patch(&id, version, "mixed"), 200).await;
                        live.lock()
                            .await
                            .push((id, version + u64::from(body.is_some())));
                        ("patch", ms, body.is_some())
                    }
                    None => ("patch", 0.0, true),
                }
            } else {
                let entry = {
                    let mut l = live.lock().await;
                    let n = l.len();
                    if n <= 20 {
                        None
                    } else {
                        let k = pick(n);
                        Some(l.swap_remove(k))
                    }
                };
                match entry {
                    Some((id, _)) => {
                        let (ms, body) = timed(cl.delete(&id), 204).await;
                        ("delete", ms, body.is_some())
                    }
                    None => ("delete", 0.0, true),
                }
            };
            if ms > 0.0 {
                let mut per_op = per_op.lock().await;
                let samples = per_op.entry(op).or_default();
                if ok {
                    samples.millis.push(ms)
                } else {
                    samples.errors += 1
                }
            }
            (ms, ok)
        }
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    let mut report: Vec<Value> = per_op
        .lock()
        .await
        .iter()
        .map(|(op, samples)| samples.summary(op))
        .collect();
    report.push(json!({
        "operation": "_run",
        "seconds": (elapsed * 10.0).round() / 10.0,
        "memory_over_time": *memory.lock().await,
        "peak_rss_mib": args.server_pid.and_then(hwm_kib).map(|k| k / 1024),
    }));
    Ok(report)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url = reqwest::Url::parse(&args.url).context("--url")?;
    let loopback = matches!(
        url.host_str(),
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
    );
    if !loopback {
        bail!("load only runs against loopback ({} is not)", args.url);
    }
    if args.requests > 100_000 || args.uploads > 1_000 {
        bail!("bounded: at most 100000 requests and 1000 uploads per run");
    }
    let client = Arc::new(Client {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency)
            .timeout(Duration::from_secs(60))
            .build()?,
        url: args.url.trim_end_matches('/').to_owned(),
        token: args.token.clone(),
    });
    let report = match args.scenario {
        Scenario::Api => api_scenario(&args, client).await?,
        Scenario::Mixed => mixed_scenario(&args, client).await?,
        Scenario::Gallery => gallery_scenario(&args, client).await?,
    };
    let rss = args.server_pid.and_then(hwm_kib);
    println!(
        "scenario {:?}, concurrency {}, server peak RSS {}",
        args.scenario,
        args.concurrency,
        rss.map_or("n/a".to_owned(), |k| format!("{} MiB", k / 1024))
    );
    println!("| operation | count | errors | p50 ms | p95 ms | p99 ms | max ms |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for row in report.iter().filter(|r| r["operation"] != "_run") {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            row["operation"].as_str().unwrap_or_default(),
            row["count"],
            row["errors"],
            row["p50_ms"],
            row["p95_ms"],
            row["p99_ms"],
            row["max_ms"]
        );
    }
    let document = json!({
        "scenario": format!("{:?}", args.scenario),
        "concurrency": args.concurrency,
        "server_peak_rss_mib": rss.map(|k| k / 1024),
        "operations": report,
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&document)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let errors: u64 = report.iter().filter_map(|r| r["errors"].as_u64()).sum();
    if errors > 0 {
        eprintln!("{errors} requests failed");
        std::process::exit(1);
    }
    Ok(())
}
