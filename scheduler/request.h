// A request as the engine sees it, and what it streams back. The edge (server/) builds these from
// gRPC or HTTP input; nothing here knows protobuf or HTTP.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "runtime/prompt/prompt.h"
#include "runtime/sampling_params.h"
#include "runtime/structured/compiled_grammar.h"

namespace tessera::scheduler {

struct StoppingParams {
  int32_t max_tokens = 0;  // 0 = until the context length.
  int32_t min_tokens = 0;
  std::vector<std::string> stop_strings;
  std::vector<int32_t> stop_token_ids;  // In addition to the model's own unless ignore_eos.
  bool ignore_eos = false;
};

struct GenerateRequest {
  std::string
      request_id;  // Unique among live requests; the edge assigns one if the client did not.
  runtime::Prompt prompt;
  runtime::SamplingParams sampling;
  StoppingParams stopping;
  int32_t priority = 0;                       // Lower runs first.
  std::string cache_salt;                     // Prefix-cache namespace.
  absl::Time arrival = absl::InfinitePast();  // Set by Submit when unset.
  absl::Time deadline = absl::InfiniteFuture();
  // Constrained decoding: every choice's output is a prefix of this grammar's language, and ends
  // (with a stop token, or at once when nothing else may follow) only where the grammar accepts.
  // Null: unconstrained. Not with ignore_eos (the grammar's end is the stop token).
  std::shared_ptr<const runtime::structured::CompiledGrammar> grammar;
  // Special tokens whose text the detokenizer keeps (markup the edge parses, e.g. <|channel>);
  // every other special token gives no text.
  std::vector<int32_t> visible_special_tokens;
  // Independent choices of one prompt (OpenAI's n). The prompt is prefilled once: the other
  // choices start when the first has computed it, and take its full KV blocks through the prefix
  // cache, computing only the last partial block again (all of it when prefix caching is off).
  // Choice i samples with a seed derived from (seed, i); choice 0 with `seed` itself. Events carry
  // the choice's index; the stream ends after every choice's Completion.
  int32_t num_choices = 1;
};

// The seed of choice `index` of a request seeded `seed` (SplitMix64 of the pair; `seed` for 0).
inline uint64_t ChoiceSeed(uint64_t seed, int32_t index) {
  if (index == 0) return seed;
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(index);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

enum class FinishReason { kStop, kLength, kAbort, kError };
inline constexpr FinishReason kAllFinishReasons[] = {FinishReason::kStop, FinishReason::kLength,
                                                     FinishReason::kAbort, FinishReason::kError};

// The reason as the HTTP API (OpenAI's finish_reason) and the metrics' finished_reason label spell
// it: "stop", "length", "abort", "error". The one place a reason becomes text.
inline const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
  }
  return "error";
}

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
  std::vector<runtime::TokenChoice> top;
};

// Tokens produced since the previous delta. `text` never splits a UTF-8 character and excludes any
// stop string (text that might begin a stop string is held back until it cannot).
struct TokenDelta {
  int32_t index = 0;  // The choice (GenerateRequest::num_choices).
  std::vector<int32_t> token_ids;
  std::string text;
  std::vector<TokenLogprob> logprobs;  // One per token when requested.
};

struct Usage {
  int32_t prompt_tokens = 0;
  int32_t cached_prompt_tokens = 0;
  int32_t completion_tokens = 0;
  absl::Duration queue_time;           // Arrival to first scheduled.
  absl::Duration time_to_first_token;  // Arrival to first token.
  absl::Duration total_time;           // Arrival to completion.
};

// How one choice ended. `usage.prompt_tokens` is the prompt's size in every choice's Completion
// (the prompt is shared: count it once); `completion_tokens` are the choice's own.
struct Completion {
  int32_t index = 0;  // The choice.
  FinishReason reason = FinishReason::kStop;
  absl::Status status;  // Non-OK for kError (and kAbort: Cancelled / DeadlineExceeded).
  Usage usage;
  std::optional<std::string> stop_string;  // Matched stop string, when that ended it.
  std::optional<int32_t> stop_token;       // Matched stop token id, when that ended it.
};

}  // namespace tessera::scheduler
