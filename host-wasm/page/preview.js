// The preview page: the core in a worker, outputs shown with their sizes, SHA-256 and time,
// then an optional upload to the service that checks the stored display image matches.
import { createPreviewer } from './index.js';

const $ = (id) => document.getElementById(id);
const previewer = createPreviewer();
let current = null; // { file, result }
const urls = [];

const kib = (n) => (n < 1024 ? `${n} B` : `${(n / 1024).toFixed(1)} KiB`);

async function sha256(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

function setStatus(element, state, text) {
  element.dataset.state = state;
  element.textContent = text;
}

async function show(output, name) {
  const url = URL.createObjectURL(new Blob([output.data], { type: output.mime }));
  urls.push(url);
  const img = $(`${name}-img`);
  img.src = url;
  img.width = output.width;
  img.height = output.height;
  const hash = await sha256(output.data);
  $(`${name}-size`).textContent = `${output.width}×${output.height}`;
  $(`${name}-bytes`).textContent = kib(output.bytes);
  $(`${name}-sha256`).textContent = hash;
  Object.assign(img.dataset, { width: output.width, height: output.height, bytes: output.bytes, sha256: hash });
  await img.decode().catch(() => {});
}

async function preview(file) {
  setStatus($('status'), 'working', `Processing ${file.name}…`);
  $('result').hidden = true;
  urls.splice(0).forEach((u) => URL.revokeObjectURL(u));
  const started = performance.now();
  try {
    const result = await previewer.process(file);
    const total = performance.now() - started;
    await show(result.display, 'display');
    await show(result.thumbnail, 'thumbnail');
    const s = result.source;
    $('facts').textContent =
      `source: ${s.format}, ${s.width}×${s.height}` +
      (s.orientation !== 1 ? ` (EXIF orientation ${s.orientation} → ${s.orientedWidth}×${s.orientedHeight})` : '') +
      `, ${kib(s.bytes)}` +
      (s.hasAlpha ? ', transparent' : '') +
      (s.convertedToSrgb ? ', converted to sRGB' : '') +
      (s.frames > 1 ? `, ${s.frames} frames (first used)` : '');
    $('result').hidden = false;
    current = { file, result };
    $('upload').hidden = false;
    $('status').dataset.ms = result.ms.toFixed(1);
    setStatus($('status'), 'done',
      `${file.name}: ${result.ms.toFixed(0)} ms in the core (${total.toFixed(0)} ms in all, off the main thread).`);
  } catch (e) {
    current = null;
    $('upload').hidden = true;
    $('status').dataset.code = e.code ?? 'internal';
    setStatus($('status'), 'error', `${file.name}: ${e.message}${e.code ? ` (${e.code})` : ''}`);
  }
}

async function upload(event) {
  event.preventDefault();
  if (current === null) return;
  const status = $('upload-status');
  const base = $('service').value.replace(/\/+$/, '');
  const form = new FormData();
  form.append('file', current.file, current.file.name);
  if ($('title').value) form.append('title', $('title').value);
  setStatus(status, 'working', 'Uploading…');
  try {
    const response = await fetch(`${base}/images`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${$('token').value.trim()}` },
      body: form,
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      setStatus(status, 'error', `${response.status}: ${body.detail ?? body.title ?? response.statusText}${body.code ? ` (${body.code})` : ''}`);
      return;
    }
    let same = '';
    if (body.imageUrl) {
      const stored = new Uint8Array(await (await fetch(body.imageUrl)).arrayBuffer());
      same = (await sha256(stored)) === (await sha256(current.result.display.data))
        ? ' The stored display image is byte-identical to this preview.'
        : ' The stored display image differs from this preview!';
    }
    status.dataset.id = body.id ?? '';
    setStatus(status, 'done', `Uploaded as ${body.id}.${same}`);
  } catch (e) {
    setStatus(status, 'error', `Upload failed: ${e.message}`);
  }
}

$('service').value = location.protocol.startsWith('http') ? location.origin : 'http://127.0.0.1:8080';
$('file').addEventListener('change', () => {
  const file = $('file').files[0];
  if (file) preview(file);
});
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const file = e.dataTransfer.files[0];
  if (file) preview(file);
});
$('upload').addEventListener('submit', upload);
document.body.dataset.ready = 'true';
