//! `imgsvc-sandbox`: `imgsvc-core`'s `wasm32-wasip1` build run inside wasmtime.
//!
//! [`Sandbox::new`] compiles the guest module (`imgsvc-sandbox-guest`, built for
//! `wasm32-wasip1`) once; [`Sandbox::process`] instantiates it in a fresh store per call,
//! hands it the input and policy on stdin and decodes its stdout. The guest gets exactly
//! stdin, stdout and a capped stderr: no arguments, environment, files, clock or network
//! (every other WASI call answers `ENOSYS`), a memory cap, and optional fuel.
//!
//! The bytes that come out are the native core's bytes (the parity test in
//! `tests/parity.rs` checks every corpus photo), so a host can move decoding of untrusted
//! uploads into the sandbox without changing a single stored byte.

mod wasi;

use imgsvc_core::{Policy, Processed};
use imgsvc_sandbox_guest::wire::{self, Refusal, WireError};
use wasmtime::{Config, Engine, Linker, Module, Store, StoreLimits, StoreLimitsBuilder};

pub use wasi::Exit;

/// What one call may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory the guest may grow to (wasm32 can't exceed 4 GiB anyway).
    pub max_memory_bytes: usize,
    /// Largest response the guest may write to stdout.
    pub max_output_bytes: usize,
    /// Fuel (roughly, wasm instructions) per call; `None` for no limit.
    pub fuel: Option<u64>,
}

impl Default for Limits {
    /// 3 GiB of memory: the core's 512 MiB decode cap plus its 8-bit copy and the resized
    /// images, with room to spare; 64 MiB of output (a display WebP is a few MiB at most).
    fn default() -> Self {
        Limits {
            max_memory_bytes: 3 << 30,
            max_output_bytes: 64 << 20,
            fuel: None,
        }
    }
}

/// Why a call produced no `Processed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// The core refused the input, exactly as the native core would have.
    #[error("{message}")]
    Refused { code: String, message: String },
    #[error("compiling the guest module: {0}")]
    Compile(String),
    #[error("linking the guest module: {0}")]
    Link(String),
    #[error("the guest trapped: {0}")]
    Trap(String),
    #[error("the guest ran out of fuel")]
    OutOfFuel,
    #[error("the guest exited with status {status}: {stderr}")]
    Exit { status: i32, stderr: String },
    #[error("the guest's response is malformed: {0}")]
    Wire(#[from] WireError),
}

impl SandboxError {
    /// The core's stable code for a refusal; `internal` for everything else.
    pub fn code(&self) -> &str {
        match self {
            SandboxError::Refused { code, .. } => code,
            _ => "internal",
        }
    }
}

impl From<Refusal> for SandboxError {
    fn from(refusal: Refusal) -> Self {
        SandboxError::Refused {
            code: refusal.code,
            message: refusal.message,
        }
    }
}

/// A compiled guest, ready to process inputs. Cheap to share (`&self` calls, `Send + Sync`).
pub struct Sandbox {
    engine: Engine,
    module: Module,
    linker: Linker<wasi::Host>,
    limits: Limits,
}

impl Sandbox {
    /// Compile the guest module (the `.wasm` of `imgsvc-sandbox-guest` for `wasm32-wasip1`).
    pub fn new(module_bytes: &[u8]) -> Result<Sandbox, SandboxError> {
        Sandbox::with_limits(module_bytes, Limits::default())
    }

    pub fn with_limits(module_bytes: &[u8], limits: Limits) -> Result<Sandbox, SandboxError> {
        let mut config = Config::new();
        config.consume_fuel(limits.fuel.is_some());
        let engine = Engine::new(&config).map_err(|e| SandboxError::Compile(format!("{e:#}")))?;
        let module = Module::new(&engine, module_bytes)
            .map_err(|e| SandboxError::Compile(format!("{e:#}")))?;
        let linker =
            wasi::linker(&engine, &module).map_err(|e| SandboxError::Link(format!("{e:#}")))?;
        Ok(Sandbox {
            engine,
            module,
            linker,
            limits,
        })
    }

    /// Run the core on `input` under `policy` (never looser than `Policy::default()`: the
    /// guest tightens it again) in a fresh instance.
    pub fn process(&self, input: &[u8], policy: &Policy) -> Result<Processed, SandboxError> {
        let request = wire::Request {
            policy: *policy,
            input,
        }
        .encode();
        let limits: StoreLimits = StoreLimitsBuilder::new()
            .memory_size(self.limits.max_memory_bytes)
            .instances(1)
            .build();
        let host = wasi::Host::new(request, self.limits.max_output_bytes, limits);
        let mut store = Store::new(&self.engine, host);
        store.limiter(|host| &mut host.limits);
        if let Some(fuel) = self.limits.fuel {
            store
                .set_fuel(fuel)
                .map_err(|e| SandboxError::Trap(format!("{e:#}")))?;
        }
        let run = self
            .linker
            .instantiate(&mut store, &self.module)
            .and_then(|instance| instance.get_typed_func::<(), ()>(&mut store, "_start"))
            .and_then(|start| start.call(&mut store, ()));
        let status = match run {
            Ok(()) => 0,
            Err(error) => match error.downcast_ref::<Exit>() {
                Some(Exit(status)) => *status,
                None if matches!(
                    error.downcast_ref::<wasmtime::Trap>(),
                    Some(wasmtime::Trap::OutOfFuel)
                ) =>
                {
                    return Err(SandboxError::OutOfFuel);
                }
                None => return Err(SandboxError::Trap(format!("{error:#}"))),
            },
        };
        let host = store.into_data();
        if status != 0 {
            return Err(SandboxError::Exit {
                status,
                stderr: String::from_utf8_lossy(&host.stderr).into_owned(),
            });
        }
        Ok(wire::decode_response(&host.stdout)??)
    }
}
