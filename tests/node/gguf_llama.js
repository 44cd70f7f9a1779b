// llama.cpp (through node-llama-cpp, its prebuilt CPU libraries) on a GGUF file, against Tessera's
// tokens and logits for the same file (tests/gguf_llama_cpp_test.cc runs this).
//
//   node gguf_llama.js CASES.json
//
// CASES.json: an array of {"model": a GGUF file, "text": the prompt text, "ids": Tessera's ids for
// it (BOS first), "logits_file": Tessera's logits in llama.cpp's dump format
// (testdata/gguf/README.md: prompt_ids, prefill_logits), "tolerance": the worst row deviation
// allowed}. For each: llama.cpp must tokenize the text to the same ids; it evaluates them with an
// f32 K/V cache and flash attention off (as the fixtures' dumps were made), and every row is
// compared: max |llama - tessera| / max |llama|. Prints one JSON line per case; exits 1 when any
// case's ids differ or a row is past its tolerance, 2 on errors.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const url = require('node:url');

function readSafetensors(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const base = 8 + n;
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [begin, end] = t.data_offsets;
    const bytes = Buffer.from(buf.subarray(base + begin, base + end));  // Copied: aligned.
    const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
    if (t.dtype === 'F32') out[name] = {shape: t.shape, data: new Float32Array(ab)};
    else if (t.dtype === 'I32') out[name] = {shape: t.shape, data: new Int32Array(ab)};
    else throw new Error(`${file}: ${name} has dtype ${t.dtype}`);
  }
  return out;
}

async function runCase(llama, c) {
  const model = await llama.loadModel({modelPath: c.model, gpuLayers: 0});
  // BOS, then the text with special tokens parsed, as Tessera's ids were made.
  const ids = [model.tokens.bos, ...model.tokenize(c.text, true)];
  const sameIds = ids.length === c.ids.length && ids.every((id, i) => id === c.ids[i]);
  const context = await model.createContext({
    contextSize: 256, batchSize: 256, threads: 1, flashAttention: false, swaFullCache: true,
    experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32',
  });
  const sequence = context.getSequence();
  const results = await sequence.controlledEvaluate(
      c.ids.map((id) => [id, {generateNext: {logits: true}}]));
  const ours = readSafetensors(c.logits_file);
  const vocab = ours.prefill_logits.shape[1];
  let worst = 0, agree = 0;
  const rows = [];
  for (let r = 0; r < c.ids.length; r++) {
    const logits = results[r].next.logits;  // Map token -> logit.
    const ref = new Float32Array(vocab);
    for (const [token, value] of logits) ref[token] = value;
    const row = ours.prefill_logits.data.subarray(r * vocab, (r + 1) * vocab);
    let diff = 0, scale = 0, a = 0, b = 0;
    for (let j = 0; j < vocab; j++) {
      diff = Math.max(diff, Math.abs(row[j] - ref[j]));
      scale = Math.max(scale, Math.abs(ref[j]));
      if (row[j] > row[a]) a = j;
      if (ref[j] > ref[b]) b = j;
    }
    const dev = diff / Math.max(scale, 1e-30);
    rows.push(dev);
    worst = Math.max(worst, dev);
    agree += a === b;
  }
  rows.sort((x, y) => x - y);
  await context.dispose();
  await model.dispose();
  const ok = sameIds && worst <= c.tolerance;
  console.log(JSON.stringify({model: path.basename(c.model), ok, same_ids: sameIds,
                              llama_ids: sameIds ? undefined : ids, rows: c.ids.length, worst,
                              median: rows[rows.length >> 1], argmax_agree: agree,
                              tolerance: c.tolerance}));
  return ok;
}

async function main() {
  const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const nodeModules = process.env.NODE_PATH || path.join(__dirname, '..', '..', 'third_party',
                                                         'node', 'node_modules');
  const {getLlama, LlamaLogLevel} = await import(
      url.pathToFileURL(path.join(nodeModules, 'node-llama-cpp', 'dist', 'index.js')).href);
  const llama = await getLlama({gpu: false, build: 'never', logLevel: LlamaLogLevel.error,
                                progressLogs: false});
  let ok = true;
  for (const c of cases) ok = (await runCase(llama, c)) && ok;
  await llama.dispose();
  process.exit(ok ? 0 : 1);
}

main().catch((e) => {
  console.error(e && e.stack || String(e));
  process.exit(2);
});
