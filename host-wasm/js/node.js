// Node: the module is read from beside this file and compiled synchronously at import; the
// codecs module (AVIF, HEIC, JPEG XL, TIFF) is read and compiled on first use.
import { readFileSync } from 'node:fs';
import * as raw from './imgsvc_wasm.js';
import { ImgsvcError, makeApi } from './api.js';

raw.initSync({ module: readFileSync(new URL('./imgsvc_wasm_bg.wasm', import.meta.url)) });

/** Already initialised in Node; kept so code can call it on every platform. */
export function init() {
  return Promise.resolve();
}

let codecsModule = null;
function loadCodecsSync() {
  try {
    codecsModule ??= new WebAssembly.Module(readFileSync(new URL('./imgsvc_codecs.wasm', import.meta.url)));
  } catch (e) {
    throw new ImgsvcError('codecs_unavailable', `the codecs module could not be loaded: ${e.message}`, { cause: e });
  }
  return codecsModule;
}
// Synchronous here, so processSync() needs no loadCodecs() first.
const codecs = { load: async () => loadCodecsSync(), loaded: loadCodecsSync };

const api = makeApi(raw, init, codecs);
export const { process, probe, processSync, probeSync, loadCodecs, _panicForTests } = api;
export { ImgsvcError } from './api.js';

export function createPreviewer() {
  throw new Error(
    'createPreviewer() needs a browser (a module Web Worker); in Node call process() directly',
  );
}
