// The official `openai` npm package against the real server: a streamed chat completion with an
// image and an audio clip (usage included), the same non-streaming, a legacy completion, models.
'use strict';
const assert = require('node:assert');
const OpenAI = require('openai');
const { env, makePng, makeWav, run, waitIdle, mediaSupported } = require('./common');

run(async () => {
  const client = new OpenAI({ apiKey: env.apiKey || 'unused', baseURL: env.baseURL, maxRetries: 0 });
  const models = await client.models.list();
  assert.strictEqual(models.data.length, 1);
  const model = models.data[0].id;

  const media = await mediaSupported();
  const png = makePng(96, 64).toString('base64');
  const wav = makeWav(0.5).toString('base64');
  const messages = [
    { role: 'system', content: 'You describe media.' },
    {
      role: 'user',
      content: [
        { type: 'text', text: 'What is in this picture and this sound?' },
        ...(media ? [
          { type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } },
          { type: 'input_audio', input_audio: { data: wav, format: 'wav' } },
        ] : []),
      ],
    },
  ];

  // Streaming, with usage in a last chunk.
  const stream = await client.chat.completions.create({
    model, messages, stream: true, stream_options: { include_usage: true },
    max_tokens: 8, temperature: 0.7, top_p: 0.9, seed: 7,
  });
  let text = '', chunks = 0, finish = null, usage = null, role = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) role = c.delta.role;
      if (c.delta.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.ok(chunks >= 2, `only ${chunks} chunks`);
  assert.strictEqual(role, 'assistant');
  assert.ok(finish === 'length' || finish === 'stop', `finish_reason ${finish}`);
  assert.ok(usage, 'no usage chunk');
  assert.ok(usage.completion_tokens >= 1 && usage.completion_tokens <= 8, JSON.stringify(usage));
  // Text, 1 image (at least one 48x48 patch) and 0.5 s of audio (12-13 frames) are all counted.
  assert.ok(usage.prompt_tokens > (media ? 20 : 5), JSON.stringify(usage));
  assert.strictEqual(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
  console.log(`streamed ${chunks} chunks, ${usage.completion_tokens} tokens: ${JSON.stringify(text)}`);

  // Non-streaming, greedy, with logprobs.
  const res = await client.chat.completions.create({
    model, messages, max_completion_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 2,
  });
  assert.strictEqual(res.object, 'chat.completion');
  assert.strictEqual(res.choices.length, 1);
  assert.strictEqual(res.choices[0].message.role, 'assistant');
  assert.strictEqual(typeof res.choices[0].message.content, 'string');
  assert.ok(res.usage.completion_tokens >= 1 && res.usage.completion_tokens <= 5);
  const lp = res.choices[0].logprobs.content;
  assert.strictEqual(lp.length, res.usage.completion_tokens);
  for (const t of lp) {
    assert.ok(t.logprob <= 0);
    assert.strictEqual(t.top_logprobs.length, 2);
  }
  // Greedy is deterministic.
  const again = await client.chat.completions.create({
    model, messages, max_completion_tokens: 5, temperature: 0 });
  assert.strictEqual(again.choices[0].message.content, res.choices[0].message.content);

  // Legacy completions, streamed.
  const cstream = await client.completions.create({
    model, prompt: 'Once upon a time', max_tokens: 4, stream: true });
  let ctext = '', cfinish = null;
  for await (const chunk of cstream) {
    for (const c of chunk.choices) {
      ctext += c.text;
      if (c.finish_reason) cfinish = c.finish_reason;
    }
  }
  assert.ok(cfinish, 'no finish_reason in completions stream');
  await waitIdle();
});
