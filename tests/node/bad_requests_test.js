// A table of bad requests over both APIs; each gets the documented status and a message that says
// what is wrong, and the server keeps serving (a good request succeeds after each one).
'use strict';
const assert = require('node:assert');
const { env, loadProtos, grpcMetadata, makePng, run, waitIdle, mediaSupported } = require('./common');

const { grpc, pkg } = loadProtos();
const inference = new pkg.tessera.v1.Inference(env.grpcTarget, grpc.credentials.createInsecure());

const url = `http://127.0.0.1:${env.httpPort}/v1/chat/completions`;
const auth = { Authorization: `Bearer ${env.apiKey}` };
const user = (content) => ({ messages: [{ role: 'user', content }], max_tokens: 2 });
const corruptPng = Buffer.concat([makePng(64, 64).subarray(0, 40), Buffer.alloc(40, 7)]);
const hugePrompt = 'hello '.repeat(200000);

const httpCases = [
  ['malformed JSON', '{"messages": [', auth, 400, 'not valid JSON'],
  ['body not an object', '[]', auth, 400, 'JSON object'],
  ['wrong type: messages', JSON.stringify({ messages: 'hi' }), auth, 400, 'non-empty array'],
  ['wrong type: temperature', JSON.stringify({ ...user('hi'), temperature: 'warm' }), auth, 400,
   "'temperature' must be a number"],
  ['out of range: top_p', JSON.stringify({ ...user('hi'), top_p: 1.5 }), auth, 400, "'top_p' is 1.5"],
  ['unknown role', JSON.stringify({ messages: [{ role: 'wizard', content: 'hi' }] }), auth, 400,
   "role 'wizard' is unknown"],
  ['bad base64 image', JSON.stringify(user([{ type: 'image_url',
    image_url: { url: 'data:image/png;base64,***' } }])), auth, 400, 'not valid base64'],
  ['bad base64 audio', JSON.stringify(user([{ type: 'input_audio',
    input_audio: { data: '%%%%', format: 'wav' } }])), auth, 400, 'not valid base64'],
  ['corrupt image', JSON.stringify(user([{ type: 'image_url',
    image_url: { url: `data:image/png;base64,${corruptPng.toString('base64')}` } }])), auth, 400,
   'image'],
  ['remote image URL', JSON.stringify(user([{ type: 'image_url',
    image_url: { url: 'https://example.com/cat.png' } }])), auth, 400, 'remote image URLs'],
  ['oversize body', JSON.stringify(user('x'.repeat(3 << 20))), auth, 413, '--max_request_bytes'],
  ['too many tokens asked', JSON.stringify({ ...user('hi'), max_tokens: 10000000 }), auth, 400,
   "'max_tokens' is 10000000"],
  ['prompt too long', JSON.stringify(user(hugePrompt)), auth, 400, 'tokens'],
  ['n over --max_choices', JSON.stringify({ ...user('hi'), n: 100 }), auth, 400, '--max_choices'],
  ['unsupported schema keyword', JSON.stringify({ ...user('hi'), response_format: {
    type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', not: {} } } } }), auth,
   400, "'not'"],
  ['unknown model', JSON.stringify({ ...user('hi'), model: 'gpt-9' }), auth, 404, "'gpt-9'"],
  ['no API key', JSON.stringify(user('hi')), {}, 401, 'missing API key'],
  ['wrong API key', JSON.stringify(user('hi')), { Authorization: 'Bearer nope' }, 401,
   'invalid API key'],
];

async function goodHttp() {
  const res = await fetch(url.replace('chat/completions', 'completions'), {
    method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'still there?', max_tokens: 2 }) });
  assert.strictEqual(res.status, 200, await res.text());
}

function generate(req, md) {
  return new Promise((resolve) => {
    const call = inference.Generate(req, md);
    call.on('data', () => {});
    call.on('error', (e) => resolve(e));
    call.on('end', () => resolve(null));
  });
}

const grpcCases = [
  ['no messages nor prompt', {}, grpcMetadata(grpc), grpc.status.INVALID_ARGUMENT, ''],
  ['unknown role', { messages: [{ role: 'wizard', parts: [{ text: 'x' }] }] }, grpcMetadata(grpc),
   grpc.status.INVALID_ARGUMENT, "'wizard'"],
  ['corrupt image', { messages: [{ role: 'user', parts: [{ image: { encoded: corruptPng } }] }] },
   grpcMetadata(grpc), grpc.status.INVALID_ARGUMENT, 'image'],
  ['temperature out of range', { prompt: 'x', sampling: { temperature: 5 } }, grpcMetadata(grpc),
   grpc.status.INVALID_ARGUMENT, 'temperature'],
  ['too many tokens asked', { prompt: 'x', stopping: { max_tokens: 10000000 } }, grpcMetadata(grpc),
   grpc.status.INVALID_ARGUMENT, 'max_tokens'],
  ['prompt too long', { prompt: hugePrompt }, grpcMetadata(grpc), grpc.status.INVALID_ARGUMENT,
   'tokens'],
  ['no API key', { prompt: 'x' }, new grpc.Metadata(), grpc.status.UNAUTHENTICATED,
   'missing API key'],
  ['wrong API key', { prompt: 'x' }, grpcMetadata(grpc, 'nope'), grpc.status.UNAUTHENTICATED,
   'invalid API key'],
];

run(async () => {
  const media = await mediaSupported();
  for (const [name, body, headers, status, part] of httpCases) {
    if (!media && name === 'corrupt image') continue;
    const res = await fetch(url, { method: 'POST', body,
                                   headers: { ...headers, 'Content-Type': 'application/json' } });
    const text = await res.text();
    assert.strictEqual(res.status, status, `${name}: ${res.status} ${text}`);
    const j = JSON.parse(text);
    for (const k of ['message', 'type', 'param', 'code']) {
      assert.ok(k in j.error, `${name}: error body lacks ${k}: ${text}`);
    }
    assert.ok(j.error.message.includes(part), `${name}: message ${JSON.stringify(j.error.message)}`);
    await goodHttp();
    console.log(`HTTP  ${name}: ${status} ${j.error.message.slice(0, 100)}`);
  }
  for (const [name, req, md, code, part] of grpcCases) {
    if (!media && name === 'corrupt image') continue;
    const err = await generate(req, md);
    assert.ok(err, `${name}: no error`);
    assert.strictEqual(err.code, code, `${name}: ${err.code} ${err.details}`);
    assert.ok(err.details.includes(part), `${name}: ${err.details}`);
    const ok = await generate({ prompt: 'fine', stopping: { max_tokens: 2 } }, grpcMetadata(grpc));
    assert.strictEqual(ok, null, `${name}: then a good call failed: ${ok && ok.details}`);
    console.log(`gRPC  ${name}: ${grpc.status[code]} ${err.details.slice(0, 100)}`);
  }
  await waitIdle();
  inference.close();
});
