// The reference pipeline, as the seeds' upload handler runs it with sharp (libvips):
//   display:   sharp(buf).rotate().resize(2048, 2048, {fit: 'inside', withoutEnlargement: true}).webp({quality: 85})
//   thumbnail: sharp(buf).resize(400, 400, {fit: 'cover'}).webp({quality: 80})
// one after the other, per upload. Times each photo `--runs` times (after one warm-up),
// writes the outputs of the last run to --out and one JSON line per photo to stdout, and
// finally a summary line with the process's peak RSS.
//
// With --one-decode, the pipeline an expert writes instead (issue 21): one decode,
//   sharp(buf).rotate().resize(2048, 2048, {fit: 'inside', withoutEnlargement: true}).raw()
// then the display encoded from those pixels and the thumbnail cut from them (one after the
// other with --single, at once otherwise).
//
//   node run.mjs --out DIR --runs N [--single] [--one-decode] FILE...
// --single: sharp.concurrency(1) (run with UV_THREADPOOL_SIZE=1 as well: compare.sh does).
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';

const args = process.argv.slice(2);
let out = null;
let runs = 5;
let single = false;
let oneDecode = false;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--out') out = args[++i];
  else if (args[i] === '--runs') runs = Number(args[++i]);
  else if (args[i] === '--single') single = true;
  else if (args[i] === '--one-decode') oneDecode = true;
  else files.push(args[i]);
}
if (!out || !(runs > 0) || files.length === 0) {
  console.error('usage: node run.mjs --out DIR --runs N [--single] [--one-decode] FILE...');
  process.exit(2);
}
mkdirSync(out, { recursive: true });
sharp.cache(false); // every run decodes from scratch, as separate uploads would
if (single) sharp.concurrency(1);

async function upload(buf) {
  const display = await sharp(buf)
    .rotate()
    .resize(2048, 2048, { fit: 'inside', withoutEnlargement: true })
    .webp({ quality: 85 })
    .toBuffer({ resolveWithObject: true });
  const thumbnail = await sharp(buf)
    .resize(400, 400, { fit: 'cover' })
    .webp({ quality: 80 })
    .toBuffer({ resolveWithObject: true });
  return { display, thumbnail };
}

async function uploadOneDecode(buf) {
  const { data, info } = await sharp(buf)
    .rotate()
    .resize(2048, 2048, { fit: 'inside', withoutEnlargement: true })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const raw = { raw: { width: info.width, height: info.height, channels: info.channels } };
  const display = () => sharp(data, raw).webp({ quality: 85 }).toBuffer({ resolveWithObject: true });
  const thumbnail = () =>
    sharp(data, raw).resize(400, 400, { fit: 'cover' }).webp({ quality: 80 }).toBuffer({ resolveWithObject: true });
  if (single) return { display: await display(), thumbnail: await thumbnail() };
  const [d, t] = await Promise.all([display(), thumbnail()]);
  return { display: d, thumbnail: t };
}

const pipeline = oneDecode ? uploadOneDecode : upload;

for (const file of files) {
  const buf = readFileSync(file);
  const name = basename(file);
  const stem = basename(file, extname(file));
  try {
    await pipeline(buf); // warm-up
    const millis = [];
    let last;
    for (let r = 0; r < runs; r++) {
      const started = performance.now();
      last = await pipeline(buf);
      millis.push(performance.now() - started);
    }
    const displayPath = join(out, `${stem}.webp`);
    const thumbnailPath = join(out, `${stem}.thumb.webp`);
    writeFileSync(displayPath, last.display.data);
    writeFileSync(thumbnailPath, last.thumbnail.data);
    console.log(JSON.stringify({
      photo: name,
      ok: true,
      millis,
      display: { path: displayPath, bytes: last.display.data.length, width: last.display.info.width, height: last.display.info.height },
      thumbnail: { path: thumbnailPath, bytes: last.thumbnail.data.length, width: last.thumbnail.info.width, height: last.thumbnail.info.height },
    }));
  } catch (error) {
    console.log(JSON.stringify({ photo: name, ok: false, error: String(error.message ?? error) }));
  }
}
console.log(JSON.stringify({
  summary: true,
  single,
  one_decode: oneDecode,
  concurrency: sharp.concurrency(),
  peak_rss_mib: process.resourceUsage().maxRSS / 1024,
  versions: { sharp: sharp.versions.sharp, vips: sharp.versions.vips, webp: sharp.versions.webp, jpeg: sharp.versions.mozjpeg },
}));
