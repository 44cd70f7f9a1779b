// Picks the next token from one row of logits: penalties, temperature, top-k, top-p, min-p, a
// seeded draw, and log-probabilities. Pure and deterministic: the same logits, params, context and
// (seed, step) always give the same result, alone or batched, on any machine.
#pragma once

#include <cstdint>

#include "runtime/sampling_params.h"

namespace tessera::runtime {

// `logits` has `vocab_size` entries (after the model's softcap). Logprobs, when requested, are of
// the model's distribution before penalties and temperature (as OpenAI and vLLM report them).
SampleResult Sample(const float* logits, int32_t vocab_size, const SamplingParams& params,
                    const SamplingContext& context);

}  // namespace tessera::runtime
