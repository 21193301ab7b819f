//! `imgsvc process`: the core over local files. The host reads and writes; the core decides.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use base64::Engine;
use imgsvc_core::{Policy, ProcessError, Processed};
use serde_json::{Value, json};

use crate::processor::{ProcessFailure, Processor};
use crate::settings::ProcessSettings;

/// Why one input produced no outputs: refused by the core, or a local file problem.
enum Failure {
    Refused(ProcessFailure),
    Io { code: &'static str, message: String },
}

impl Failure {
    fn to_json(&self) -> Value {
        match self {
            Failure::Refused(e) => json!({ "code": e.code(), "message": e.to_string() }),
            Failure::Io { code, message } => json!({ "code": code, "message": message }),
        }
    }
}

pub fn run(args: &ProcessSettings) -> ExitCode {
    let processor = match Processor::from_config(&args.sandbox.config()) {
        Ok(processor) => processor,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let policy = Policy::default();
    let mut stems_written = HashSet::new();
    let mut all_ok = true;
    let stdout = io::stdout();
    for input in &args.files {
        let line = match process_one(&processor, input, &args.out, &policy, &mut stems_written) {
            Ok(report) => report,
            Err(failure) => {
                all_ok = false;
                json!({ "input": input.to_string_lossy(), "ok": false, "error": failure.to_json() })
            }
        };
        let mut out = stdout.lock();
        // A closed stdout (e.g. `| head`) ends the run quietly rather than panicking.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return ExitCode::FAILURE;
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn process_one(
    processor: &Processor,
    input: &Path,
    out_dir: &Path,
    policy: &Policy,
    stems_written: &mut HashSet<String>,
) -> Result<Value, Failure> {
    let bytes = read_bounded(input, policy.max_input_bytes)?;
    let started = Instant::now();
    // With the sandbox this includes its per-call instantiation, as an upload would pay it.
    let (processed, _stages) = processor.process(&bytes, policy);
    let processed = processed.map_err(Failure::Refused)?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;

    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".to_owned());
    if !stems_written.insert(stem.clone()) {
        return Err(Failure::Io {
            code: "output_collision",
            message: format!("another input in this run already wrote {stem}.webp"),
        });
    }
    let display_path = out_dir.join(format!("{stem}.webp"));
    let thumbnail_path = out_dir.join(format!("{stem}.thumb.webp"));
    if same_file(input, &display_path) || same_file(input, &thumbnail_path) {
        return Err(Failure::Io {
            code: "output_collision",
            message: "the output would overwrite the input".into(),
        });
    }
    write_outputs(out_dir, &processed, &display_path, &thumbnail_path)?;

    Ok(json!({
        // Lossy: a non-UTF-8 file name must not be able to break the JSON line.
        "input": input.to_string_lossy(),
        "ok": true,
        "source": processed.source,
        "display": output_json(&processed.display, &display_path),
        "thumbnail": output_json(&processed.thumbnail, &thumbnail_path),
        "thumbhash": base64::engine::general_purpose::STANDARD.encode(&processed.thumbhash),
        "ms": (ms * 10.0).round() / 10.0,
    }))
}

/// Read a file, refusing one over the limit without reading it all.
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, Failure> {
    let io_error = |e: io::Error| Failure::Io {
        code: "read_failed",
        message: format!("cannot read {}: {e}", path.display()),
    };
    let file = fs::File::open(path).map_err(io_error)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > limit {
        let actual = fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        return Err(Failure::Refused(ProcessFailure::Core(
            ProcessError::TooLarge { actual, limit },
        )));
    }
    Ok(bytes)
}

fn write_outputs(
    out_dir: &Path,
    processed: &Processed,
    display_path: &Path,
    thumbnail_path: &Path,
) -> Result<(), Failure> {
    let io_error = |path: &Path, e: io::Error| Failure::Io {
        code: "write_failed",
        message: format!("cannot write {}: {e}", path.display()),
    };
    fs::create_dir_all(out_dir).map_err(|e| io_error(out_dir, e))?;
    fs::write(display_path, &processed.display.data).map_err(|e| io_error(display_path, e))?;
    fs::write(thumbnail_path, &processed.thumbnail.data)
        .map_err(|e| io_error(thumbnail_path, e))?;
    Ok(())
}

fn output_json(output: &imgsvc_core::Encoded, path: &Path) -> Value {
    json!({
        "width": output.width,
        "height": output.height,
        "bytes": output.data.len(),
        "mime": output.mime(),
        "path": path.to_string_lossy(),
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
