// The codecs module, `imgsvc_codecs.wasm`: the core built for wasm32-wasip1 with every
// decoder (AVIF, HEIC, JPEG XL, TIFF), the same module the service's wasmtime sandbox runs.
// The base module sends those formats here (`needsCodecs`), builds the request and reads the
// answer (`codecsRequest`, `codecsResponse`), so this file only moves bytes: it fetches and
// compiles the module on first use, then runs one fresh instance per call, a WASI command
// whose stdin is the request and whose stdout is the answer. A fresh instance per call means
// a panic or trap costs that call only, and memory is given back when the call ends.
import { ImgsvcError } from './api.js';

// WASI errno values.
const SUCCESS = 0;
const EBADF = 8;
const EFAULT = 21;
const ENOSYS = 52;
const STDERR_CAP = 64 * 1024;

class Exit {
  constructor(status) {
    this.status = status;
  }
}

/**
 * Run the compiled codecs `module` once with `request` on stdin; resolves to its stdout.
 * A trap or a non-zero exit is an `internal` ImgsvcError carrying what the module printed on
 * stderr (Rust's panic message).
 */
export async function runCodecs(module, request) {
  const call = prepare(module, request);
  return call.run(await WebAssembly.instantiate(module, call.imports));
}

/** `runCodecs` without a Promise (Node, workers; Chromium refuses it on a page's main thread
 * for modules over 8 MB). */
export function runCodecsSync(module, request) {
  const call = prepare(module, request);
  return call.run(new WebAssembly.Instance(module, call.imports));
}

function prepare(module, request) {
  let memory = null;
  let read = 0;
  const stdout = [];
  let stderr = '';
  const view = () => new DataView(memory.buffer);
  const bytesAt = (ptr, len) => new Uint8Array(memory.buffer, ptr, len);
  const inBounds = (ptr, len) => ptr >= 0 && len >= 0 && ptr + len <= memory.buffer.byteLength;
  const iovecs = (iovs, count) => {
    const out = [];
    if (!inBounds(iovs, count * 8)) return null;
    for (let i = 0; i < count; i++) {
      const ptr = view().getUint32(iovs + i * 8, true);
      const len = view().getUint32(iovs + i * 8 + 4, true);
      if (!inBounds(ptr, len)) return null;
      out.push([ptr, len]);
    }
    return out;
  };
  const decoder = new TextDecoder();

  const wasi = {
    fd_read(fd, iovs, count, nread) {
      if (fd !== 0) return EBADF;
      const list = iovecs(iovs, count);
      if (list === null || !inBounds(nread, 4)) return EFAULT;
      let total = 0;
      for (const [ptr, len] of list) {
        const n = Math.min(len, request.length - read);
        bytesAt(ptr, n).set(request.subarray(read, read + n));
        read += n;
        total += n;
        if (n < len) break;
      }
      view().setUint32(nread, total, true);
      return SUCCESS;
    },
    fd_write(fd, iovs, count, nwritten) {
      if (fd !== 1 && fd !== 2) return EBADF;
      const list = iovecs(iovs, count);
      if (list === null || !inBounds(nwritten, 4)) return EFAULT;
      let total = 0;
      for (const [ptr, len] of list) {
        const bytes = bytesAt(ptr, len);
        if (fd === 1) stdout.push(bytes.slice());
        else if (stderr.length < STDERR_CAP) stderr += decoder.decode(bytes);
        total += len;
      }
      view().setUint32(nwritten, total, true);
      return SUCCESS;
    },
    proc_exit(status) {
      throw new Exit(status);
    },
    // No preopened directories: wasi-libc stops looking at the first EBADF.
    fd_prestat_get: () => EBADF,
    // Rust's std seeds its HashMaps from here.
    random_get(buf, len) {
      if (!inBounds(buf, len)) return EFAULT;
      for (let at = 0; at < len; at += 65536) {
        crypto.getRandomValues(bytesAt(buf + at, Math.min(65536, len - at)));
      }
      return SUCCESS;
    },
    args_sizes_get: (count, size) => emptySizes(count, size),
    args_get: () => SUCCESS,
    environ_sizes_get: (count, size) => emptySizes(count, size),
    environ_get: () => SUCCESS,
  };
  function emptySizes(count, size) {
    if (!inBounds(count, 4) || !inBounds(size, 4)) return EFAULT;
    view().setUint32(count, 0, true);
    view().setUint32(size, 0, true);
    return SUCCESS;
  }

  // Every other import the module declares answers ENOSYS: it can reach nothing else.
  const imports = { wasi_snapshot_preview1: {} };
  for (const { module: from, name, kind } of WebAssembly.Module.imports(module)) {
    if (from !== 'wasi_snapshot_preview1' || kind !== 'function') {
      throw new ImgsvcError(
        'internal',
        `the codecs module imports ${from}.${name}, which the package does not provide`,
      );
    }
    imports.wasi_snapshot_preview1[name] = wasi[name] ?? (() => ENOSYS);
  }

  return { imports, run };

  function run(instance) {
    memory = instance.exports.memory;
    let status = 0;
    try {
      instance.exports._start();
    } catch (e) {
      if (e instanceof Exit) {
        status = e.status;
      } else if (e instanceof WebAssembly.RuntimeError) {
        const panic = stderr.trim();
        throw new ImgsvcError(
          'internal',
          panic === ''
            ? `the codecs module trapped (${e.message}); out of memory?`
            : `the codecs module panicked: ${panic}`,
          { panic: true, cause: e },
        );
      } else {
        throw e;
      }
    }
    if (status !== 0) {
      throw new ImgsvcError('internal', `the codecs module exited with status ${status}: ${stderr.trim()}`);
    }
    const length = stdout.reduce((n, b) => n + b.length, 0);
    const out = new Uint8Array(length);
    let at = 0;
    for (const b of stdout) {
      out.set(b, at);
      at += b.length;
    }
    return out;
  }
}
