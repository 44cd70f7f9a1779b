// Picks the next token from one row of logits: penalties, temperature, top-k, top-p, min-p, a
// seeded draw, and log-probabilities. Pure and deterministic: the same logits, params, context and
// (seed, step) always give the same result, alone or batched, on any machine.
//
// Order of operations (as vLLM's sampler): penalties (repetition, then frequency and presence),
// banned tokens and the constrained-decoding mask (disallowed tokens to -inf); then greedy argmax
// when temperature is 0 or top_k is 1; otherwise temperature, min-p, top-k, top-p, and one draw
// from what is left, renormalised.
#pragma once

#include <cstdint>

#include "runtime/sampling_params.h"

namespace tessera::runtime {

// `logits` has `vocab_size` entries (after the model's softcap). Logprobs, when requested, are of
// the model's distribution before penalties and temperature (as OpenAI and vLLM report them).
SampleResult Sample(const float* logits, int32_t vocab_size, const SamplingParams& params,
                    const SamplingContext& context);

// Writes `logits` with the penalties and bans of `params`/`context` applied into `out` (both
// `vocab_size` long; they may alias). Repetition penalty (HF/vLLM): each distinct token of prompt
// and output has a positive logit divided by the penalty and a negative one multiplied by it.
// Frequency and presence (OpenAI): logit -= frequency * count + presence * (count > 0), counting
// output tokens only. Banned tokens, and tokens `allowed_tokens` does not allow, become -inf. Ids
// outside [0, vocab_size) are ignored.
void ApplyPenalties(const float* logits, int32_t vocab_size, const SamplingParams& params,
                    const SamplingContext& context, float* out);

// The uniform draw in [0, 1) used for (seed, step): a counter-based generator, so that a draw
// depends only on the pair and never on what else was sampled before or beside it.
double UniformForStep(uint64_t seed, uint64_t step);

}  // namespace tessera::runtime
