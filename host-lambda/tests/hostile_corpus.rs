//! The hostile corpus (`imgsvc_testkit::hostile`) through the real binary, twice: each case
//! in its own `imgsvc process` (exit status, JSON code, wall time and peak RSS from
//! `wait4`), then as `POST /images` to one real `imgsvc serve` on embedded storage (status,
//! problem code, wall time, and the server's peak RSS during the request — `VmHWM`, reset
//! before each case through `/proc/PID/clear_refs`). Refused uploads must leave no object
//! and no record behind; the server must still answer at the end.
//!
//! The table (case, expected, outcomes, ms, peak RSS) is printed (`--no-capture`) and, with
//! `IMGSVC_HOSTILE_TABLE=path`, written as Markdown; `IMGSVC_HOSTILE_GROUPED=1` folds each
//! group (e.g. every truncation of one file) into one row. `IMGSVC_HOSTILE_SANDBOX_MODULE`
//! runs the server with `IMGSVC_SANDBOX=wasm` and that module instead.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::served::{BIN, Served};
use corpus::Case;
use imgsvc_testkit::forge;
use imgsvc_testkit::hostile as corpus;
use serde_json::Value;

/// The user every upload here is made as.
const USER: &str = "hostile";

/// One measured run.
#[derive(Debug, Clone, Default)]
struct Run {
    outcome: String,
    status: Option<u16>,
    ms: f64,
    /// Peak RSS: of the process, or of the server during the request.
    rss_kib: u64,
    /// The server's RSS when the request started (its peak was reset to it).
    before_kib: u64,
    problems: Vec<String>,
}

/// Runs argv[1:] and reports, as the last line of its stderr, `MEASURED <exit> <peak RSS
/// KiB> <ms>` from wait4(2). A child's peak RSS (`ru_maxrss`) starts at its parent's RSS
/// when it was spawned and survives `exec`, so a child of this test process (tens of MB of
/// cases and a runtime) would report at least that; a child of a small Python reports its own.
const MEASURE: &str = r#"
import os, sys, time
start = time.monotonic()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
ms = (time.monotonic() - start) * 1000
code = os.waitstatus_to_exitcode(status)
sys.stderr.write(f"\nMEASURED {code} {usage.ru_maxrss} {ms:.1f}\n")
"#;

/// `imgsvc process FILE` as its own process: the outcome, wall time and peak RSS.
fn process_run(file: &Path, out: &Path) -> Run {
    let output = Command::new("python3")
        .args(["-c", MEASURE, BIN, "process", "--out"])
        .arg(out)
        .arg(file)
        .env_remove("IMGSVC_SANDBOX")
        .output()
        .expect("python3 (scripts/test installs it) runs the measuring wrapper");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let measured: Vec<&str> = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("MEASURED "))
        .unwrap_or_else(|| panic!("no measurement: {stderr}"))
        .split(' ')
        .collect();
    let exit: i32 = measured[0].parse().unwrap();
    let mut run = Run {
        rss_kib: measured[1].parse().unwrap(),
        ms: measured[2].parse().unwrap(),
        ..Run::default()
    };
    let line: Option<Value> = stdout
        .lines()
        .next()
        .and_then(|l| serde_json::from_str(l).ok());
    match (exit, line) {
        (0, Some(line)) if line["ok"] == true => run.outcome = "ok".into(),
        (1, Some(line)) if line["ok"] == false => {
            run.outcome = line["error"]["code"].as_str().unwrap_or("?").to_owned();
        }
        (exit, _) => {
            run.outcome = format!("exit {exit}");
            run.problems.push(format!(
                "imgsvc process: exit {exit}, stdout {stdout:?}, stderr {stderr:?}"
            ));
        }
    }
    run
}

/// A running `imgsvc serve` on an ephemeral port, embedded storage in `data`.
fn serve(sandbox_module: Option<&Path>) -> Served {
    let mut env: Vec<(&str, &std::ffi::OsStr)> = vec![("RUST_LOG", "warn".as_ref())];
    if let Some(module) = sandbox_module {
        env.push(("IMGSVC_SANDBOX", "wasm".as_ref()));
        env.push(("IMGSVC_SANDBOX_MODULE", module.as_os_str()));
    }
    Served::start(&env)
}

/// `VmHWM` (peak RSS) or `VmRSS` of `pid`, in KiB.
fn vm(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| {
            v.trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap()
}

fn vm_hwm(pid: u32) -> u64 {
    vm(pid, "VmHWM")
}

/// Reset `pid`'s peak RSS to its current RSS (Linux ≥ 4.0); false if not permitted.
fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap())
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

async fn record_count(client: &reqwest::Client, served: &Served) -> usize {
    let list: Value = client
        .get(format!("{}/images?limit=100", served.url))
        .bearer_auth(served.token(USER))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["items"].as_array().unwrap().len()
}

async fn post_run(client: &reqwest::Client, served: &Served, case: &Case) -> Run {
    let pid = served.pid();
    let reset = reset_hwm(pid);
    let before_kib = vm(pid, "VmRSS");
    let objects = served.data.path().join("objects");
    let (objects_before, records_before) =
        (count_files(&objects), record_count(client, served).await);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(case.bytes.clone()).file_name(format!("{}.bin", case.name)),
    );
    let started = Instant::now();
    let response = client
        .post(format!("{}/images", served.url))
        .bearer_auth(served.token(USER))
        .multipart(form)
        .send()
        .await;
    let mut run = Run {
        before_kib,
        ..Run::default()
    };
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            run.outcome = "no response".into();
            run.problems.push(format!("POST: {error}"));
            return run;
        }
    };
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    run.ms = started.elapsed().as_secs_f64() * 1e3;
    run.rss_kib = vm_hwm(pid);
    run.status = Some(status);
    run.outcome = if status == 201 {
        "ok".into()
    } else {
        body["code"].as_str().unwrap_or("?").to_owned()
    };
    if !reset {
        run.problems
            .push("cannot reset the server's VmHWM: peak RSS is since start".into());
    }
    let (objects_after, records_after) =
        (count_files(&objects), record_count(client, served).await);
    let (objects_added, records_added) = (
        objects_after as i64 - objects_before as i64,
        records_after as i64 - records_before as i64,
    );
    let expected_added = if status == 201 { (2, 1) } else { (0, 0) };
    if (objects_added, records_added) != expected_added {
        run.problems.push(format!(
            "POST {status} left {objects_added} objects and {records_added} records (expected {expected_added:?})"
        ));
    }
    run
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

struct Row<'a> {
    case: &'a Case,
    process: Run,
    post: Run,
}

fn check(row: &mut Row<'_>) {
    let case = row.case;
    let expect = case.expect;
    let (process, post) = (&mut row.process, &mut row.post);
    if process.outcome != expect.code {
        process.problems.push(format!(
            "imgsvc process: {} (expected {})",
            process.outcome, expect.code
        ));
    }
    if post.status != Some(expect.status) || post.outcome != expect.http_code {
        post.problems.push(format!(
            "POST /images: {:?} {} (expected {} {})",
            post.status, post.outcome, expect.status, expect.http_code
        ));
    }
    let post_before = post.before_kib;
    for (what, run, rss_bound_kib) in [
        ("imgsvc process", &mut *process, case.max_rss_mib * 1024),
        // The server's peak over its RSS when the request came in (the same bound).
        (
            "POST /images",
            &mut *post,
            post_before + case.max_rss_mib * 1024,
        ),
    ] {
        if run.ms > case.max_ms as f64 {
            run.problems
                .push(format!("{what}: {:.0} ms > {} ms", run.ms, case.max_ms));
        }
        if run.rss_kib > rss_bound_kib {
            run.problems.push(format!(
                "{what}: peak RSS {:.0} MiB > {:.0} MiB",
                mib(run.rss_kib),
                mib(rss_bound_kib)
            ));
        }
    }
}

fn table(rows: &[Row<'_>], grouped: bool, mode: &str) -> String {
    let mut out = format!(
        "| case | bytes | expected | `imgsvc process` | ms | peak RSS MiB | `POST /images` ({mode}) | ms | server peak RSS MiB (growth) |\n\
         | --- | ---: | --- | --- | ---: | ---: | --- | ---: | ---: |\n"
    );
    let expected = |c: &Case| {
        if c.expect.code == c.expect.http_code {
            format!("{} / {}", c.expect.code, c.expect.status)
        } else {
            format!(
                "{} / {} {}",
                c.expect.code, c.expect.status, c.expect.http_code
            )
        }
    };
    let server_rss = |r: &Run| {
        format!(
            "{:.0} (+{:.0})",
            mib(r.rss_kib),
            mib(r.rss_kib.saturating_sub(r.before_kib))
        )
    };
    let post_outcome = |r: &Run| match r.status {
        Some(status) => format!("{status} {}", r.outcome),
        None => r.outcome.clone(),
    };
    if !grouped {
        for row in rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.0} | {:.0} | {} | {:.0} | {} |\n",
                row.case.name,
                row.case.bytes.len(),
                expected(row.case),
                row.process.outcome,
                row.process.ms,
                mib(row.process.rss_kib),
                post_outcome(&row.post),
                row.post.ms,
                server_rss(&row.post),
            ));
        }
        return out;
    }
    let mut groups: Vec<&str> = Vec::new();
    for row in rows {
        if !groups.contains(&row.case.group) {
            groups.push(row.case.group);
        }
    }
    let distinct = |values: Vec<String>| {
        let mut seen: Vec<(String, usize)> = Vec::new();
        for v in values {
            match seen.iter_mut().find(|(s, _)| *s == v) {
                Some((_, n)) => *n += 1,
                None => seen.push((v, 1)),
            }
        }
        seen.iter()
            .map(|(v, n)| {
                if *n > 1 {
                    format!("{v} ×{n}")
                } else {
                    v.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    for group in groups {
        let members: Vec<&Row<'_>> = rows.iter().filter(|r| r.case.group == group).collect();
        if members.len() == 1 {
            let row = members[0];
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.0} | {:.0} | {} | {:.0} | {} |\n",
                row.case.name,
                row.case.bytes.len(),
                expected(row.case),
                row.process.outcome,
                row.process.ms,
                mib(row.process.rss_kib),
                post_outcome(&row.post),
                row.post.ms,
                server_rss(&row.post),
            ));
            continue;
        }
        let max = |f: &dyn Fn(&Row<'_>) -> f64| members.iter().map(|r| f(r)).fold(0.0, f64::max);
        out.push_str(&format!(
            "| {group} ({} cases) | ≤ {} | {} | {} | ≤ {:.0} | ≤ {:.0} | {} | ≤ {:.0} | ≤ {:.0} (+≤ {:.0}) |\n",
            members.len(),
            members.iter().map(|r| r.case.bytes.len()).max().unwrap_or(0),
            distinct(members.iter().map(|r| expected(r.case)).collect()),
            distinct(members.iter().map(|r| r.process.outcome.clone()).collect()),
            max(&|r| r.process.ms),
            max(&|r| mib(r.process.rss_kib)),
            distinct(members.iter().map(|r| post_outcome(&r.post)).collect()),
            max(&|r| r.post.ms),
            max(&|r| mib(r.post.rss_kib)),
            max(&|r| mib(r.post.rss_kib.saturating_sub(r.post.before_kib))),
        ));
    }
    out
}

#[test]
fn every_hostile_case_gets_its_expected_outcome_within_bounds() {
    let cases = corpus::all();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names must be unique");

    let keep = std::env::var_os("IMGSVC_HOSTILE_OUT").map(PathBuf::from);
    let scratch = tempfile::tempdir().unwrap();
    let dir = keep.clone().unwrap_or_else(|| scratch.path().join("cases"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = scratch.path().join("out");

    let sandbox = std::env::var_os("IMGSVC_HOSTILE_SANDBOX_MODULE").map(PathBuf::from);
    let mode = if sandbox.is_some() { "wasm" } else { "native" };
    let served = serve(sandbox.as_deref());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    // The idle server's footprint, after one request has warmed it up.
    runtime.block_on(record_count(&client, &served));
    let server_baseline_kib = vm_hwm(served.pid());

    let started = Instant::now();
    let mut rows = Vec::new();
    for case in &cases {
        let file = dir.join(&case.name);
        std::fs::write(&file, &case.bytes).unwrap();
        let process = process_run(&file, &out);
        let post = runtime.block_on(post_run(&client, &served, case));
        let mut row = Row {
            case,
            process,
            post,
        };
        check(&mut row);
        rows.push(row);
    }
    // Still serving.
    let health = runtime
        .block_on(async { client.get(format!("{}/health", served.url)).send().await })
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(served.pid() > 0 && std::fs::metadata(format!("/proc/{}", served.pid())).is_ok());

    let grouped = std::env::var_os("IMGSVC_HOSTILE_GROUPED").is_some();
    let rendered = table(&rows, grouped, mode);
    println!(
        "{} cases in {:.1} s; server idle peak RSS {:.0} MiB\n\n{rendered}",
        rows.len(),
        started.elapsed().as_secs_f64(),
        mib(server_baseline_kib)
    );
    if let Some(path) = std::env::var_os("IMGSVC_HOSTILE_TABLE") {
        std::fs::write(path, &rendered).unwrap();
    }
    if let Some(dir) = keep {
        let expected: String =
            std::iter::once("case\tbytes\texpected\tstatus\thttp_code\n".to_owned())
                .chain(cases.iter().map(|c| {
                    format!(
                        "{}\t{}\t{}\t{}\t{}\n",
                        c.name,
                        c.bytes.len(),
                        c.expect.code,
                        c.expect.status,
                        c.expect.http_code
                    )
                }))
                .collect();
        std::fs::write(dir.join("EXPECTED.tsv"), expected).unwrap();
    }
    // A known bug must still show, or it was fixed and its mark must go.
    let wasm = sandbox.is_some();
    let known = |case: &Case| {
        case.known_bug
            .or(if wasm { case.known_in_wasm } else { None })
    };
    let mut problems: Vec<String> = rows
        .iter()
        .filter(|r| known(r.case).is_some())
        .filter(|r| r.process.problems.is_empty() && r.post.problems.is_empty())
        .map(|r| {
            format!(
                "{}: known bug no longer shows — fixed? drop `known_bug`",
                r.case.name
            )
        })
        .collect();
    problems.extend(
        rows.iter()
            .filter(|r| known(r.case).is_none())
            .flat_map(|r| {
                r.process
                    .problems
                    .iter()
                    .chain(&r.post.problems)
                    .map(move |p| format!("{}: {p}", r.case.name))
            }),
    );
    for row in rows.iter().filter(|r| known(r.case).is_some()) {
        println!(
            "KNOWN BUG {}: {}\n  shows as: {}",
            row.case.name,
            known(row.case).unwrap_or_default(),
            row.process
                .problems
                .iter()
                .chain(&row.post.problems)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_bomb_generator_inflates_to_what_it_claims() {
    // The hand-written DEFLATE must be valid for the bombs to test anything: inflate a
    // small one with an independent decoder (the `png` crate's, through `image`).
    for n in [1u64, 2, 258, 259, 1_000, 100_000] {
        let png = {
            // n zero bytes as one grey scanline of n - 1 pixels after filter byte 0.
            let mut out = b"\x89PNG\r\n\x1A\n".to_vec();
            let mut ihdr = Vec::new();
            ihdr.extend_from_slice(&((n - 1).max(1) as u32).to_be_bytes());
            ihdr.extend_from_slice(&1u32.to_be_bytes());
            ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
            forge::png_chunk(&mut out, b"IHDR", &ihdr);
            forge::png_chunk(&mut out, b"IDAT", &corpus::zlib_zeros(n.max(2)));
            forge::png_chunk(&mut out, b"IEND", &[]);
            out
        };
        let decoded = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
            .unwrap_or_else(|e| panic!("n = {n}: {e}"));
        assert_eq!(u64::from(decoded.width()), (n - 1).max(1));
        assert!(decoded.as_bytes().iter().all(|&b| b == 0));
    }
    // And the big one really is small.
    assert!(corpus::zlib_zeros(1 << 30).len() < 1_100_000);
}
