// Browsers and bundlers: the module is fetched and compiled on first use (or by `init()`).
import initWasm, * as raw from './imgsvc_wasm.js';
import { makeApi } from './api.js';

let ready = null;

/**
 * Load and compile the WebAssembly module. Optional: `process` and `probe` call it. Pass a
 * URL, Response, BufferSource or WebAssembly.Module to load the `.wasm` from elsewhere.
 */
export function init(wasm) {
  ready ??= initWasm(wasm === undefined ? undefined : { module_or_path: wasm });
  return ready.then(() => undefined);
}

const api = makeApi(raw, init);
export const { process, probe, processSync, probeSync, _panicForTests } = api;
export { ImgsvcError } from './api.js';
export { createPreviewer } from './previewer.js';
