// Agents against the real server on its built-in random model, with clients nobody here wrote: the
// official `openai` package (its stream accumulator and tool runner read our chunks), ajv for JSON
// Schema validation, and @grpc/grpc-js.
//   - a full tool loop (tools -> tool_calls -> tool result -> answer), whole and streamed;
//   - tool_choice "required" / a named function: every call's arguments validate, over many seeds
//     and schemas (the random model only emits calls because decoding is constrained);
//   - response_format json_schema outputs all validate, over many seeds and schemas;
//   - reasoning: a thought channel (forced by a GBNF grammar naming the special tokens) comes back
//     as reasoning_content, never in content, streamed and whole;
//   - n > 1: independent choices, the prompt prefilled once (usage and the prefix-cache counters);
//   - gRPC: tools, tool calls, response format, n;
//   - refusals of what is not supported, each naming its parameter.
'use strict';
const assert = require('node:assert');
const OpenAI = require('openai');
const Ajv = require('ajv');
const { env, loadProtos, grpcMetadata, scrape, metric, run, waitIdle } = require('./common');

const ajv = new Ajv({ strict: false });
// JSON Schema's "date" (RFC 3339 full-date), checked against the JavaScript calendar.
ajv.addFormat('date', (s) => {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
  if (!m) return false;
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  return d.getUTCFullYear() === Number(m[1]) && d.getUTCMonth() === Number(m[2]) - 1 &&
         d.getUTCDate() === Number(m[3]);
});

// Strings are bounded (maxLength, enum, pattern, format): a random model rarely spells a closing
// quote, so an unbounded string would run to max_tokens (docs/serving.md). Every tool parameter has
// a `type`: Gemma 4's chat template reads it to render the declaration (and fails without one, as
// Jinja does).
const WEATHER = {
  type: 'object',
  properties: {
    city: { type: 'string', minLength: 1, maxLength: 12 },
    unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
    days: { type: 'integer', minimum: 1, maximum: 7 },
  },
  required: ['city', 'unit'],
  additionalProperties: false,
};
const SEARCH = {
  type: 'object',
  properties: {
    query: { type: 'string', maxLength: 8 },
    filters: {
      type: 'object',
      properties: {
        lang: { type: 'string', enum: ['en', 'fr', 'de'] },
        safe: { type: 'boolean' },
        after: { type: 'string', format: 'date' },
      },
      required: ['lang', 'safe'],
      additionalProperties: false,
    },
    tags: { type: 'array', items: { type: 'string', pattern: '^[a-z]{2,4}$' }, minItems: 1,
            maxItems: 3 },
    limit: { type: ['integer', 'null'], minimum: 1, maximum: 50 },
  },
  required: ['query', 'filters', 'tags'],
  additionalProperties: false,
};
const BOOK = {
  type: 'object',
  properties: {
    airport: { type: 'string', pattern: '^[A-Z]{3}$' },
    seats: { type: 'integer', minimum: 1, maximum: 9 },
    price: { type: 'number', exclusiveMinimum: 0, maximum: 5000 },
    class: { type: 'string', const: 'economy' },
  },
  required: ['airport', 'seats', 'price', 'class'],
  additionalProperties: false,
};
const tool = (name, parameters) => ({ type: 'function', function: { name, parameters } });
const TOOLS = [tool('get_weather', WEATHER), tool('search', SEARCH), tool('book', BOOK)];
const SCHEMAS = { get_weather: WEATHER, search: SEARCH, book: BOOK };

function checkCall(call) {
  assert.strictEqual(call.type, 'function');
  assert.match(call.id, /^call_[A-Za-z0-9]{24}$/);
  const schema = SCHEMAS[call.function.name];
  assert.ok(schema, `unknown function ${call.function.name}`);
  const args = JSON.parse(call.function.arguments);
  assert.ok(ajv.validate(schema, args),
            `${call.function.name}(${call.function.arguments}): ${ajv.errorsText()}`);
  return args;
}

async function expectError(client, params, status, param, part) {
  try {
    await client.chat.completions.create(params);
  } catch (e) {
    assert.strictEqual(e.status, status, e.message);
    // Refusals past the parser (limits, schema keywords) name the field in the message only.
    if (param !== null) assert.strictEqual(e.param, param, `${e.message}: param ${e.param}`);
    assert.ok(e.message.includes(part), `${e.message} lacks "${part}"`);
    return;
  }
  assert.fail(`expected ${status} naming ${param}`);
}

run(async () => {
  const client = new OpenAI({ apiKey: env.apiKey || 'unused', baseURL: env.baseURL, maxRetries: 0 });
  const model = (await client.models.list()).data[0].id;
  const user = { role: 'user', content: 'What is the weather in Paris, and book me a flight.' };

  // --- A full tool loop, whole: a forced call, its result, then the answer. ---
  const first = await client.chat.completions.create({
    model, messages: [user], tools: TOOLS, tool_choice: 'required', max_tokens: 400, seed: 11,
  });
  assert.strictEqual(first.choices[0].finish_reason, 'tool_calls');
  const assistant = first.choices[0].message;
  assert.strictEqual(assistant.content, null);
  assert.ok(assistant.tool_calls.length >= 1);
  for (const call of assistant.tool_calls) checkCall(call);
  const results = assistant.tool_calls.map((c) => ({
    role: 'tool', tool_call_id: c.id, content: JSON.stringify({ ok: true, echo: c.function.name }),
  }));
  const answer = await client.chat.completions.create({
    model, messages: [user, assistant, ...results], tools: TOOLS, max_tokens: 12, seed: 11,
  });
  assert.ok(['stop', 'length', 'tool_calls'].includes(answer.choices[0].finish_reason));
  assert.ok(answer.usage.prompt_tokens > first.usage.prompt_tokens, 'the results are in the prompt');
  console.log(`tool loop: ${assistant.tool_calls.length} call(s), answer ` +
              JSON.stringify(answer.choices[0].message.content));

  // --- The same loop streamed, through the client's own stream accumulator. ---
  const stream = client.chat.completions.stream({
    model, messages: [user], tools: TOOLS, tool_choice: { type: 'function', function: { name: 'book' } },
    max_tokens: 400, seed: 12, stream_options: { include_usage: true },
  });
  let argumentDeltas = 0;
  stream.on('tool_calls.function.arguments.delta', () => argumentDeltas++);
  const streamed = await stream.finalChatCompletion();
  const sm = streamed.choices[0].message;
  assert.strictEqual(streamed.choices[0].finish_reason, 'tool_calls');
  assert.ok(sm.tool_calls.length >= 1 && argumentDeltas >= 1);
  for (const call of sm.tool_calls) {
    assert.strictEqual(call.function.name, 'book');
    checkCall(call);
  }
  assert.ok(streamed.usage && streamed.usage.completion_tokens > 0);
  const answer2 = client.chat.completions.stream({
    model, max_tokens: 8, seed: 12, tools: TOOLS,
    messages: [user, sm, ...sm.tool_calls.map((c) => ({ role: 'tool', tool_call_id: c.id,
                                                         content: 'booked' }))],
  });
  const final2 = await answer2.finalChatCompletion();
  assert.strictEqual(typeof final2.choices[0].message.content, 'string');

  // --- The official tool runner: it calls our function with the parsed arguments. ---
  let ran = 0;
  const runner = client.chat.completions.runTools({
    model, messages: [user], max_tokens: 400, seed: 13,
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
    tools: [{ type: 'function', function: { name: 'get_weather', parameters: WEATHER,
      parse: JSON.parse, function: (args) => { ran++; assert.ok(ajv.validate(WEATHER, args)); return { t: 21 }; } } }],
  });
  await runner.done();
  assert.strictEqual(ran, 1);

  // --- tool_choice required: every call validates, over seeds (and parallel_tool_calls). ---
  let calls = 0;
  for (let seed = 100; seed < 112; seed++) {
    const parallel = seed % 2 === 0;
    const res = await client.chat.completions.create({
      model, messages: [user], tools: TOOLS, tool_choice: 'required', max_tokens: 500, seed,
      temperature: 1, parallel_tool_calls: parallel,
    });
    const c = res.choices[0];
    assert.strictEqual(c.finish_reason, 'tool_calls', JSON.stringify(c));
    if (!parallel) assert.strictEqual(c.message.tool_calls.length, 1);
    for (const call of c.message.tool_calls) checkCall(call);
    calls += c.message.tool_calls.length;
  }
  console.log(`required: ${calls} calls over 12 seeds, all valid`);

  // --- response_format json_schema: every output validates, over seeds and schemas. ---
  const formats = [
    WEATHER, SEARCH, BOOK,
    { type: 'array', items: { type: 'integer', minimum: -5, maximum: 5 }, minItems: 2, maxItems: 4 },
    { type: 'object', properties: { answer: { enum: ['yes', 'no', 'maybe'] },
                                    confidence: { type: 'number', minimum: 0, maximum: 1 } },
      required: ['answer', 'confidence'], additionalProperties: false },
    { $defs: { node: { type: 'object', properties: { v: { type: 'integer', minimum: 0, maximum: 9 },
                                                      next: { anyOf: [{ $ref: '#/$defs/node' }, { type: 'null' }] } },
                       required: ['v', 'next'], additionalProperties: false } },
      $ref: '#/$defs/node' },
  ];
  let outputs = 0;
  for (let i = 0; i < formats.length; i++) {
    for (let seed = 0; seed < 3; seed++) {
      const res = await client.chat.completions.create({
        model, messages: [{ role: 'user', content: `Answer as JSON #${i}` }], max_tokens: 1500,
        seed, temperature: 1,
        response_format: { type: 'json_schema', json_schema: { name: `s${i}`, schema: formats[i], strict: true } },
      });
      const c = res.choices[0];
      assert.strictEqual(c.finish_reason, 'stop', JSON.stringify(c));
      const value = JSON.parse(c.message.content);
      assert.ok(ajv.validate(formats[i], value), `${c.message.content}: ${ajv.errorsText()}`);
      outputs++;
    }
  }
  console.log(`json_schema: ${outputs} outputs, all valid`);
  const choice = await client.chat.completions.create({
    model, messages: [user], max_tokens: 10, structured_outputs: { choice: ['yes', 'no'] } });
  assert.ok(['yes', 'no'].includes(choice.choices[0].message.content));

  // --- Reasoning: the thought channel is reasoning_content, never content. ---
  const thinking = {
    model, max_tokens: 80, seed: 5, messages: [user], chat_template_kwargs: { enable_thinking: true },
    grammar: 'root ::= <|channel> "thought\\n" [a-z ]{3,30} <channel|> [A-Z] [a-z ]{1,12}',
  };
  const thought = await client.chat.completions.create(thinking);
  const tm = thought.choices[0].message;
  assert.match(tm.reasoning_content, /^[a-z ]{3,30}$/);
  assert.match(tm.content, /^[A-Z][a-z ]{1,12}$/);
  let sr = '', sc = '';
  for await (const chunk of await client.chat.completions.create({ ...thinking, stream: true })) {
    for (const c of chunk.choices) {
      if (c.delta.reasoning_content) sr += c.delta.reasoning_content;
      if (c.delta.content) sc += c.delta.content;
    }
  }
  assert.strictEqual(sr, tm.reasoning_content);
  assert.strictEqual(sc, tm.content);

  // --- n > 1: independent choices over one prefill. ---
  await waitIdle();
  const before = await scrape();
  const prompt = { role: 'user', content: 'A prompt only this request uses: ' + 'lorem ipsum '.repeat(30) };
  const many = await client.chat.completions.create({
    model, messages: [prompt], n: 4, max_tokens: 6, seed: 21, temperature: 1 });
  assert.strictEqual(many.choices.length, 4);
  assert.deepStrictEqual(many.choices.map((c) => c.index), [0, 1, 2, 3]);
  assert.ok(new Set(many.choices.map((c) => c.message.content)).size > 1, 'choices differ');
  const one = await client.chat.completions.create({
    model, messages: [prompt], max_tokens: 6, seed: 21, temperature: 1 });
  assert.strictEqual(many.usage.prompt_tokens, one.usage.prompt_tokens);
  assert.strictEqual(many.usage.completion_tokens, 24);
  assert.strictEqual(one.choices[0].message.content, many.choices[0].message.content);
  await waitIdle();
  const after = await scrape();
  const P = many.usage.prompt_tokens;
  // Prompt tokens counted once per request; the three extra choices found the first one's full
  // blocks in the prefix cache (all but the last partial block, 16 tokens).
  assert.strictEqual(metric(after, 'tessera:prompt_tokens_total') -
                     metric(before, 'tessera:prompt_tokens_total'), 2 * P);
  const hits = metric(after, 'tessera:prefix_cache_hits_total') -
               metric(before, 'tessera:prefix_cache_hits_total');
  assert.ok(hits >= 3 * (P - 16), `prefix hits ${hits} for 3 extra choices of ${P} tokens`);
  // Streamed, each choice ends with its own finish_reason.
  const finishes = {};
  for await (const chunk of await client.chat.completions.create({
    model, messages: [prompt], n: 3, max_tokens: 4, stream: true })) {
    for (const c of chunk.choices) if (c.finish_reason) finishes[c.index] = c.finish_reason;
  }
  assert.deepStrictEqual(Object.keys(finishes).sort(), ['0', '1', '2']);

  // --- Refusals, each naming its parameter. ---
  await expectError(client, { model, messages: [user], n: 2, best_of: 3 }, 400, 'best_of', 'best_of');
  await expectError(client, { model, messages: [user], n: 1000 }, 400, null, '--max_choices');
  await expectError(client, { model, messages: [user], tools: TOOLS,
                              response_format: { type: 'json_object' } }, 400, 'response_format',
                    'could not call');
  await expectError(client, { model, messages: [user], tool_choice: 'required',
                              tools: [tool('f', { type: 'object', properties: {
                                n: { type: 'integer', multipleOf: 3 } } })] },
                    400, null, "'multipleOf'");
  await expectError(client, { model, messages: [user], response_format: { type: 'json_schema',
                              json_schema: { name: 'x', schema: { type: 'object', not: {} } } } },
                    400, null, "'not'");
  await expectError(client, { model, messages: [user], reasoning_effort: 'extreme' }, 400,
                    'reasoning_effort', 'reasoning_effort');

  // --- gRPC: tools, tool calls and n. ---
  const { grpc, pkg } = loadProtos();
  const inference = new pkg.tessera.v1.Inference(env.grpcTarget, grpc.credentials.createInsecure());
  const replies = await new Promise((resolve, reject) => {
    const out = [];
    const call = inference.Generate({
      messages: [{ role: 'user', parts: [{ text: 'weather?' }] }],
      tools: [{ name: 'get_weather', description: 'Weather', parameters: JSON.stringify(WEATHER) }],
      tool_choice: { mode: 'TOOL_CHOICE_REQUIRED' }, n: 2, parallel_tool_calls: false,
      sampling: { seed: 3 }, stopping: { max_tokens: 400 },
    }, grpcMetadata(grpc));
    call.on('data', (m) => out.push(m));
    call.on('error', reject);
    call.on('end', () => resolve(out));
  });
  const byIndex = { 0: [], 1: [] };
  for (const r of replies) byIndex[r.index].push(r);
  for (const i of [0, 1]) {
    const rs = byIndex[i];
    const last = rs[rs.length - 1];
    assert.strictEqual(last.finished.reason, 'FINISH_REASON_TOOL_CALLS');
    const toolCalls = rs.flatMap((r) => r.tool_calls);
    assert.strictEqual(toolCalls.length, 1);
    assert.strictEqual(rs.map((r) => r.text).join(''), '');
    checkCall({ type: 'function', id: toolCalls[0].id, function: toolCalls[0] });
  }

  // --- Metrics: constrained requests counted, mask times observed. ---
  const m = await scrape();
  assert.ok(metric(m, 'tessera:structured_output_requests_total') >= 30);
  assert.ok(metric(m, 'tessera:structured_output_mask_seconds_count') > 1000);
  await waitIdle();
});
