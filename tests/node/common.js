// Shared helpers for the Node.js client tests: where the server is, real media files made on the
// fly (a PNG and a WAV), the gRPC protos, and a /metrics scraper.
'use strict';
const assert = require('node:assert');
const path = require('node:path');
const zlib = require('node:zlib');

const env = {
  httpPort: Number(process.env.TESSERA_HTTP_PORT),
  grpcPort: Number(process.env.TESSERA_GRPC_PORT),
  apiKey: process.env.TESSERA_API_KEY || '',
  protoDir: process.env.TESSERA_PROTO_DIR || path.join(__dirname, '..', '..', 'proto'),
};
env.baseURL = `http://127.0.0.1:${env.httpPort}/v1`;
env.grpcTarget = `127.0.0.1:${env.grpcPort}`;

// CRC-32 (PNG chunks).
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// An RGB PNG of `width` x `height` with a colour gradient.
function makePng(width, height) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;  // bit depth
  ihdr[9] = 2;  // RGB
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (width * 3 + 1)] = 0;
    for (let x = 0; x < width; x++) {
      const o = y * (width * 3 + 1) + 1 + x * 3;
      raw[o] = (x * 255) / width;
      raw[o + 1] = (y * 255) / height;
      raw[o + 2] = 128;
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

// A 16-bit mono PCM WAV of a 440 Hz tone.
function makeWav(seconds, rate = 16000) {
  const n = Math.round(seconds * rate);
  const buf = Buffer.alloc(44 + n * 2);
  buf.write('RIFF', 0, 'ascii');
  buf.writeUInt32LE(36 + n * 2, 4);
  buf.write('WAVE', 8, 'ascii');
  buf.write('fmt ', 12, 'ascii');
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20);
  buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 2, 28);
  buf.writeUInt16LE(2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write('data', 36, 'ascii');
  buf.writeUInt32LE(n * 2, 40);
  for (let i = 0; i < n; i++) {
    buf.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), 44 + i * 2);
  }
  return buf;
}

// Float samples of a tone, for Converse audio chunks.
function toneSamples(seconds, rate = 16000) {
  const n = Math.round(seconds * rate);
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = 0.25 * Math.sin((2 * Math.PI * 220 * i) / rate);
  return out;
}

function loadProtos() {
  const grpc = require('@grpc/grpc-js');
  const protoLoader = require('@grpc/proto-loader');
  const opts = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true,
                 includeDirs: [env.protoDir] };
  const def = protoLoader.loadSync(
      ['tessera/v1/inference.proto', 'grpc/health/v1/health.proto',
       'grpc/reflection/v1alpha/reflection.proto'], opts);
  return { grpc, pkg: grpc.loadPackageDefinition(def) };
}

function grpcMetadata(grpc, key = env.apiKey) {
  const md = new grpc.Metadata();
  if (key) md.set('authorization', `Bearer ${key}`);
  return md;
}

// GET /metrics parsed into { 'name{labels}': value }.
async function scrape() {
  const res = await fetch(`http://127.0.0.1:${env.httpPort}/metrics`);
  assert.strictEqual(res.status, 200);
  const text = await res.text();
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  out._text = text;
  return out;
}

// The value of the first series of `name` (any labels).
function metric(m, name) {
  for (const k of Object.keys(m)) {
    if (k === name || k.startsWith(name + '{') || (name.includes('{') && k.startsWith(name))) {
      return m[k];
    }
  }
  return undefined;
}

// Waits until the engine is idle: nothing running or waiting, no KV block held.
async function waitIdle(timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  let m;
  while (Date.now() < end) {
    m = await scrape();
    if (metric(m, 'tessera:num_requests_running') === 0 &&
        metric(m, 'tessera:num_requests_waiting') === 0 &&
        metric(m, 'tessera:kv_cache_usage_perc') === 0) {
      return m;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('engine not idle: running=' + metric(m, 'tessera:num_requests_running') +
                  ' waiting=' + metric(m, 'tessera:num_requests_waiting') +
                  ' kv=' + metric(m, 'tessera:kv_cache_usage_perc'));
}

// Quantile from a Prometheus histogram's cumulative buckets (linear inside the bucket, as
// histogram_quantile does).
function histogramQuantile(m, name, q) {
  const buckets = [];
  for (const k of Object.keys(m)) {
    if (!k.startsWith(name + '_bucket{')) continue;
    const le = /le="([^"]+)"/.exec(k)[1];
    buckets.push([le === '+Inf' ? Infinity : Number(le), m[k]]);
  }
  buckets.sort((a, b) => a[0] - b[0]);
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (total === 0) return NaN;
  const rank = q * total;
  let prevLe = 0, prevCount = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return prevLe;
      return prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(1, count - prevCount);
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

// Whether the server takes image and audio parts in chat messages. Until the runtime's prompt
// builder is integrated it answers 501 naming that; tests then skip (loudly) the media cases only.
async function mediaSupported() {
  const headers = { 'Content-Type': 'application/json' };
  if (env.apiKey) headers.Authorization = `Bearer ${env.apiKey}`;
  const png = makePng(48, 48).toString('base64');
  const res = await fetch(`${env.baseURL}/chat/completions`, {
    method: 'POST', headers, body: JSON.stringify({ max_tokens: 1, messages: [{ role: 'user',
      content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } }] }] }) });
  const text = await res.text();
  if (res.status === 501 && text.includes('not integrated')) {
    console.log('SKIP media cases: ' + JSON.parse(text).error.message);
    return false;
  }
  assert.strictEqual(res.status, 200, text);
  return true;
}

// Runs the async `main`, exiting 1 with the error on failure.
function run(main) {
  main().then(
      () => { console.log('PASS'); process.exit(0); },
      (e) => { console.error('FAIL:', e && e.stack ? e.stack : e); process.exit(1); });
}

module.exports = { env, makePng, makeWav, toneSamples, loadProtos, grpcMetadata, scrape, metric,
                   waitIdle, histogramQuantile, mediaSupported, run };
