// The package's API over the raw wasm-bindgen exports (shared by index.js and node.js).
import { runCodecs, runCodecsSync } from './codecs.js';

/** An error from imgsvc: `code` is stable (the core's codes, plus `invalid_options`). */
export class ImgsvcError extends Error {
  constructor(code, message, { inputError = false, panic = false, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'ImgsvcError';
    this.code = code;
    this.inputError = inputError;
    this.panic = panic;
  }
}

/** Bytes from a Uint8Array, any ArrayBuffer view, an ArrayBuffer, or a Blob/File. */
export async function toBytes(input) {
  if (typeof Blob !== 'undefined' && input instanceof Blob) {
    return new Uint8Array(await input.arrayBuffer());
  }
  return toBytesSync(input);
}

export function toBytesSync(input) {
  if (input instanceof Uint8Array) return input;
  if (input instanceof ArrayBuffer) return new Uint8Array(input);
  if (ArrayBuffer.isView(input)) {
    return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  }
  throw new TypeError('expected a Uint8Array, ArrayBuffer, typed array, Blob or File');
}

/**
 * The API over one instance of the module. `ensureReady()` resolves once `raw` is
 * initialised. After a panic the instance is not used again (its stack and heap may be
 * inconsistent): every later call throws, and a worker-based previewer starts a new worker.
 *
 * `codecs` gives the compiled codecs module (AVIF, HEIC, JPEG XL, TIFF): `load()` fetches
 * and compiles it once and resolves to it; `loaded()` is it, or null before `load()` ends.
 */
export function makeApi(raw, ensureReady, codecs) {
  let poisoned = null;

  function call(f) {
    if (poisoned !== null) {
      throw new ImgsvcError(
        'internal',
        `imgsvc-wasm cannot be used after an earlier panic (${poisoned}); reload the page or create a new previewer`,
        { panic: true },
      );
    }
    try {
      return f();
    } catch (e) {
      if (e instanceof Error && e.name === 'ImgsvcError') {
        throw new ImgsvcError(e.code, e.message, { inputError: e.inputError === true });
      }
      if (e instanceof WebAssembly.RuntimeError) {
        let message = null;
        try {
          message = raw.takePanicMessage() ?? null;
        } catch {
          // the instance is too broken even for that: report the trap itself
        }
        poisoned = message ?? e.message;
        throw new ImgsvcError(
          'internal',
          message === null
            ? `imgsvc-wasm trapped (${e.message}); out of memory?`
            : `imgsvc-wasm panicked: ${message}`,
          { panic: true, cause: e },
        );
      }
      throw e;
    }
  }

  // Those formats: the base module builds the request and reads the answer; the codecs
  // module's own instance runs (and, if it panics, is dropped) in between.
  async function withCodecs(request, readAnswer) {
    const module = await codecs.load();
    const response = await runCodecs(module, request);
    return call(() => readAnswer(response));
  }

  function withCodecsSync(request, readAnswer) {
    const module = codecs.loaded();
    if (module === null) {
      throw new ImgsvcError(
        'codecs_not_loaded',
        'this format needs the codecs module: await loadCodecs() (or call the async function) first',
      );
    }
    return call(() => readAnswer(runCodecsSync(module, request)));
  }

  return {
    async process(input, options) {
      const bytes = await toBytes(input);
      await ensureReady();
      if (call(() => raw.needsCodecs(bytes))) {
        return withCodecs(
          call(() => raw.codecsRequest(bytes, options)),
          raw.codecsResponse,
        );
      }
      return call(() => raw.process(bytes, options));
    },
    /** Fetch and compile the codecs module now rather than on the first photo that needs it. */
    async loadCodecs() {
      await codecs.load();
    },
    async probe(input) {
      const bytes = await toBytes(input);
      await ensureReady();
      if (call(() => raw.needsCodecs(bytes))) {
        return withCodecs(
          call(() => raw.codecsProbeRequest(bytes)),
          raw.codecsProbeResponse,
        );
      }
      return call(() => raw.probe(bytes));
    },
    processSync(input, options) {
      const bytes = toBytesSync(input);
      if (call(() => raw.needsCodecs(bytes))) {
        return withCodecsSync(call(() => raw.codecsRequest(bytes, options)), raw.codecsResponse);
      }
      return call(() => raw.process(bytes, options));
    },
    probeSync(input) {
      const bytes = toBytesSync(input);
      if (call(() => raw.needsCodecs(bytes))) {
        return withCodecsSync(call(() => raw.codecsProbeRequest(bytes)), raw.codecsProbeResponse);
      }
      return call(() => raw.probe(bytes));
    },
    /** Not API: lets the tests see how a panic surfaces. */
    _panicForTests() {
      return call(() => raw.panicForTests());
    },
  };
}
