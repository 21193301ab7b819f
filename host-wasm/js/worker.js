// The previewer's worker (module worker): runs the core, transfers the outputs back.
import { process, probe } from './index.js';

self.onmessage = async ({ data: { id, op, buffer, options } }) => {
  try {
    const bytes = new Uint8Array(buffer);
    if (op === 'probe') {
      self.postMessage({ id, ok: true, result: await probe(bytes) });
      return;
    }
    const started = performance.now();
    const result = await process(bytes, options);
    result.ms = performance.now() - started;
    const transfer = [result.display.data.buffer, result.thumbnail.data.buffer, result.thumbhash.buffer];
    self.postMessage({ id, ok: true, result }, transfer);
  } catch (e) {
    const error = {
      code: e?.code ?? 'internal',
      message: e?.message ?? String(e),
      inputError: e?.inputError === true,
      panic: e?.panic === true,
    };
    self.postMessage({ id, ok: false, error });
  }
};
