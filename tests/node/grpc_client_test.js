// @grpc/grpc-js with @grpc/proto-loader against the real server: health, reflection, GetModelInfo,
// CountTokens, streaming Generate, Abort of a running Generate, and a two-turn Converse session
// fed with audio chunks.
'use strict';
const assert = require('node:assert');
const { env, loadProtos, grpcMetadata, makePng, toneSamples, run, waitIdle, mediaSupported } =
    require('./common');

const { grpc, pkg } = loadProtos();
const creds = grpc.credentials.createInsecure();
const inference = new pkg.tessera.v1.Inference(env.grpcTarget, creds);
const health = new pkg.grpc.health.v1.Health(env.grpcTarget, creds);
const reflection = new pkg.grpc.reflection.v1alpha.ServerReflection(env.grpcTarget, creds);

const unary = (client, method, req, md = grpcMetadata(grpc)) =>
  new Promise((resolve, reject) =>
    client[method](req, md, (err, res) => (err ? reject(err) : resolve(res))));

function collect(call) {
  return new Promise((resolve, reject) => {
    const out = { text: '', messages: [], finished: null };
    call.on('data', (m) => {
      out.messages.push(m);
      out.text += m.text;
      if (m.finished) out.finished = m.finished;
    });
    call.on('error', reject);
    call.on('end', () => resolve(out));
  });
}

run(async () => {
  const h = await unary(health, 'Check', { service: '' }, new grpc.Metadata());
  assert.strictEqual(h.status, 'SERVING');
  const h2 = await unary(health, 'Check', { service: 'tessera.v1.Inference' }, new grpc.Metadata());
  assert.strictEqual(h2.status, 'SERVING');

  const services = await new Promise((resolve, reject) => {
    const call = reflection.ServerReflectionInfo();
    call.on('data', (r) => {
      resolve(r.list_services_response.service.map((s) => s.name));
      call.end();
    });
    call.on('error', reject);
    call.write({ list_services: '' });
  });
  for (const s of ['tessera.v1.Inference', 'grpc.health.v1.Health']) {
    assert.ok(services.includes(s), `reflection lacks ${s}: ${services}`);
  }

  const info = (await unary(inference, 'GetModelInfo', {})).model;
  assert.ok(info.id && info.context_length > 0 && info.vocab_size > 0, JSON.stringify(info));
  assert.strictEqual(info.device, 'cpu');
  assert.ok(info.limits.max_tokens > 0);

  const media = await mediaSupported();
  const png = makePng(96, 96);
  const userTurn = {
    role: 'user',
    parts: [{ text: 'Describe:' }, ...(media ? [{ image: { encoded: png } }] : [])],
  };
  const counted = await unary(inference, 'CountTokens', { messages: [userTurn] });
  if (media) assert.ok(counted.image_tokens >= 4, JSON.stringify(counted));
  assert.ok(counted.text_tokens > 0);
  assert.strictEqual(counted.total_tokens,
                     counted.text_tokens + counted.image_tokens + counted.audio_tokens);

  // Streaming Generate.
  const gen = await collect(inference.Generate({
    messages: [userTurn], sampling: { temperature: 0 }, stopping: { max_tokens: 6 },
    request_id: 'node-gen-1' }, grpcMetadata(grpc)));
  assert.ok(gen.finished, 'no finished message');
  assert.ok(['FINISH_REASON_LENGTH', 'FINISH_REASON_STOP'].includes(gen.finished.reason));
  assert.strictEqual(gen.finished.usage.prompt_tokens, counted.total_tokens);
  const ids = gen.messages.flatMap((m) => m.token_ids);
  assert.strictEqual(ids.length, gen.finished.usage.completion_tokens);
  for (const m of gen.messages) assert.strictEqual(m.request_id, 'node-gen-1');

  // Abort a long Generate while it runs.
  const long = inference.Generate({
    prompt: 'Count forever:', stopping: { max_tokens: 4000, ignore_eos: true },
    request_id: 'node-abort-1' }, grpcMetadata(grpc));
  const longDone = collect(long);
  await new Promise((resolve) => long.once('data', resolve));
  const aborted = await unary(inference, 'Abort', { request_id: 'node-abort-1' });
  assert.strictEqual(aborted.aborted, true);
  const longOut = await longDone;
  assert.strictEqual(longOut.finished.reason, 'FINISH_REASON_ABORT');
  // Once the engine has dropped the finished request (its stream may end a step before), Abort
  // answers NOT_FOUND.
  let notFound = null;
  for (let i = 0; i < 100 && !notFound; i++) {
    try {
      await unary(inference, 'Abort', { request_id: 'node-abort-1' });
      await new Promise((r) => setTimeout(r, 20));
    } catch (e) {
      notFound = e;
    }
  }
  assert.ok(notFound && notFound.code === grpc.status.NOT_FOUND, String(notFound));

  // Converse: two turns, the first with audio in 100 ms chunks.
  const conv = inference.Converse(grpcMetadata(grpc));
  const events = [];
  let turnDone = null;
  conv.on('data', (m) => {
    events.push(m);
    if (m.delta && m.delta.finished && turnDone) turnDone();
  });
  const convEnd = new Promise((resolve, reject) => {
    conv.on('error', reject);
    conv.on('end', resolve);
  });
  const turn = () => new Promise((resolve) => { turnDone = resolve; });
  conv.write({ start: { system: 'Be brief.', stopping: { max_tokens: 5 },
                        sampling: { temperature: 0 } } });
  const samples = toneSamples(1.0);
  for (let i = 0; i < samples.length; i += 1600) {
    conv.write({ audio: { samples: samples.slice(i, i + 1600), sample_rate: 16000 } });
  }
  conv.write({ text: 'What did you hear?' });
  let t = turn();
  conv.write({ end_turn: {} });
  await t;
  // The second turn also carries an image and a video frame (raw RGB), prefilled as they arrive.
  const image = { raw_rgb: Buffer.alloc(96 * 48 * 3, 0x55), width: 96, height: 48,
                  max_soft_tokens: 70 };
  const imageCount = await unary(inference, 'CountTokens', {
    messages: [{ role: 'user', parts: [{ image }] }] });
  assert.ok(imageCount.image_tokens > 0, JSON.stringify(imageCount));
  // ...and 0.5 s of 48 kHz audio, resampled to 16 kHz as it streams in (12.5 frames of 40 ms).
  const secondTurnStart = events.length;
  const hiRate = toneSamples(0.5, 48000);
  for (let i = 0; i < hiRate.length; i += 4800) {
    conv.write({ audio: { samples: hiRate.slice(i, i + 4800), sample_rate: 48000 } });
  }
  conv.write({ image });
  conv.write({ frame: { image: { raw_rgb: Buffer.alloc(48 * 48 * 3, 0x22), width: 48, height: 48 },
                        timestamp_ms: 2000 } });
  conv.write({ text: 'And again?' });
  t = turn();
  conv.write({ end_turn: {} });
  await t;
  conv.end();
  await convEnd;
  assert.ok(events[0].started && events[0].started.model.id === info.id, 'no SessionStarted');
  const progress = events.slice(0, secondTurnStart).filter((e) => e.progress);
  assert.ok(progress.length >= 1, 'no InputProgress');
  assert.strictEqual(progress[progress.length - 1].progress.buffered_audio_frames, 25);
  // While streaming, the resampler has made every complete frame but those its filter delay holds.
  const turn2Progress = events.slice(secondTurnStart).filter((e) => e.progress);
  const lastFrames = turn2Progress[turn2Progress.length - 1].progress.buffered_audio_frames;
  assert.ok(lastFrames >= 11 && lastFrames <= 13, `48 kHz audio gave ${lastFrames} frames`);
  const finals = events.filter((e) => e.delta && e.delta.finished);
  assert.strictEqual(finals.length, 2);
  // The second turn sees the first turn's context: its prompt is longer.
  assert.ok(finals[1].delta.finished.usage.prompt_tokens >
            finals[0].delta.finished.usage.prompt_tokens, JSON.stringify(finals));
  // ...by at least the image's soft tokens plus the 70-token frame (48x48 upscaled to 8x8 = 64).
  assert.ok(finals[1].delta.finished.usage.prompt_tokens -
            finals[0].delta.finished.usage.prompt_tokens -
            finals[0].delta.finished.usage.completion_tokens >= imageCount.image_tokens + 64 + 12,
            JSON.stringify({ finals, imageCount }));
  await waitIdle();
  inference.close();
  health.close();
  reflection.close();
});
