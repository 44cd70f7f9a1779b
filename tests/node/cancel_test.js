// Clients that go away mid-stream leave nothing behind: no running request, no held KV block
// (checked on /metrics), over HTTP (openai client aborted) and gRPC (call cancelled, deadline).
'use strict';
const assert = require('node:assert');
const OpenAI = require('openai');
const { env, loadProtos, grpcMetadata, run, scrape, metric, waitIdle } = require('./common');

const { grpc, pkg } = loadProtos();
const inference = new pkg.tessera.v1.Inference(env.grpcTarget, grpc.credentials.createInsecure());

run(async () => {
  const client = new OpenAI({ apiKey: env.apiKey || 'unused', baseURL: env.baseURL, maxRetries: 0 });
  const model = (await client.models.list()).data[0].id;
  const before = await scrape();
  const abortsBefore = metric(before, 'tessera:request_success_total{finished_reason="abort"') || 0;

  // HTTP: several streams abandoned after their first chunk.
  const streams = [];
  for (let i = 0; i < 4; i++) {
    streams.push((async () => {
      const controller = new AbortController();
      const stream = await client.chat.completions.create({
        model, stream: true, max_tokens: 4000, ignore_eos: true,
        messages: [{ role: 'user', content: `tell me a very long story #${i}` }],
      }, { signal: controller.signal });
      let n = 0;
      try {
        for await (const chunk of stream) {
          if (++n === 2) controller.abort();
        }
      } catch (e) {
        assert.ok(e.name === 'APIUserAbortError' || e.name === 'AbortError', e.name);
      }
    })());
  }
  await Promise.all(streams);

  // gRPC: a cancelled call and one whose deadline passes.
  await new Promise((resolve) => {
    const call = inference.Generate({ prompt: 'go on and on', stopping: { max_tokens: 4000,
                                      ignore_eos: true } }, grpcMetadata(grpc));
    call.once('data', () => call.cancel());
    call.on('error', (e) => { assert.strictEqual(e.code, grpc.status.CANCELLED); resolve(); });
  });
  await new Promise((resolve) => {
    const call = inference.Generate({ prompt: 'go on and on', stopping: { max_tokens: 4000,
                                      ignore_eos: true } }, grpcMetadata(grpc),
                                    { deadline: Date.now() + 300 });
    call.on('data', () => {});
    call.on('error', (e) => { assert.strictEqual(e.code, grpc.status.DEADLINE_EXCEEDED); resolve(); });
  });

  const after = await waitIdle(10000);
  const aborts = metric(after, 'tessera:request_success_total{finished_reason="abort"');
  assert.ok(aborts - abortsBefore >= 6, `aborts counted: ${aborts - abortsBefore}`);
  inference.close();
});
