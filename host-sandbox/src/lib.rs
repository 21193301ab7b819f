//! `imgsvc-sandbox`: `imgsvc-core`'s `wasm32-wasip1` build run inside wasmtime.
//!
//! [`Sandbox::new`] compiles the guest module (`imgsvc-sandbox-guest`, built for
//! `wasm32-wasip1`) once; [`Sandbox::process`] instantiates it in a fresh store per call,
//! hands it the input and policy on stdin and decodes its stdout. The guest gets exactly
//! stdin, stdout and a capped stderr: no arguments, environment, files, clock or network
//! (every other WASI call answers `ENOSYS`), a memory cap, an optional wall-clock deadline
//! (epoch interruption, ticked by one thread per `Sandbox`) and optional fuel.
//!
//! The bytes that come out are the native core's bytes (the parity test in
//! `tests/sandbox.rs` checks every corpus photo), so a host can move decoding of untrusted
//! uploads into the sandbox without changing a single stored byte.

mod guest_build;
mod wasi;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use imgsvc_core::{Policy, Processed};
use imgsvc_sandbox_guest::wire::{self, Refusal, WireError};
use wasmtime::{
    Config, Engine, Linker, Module, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder,
};

pub use guest_build::{GuestBuildError, guest_module_path};
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
    /// Wall-clock time one call may run (instantiation included), enforced by epoch
    /// interruption at [`EPOCH_TICK`] granularity; `None` for no deadline.
    pub timeout: Option<Duration>,
}

/// How often the deadline clock ticks: a call ends at most one tick after its deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

impl Default for Limits {
    /// 3 GiB of memory: the core's 512 MiB decode cap plus its 8-bit copy and the resized
    /// images, with room to spare; 64 MiB of output (a display WebP is a few MiB at most).
    fn default() -> Self {
        Limits {
            max_memory_bytes: 3 << 30,
            max_output_bytes: 64 << 20,
            fuel: None,
            timeout: None,
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
    /// The guest asked for more memory than the cap and could not go on without it.
    #[error("processing needed more than the sandbox's {limit_bytes} bytes of memory")]
    MemoryLimit { limit_bytes: usize },
    /// The call ran past its deadline and was interrupted.
    #[error("processing took longer than the sandbox's {} ms deadline", .after.as_millis())]
    Timeout { after: Duration },
    #[error("the guest exited with status {status}: {stderr}")]
    Exit { status: i32, stderr: String },
    #[error("the guest's response is malformed: {0}")]
    Wire(#[from] WireError),
}

impl SandboxError {
    /// The core's stable code for a refusal, `memory_limit` and `processing_timeout` for the
    /// sandbox's own caps, `internal` for everything else.
    pub fn code(&self) -> &str {
        match self {
            SandboxError::Refused { code, .. } => code,
            SandboxError::MemoryLimit { .. } => "memory_limit",
            SandboxError::Timeout { .. } => "processing_timeout",
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
    /// Advances the engine's epoch every [`EPOCH_TICK`] while a deadline is configured.
    _ticker: Option<Ticker>,
}

/// The thread that advances an engine's epoch; stopped (and joined) on drop.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> Result<Ticker, SandboxError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("imgsvc-sandbox-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| SandboxError::Compile(format!("starting the deadline ticker: {e}")))?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// `StoreLimits`, remembering whether it ever refused to grow memory, so a trap that follows
/// (Rust's allocation-failure abort is `unreachable` in wasm) reads as the memory cap.
pub(crate) struct CapLimiter {
    limits: StoreLimits,
    pub(crate) refused_memory: bool,
}

impl ResourceLimiter for CapLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.refused_memory = true;
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.refused_memory = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl Sandbox {
    /// Compile the guest module (the `.wasm` of `imgsvc-sandbox-guest` for `wasm32-wasip1`).
    pub fn new(module_bytes: &[u8]) -> Result<Sandbox, SandboxError> {
        Sandbox::with_limits(module_bytes, Limits::default())
    }

    pub fn with_limits(module_bytes: &[u8], limits: Limits) -> Result<Sandbox, SandboxError> {
        let mut config = Config::new();
        config.consume_fuel(limits.fuel.is_some());
        config.epoch_interruption(limits.timeout.is_some());
        let engine = Engine::new(&config).map_err(|e| SandboxError::Compile(format!("{e:#}")))?;
        let module = Module::new(&engine, module_bytes)
            .map_err(|e| SandboxError::Compile(format!("{e:#}")))?;
        let linker =
            wasi::linker(&engine, &module).map_err(|e| SandboxError::Link(format!("{e:#}")))?;
        let ticker = match limits.timeout {
            Some(_) => Some(Ticker::start(engine.clone())?),
            None => None,
        };
        Ok(Sandbox {
            engine,
            module,
            linker,
            limits,
            _ticker: ticker,
        })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Run the core on `input` under `policy` (never looser than `Policy::default()`: the
    /// guest tightens it again) in a fresh instance.
    pub fn process(&self, input: &[u8], policy: &Policy) -> Result<Processed, SandboxError> {
        let request = wire::Request {
            policy: *policy,
            input,
        }
        .encode();
        let limits = CapLimiter {
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.max_memory_bytes)
                .instances(1)
                .build(),
            refused_memory: false,
        };
        let host = wasi::Host::new(request, self.limits.max_output_bytes, limits);
        let mut store = Store::new(&self.engine, host);
        store.limiter(|host| &mut host.limits);
        if let Some(fuel) = self.limits.fuel {
            store
                .set_fuel(fuel)
                .map_err(|e| SandboxError::Trap(format!("{e:#}")))?;
        }
        if let Some(timeout) = self.limits.timeout {
            // Ticks from now, rounded up, plus one for the tick already under way.
            let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) + 1;
            store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
            store.epoch_deadline_trap();
        }
        let run = self
            .linker
            .instantiate(&mut store, &self.module)
            .and_then(|instance| instance.get_typed_func::<(), ()>(&mut store, "_start"))
            .and_then(|start| start.call(&mut store, ()));
        let refused_memory = store.data().limits.refused_memory;
        let memory_limit = SandboxError::MemoryLimit {
            limit_bytes: self.limits.max_memory_bytes,
        };
        let status = match run {
            Ok(()) => 0,
            Err(error) => match (error.downcast_ref::<Exit>(), error.downcast_ref()) {
                (Some(Exit(status)), _) => *status,
                (None, Some(wasmtime::Trap::OutOfFuel)) => return Err(SandboxError::OutOfFuel),
                (None, Some(wasmtime::Trap::Interrupt)) => {
                    return Err(SandboxError::Timeout {
                        after: self.limits.timeout.unwrap_or_default(),
                    });
                }
                // A trap after a refused `memory.grow`: the allocation failure's abort.
                (None, _) if refused_memory => return Err(memory_limit),
                (None, _) => return Err(SandboxError::Trap(format!("{error:#}"))),
            },
        };
        let host = store.into_data();
        if status != 0 && refused_memory {
            return Err(memory_limit);
        }
        if status != 0 {
            return Err(SandboxError::Exit {
                status,
                stderr: String::from_utf8_lossy(&host.stderr).into_owned(),
            });
        }
        Ok(wire::decode_response(&host.stdout)??)
    }
}
