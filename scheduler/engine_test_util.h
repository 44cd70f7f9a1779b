// Helpers for engine tests: a small two-group KV spec, request builders, a character tokenizer,
// and draining handles.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/model_runner.h"
#include "runtime/prompt/tokenizer.h"
#include "scheduler/engine.h"

namespace tessera::scheduler::testing {

// Sliding group (window 32) and global group, block size 4.
runtime::KvCacheSpec SmallSpec(int32_t sliding_blocks, int32_t global_blocks);

// Token i decodes to one lowercase letter ('a' + i % 26); nothing is special.
class LetterTokenizer : public runtime::Tokenizer {
 public:
  std::vector<int32_t> Encode(std::string_view text) const override;
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special) const override;
  int32_t vocab_size() const override { return 512; }
  std::optional<int32_t> TokenId(std::string_view) const override { return std::nullopt; }
  std::string TokenText(int32_t id) const override;
  bool IsSpecial(int32_t) const override { return false; }
};

// A prompt of `n` tokens: `shared` leading tokens from a fixed stream, the rest from `seed`.
runtime::Prompt MakePrompt(int32_t n, int32_t shared, uint64_t seed);
std::shared_ptr<runtime::MediaItem> MakeMedia(runtime::MediaKind kind, int32_t rows, uint64_t hash);

GenerateRequest MakeRequest(const std::string& id, runtime::Prompt prompt, int32_t max_tokens,
                            float temperature = 0.0f, uint64_t seed = 0);

struct Result {
  std::vector<int32_t> tokens;
  std::string text;
  std::optional<Completion> completion;
  int32_t num_events = 0;
  bool completion_last = true;  // No event after the completion.
};

// Moves whatever the handle has into `result`; true when the completion has arrived.
bool Collect(RequestHandle* handle, Result* result);
// Steps a manual engine until every handle completed (or max_steps). False on timeout.
bool RunUntilDone(Engine* engine, const std::vector<std::shared_ptr<RequestHandle>>& handles,
                  std::vector<Result>* results, int max_steps = 100000);

}  // namespace tessera::scheduler::testing
