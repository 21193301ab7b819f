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

const loaded = new Map();

/**
 * The native core's outputs (examples/native_reference.rs) for `input` (a directory, or the
 * fixtures' manifest.json): from the file `$envName` names when it exists (scripts/test-wasm
 * makes them once for all test files), else made now into target/wasm-parity/`name`. Read
 * once per process.
 */
function nativeReference(envName, input, name) {
  if (!loaded.has(envName)) {
    let path = process.env[envName];
    if (!path || !existsSync(path)) {
      path ??= join(repoRoot, 'target/wasm-parity', name);
      execFileSync('cargo', ['run', '--quiet', '--locked', '-p', 'imgsvc-wasm', '--example', 'native_reference', '--', input(), path],
        { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit'] });
    }
    loaded.set(envName, { path, entries: JSON.parse(readFileSync(path, 'utf8')) });
  }
  return loaded.get(envName);
}

/** The native core's outputs for every corpus photo. */
export function reference() {
  const { path, entries } = nativeReference('IMGSVC_NATIVE_REFERENCE', () => corpusDir, 'native.json');
  if (entries.length < 20) throw new Error(`the native reference ${path} lists only ${entries.length} photos`);
  return entries;
}

/**
 * The native core's outputs for the format fixtures (AVIF, HEIC, JPEG XL, TIFF; made by
 * scripts/format-fixtures.py into $IMGSVC_FORMAT_FIXTURES), each with its `path`.
 */
export function formatsReference() {
  const manifest = () => {
    const fixtures = process.env.IMGSVC_FORMAT_FIXTURES;
    if (!fixtures) throw new Error('IMGSVC_FORMAT_FIXTURES is not set (scripts/test sets it)');
    return join(fixtures, 'manifest.json');
  };
  const { path, entries } = nativeReference('IMGSVC_NATIVE_FORMATS_REFERENCE', manifest, 'native-formats.json');
  const formats = new Set(entries.filter((f) => f.ok).map((f) => f.source.format));
  for (const format of ['avif', 'heic', 'jxl', 'tiff']) {
    if (!formats.has(format)) throw new Error(`the native reference ${path} has no ${format} fixture`);
  }
  return entries;
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
