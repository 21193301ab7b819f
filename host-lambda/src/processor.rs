//! Where the core runs for an upload: in this process (the default), or — with
//! `IMGSVC_SANDBOX=wasm` — as its `wasm32-wasip1` build inside wasmtime (`imgsvc-sandbox`),
//! a fresh instance per call under a hard memory cap and a wall-clock deadline, so no
//! decoder bug or bomb can take the process down or read another request's memory.
//!
//! Chosen once at start from [`SandboxConfig`]; an invalid value or an unusable module
//! refuses to start. Both modes give the same bytes (the sandbox's parity test), and the
//! same refusals: the guest's codes are the core's codes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imgsvc_core::{Policy, ProcessError, Processed};
use imgsvc_sandbox::{Limits, Sandbox, SandboxError};

/// How the guest module is built (the hint in the error when it is missing).
pub const GUEST_BUILD: &str = "cargo build --release -p imgsvc-sandbox-guest --target wasm32-wasip1 \
     (→ target/wasm32-wasip1/release/imgsvc-sandbox-guest.wasm)";

/// Default wall-clock deadline per upload in the sandbox: far above the slowest corpus photo
/// in the sandbox (about 2 s on one core, docs/hostile-input.md), far below a client's
/// patience.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Default memory cap per call: `imgsvc_sandbox::Limits::default()`'s 3 GiB — the core's
/// 512 MiB allocation cap plus its 8-bit copy and resized images, so every input the native
/// core accepts also fits in the sandbox.
pub const DEFAULT_MEMORY_MB: u64 = 3072;
/// wasm32 can address 4 GiB; less than 16 MiB can't even hold the guest's own data.
const MEMORY_MB_RANGE: std::ops::RangeInclusive<u64> = 16..=4096;
/// At most ten minutes: longer is no deadline at all.
const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 1..=600_000;

/// The raw settings (environment or flags), validated by [`Processor::from_config`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxConfig {
    /// `IMGSVC_SANDBOX`: `native` (or unset/empty) or `wasm`.
    pub mode: Option<String>,
    /// `IMGSVC_SANDBOX_MODULE`: the guest `.wasm`.
    pub module: Option<PathBuf>,
    /// `IMGSVC_SANDBOX_TIMEOUT_MS`.
    pub timeout_ms: Option<String>,
    /// `IMGSVC_SANDBOX_MEMORY_MB`.
    pub memory_mb: Option<String>,
}

/// Why the sandbox settings can't be used: the service refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("IMGSVC_SANDBOX (--sandbox) must be `native` or `wasm`, not {0:?}")]
    Mode(String),
    #[error(
        "IMGSVC_SANDBOX=wasm needs IMGSVC_SANDBOX_MODULE (--sandbox-module), the guest module; \
         build it with {GUEST_BUILD}"
    )]
    MissingModule,
    #[error("reading the sandbox module {}: {source}; build it with {GUEST_BUILD}", .path.display())]
    ReadModule {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the sandbox module {} is unusable: {source}", .path.display())]
    Module { path: PathBuf, source: SandboxError },
    #[error("{name} must be a whole number in {min}..={max}, not {value:?}")]
    Number {
        name: &'static str,
        value: String,
        min: u64,
        max: u64,
    },
}

/// Why an upload produced no outputs.
#[derive(Debug, thiserror::Error)]
pub enum ProcessFailure {
    /// The native core refused it (or failed).
    #[error(transparent)]
    Core(#[from] ProcessError),
    /// The sandbox: the guest core's refusal, a cap, or a sandbox failure.
    #[error(transparent)]
    Sandbox(SandboxError),
}

impl ProcessFailure {
    /// The stable code: the core's, or `memory_limit` / `processing_timeout` / `internal`.
    pub fn code(&self) -> &str {
        match self {
            ProcessFailure::Core(e) => e.code(),
            ProcessFailure::Sandbox(e) => e.code(),
        }
    }
}

/// The core in this process, or in a wasmtime sandbox.
pub enum Processor {
    Native,
    Wasm(Arc<Sandbox>),
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Processor::Native => f.write_str("Native"),
            Processor::Wasm(sandbox) => f.debug_tuple("Wasm").field(&sandbox.limits()).finish(),
        }
    }
}

impl Processor {
    /// Validate the settings and, for `wasm`, read and compile the module (a few seconds,
    /// once): everything that could fail does so here, before the service takes requests.
    pub fn from_config(config: &SandboxConfig) -> Result<Processor, ConfigError> {
        let timeout_ms = number(
            "IMGSVC_SANDBOX_TIMEOUT_MS (--sandbox-timeout-ms)",
            config.timeout_ms.as_deref(),
            DEFAULT_TIMEOUT_MS,
            TIMEOUT_MS_RANGE,
        )?;
        let memory_mb = number(
            "IMGSVC_SANDBOX_MEMORY_MB (--sandbox-memory-mb)",
            config.memory_mb.as_deref(),
            DEFAULT_MEMORY_MB,
            MEMORY_MB_RANGE,
        )?;
        match config.mode.as_deref().map(str::trim) {
            None | Some("" | "native") => Ok(Processor::Native),
            Some("wasm") => {
                let path = config.module.as_deref().ok_or(ConfigError::MissingModule)?;
                let limits = Limits {
                    max_memory_bytes: usize::try_from(memory_mb << 20).unwrap_or(usize::MAX),
                    timeout: Some(Duration::from_millis(timeout_ms)),
                    ..Limits::default()
                };
                Ok(Processor::Wasm(Arc::new(compile(path, limits)?)))
            }
            Some(other) => Err(ConfigError::Mode(other.to_owned())),
        }
    }

    /// The sandbox, when uploads run in one.
    pub fn sandbox(&self) -> Option<&Arc<Sandbox>> {
        match self {
            Processor::Native => None,
            Processor::Wasm(sandbox) => Some(sandbox),
        }
    }

    /// `native` or `wasm`, for logs and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Processor::Native => "native",
            Processor::Wasm(_) => "wasm",
        }
    }

    /// Run the core on `bytes` (blocking: call it off the async runtime).
    /// Natively with timed stages and the parallel encode (`pipeline`); in the sandbox one
    /// fresh instance runs the whole pipeline, so no stage is timed.
    pub fn process(
        &self,
        bytes: &[u8],
        policy: &Policy,
    ) -> (
        Result<Processed, ProcessFailure>,
        crate::pipeline::StageTimes,
    ) {
        match self {
            Processor::Native => {
                let (result, stages) = crate::pipeline::process_timed(
                    bytes,
                    policy,
                    crate::pipeline::machine_is_parallel(),
                );
                (result.map_err(ProcessFailure::from), stages)
            }
            Processor::Wasm(sandbox) => (
                sandboxed(sandbox, bytes, policy),
                crate::pipeline::StageTimes::default(),
            ),
        }
    }
}

/// One call in the sandbox, its failures typed as the native core's where they are the same
/// refusal.
pub fn sandboxed(
    sandbox: &Sandbox,
    bytes: &[u8],
    policy: &Policy,
) -> Result<Processed, ProcessFailure> {
    match sandbox.process(bytes, policy) {
        Ok(processed) => Ok(processed),
        // The format refusal carries what was detected (the 400/415 split and the
        // `detectedFormat` member depend on it): the signature table is all it takes.
        Err(SandboxError::Refused { code, .. }) if code == "unsupported_format" => {
            Err(ProcessFailure::Core(ProcessError::UnsupportedFormat {
                detected: imgsvc_core::sniff(bytes),
            }))
        }
        Err(error) => Err(ProcessFailure::Sandbox(error)),
    }
}

fn compile(path: &Path, limits: Limits) -> Result<Sandbox, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::ReadModule {
        path: path.to_owned(),
        source,
    })?;
    let started = Instant::now();
    let sandbox = Sandbox::with_limits(&bytes, limits).map_err(|source| ConfigError::Module {
        path: path.to_owned(),
        source,
    })?;
    tracing::info!(
        module = %path.display(),
        module_bytes = bytes.len(),
        compile_ms = started.elapsed().as_millis() as u64,
        memory_mb = limits.max_memory_bytes >> 20,
        timeout_ms = limits.timeout.map_or(0, |t| t.as_millis() as u64),
        "decoding in the wasm sandbox"
    );
    Ok(sandbox)
}

fn number(
    name: &'static str,
    value: Option<&str>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    value
        .parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| ConfigError::Number {
            name,
            value: value.to_owned(),
            min: *range.start(),
            max: *range.end(),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config(mode: &str) -> SandboxConfig {
        SandboxConfig {
            mode: Some(mode.into()),
            ..SandboxConfig::default()
        }
    }

    #[test]
    fn settings_are_validated_before_anything_runs() {
        assert!(matches!(
            Processor::from_config(&SandboxConfig::default()),
            Ok(Processor::Native)
        ));
        assert!(matches!(
            Processor::from_config(&config("native")),
            Ok(Processor::Native)
        ));
        let err = Processor::from_config(&config("wasmtime")).unwrap_err();
        assert!(err.to_string().contains("IMGSVC_SANDBOX"), "{err}");
        let err = Processor::from_config(&config("wasm")).unwrap_err();
        assert!(matches!(err, ConfigError::MissingModule), "{err}");
        assert!(err.to_string().contains("IMGSVC_SANDBOX_MODULE"));
        let missing = SandboxConfig {
            module: Some("/nonexistent/guest.wasm".into()),
            ..config("wasm")
        };
        assert!(matches!(
            Processor::from_config(&missing),
            Err(ConfigError::ReadModule { .. })
        ));
        let dir = std::env::temp_dir().join(format!("imgsvc-not-wasm-{}", std::process::id()));
        std::fs::write(&dir, b"not a wasm module").unwrap();
        let garbage = SandboxConfig {
            module: Some(dir.clone()),
            ..config("wasm")
        };
        let err = Processor::from_config(&garbage).unwrap_err();
        let _ = std::fs::remove_file(&dir);
        assert!(matches!(err, ConfigError::Module { .. }), "{err}");
        for (timeout, memory) in [
            ("0", "64"),
            ("soon", "64"),
            ("600001", "64"),
            ("100", "8"),
            ("100", "5000"),
            ("100", "-1"),
        ] {
            let bad = SandboxConfig {
                timeout_ms: Some(timeout.into()),
                memory_mb: Some(memory.into()),
                // Numbers are checked even in native mode: a typo never passes silently.
                ..config("native")
            };
            let err = Processor::from_config(&bad).unwrap_err();
            assert!(matches!(err, ConfigError::Number { .. }), "{err}");
        }
    }
}
