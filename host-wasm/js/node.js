// Node: the module is read from beside this file and compiled synchronously at import.
import { readFileSync } from 'node:fs';
import * as raw from './imgsvc_wasm.js';
import { makeApi } from './api.js';

raw.initSync({ module: readFileSync(new URL('./imgsvc_wasm_bg.wasm', import.meta.url)) });

/** Already initialised in Node; kept so code can call it on every platform. */
export function init() {
  return Promise.resolve();
}

const api = makeApi(raw, init);
export const { process, probe, processSync, probeSync, _panicForTests } = api;
export { ImgsvcError } from './api.js';

export function createPreviewer() {
  throw new Error(
    'createPreviewer() needs a browser (a module Web Worker); in Node call process() directly',
  );
}
