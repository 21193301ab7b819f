//! The sandbox settings `serve` and `process` share (validated by `Processor::from_config`).

use std::path::PathBuf;

use clap::Args;

use crate::processor::SandboxConfig;

#[derive(Debug, Clone, Args)]
pub struct SandboxSettings {
    /// Where the core decodes uploads: `native` (in this process, the default) or `wasm`
    /// (its wasm32-wasip1 build in wasmtime, a fresh instance per upload, memory-capped and
    /// deadline-bound).
    #[arg(long = "sandbox", env = "IMGSVC_SANDBOX", value_name = "native|wasm")]
    pub mode: Option<String>,
    /// The guest module for `--sandbox wasm` (imgsvc-sandbox-guest built for wasm32-wasip1).
    #[arg(
        long = "sandbox-module",
        env = "IMGSVC_SANDBOX_MODULE",
        value_name = "WASM"
    )]
    pub module: Option<PathBuf>,
    /// Wall-clock deadline per upload in the sandbox, in milliseconds [default: 30000].
    #[arg(
        long = "sandbox-timeout-ms",
        env = "IMGSVC_SANDBOX_TIMEOUT_MS",
        value_name = "MS"
    )]
    pub timeout_ms: Option<String>,
    /// Memory cap per upload in the sandbox, in MiB (16–4096) [default: 3072].
    #[arg(
        long = "sandbox-memory-mb",
        env = "IMGSVC_SANDBOX_MEMORY_MB",
        value_name = "MIB"
    )]
    pub memory_mb: Option<String>,
}

impl SandboxSettings {
    pub fn config(&self) -> SandboxConfig {
        SandboxConfig {
            mode: self.mode.clone(),
            module: self.module.clone(),
            timeout_ms: self.timeout_ms.clone(),
            memory_mb: self.memory_mb.clone(),
        }
    }
}
