// The Web Worker previewer: the core runs off the main thread, so pages never block.
import { ImgsvcError, toBytes } from './api.js';

/**
 * Start a worker running the core. `process(input, options)` resolves with the same object
 * `process()` gives, plus `ms` (time in the core, in the worker). ArrayBuffer inputs are
 * transferred (so detached); Uint8Arrays are copied; Blobs and Files are read.
 * Options: `workerUrl` when a bundler or CDN puts worker.js somewhere else.
 */
export function createPreviewer({ workerUrl } = {}) {
  let worker = null;
  let nextId = 1;
  const pending = new Map();

  function spawn() {
    // Written out literally so bundlers recognise the worker and bundle it.
    const w = workerUrl
      ? new Worker(workerUrl, { type: 'module', name: 'imgsvc-previewer' })
      : new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'imgsvc-previewer' });
    w.onmessage = ({ data }) => {
      const call = pending.get(data.id);
      if (call === undefined) return;
      pending.delete(data.id);
      if (data.ok) {
        call.resolve(data.result);
      } else {
        const { code, message, inputError, panic } = data.error;
        if (panic) restart(); // that worker's instance is unusable; the next call gets a new one
        call.reject(new ImgsvcError(code, message, { inputError, panic }));
      }
    };
    w.onerror = (event) => {
      event.preventDefault();
      const error = new ImgsvcError('internal', `the imgsvc worker failed: ${event.message ?? 'unknown error'}`);
      for (const call of pending.values()) call.reject(error);
      pending.clear();
      restart();
    };
    return w;
  }

  function restart() {
    worker?.terminate();
    worker = null;
  }

  async function send(op, input, options) {
    let buffer;
    if (input instanceof ArrayBuffer) {
      buffer = input;
    } else {
      const bytes = await toBytes(input);
      buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    }
    worker ??= spawn();
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      worker.postMessage({ id, op, buffer, options }, [buffer]);
    });
  }

  return {
    process: (input, options) => send('process', input, options),
    probe: (input) => send('probe', input),
    /** Stop the worker; pending calls are rejected. */
    terminate() {
      const error = new ImgsvcError('internal', 'the previewer was terminated');
      for (const call of pending.values()) call.reject(error);
      pending.clear();
      restart();
    },
  };
}
