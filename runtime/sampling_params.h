// How to pick the next token. Validated at the edge (server/); the sampler trusts these ranges.
#pragma once

#include <cstdint>
#include <vector>

namespace tessera::runtime {

struct SamplingParams {
  float temperature = 1.0f;         // 0 = greedy.
  int32_t top_k = 0;                // 0 = off.
  float top_p = 1.0f;               // 1 = off.
  float min_p = 0.0f;               // 0 = off.
  float repetition_penalty = 1.0f;  // 1 = off; applies to prompt and output tokens.
  float presence_penalty = 0.0f;    // Output tokens only.
  float frequency_penalty = 0.0f;   // Output tokens only.
  uint64_t seed = 0;                // Always set: the edge draws one when the client gives none.
  int32_t top_logprobs = 0;         // Alternatives to report per token (0..20).
  bool logprobs = false;            // Report the sampled token's logprob.
};

// What the sampler needs to know about a sequence besides its logits.
struct SamplingContext {
  // The request's prompt and output so far (for penalties). Not owned.
  const std::vector<int32_t>* prompt_tokens = nullptr;
  const std::vector<int32_t>* output_tokens = nullptr;
  // Tokens that must not be sampled this step (e.g. stop ids before min_tokens).
  std::vector<int32_t> banned_tokens;
  // Constrained decoding: bit t of word t / 64 set = token t may be sampled; null = every token.
  // `allowed_tokens_vocab` bits (the grammar's vocabulary; ids past it are not allowed). Not owned;
  // alive for the step.
  const uint64_t* allowed_tokens = nullptr;
  int32_t allowed_tokens_vocab = 0;
  // Index of the token being sampled in the output (0 for the first): with the seed it fixes the
  // random draw, so a sequence samples the same alone or batched, before or after preemption.
  uint64_t step = 0;
};

struct TokenChoice {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampleResult {
  int32_t token = 0;
  float logprob = 0.0f;          // log softmax of the raw (softcapped) logits, when requested.
  std::vector<TokenChoice> top;  // Most likely first, when requested.
};

}  // namespace tessera::runtime
