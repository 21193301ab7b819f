// The package in real headless Chromium (Debian's /usr/bin/chromium via playwright-core):
// the preview page end to end, with a screenshot kept in host-wasm/artifacts/, and parity
// with the native core on every corpus photo through the Web Worker previewer.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

import { artifactsDir, corpusDir, differences, reference } from './helpers.mjs';
import { TEST_TOKEN, sha256File, startServer } from './server.mjs';

const executablePath = process.env.IMGSVC_CHROMIUM ?? '/usr/bin/chromium';
let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  await server?.close();
});

async function newPage() {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  return { page, errors };
}

test('the preview page shows the native outputs and uploads the photo', async () => {
  const { page, errors } = await newPage();
  await page.goto(`${server.origin}/`);
  await page.waitForSelector('body[data-ready="true"]');
  // No COOP/COEP here, so no SharedArrayBuffer: the package must not need it.
  assert.equal(await page.evaluate(() => globalThis.crossOriginIsolated), false);

  const name = 'exif6_lomiri16_Dragonfly.jpg';
  const native = reference().find((r) => r.file === name);
  await page.setInputFiles('#file', join(corpusDir, name));
  await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 120_000 });
  assert.equal(await page.getAttribute('#status', 'data-state'), 'done', await page.textContent('#status'));

  for (const which of ['display', 'thumbnail']) {
    const shown = await page.$eval(`#${which}-img`, (img) => ({
      ...img.dataset,
      naturalWidth: img.naturalWidth,
      naturalHeight: img.naturalHeight,
    }));
    assert.equal(shown.sha256, native[which].sha256, `${which} bytes`);
    assert.equal(Number(shown.bytes), native[which].bytes);
    assert.deepEqual([Number(shown.width), Number(shown.height)], [native[which].width, native[which].height]);
    // Chromium decoded the WebP to those dimensions.
    assert.deepEqual([shown.naturalWidth, shown.naturalHeight], [native[which].width, native[which].height]);
  }
  assert.match(await page.textContent('#facts'), /EXIF orientation 6/);

  await page.fill('#service', server.origin);
  await page.fill('#token', TEST_TOKEN);
  await page.click('#upload-button');
  await page.waitForSelector('#upload-status[data-state="done"], #upload-status[data-state="error"]');
  assert.equal(await page.getAttribute('#upload-status', 'data-state'), 'done', await page.textContent('#upload-status'));
  assert.deepEqual(server.uploads.at(-1), { sha256: sha256File(join(corpusDir, name)), bytes: native.source.bytes });
  mkdirSync(artifactsDir, { recursive: true });
  await page.screenshot({ path: join(artifactsDir, 'preview.png'), fullPage: true });

  // A refusal is shown with its code.
  await page.setInputFiles('#file', { name: 'page.html', mimeType: 'text/html', buffer: Buffer.from('<html></html>') });
  await page.waitForSelector('#status[data-state="error"]');
  assert.equal(await page.getAttribute('#status', 'data-code'), 'unsupported_format');
  assert.deepEqual(errors, []);
  await page.close();
});

test('every corpus photo gives the native core\'s bytes in Chromium (Web Worker)', async () => {
  const { page, errors } = await newPage();
  await page.goto(`${server.origin}/`);
  await page.waitForSelector('body[data-ready="true"]');
  await page.evaluate(async () => {
    const { createPreviewer } = await import('/index.js');
    globalThis.previewer = createPreviewer();
  });
  const failures = [];
  for (const native of reference()) {
    const wasm = await page.evaluate(async (file) => {
      const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
      const sha = async (b) => hex(new Uint8Array(await crypto.subtle.digest('SHA-256', b)));
      const response = await fetch(`/corpus/${encodeURIComponent(file)}`);
      try {
        const r = await globalThis.previewer.process(await response.arrayBuffer());
        const out = async (o) => ({ width: o.width, height: o.height, bytes: o.bytes, sha256: await sha(o.data) });
        return { ok: true, source: r.source, display: await out(r.display), thumbnail: await out(r.thumbnail), thumbhash: hex(r.thumbhash) };
      } catch (e) {
        return { ok: false, code: e.code, message: e.message };
      }
    }, native.file);
    const diff = differences(native, wasm);
    if (diff.length > 0) failures.push(`${native.file}: ${diff.join('; ')}`);
  }
  assert.deepEqual(failures, []);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a panic in Chromium is a readable error', async () => {
  const { page } = await newPage();
  await page.goto(`${server.origin}/`);
  const error = await page.evaluate(async () => {
    const m = await import('/index.js');
    await m.init();
    try {
      m._panicForTests();
      return null;
    } catch (e) {
      return { name: e.name, code: e.code, panic: e.panic, message: e.message };
    }
  });
  assert.equal(error?.name, 'ImgsvcError');
  assert.equal(error.code, 'internal');
  assert.equal(error.panic, true);
  assert.match(error.message, /panicked: .*deliberate panic requested by a test/);
  await page.close();
});
