// Servers for the browser tests and benchmarks. `startServer`: a static server with the
// built package at `/`, the corpus at `/corpus/` and the format fixtures at `/fixture/N`.
// `startImgsvc`: the real service (`imgsvc serve` on embedded storage), which serves the
// preview page itself. No COOP/COEP headers, on purpose: the package must not need them.
import { execFileSync, spawn } from 'node:child_process';
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { basename, extname, join } from 'node:path';
import { createInterface } from 'node:readline';

import { corpusDir, distDir, formatsReference, repoRoot } from './helpers.mjs';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
};

/** Start on a free loopback port. */
export async function startServer() {
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    let file = null;
    if (url.pathname.startsWith('/corpus/')) file = join(corpusDir, basename(decodeURIComponent(url.pathname)));
    else if (url.pathname.startsWith('/fixture/')) file = formatsReference()[Number(basename(url.pathname))]?.path ?? '';
    else file = join(distDir, url.pathname === '/' ? 'index.html' : basename(url.pathname));
    if (!existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' });
    createReadStream(file).pipe(res);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return { origin, close: () => new Promise((resolve) => server.close(resolve)) };
}

/** The service binary: IMGSVC_BIN, else the debug build in the cargo target dir. */
export function imgsvcBinary() {
  const bin = process.env.IMGSVC_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(repoRoot, 'target'), 'debug/imgsvc');
  if (!existsSync(bin)) throw new Error(`${bin} not found: build it (cargo build --workspace --bin imgsvc) or set IMGSVC_BIN`);
  return bin;
}

/**
 * `imgsvc serve` on a free loopback port with a fresh data directory, serving this package
 * (dist/) as its preview page; `token` is a token it accepts (`imgsvc token`).
 */
export async function startImgsvc() {
  const bin = imgsvcBinary();
  const data = mkdtempSync(join(tmpdir(), 'imgsvc-browser-'));
  // None of the service's settings from this environment (stores, secrets, sandbox…).
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(IMGSVC|AWS)_/.test(k)));
  const child = spawn(bin, ['serve', '--bind', '127.0.0.1:0', '--data-dir', data, '--preview-dir', distDir], {
    env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Its log, kept to explain a failed start rather than printed into the test report.
  let log = '';
  child.stderr.on('data', (chunk) => { log = (log + chunk).slice(-16_384); });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const first = await new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`imgsvc serve exited (${code}) before listening:\n${log}`)));
    setTimeout(() => reject(new Error('imgsvc serve did not say where it listens within 30 s')), 30_000).unref();
  });
  const origin = /^listening on (http:\/\/\S+)$/.exec(first)?.[1];
  if (!origin) throw new Error(`unexpected first line from imgsvc serve: ${first}`);
  const token = execFileSync(bin, ['token', '--user', 'preview-tester', '--data-dir', data], { env, timeout: 30_000 })
    .toString().trim();
  return {
    origin,
    token,
    async close() {
      child.kill();
      await exited;
      rmSync(data, { recursive: true, force: true });
    },
  };
}
