// A panic inside the module surfaces as a readable ImgsvcError, and the instance is retired.
// (Its own file: node --test runs each file in a fresh process, so no other test shares the
// retired instance.)
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as imgsvc from '../dist/node.js';

test('a panic is a readable error, not "unreachable"', async () => {
  assert.throws(() => imgsvc._panicForTests(), (e) => {
    assert.ok(e instanceof imgsvc.ImgsvcError);
    assert.equal(e.code, 'internal');
    assert.equal(e.panic, true);
    assert.match(e.message, /panicked: .*deliberate panic requested by a test/);
    assert.match(e.message, /\(at host-wasm\/src\/lib\.rs:\d+:\d+\)$/);
    assert.ok(e.cause instanceof WebAssembly.RuntimeError);
    return true;
  });
  await assert.rejects(imgsvc.process(new Uint8Array([1, 2, 3])), (e) => {
    assert.equal(e.code, 'internal');
    assert.match(e.message, /cannot be used after an earlier panic/);
    return true;
  });
});
