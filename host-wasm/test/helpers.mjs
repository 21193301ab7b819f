// Shared by the Node and Chromium tests: where things are, and the native core's outputs.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const repoRoot = resolve(packageDir, '..');
export const distDir = join(packageDir, 'dist');
export const corpusDir = resolve(process.env.IMGSVC_CORPUS ?? join(repoRoot, '../shared/corpus'));
export const artifactsDir = join(packageDir, 'artifacts');

/**
 * The native core's outputs for every corpus photo (examples/native_reference.rs), from
 * IMGSVC_NATIVE_REFERENCE when set (scripts/test-wasm makes it once for all test files),
 * else made now.
 */
export function reference() {
  let path = process.env.IMGSVC_NATIVE_REFERENCE;
  if (!path || !existsSync(path)) {
    path ??= join(repoRoot, 'target/wasm-parity/native.json');
    execFileSync('cargo', ['run', '--quiet', '--locked', '-p', 'imgsvc-wasm', '--example', 'native_reference', '--', corpusDir, path],
      { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit'] });
  }
  const photos = JSON.parse(readFileSync(path, 'utf8'));
  if (photos.length < 20) throw new Error(`the native reference ${path} lists only ${photos.length} photos`);
  return photos;
}

/**
 * The native core's outputs for the format fixtures (AVIF, HEIC, JPEG XL, TIFF; made by
 * scripts/format-fixtures.py), each with its `path`: IMGSVC_NATIVE_FORMATS_REFERENCE when
 * set (scripts/test-wasm), else made now from $IMGSVC_FORMAT_FIXTURES/manifest.json.
 */
export function formatsReference() {
  let path = process.env.IMGSVC_NATIVE_FORMATS_REFERENCE;
  if (!path || !existsSync(path)) {
    const fixtures = process.env.IMGSVC_FORMAT_FIXTURES;
    if (!fixtures) throw new Error('IMGSVC_FORMAT_FIXTURES is not set (scripts/test sets it)');
    path ??= join(repoRoot, 'target/wasm-parity/native-formats.json');
    execFileSync('cargo', ['run', '--quiet', '--locked', '-p', 'imgsvc-wasm', '--example', 'native_reference', '--', join(fixtures, 'manifest.json'), path],
      { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit'] });
  }
  const fixtures = JSON.parse(readFileSync(path, 'utf8'));
  const formats = new Set(fixtures.filter((f) => f.ok).map((f) => f.source.format));
  for (const format of ['avif', 'heic', 'jxl', 'tiff']) {
    if (!formats.has(format)) throw new Error(`the native reference ${path} has no ${format} fixture`);
  }
  return fixtures;
}

/** An iPhone-shaped HEIC (grid, irot, Display P3, EXIF orientation 6), kept in the repo. */
export const iphoneLikeHeic = join(repoRoot, 'testkit/data/iphone-like.heic');

/** Differences between a package result (with digests) and the native reference entry. */
export function differences(native, wasm) {
  const out = [];
  if (native.ok !== wasm.ok) {
    return [`native ${native.ok ? 'accepted' : `refused (${native.code})`}, wasm ${wasm.ok ? 'accepted' : `refused (${wasm.code}: ${wasm.message})`}`];
  }
  if (!native.ok) {
    if (native.code !== wasm.code || native.message !== wasm.message) out.push(`refusal ${native.code} "${native.message}" vs ${wasm.code} "${wasm.message}"`);
    return out;
  }
  for (const [key, value] of Object.entries(native.source)) {
    if (wasm.source[key] !== value) out.push(`source.${key} ${value} vs ${wasm.source[key]}`);
  }
  for (const name of ['display', 'thumbnail']) {
    for (const key of ['width', 'height', 'bytes', 'sha256']) {
      if (native[name][key] !== wasm[name][key]) out.push(`${name}.${key} ${native[name][key]} vs ${wasm[name][key]}`);
    }
  }
  if (native.thumbhash !== wasm.thumbhash) out.push(`thumbhash ${native.thumbhash} vs ${wasm.thumbhash}`);
  return out;
}

export const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
