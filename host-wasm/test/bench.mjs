// Time per corpus photo, median of 5, in Node and in Chromium (main thread, the package's
// processSync after init), beside the native CLI's own `ms` (median of 5 runs of
// `imgsvc process`, whose JSON lines are passed as arguments):
//
//   for i in 1 2 3 4 5; do target/release/imgsvc process --out /tmp/x ../shared/corpus/* > /tmp/native-$i.jsonl; done
//   node test/bench.mjs /tmp/native-*.jsonl
//
// Every figure is time in the core (decode to encoded outputs), not file I/O.
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

import { chromium } from 'playwright-core';

import * as imgsvc from '../dist/node.js';
import { corpusDir, reference } from './helpers.mjs';
import { startServer } from './server.mjs';

const RUNS = 5;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const photos = reference().filter((r) => r.ok).map((r) => r.file);

const native = new Map();
for (const file of process.argv.slice(2)) {
  for (const line of readFileSync(file, 'utf8').split('\n').filter(Boolean)) {
    const row = JSON.parse(line);
    if (!row.ok) continue;
    const name = basename(row.input);
    native.set(name, [...(native.get(name) ?? []), row.ms]);
  }
}

const node = new Map();
for (const name of photos) {
  const bytes = readFileSync(join(corpusDir, name));
  const times = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    imgsvc.processSync(bytes);
    times.push(performance.now() - started);
  }
  node.set(name, median(times));
}

const server = await startServer();
const browser = await chromium.launch({ executablePath: process.env.IMGSVC_CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
const page = await browser.newPage();
await page.goto(`${server.origin}/`);
await page.evaluate(async () => { globalThis.m = await import('/index.js'); await globalThis.m.init(); });
const browserMs = new Map();
for (const name of photos) {
  const times = await page.evaluate(async ({ name, runs }) => {
    const bytes = new Uint8Array(await (await fetch(`/corpus/${encodeURIComponent(name)}`)).arrayBuffer());
    const out = [];
    for (let i = 0; i < runs; i++) {
      const started = performance.now();
      globalThis.m.processSync(bytes);
      out.push(performance.now() - started);
    }
    return out;
  }, { name, runs: RUNS });
  browserMs.set(name, median(times));
}
await browser.close();
await server.close();

const fmt = (x) => (x === undefined ? '–' : x.toFixed(0));
const rows = photos.map((name) => {
  const n = native.has(name) ? median(native.get(name)) : undefined;
  return { name, native: n, node: node.get(name), chromium: browserMs.get(name) };
});
console.log('| photo | native ms | Node ms | Chromium ms | Node / native | Chromium / native |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  const ratio = (x) => (r.native ? `${(x / r.native).toFixed(2)}×` : '–');
  console.log(`| ${r.name} | ${fmt(r.native)} | ${fmt(r.node)} | ${fmt(r.chromium)} | ${ratio(r.node)} | ${ratio(r.chromium)} |`);
}
const sum = (key) => rows.reduce((acc, r) => acc + (r[key] ?? 0), 0);
const total = { native: sum('native'), node: sum('node'), chromium: sum('chromium') };
console.log(`| **all ${rows.length} (sum of medians)** | ${fmt(total.native)} | ${fmt(total.node)} | ${fmt(total.chromium)} | ${(total.node / total.native).toFixed(2)}× | ${(total.chromium / total.native).toFixed(2)}× |`);
