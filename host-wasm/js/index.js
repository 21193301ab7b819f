// Browsers and bundlers: the module is fetched and compiled on first use (or by `init()`).
// The codecs module (AVIF, HEIC, JPEG XL, TIFF) is fetched on the first photo that needs it,
// or by `loadCodecs()`, so pages whose users upload JPEG, PNG, WebP and GIF never download it.
import initWasm, * as raw from './imgsvc_wasm.js';
import { ImgsvcError, makeApi } from './api.js';

let ready = null;
let codecsUrl = new URL('./imgsvc_codecs.wasm', import.meta.url);
// How long fetching the codecs module (about 1.7 MB gzipped) may take before it is
// `codecs_unavailable` and the next call tries again.
let codecsTimeoutMs = 60_000;
let codecsPromise = null;
let codecsModule = null;

/**
 * Load and compile the WebAssembly module. Optional: `process` and `probe` call it. Pass a
 * URL, Response, BufferSource or WebAssembly.Module to load the `.wasm` from elsewhere, and
 * `{ codecs: url }` as the second argument to load the codecs module from elsewhere
 * (`codecsTimeoutMs`: how long its download may take, default 60 s).
 */
export function init(wasm, { codecs, codecsTimeoutMs: timeout } = {}) {
  if (codecs !== undefined) codecsUrl = codecs;
  if (timeout !== undefined) codecsTimeoutMs = timeout;
  ready ??= initWasm(wasm === undefined ? undefined : { module_or_path: wasm });
  return ready.then(() => undefined);
}

async function compileCodecs() {
  const response = await fetch(codecsUrl, { signal: AbortSignal.timeout(codecsTimeoutMs) });
  if (!response.ok) throw new Error(`${response.status} ${response.statusText} for ${codecsUrl}`);
  // compileStreaming needs the application/wasm type; a server that sends another one still works.
  const module = response.headers.get('Content-Type')?.startsWith('application/wasm')
    ? await WebAssembly.compileStreaming(response)
    : await WebAssembly.compile(await response.arrayBuffer());
  codecsModule = module;
  return module;
}

const codecs = {
  load() {
    codecsPromise ??= compileCodecs().catch((e) => {
      codecsPromise = null; // a failed download can be retried
      throw new ImgsvcError('codecs_unavailable', `the codecs module could not be loaded: ${e.message}`, { cause: e });
    });
    return codecsPromise;
  },
  loaded: () => codecsModule,
};

const api = makeApi(raw, init, codecs);
export const { process, probe, processSync, probeSync, loadCodecs, _panicForTests } = api;
export { ImgsvcError } from './api.js';
export { createPreviewer } from './previewer.js';
