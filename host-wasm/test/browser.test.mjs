// The package in real headless Chromium (Debian's /usr/bin/chromium via playwright-core):
// the preview page end to end against the real service (`imgsvc serve`), with screenshots
// kept in host-wasm/artifacts/, and parity with the native core on every corpus photo and
// every format fixture through the Web Worker previewer.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

import { artifactsDir, corpusDir, differences, formatsReference, iphoneLikeHeic, reference } from './helpers.mjs';
import { startImgsvc, startServer } from './server.mjs';

const executablePath = process.env.IMGSVC_CHROMIUM ?? '/usr/bin/chromium';
let server;
let imgsvc;
let browser;

before(async () => {
  server = await startServer();
  imgsvc = await startImgsvc();
  browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  await server?.close();
  await imgsvc?.close();
});

async function newPage() {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  return { page, errors };
}

// Pick `file` on the preview page, wait for the preview, upload it to the service the page
// came from, and return what the page showed and what the service answered.
async function previewAndUpload(page, file, token) {
  await page.setInputFiles('#file', file);
  await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 120_000 });
  assert.equal(await page.getAttribute('#status', 'data-state'), 'done', await page.textContent('#status'));
  const shown = {};
  for (const which of ['display', 'thumbnail']) {
    shown[which] = await page.$eval(`#${which}-img`, (img) => ({
      ...img.dataset,
      naturalWidth: img.naturalWidth,
      naturalHeight: img.naturalHeight,
    }));
    // Chromium decoded the WebP to the dimensions the core reported.
    assert.deepEqual([shown[which].naturalWidth, shown[which].naturalHeight], [Number(shown[which].width), Number(shown[which].height)]);
  }
  shown.facts = await page.textContent('#facts');
  await page.fill('#token', token);
  await page.click('#upload-button');
  await page.waitForSelector('#upload-status[data-state="done"], #upload-status[data-state="error"]', { timeout: 120_000 });
  const uploadText = await page.textContent('#upload-status');
  assert.equal(await page.getAttribute('#upload-status', 'data-state'), 'done', uploadText);
  // The page compared the stored display image with its preview itself, and says so.
  assert.match(uploadText, /byte-identical to this preview/);
  const id = await page.getAttribute('#upload-status', 'data-id');
  return { shown, id };
}

// What the service stored: its record, and the SHA-256 of the stored display image.
async function stored(id) {
  const headers = { Authorization: `Bearer ${imgsvc.token}` };
  const response = await fetch(`${imgsvc.origin}/images/${id}`, { headers, signal: AbortSignal.timeout(30_000) });
  assert.equal(response.status, 200);
  const record = await response.json();
  const file = await fetch(record.imageUrl, { signal: AbortSignal.timeout(30_000) });
  const display = Buffer.from(await file.arrayBuffer());
  return { record, displaySha256: createHash('sha256').update(display).digest('hex') };
}

test('the preview page, served by imgsvc, previews a JPEG and an iPhone HEIC exactly as the service stores them', async () => {
  const { page, errors } = await newPage();
  await page.goto(`${imgsvc.origin}/`);
  await page.waitForSelector('body[data-ready="true"]');
  // No COOP/COEP here, so no SharedArrayBuffer: the package must not need it.
  assert.equal(await page.evaluate(() => globalThis.crossOriginIsolated), false);
  assert.equal(await page.inputValue('#service'), imgsvc.origin);

  // A JPEG from the corpus: the base module; outputs equal the native core's.
  const name = 'exif6_lomiri16_Dragonfly.jpg';
  const native = reference().find((r) => r.file === name);
  const jpeg = await previewAndUpload(page, join(corpusDir, name), imgsvc.token);
  for (const which of ['display', 'thumbnail']) {
    assert.equal(jpeg.shown[which].sha256, native[which].sha256, `${which} bytes`);
    assert.equal(Number(jpeg.shown[which].bytes), native[which].bytes);
  }
  assert.match(jpeg.shown.facts, /EXIF orientation 6/);
  const jpegStored = await stored(jpeg.id);
  assert.equal(jpegStored.displaySha256, jpeg.shown.display.sha256);
  assert.equal(jpegStored.record.mimeType, 'image/jpeg');
  mkdirSync(artifactsDir, { recursive: true });
  await page.screenshot({ path: join(artifactsDir, 'preview.png'), fullPage: true });

  // An iPhone-shaped HEIC (grid, irot, Display P3, EXIF 6): no browser decodes HEIC; the
  // package loads its codecs module for it, and the preview is the stored image, byte for byte.
  const codecsRequests = [];
  page.on('request', (r) => { if (r.url().endsWith('/imgsvc_codecs.wasm')) codecsRequests.push(r.url()); });
  assert.equal(codecsRequests.length, 0);
  const heic = await previewAndUpload(page, iphoneLikeHeic, imgsvc.token);
  assert.equal(codecsRequests.length, 1, 'the codecs module is fetched once, on the first HEIC');
  assert.match(heic.shown.facts, /source: heic, /);
  assert.match(heic.shown.facts, /converted to sRGB/);
  assert.deepEqual([Number(heic.shown.display.width), Number(heic.shown.display.height)], [120, 160]);
  const heicStored = await stored(heic.id);
  assert.equal(heicStored.displaySha256, heic.shown.display.sha256, 'stored display vs the HEIC preview');
  assert.equal(heicStored.record.mimeType, 'image/heic');
  assert.deepEqual([heicStored.record.width, heicStored.record.height], [120, 160]);
  await page.screenshot({ path: join(artifactsDir, 'preview-heic.png'), fullPage: true });

  // A refusal is shown with its code.
  await page.setInputFiles('#file', { name: 'page.html', mimeType: 'text/html', buffer: Buffer.from('<html></html>') });
  await page.waitForSelector('#status[data-state="error"]');
  assert.equal(await page.getAttribute('#status', 'data-code'), 'unsupported_format');
  assert.deepEqual(errors, []);
  await page.close();
});

test('every AVIF, HEIC, JPEG XL and TIFF fixture gives the native core\'s bytes in Chromium (Web Worker)', async () => {
  await assertPreviewerMatchesNative(formatsReference(), (_, index) => `/fixture/${index}`);
});

test('every corpus photo gives the native core\'s bytes in Chromium (Web Worker)', async () => {
  await assertPreviewerMatchesNative(reference(), (native) => `/corpus/${encodeURIComponent(native.file)}`);
});

// Each of `natives` (native reference entries), fetched from `urlOf(entry, index)` on the
// static server and processed by a Web Worker previewer, must equal the native outputs.
async function assertPreviewerMatchesNative(natives, urlOf) {
  const { page, errors } = await newPage();
  await page.goto(`${server.origin}/`);
  await page.waitForSelector('body[data-ready="true"]');
  await page.evaluate(async () => {
    const { createPreviewer } = await import('/index.js');
    globalThis.previewer = createPreviewer();
  });
  const failures = [];
  for (const [index, native] of natives.entries()) {
    const wasm = await page.evaluate(processInPage, urlOf(native, index));
    const diff = differences(native, wasm);
    if (diff.length > 0) failures.push(`${native.file}: ${diff.join('; ')}`);
  }
  assert.deepEqual(failures, []);
  assert.deepEqual(errors, []);
  await page.close();
}

// Runs in the page: fetch `url`, process it in the previewer, and summarise as the native
// reference does (digests instead of bytes).
async function processInPage(url) {
  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  const sha = async (b) => hex(new Uint8Array(await crypto.subtle.digest('SHA-256', b)));
  const response = await fetch(url);
  try {
    const r = await globalThis.previewer.process(await response.arrayBuffer());
    const out = async (o) => ({ width: o.width, height: o.height, bytes: o.bytes, sha256: await sha(o.data) });
    return { ok: true, source: r.source, display: await out(r.display), thumbnail: await out(r.thumbnail), thumbhash: hex(r.thumbhash) };
  } catch (e) {
    return { ok: false, code: e.code, message: e.message };
  }
}

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
