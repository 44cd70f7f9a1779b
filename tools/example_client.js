#!/usr/bin/env node
// A small Tessera client: sends one request with text, an image (a generated PNG) and an audio clip
// (a generated WAV tone) to tessera.v1.Inference/Generate over gRPC and prints the reply as it
// streams, then the usage.
//
//   ./tools/serve.sh &              # in another terminal
//   node tools/example_client.js [--target=127.0.0.1:50051] [--api_key=KEY] [--text="..."]
//
// Uses @grpc/grpc-js and @grpc/proto-loader from third_party/node/node_modules (tools/setup.sh).
'use strict';
const path = require('node:path');
const root = path.join(__dirname, '..');
module.paths.unshift(path.join(root, 'third_party', 'node', 'node_modules'));
const { makePng, makeWav } = require(path.join(root, 'tests', 'node', 'common.js'));
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const args = Object.fromEntries(process.argv.slice(2).map((a) => {
  const i = a.indexOf('=');
  return [a.slice(2, i < 0 ? undefined : i), i < 0 ? 'true' : a.slice(i + 1)];
}));
const target = args.target || '127.0.0.1:50051';
const def = protoLoader.loadSync('tessera/v1/inference.proto', {
  keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true,
  includeDirs: [path.join(root, 'proto')] });
const { Inference } = grpc.loadPackageDefinition(def).tessera.v1;
const client = new Inference(target, grpc.credentials.createInsecure());
const md = new grpc.Metadata();
if (args.api_key) md.set('authorization', `Bearer ${args.api_key}`);

const request = {
  messages: [{
    role: 'user',
    parts: [
      { text: args.text || 'Describe this picture and this sound.' },
      { image: { encoded: makePng(192, 128), mime_type: 'image/png' } },
      { audio: { wav: makeWav(1.0) } },
    ],
  }],
  sampling: { temperature: 0.8, top_p: 0.95, seed: 1 },
  stopping: { max_tokens: Number(args.max_tokens || 48) },
};

const call = client.Generate(request, md);
process.stdout.write('reply: ');
call.on('data', (m) => {
  process.stdout.write(m.text);
  if (m.finished) {
    const u = m.finished.usage;
    process.stdout.write(`\n[${m.finished.reason}] prompt ${u.prompt_tokens} tokens, ` +
                         `completion ${u.completion_tokens}, TTFT ${u.time_to_first_token_s.toFixed(3)} s, ` +
                         `total ${u.total_time_s.toFixed(3)} s\n`);
  }
});
call.on('error', (e) => {
  console.error(`\nerror: ${grpc.status[e.code]}: ${e.details}`);
  process.exit(1);
});
call.on('end', () => client.close());
