#include "scheduler/engine_test_util.h"

namespace tessera::scheduler::testing {

runtime::KvCacheSpec SmallSpec(int32_t sliding_blocks, int32_t global_blocks) {
  runtime::KvCacheSpec spec;
  runtime::KvGroupSpec s;
  s.name = "sliding";
  s.num_layers = 5;
  s.window = 32;
  s.block_size = 4;
  s.num_blocks = sliding_blocks;
  runtime::KvGroupSpec g;
  g.name = "global";
  g.num_layers = 1;
  g.block_size = 4;
  g.num_blocks = global_blocks;
  spec.groups = {s, g};
  return spec;
}

std::vector<int32_t> LetterTokenizer::Encode(std::string_view text) const {
  std::vector<int32_t> ids;
  for (char c : text) ids.push_back(c - 'a');
  return ids;
}

std::string LetterTokenizer::Decode(const std::vector<int32_t>& ids, bool) const {
  std::string s;
  for (int32_t id : ids) s += static_cast<char>('a' + id % 26);
  return s;
}

std::string LetterTokenizer::TokenText(int32_t id) const {
  return std::string(1, static_cast<char>('a' + id % 26));
}

runtime::Prompt MakePrompt(int32_t n, int32_t shared, uint64_t seed) {
  runtime::Prompt p;
  uint64_t x = 12345;
  for (int32_t i = 0; i < n; ++i) {
    if (i == shared) x = seed * 7919 + 17;
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    p.token_ids.push_back(static_cast<int32_t>(3 + (x >> 33) % 500));
  }
  return p;
}

std::shared_ptr<runtime::MediaItem> MakeMedia(runtime::MediaKind kind, int32_t rows,
                                              uint64_t hash) {
  auto item = std::make_shared<runtime::MediaItem>();
  item->kind = kind;
  item->num_rows = rows;
  item->hash = {hash, hash ^ 0xabcdef};
  return item;
}

GenerateRequest MakeRequest(const std::string& id, runtime::Prompt prompt, int32_t max_tokens,
                            float temperature, uint64_t seed) {
  GenerateRequest r;
  r.request_id = id;
  r.prompt = std::move(prompt);
  r.sampling.temperature = temperature;
  r.sampling.seed = seed;
  r.stopping.max_tokens = max_tokens;
  return r;
}

bool Collect(RequestHandle* handle, Result* result) {
  std::vector<RequestEvent> events;
  handle->Drain(&events);
  for (auto& e : events) {
    ++result->num_events;
    if (result->completion.has_value()) result->completion_last = false;
    if (auto* d = std::get_if<TokenDelta>(&e)) {
      result->tokens.insert(result->tokens.end(), d->token_ids.begin(), d->token_ids.end());
      result->text += d->text;
    } else {
      result->completion = std::get<Completion>(e);
    }
  }
  return result->completion.has_value();
}

bool RunUntilDone(Engine* engine, const std::vector<std::shared_ptr<RequestHandle>>& handles,
                  std::vector<Result>* results, int max_steps) {
  results->resize(handles.size());
  for (int step = 0; step < max_steps; ++step) {
    bool all = true;
    for (size_t i = 0; i < handles.size(); ++i) {
      if (!Collect(handles[i].get(), &(*results)[i])) all = false;
    }
    if (all) return true;
    engine->Step();
  }
  return false;
}

}  // namespace tessera::scheduler::testing
