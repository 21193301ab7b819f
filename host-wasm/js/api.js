// The package's API over the raw wasm-bindgen exports (shared by index.js and node.js).

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
 */
export function makeApi(raw, ensureReady) {
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

  return {
    async process(input, options) {
      const bytes = await toBytes(input);
      await ensureReady();
      return call(() => raw.process(bytes, options));
    },
    async probe(input) {
      const bytes = await toBytes(input);
      await ensureReady();
      return call(() => raw.probe(bytes));
    },
    processSync(input, options) {
      return call(() => raw.process(toBytesSync(input), options));
    },
    probeSync(input) {
      return call(() => raw.probe(toBytesSync(input)));
    },
    /** Not API: lets the tests see how a panic surfaces. */
    _panicForTests() {
      return call(() => raw.panicForTests());
    },
  };
}
