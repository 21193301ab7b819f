//! The few WASI preview 1 calls the guest may make, over in-memory streams.
//!
//! stdin is the request, stdout collects the response (capped), stderr collects at most
//! `STDERR_CAP` bytes for error messages; `proc_exit` ends the call. Arguments and
//! environment are empty. Every other `wasi_snapshot_preview1` import the module declares is
//! linked to a stub answering `ENOSYS`, so the guest can't reach anything else.

use wasmtime::{Caller, Engine, Error, Extern, ExternType, Linker, Module, Result, Val};

use crate::CapLimiter;

const WASI: &str = "wasi_snapshot_preview1";
const STDERR_CAP: usize = 64 * 1024;

// WASI errno values.
const SUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EFBIG: i32 = 22;
const ENOSYS: i32 = 52;
/// Most iovecs one read or write may name (POSIX's usual IOV_MAX), so a call's host-side
/// work is bounded whatever the guest passes.
const IOV_MAX: i32 = 1024;

/// The guest called `proc_exit` with this status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the guest exited with status {0}")]
pub struct Exit(pub i32);

pub(crate) struct Host {
    stdin: Vec<u8>,
    read: usize,
    pub(crate) stdout: Vec<u8>,
    max_stdout: usize,
    pub(crate) stderr: Vec<u8>,
    pub(crate) limits: CapLimiter,
}

impl Host {
    pub(crate) fn new(stdin: Vec<u8>, max_stdout: usize, limits: CapLimiter) -> Host {
        Host {
            stdin,
            read: 0,
            stdout: Vec::new(),
            max_stdout,
            stderr: Vec::new(),
            limits,
        }
    }
}

/// The linker for `module`: the calls below, `ENOSYS` stubs for the module's other WASI
/// imports, and an error for imports from anywhere else.
pub(crate) fn linker(engine: &Engine, module: &Module) -> Result<Linker<Host>> {
    let mut linker = Linker::new(engine);
    linker.func_wrap(WASI, "fd_read", fd_read)?;
    linker.func_wrap(WASI, "fd_write", fd_write)?;
    linker.func_wrap(WASI, "proc_exit", |status: i32| -> Result<()> {
        Err(Error::new(Exit(status)))
    })?;
    // No preopened directories: wasi-libc stops looking at the first EBADF.
    linker.func_wrap(WASI, "fd_prestat_get", |_: i32, _: i32| EBADF)?;
    // std seeds its HashMaps from here.
    linker.func_wrap(WASI, "random_get", random_get)?;
    for (sizes, values) in [
        ("args_sizes_get", "args_get"),
        ("environ_sizes_get", "environ_get"),
    ] {
        linker.func_wrap(WASI, sizes, empty_sizes)?;
        linker.func_wrap(WASI, values, |_: i32, _: i32| SUCCESS)?;
    }
    for import in module.imports() {
        let (ExternType::Func(ty), true) = (import.ty(), import.module() == WASI) else {
            return Err(Error::msg(format!(
                "the guest imports {}::{}, which the sandbox does not provide",
                import.module(),
                import.name()
            )));
        };
        if !provided(import.name()) {
            linker.func_new(WASI, import.name(), ty, |_, _, results| {
                for result in results.iter_mut() {
                    *result = Val::I32(ENOSYS);
                }
                Ok(())
            })?;
        }
    }
    Ok(linker)
}

fn provided(name: &str) -> bool {
    matches!(
        name,
        "fd_read"
            | "fd_write"
            | "fd_prestat_get"
            | "random_get"
            | "proc_exit"
            | "args_sizes_get"
            | "args_get"
            | "environ_sizes_get"
            | "environ_get"
    )
}

fn empty_sizes(mut caller: Caller<'_, Host>, count: i32, size: i32) -> Result<i32> {
    let memory = memory(&mut caller)?;
    let data = memory.data_mut(&mut caller);
    Ok(
        match put_u32(data, count, 0).and_then(|()| put_u32(data, size, 0)) {
            Some(()) => SUCCESS,
            None => EFAULT,
        },
    )
}

fn random_get(mut caller: Caller<'_, Host>, buf: i32, len: i32) -> Result<i32> {
    let memory = memory(&mut caller)?;
    let data = memory.data_mut(&mut caller);
    let start = buf as u32 as usize;
    let Some(target) = data.get_mut(start..start.saturating_add(len as u32 as usize)) else {
        return Ok(EFAULT);
    };
    getrandom::fill(target).map_err(|e| Error::msg(format!("random_get: {e}")))?;
    Ok(SUCCESS)
}

fn fd_read(
    mut caller: Caller<'_, Host>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nread: i32,
) -> Result<i32> {
    if fd != 0 {
        return Ok(EBADF);
    }
    let memory = memory(&mut caller)?;
    let (data, host) = memory.data_and_store_mut(&mut caller);
    let mut total = 0usize;
    for i in 0..iovs_len.clamp(0, IOV_MAX) {
        let Some((ptr, len)) = iovec(data, iovs, i) else {
            return Ok(EFAULT);
        };
        let Some(buf) = data.get_mut(ptr..ptr.saturating_add(len)) else {
            return Ok(EFAULT);
        };
        let available = host.stdin.get(host.read..).unwrap_or_default();
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        host.read += n;
        total += n;
        if n < len {
            break;
        }
    }
    Ok(match put_u32(data, nread, total as u32) {
        Some(()) => SUCCESS,
        None => EFAULT,
    })
}

fn fd_write(
    mut caller: Caller<'_, Host>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> Result<i32> {
    let memory = memory(&mut caller)?;
    let (data, host) = memory.data_and_store_mut(&mut caller);
    let mut total = 0usize;
    for i in 0..iovs_len.clamp(0, IOV_MAX) {
        let Some((ptr, len)) = iovec(data, iovs, i) else {
            return Ok(EFAULT);
        };
        let Some(buf) = data.get(ptr..ptr.saturating_add(len)) else {
            return Ok(EFAULT);
        };
        match fd {
            1 => {
                if host.stdout.len() + buf.len() > host.max_stdout {
                    return Ok(EFBIG);
                }
                host.stdout.extend_from_slice(buf);
            }
            2 => {
                let room = STDERR_CAP.saturating_sub(host.stderr.len());
                host.stderr.extend_from_slice(&buf[..buf.len().min(room)]);
            }
            _ => return Ok(EBADF),
        }
        total += buf.len();
    }
    Ok(match put_u32(data, nwritten, total as u32) {
        Some(()) => SUCCESS,
        None => EFAULT,
    })
}

fn memory(caller: &mut Caller<'_, Host>) -> Result<wasmtime::Memory> {
    caller
        .get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or_else(|| Error::msg("the guest exports no memory"))
}

/// The `i`-th `(pointer, length)` of the iovec array at `iovs`.
fn iovec(data: &[u8], iovs: i32, i: i32) -> Option<(usize, usize)> {
    let at = (iovs as u32 as usize).checked_add((i as usize).checked_mul(8)?)?;
    Some((get_u32(data, at)? as usize, get_u32(data, at + 4)? as usize))
}

fn get_u32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn put_u32(data: &mut [u8], at: i32, value: u32) -> Option<()> {
    let at = at as u32 as usize;
    data.get_mut(at..at.checked_add(4)?)?
        .copy_from_slice(&value.to_le_bytes());
    Some(())
}
