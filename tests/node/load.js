// Bounded load: N concurrent streaming chat completions (openai client) mixing text, image and
// audio, for a while; every stream must complete, no errors, and the engine returns to idle.
// Prints a JSON summary with p50/p99 TTFT and inter-token latency from the server's histograms.
//
//   node tests/node/load.js --concurrency=200 --duration_s=60 --max_tokens=16 [--kinds=text,image,audio]
'use strict';
const assert = require('node:assert');
const OpenAI = require('openai');
const { env, makePng, makeWav, run, scrape, metric, waitIdle, histogramQuantile, mediaSupported } =
    require('./common');

const args = Object.fromEntries(process.argv.slice(2).map((a) => {
  const [k, v] = a.replace(/^--/, '').split('=');
  return [k, k === 'kinds' ? v : Number(v)];
}));
const concurrency = args.concurrency || 200;
const durationS = args.duration_s === undefined ? 60 : args.duration_s;
const maxTokens = args.max_tokens || 16;

run(async () => {
  const client = new OpenAI({ apiKey: env.apiKey || 'unused', baseURL: env.baseURL, maxRetries: 0,
                              timeout: 600000 });
  const model = (await client.models.list()).data[0].id;
  const png = `data:image/png;base64,${makePng(96, 96).toString('base64')}`;
  const wav = makeWav(0.4).toString('base64');
  let kinds = (args.kinds || 'text,image,audio').split(',');
  if (!(await mediaSupported())) kinds = kinds.filter((k) => k === 'text');
  const counts = { text: 0, image: 0, audio: 0 };
  const end = Date.now() + durationS * 1000;
  let completed = 0, errors = 0, maxInFlight = 0, inFlight = 0;
  const clientTtft = [];

  async function one(i, n) {
    const kind = kinds[(i + n) % kinds.length];
    const content = [{ type: 'text', text: `request ${i}.${n}: describe this` }];
    if (kind === 'image') content.push({ type: 'image_url', image_url: { url: png } });
    if (kind === 'audio') content.push({ type: 'input_audio', input_audio: { data: wav, format: 'wav' } });
    const t0 = Date.now();
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      const stream = await client.chat.completions.create({
        model, stream: true, stream_options: { include_usage: true }, max_tokens: maxTokens,
        ignore_eos: true, seed: i * 1000 + n, messages: [{ role: 'user', content }],
      });
      let first = 0, finish = null, usage = null;
      for await (const chunk of stream) {
        if (!first && chunk.choices.length && chunk.choices[0].delta.content !== undefined) {
          first = Date.now();
        }
        if (chunk.choices.length && chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
        if (chunk.usage) usage = chunk.usage;
      }
      assert.strictEqual(finish, 'length', `stream ended with ${finish}`);
      assert.strictEqual(usage.completion_tokens, maxTokens);
      clientTtft.push((first || Date.now()) - t0);
      completed++;
      counts[kind]++;
    } catch (e) {
      errors++;
      if (errors <= 5) console.error(`request ${i}.${n} (${kind}) failed:`, e.message || e);
    } finally {
      inFlight--;
    }
  }

  async function worker(i) {
    for (let n = 0; n === 0 || Date.now() < end; n++) await one(i, n);
  }
  const t0 = Date.now();
  await Promise.all(Array.from({ length: concurrency }, (_, i) => worker(i)));
  const wall = (Date.now() - t0) / 1000;
  const m = await waitIdle(60000);
  clientTtft.sort((a, b) => a - b);
  const summary = {
    concurrency, duration_s: durationS, wall_s: wall, completed, errors, max_in_flight: maxInFlight,
    by_kind: counts, requests_per_s: completed / wall,
    generated_tokens_per_s: (completed * maxTokens) / wall,
    server_ttft_p50_s: histogramQuantile(m, 'tessera:time_to_first_token_seconds', 0.5),
    server_ttft_p99_s: histogramQuantile(m, 'tessera:time_to_first_token_seconds', 0.99),
    server_itl_p50_s: histogramQuantile(m, 'tessera:inter_token_latency_seconds', 0.5),
    server_itl_p99_s: histogramQuantile(m, 'tessera:inter_token_latency_seconds', 0.99),
    client_ttft_p50_s: clientTtft[Math.floor(clientTtft.length * 0.5)] / 1000,
    client_ttft_p99_s: clientTtft[Math.floor(clientTtft.length * 0.99)] / 1000,
    kv_cache_usage_after: metric(m, 'tessera:kv_cache_usage_perc'),
    running_after: metric(m, 'tessera:num_requests_running'),
  };
  console.log(JSON.stringify(summary, null, 2));
  assert.strictEqual(errors, 0, `${errors} requests failed`);
  assert.ok(maxInFlight >= concurrency, `only ${maxInFlight} concurrent`);
  for (const k of kinds) assert.ok(counts[k] > 0, `no ${k} request completed`);
});
