// A static server for the browser tests and benchmarks: the built package at `/`, the corpus
// at `/corpus/`, and a stand-in for the service's `POST /images` that checks the token and
// the uploaded bytes. No COOP/COEP headers, on purpose: the package must not need them.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { basename, extname, join } from 'node:path';

import { corpusDir, distDir } from './helpers.mjs';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
};

export const TEST_TOKEN = 'test-token-for-the-preview-page';

/** Start on a free loopback port. `uploads` records what the fake service received. */
export async function startServer() {
  const uploads = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    if (req.method === 'POST' && url.pathname === '/images') return fakeUpload(req, res, uploads);
    let file = null;
    if (url.pathname.startsWith('/corpus/')) file = join(corpusDir, basename(decodeURIComponent(url.pathname)));
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
  return { origin, uploads, close: () => new Promise((resolve) => server.close(resolve)) };
}

function fakeUpload(req, res, uploads) {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    if (req.headers.authorization !== `Bearer ${TEST_TOKEN}`) {
      res.writeHead(401, { 'Content-Type': 'application/problem+json' });
      res.end(JSON.stringify({ title: 'Unauthorized', code: 'unauthorized' }));
      return;
    }
    // The `file` part's bytes: between the part's blank line and the next boundary.
    const boundary = `--${/boundary=(.+)$/.exec(req.headers['content-type'] ?? '')?.[1]}`;
    const parts = body.toString('latin1').split(boundary);
    const part = parts.find((p) => /name="file"/.test(p)) ?? '';
    const content = Buffer.from(part.slice(part.indexOf('\r\n\r\n') + 4, -2), 'latin1');
    uploads.push({ sha256: createHash('sha256').update(content).digest('hex'), bytes: content.length });
    res.writeHead(201, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ id: 'fake-upload-1' }));
  });
}

export function sha256File(path) {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}
