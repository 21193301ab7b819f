// The package in Node: parity with the native core on every corpus photo and every format
// fixture (the codecs module), and the API.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import * as imgsvc from '../dist/node.js';
import { corpusDir, differences, formatsReference, hex, iphoneLikeHeic, reference } from './helpers.mjs';

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');
const photo = (name) => readFileSync(join(corpusDir, name));

function summary(result) {
  const output = (o) => ({ width: o.width, height: o.height, bytes: o.bytes, sha256: sha256(o.data) });
  return {
    ok: true,
    source: result.source,
    display: output(result.display),
    thumbnail: output(result.thumbnail),
    thumbhash: hex(result.thumbhash),
  };
}

// What the package gives for `bytes`, in the native reference's shape: a summary, or the
// refusal's code and message.
async function outcome(bytes) {
  try {
    return summary(await imgsvc.process(bytes));
  } catch (e) {
    if (e.name !== 'ImgsvcError') throw e;
    return { ok: false, code: e.code, message: e.message };
  }
}

test('every corpus photo gives the native core\'s bytes', async () => {
  const failures = [];
  let accepted = 0;
  for (const native of reference()) {
    const wasm = await outcome(photo(native.file));
    if (wasm.ok) accepted += 1;
    const diff = differences(native, wasm);
    if (diff.length > 0) failures.push(`${native.file}: ${diff.join('; ')}`);
  }
  assert.deepEqual(failures, []);
  assert.ok(accepted >= 20, `only ${accepted} photos accepted`);
});

test('every AVIF, HEIC, JPEG XL and TIFF fixture gives the native core\'s bytes (codecs module)', async () => {
  const failures = [];
  const accepted = new Map();
  for (const native of formatsReference()) {
    const bytes = readFileSync(native.path);
    const wasm = await outcome(bytes);
    if (wasm.ok) accepted.set(wasm.source.format, (accepted.get(wasm.source.format) ?? 0) + 1);
    const diff = differences(native, wasm);
    if (diff.length > 0) failures.push(`${native.file}: ${diff.join('; ')}`);
    if (native.ok) {
      // probe goes to the codecs module too, and agrees with process.
      const probed = await imgsvc.probe(bytes);
      const { format, width, height, orientation, frames } = native.source;
      assert.deepEqual(probed, { format, width, height, orientation, frames }, native.file);
    }
  }
  assert.deepEqual(failures, []);
  for (const format of ['avif', 'heic', 'jxl', 'tiff']) assert.ok(accepted.get(format) >= 3, `${format}: ${accepted.get(format)}`);
});

test('the codecs module: sync calls, limits, hostile input, and a fresh instance per call', async () => {
  const heic = readFileSync(iphoneLikeHeic);
  const expected = await imgsvc.process(heic);
  assert.equal(expected.source.format, 'heic');
  assert.deepEqual([expected.display.width, expected.display.height], [120, 160]);
  assert.equal(sha256(imgsvc.processSync(heic).display.data), sha256(expected.display.data));
  assert.equal(imgsvc.probeSync(heic).format, 'heic');
  // Options reach the codecs module through the same parser.
  await assert.rejects(imgsvc.process(heic, { maxPixels: 1000 }), { name: 'ImgsvcError', code: 'too_many_pixels', inputError: true });
  await assert.rejects(imgsvc.process(heic, { maxSide: 'x' }), { code: 'invalid_options' });
  // A cut file is refused with its code, and the next call is unaffected.
  await assert.rejects(imgsvc.process(heic.subarray(0, heic.length >> 1)), { code: 'corrupt_image', inputError: true, panic: false });
  await assert.rejects(imgsvc.probe(heic.subarray(0, 40)), { code: 'corrupt_image' });
  assert.equal(sha256((await imgsvc.process(heic)).display.data), sha256(expected.display.data));
  // The base module's formats never touch it: a JPEG is not sent there.
  assert.equal((await imgsvc.probe(photo('mate_FreshFlower.jpg'))).format, 'jpeg');
});

test('outputs are WebP files with the documented geometry', async () => {
  const result = await imgsvc.process(photo('exif6_lomiri16_Dragonfly.jpg'));
  assert.equal(result.source.orientation, 6);
  assert.deepEqual([result.source.orientedWidth, result.source.orientedHeight], [3168, 4224]);
  assert.deepEqual([result.display.width, result.display.height], [1536, 2048]);
  assert.deepEqual([result.thumbnail.width, result.thumbnail.height], [400, 400]);
  for (const output of [result.display, result.thumbnail]) {
    assert.ok(output.data instanceof Uint8Array);
    assert.equal(output.bytes, output.data.length);
    assert.equal(output.mime, 'image/webp');
    assert.equal(Buffer.from(output.data.subarray(0, 4)).toString(), 'RIFF');
    assert.equal(Buffer.from(output.data.subarray(8, 12)).toString(), 'WEBP');
  }
  assert.ok(result.thumbhash.length > 10 && result.thumbhash.length < 40);
});

test('inputs may be Uint8Array, Buffer, ArrayBuffer, typed-array views and Blobs', async () => {
  const bytes = photo('mate_FreshFlower.jpg');
  const expected = sha256((await imgsvc.process(bytes)).display.data);
  const copy = new Uint8Array(bytes);
  const padded = new Uint8Array(bytes.length + 8);
  padded.set(bytes, 4);
  for (const input of [copy, copy.buffer, new DataView(padded.buffer, 4, bytes.length), new Blob([bytes])]) {
    assert.equal(sha256((await imgsvc.process(input)).display.data), expected);
  }
  assert.equal(sha256(imgsvc.processSync(copy).display.data), expected);
  await assert.rejects(imgsvc.process('not bytes'), TypeError);
});

test('probe reads headers only', async () => {
  assert.deepEqual(await imgsvc.probe(photo('exif6_lomiri16_Dragonfly.jpg')), {
    format: 'jpeg', width: 4224, height: 3168, orientation: 6, frames: 1,
  });
  const gif = await imgsvc.probe(photo('hugin_CA_fringes01_anim.gif'));
  assert.equal(gif.format, 'gif');
  assert.ok(gif.frames > 1);
  assert.deepEqual(imgsvc.probeSync(photo('lxqt_beam.png')).format, 'png');
});

test('refusals are ImgsvcErrors with the core\'s stable codes', async () => {
  const cases = [
    [new Uint8Array(), 'empty_input'],
    [new TextEncoder().encode('<!doctype html><html></html>'), 'unsupported_format'],
    [photo('mate_FreshFlower.jpg').subarray(0, 5000), 'corrupt_image'],
  ];
  for (const [bytes, code] of cases) {
    await assert.rejects(imgsvc.process(bytes), (e) => {
      assert.ok(e instanceof imgsvc.ImgsvcError, `${e}`);
      assert.equal(e.name, 'ImgsvcError');
      assert.equal(e.code, code);
      assert.equal(e.inputError, true);
      assert.equal(e.panic, false);
      assert.ok(e.message.length > 10);
      return true;
    });
  }
  await assert.rejects(imgsvc.probe(new Uint8Array([0x25, 0x50, 0x44, 0x46, 0x2d])), { code: 'unsupported_format' });
  // A refusal names everything the package takes (as the server's does), not only the base
  // module's own formats.
  await assert.rejects(imgsvc.process(new Uint8Array([0x42, 0x4d, 0x36, 0, 0, 0, 0, 0])), (e) => {
    assert.equal(e.code, 'unsupported_format');
    assert.match(e.message, /\(supported: JPEG, PNG, WebP, GIF, AVIF, HEIC, JPEG XL, TIFF\)$/);
    return true;
  });
});

test('options only tighten the limits', async () => {
  const bytes = photo('exif6_lomiri16_Dragonfly.jpg');
  await assert.rejects(imgsvc.process(bytes, { maxSide: 4000 }), { code: 'dimensions_too_large' });
  await assert.rejects(imgsvc.process(bytes, { maxPixels: 1e6 }), { code: 'too_many_pixels' });
  await assert.rejects(imgsvc.process(bytes, { maxInputBytes: 1000 }), { code: 'too_large' });
  await assert.rejects(imgsvc.process(photo('hugin_CA_fringes01_anim.gif'), { maxFrames: 1 }), { code: 'too_many_frames' });
  // Larger than the defaults: no effect (an 11 MiB input is still too large).
  const loose = { maxInputBytes: 1e15, maxSide: 1e9, maxPixels: 1e15, maxFrames: 1e9, maxAllocBytes: 1e15 };
  await assert.rejects(imgsvc.process(new Uint8Array(11 << 20).fill(0xff), loose), { code: 'too_large' });
  const ok = await imgsvc.process(bytes, { maxSide: 4224, maxInputBytes: undefined });
  assert.equal(ok.display.width, 1536);
  for (const bad of [{ maxSide: -1 }, { maxSide: 1.5 }, { maxSide: '100' }, { maxWidth: 100 }, 'tight']) {
    await assert.rejects(imgsvc.process(bytes, bad), { name: 'ImgsvcError', code: 'invalid_options' });
  }
});
