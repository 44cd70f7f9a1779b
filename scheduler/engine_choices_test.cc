// The engine's constrained decoding (GenerateRequest::grammar) and choices (num_choices): outputs
// match the grammar alone, batched and across preemption; the choices of one request prefill the
// prompt once, sample independently, and end (or abort) as a group.
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/structured/grammar_compiler.h"
#include "runtime/testing/fake_model_runner.h"
#include "scheduler/engine.h"
#include "scheduler/engine_test_util.h"

namespace tessera::scheduler {
namespace {

using testing::LetterTokenizer;
using testing::MakePrompt;
using testing::MakeRequest;
using testing::SmallSpec;

constexpr int32_t kVocab = 512;
constexpr int32_t kEos = 0;

EngineOptions Options() {
  EngineOptions o;
  o.start_loop_thread = false;
  o.max_num_seqs = 16;
  o.max_num_batched_tokens = 64;
  o.max_context_length = 1024;
  o.model_identity = "fake";
  o.eos_token_ids = {kEos};
  return o;
}

// LetterTokenizer's vocabulary for the grammar: token i is the letter 'a' + i % 26, token 0 is
// the stop token (special, so never inside the text).
std::shared_ptr<const runtime::structured::Vocabulary> LetterVocabulary() {
  std::vector<std::string> bytes(kVocab);
  for (int32_t i = 1; i < kVocab; ++i) bytes[i] = std::string(1, static_cast<char>('a' + i % 26));
  auto v = runtime::structured::Vocabulary::FromTokenBytes(bytes, {{kEos, "<eos>"}});
  EXPECT_TRUE(v.ok()) << v.status();
  return *v;
}

std::shared_ptr<const runtime::structured::CompiledGrammar> Regex(const std::string& pattern) {
  static auto* compiler = new runtime::structured::GrammarCompiler(LetterVocabulary());
  auto g = compiler->Compile(runtime::structured::GrammarSpec::Regex(pattern));
  EXPECT_TRUE(g.ok()) << g.status();
  return *g;
}

struct Choice {
  std::vector<int32_t> tokens;
  std::string text;
  std::optional<Completion> completion;
};

// Every choice of every handle, by index; true when all handles ended.
bool RunChoices(Engine* engine, const std::vector<std::shared_ptr<RequestHandle>>& handles,
                std::vector<std::map<int32_t, Choice>>* out, int max_steps = 100000) {
  out->resize(handles.size());
  std::vector<bool> ended(handles.size(), false);
  for (int step = 0; step < max_steps; ++step) {
    bool all = true;
    for (size_t i = 0; i < handles.size(); ++i) {
      if (ended[i]) continue;
      std::vector<RequestEvent> events;
      ended[i] = handles[i]->Drain(&events);
      for (auto& e : events) {
        if (auto* d = std::get_if<TokenDelta>(&e)) {
          Choice& c = (*out)[i][d->index];
          EXPECT_FALSE(c.completion.has_value()) << "a delta after choice " << d->index << " ended";
          c.tokens.insert(c.tokens.end(), d->token_ids.begin(), d->token_ids.end());
          c.text += d->text;
        } else {
          const Completion& done = std::get<Completion>(e);
          EXPECT_FALSE((*out)[i][done.index].completion.has_value());
          (*out)[i][done.index].completion = done;
        }
      }
      if (!ended[i]) all = false;
    }
    if (all) return true;
    engine->Step();
  }
  return false;
}

struct Fixture {
  explicit Fixture(EngineOptions options = Options(), int32_t sliding = 256, int32_t global = 512)
      : runner(SmallSpec(sliding, global), kVocab) {
    auto e = Engine::Create(options, &runner, &tokenizer, &clock, nullptr);
    EXPECT_TRUE(e.ok()) << e.status();
    engine = std::move(*e);
  }
  std::shared_ptr<RequestHandle> Submit(GenerateRequest r) {
    auto h = engine->Submit(std::move(r));
    EXPECT_TRUE(h.ok()) << h.status();
    return h.ok() ? *h : nullptr;
  }
  void ExpectAllFree() {
    EngineStats s = engine->Stats();
    EXPECT_EQ(s.running, 0);
    EXPECT_EQ(s.waiting, 0);
    for (const auto& g : s.kv) EXPECT_EQ(g.used_blocks, 0) << g.name;
    EXPECT_TRUE(engine->CheckConsistency().ok());
  }
  LetterTokenizer tokenizer;
  ManualClock clock;
  FakeModelRunner runner;
  std::unique_ptr<Engine> engine;
};

constexpr char kPattern[] = "(ab|ba)[c-f]{2,5}(xy)*z";

std::vector<GenerateRequest> ConstrainedMix() {
  std::vector<GenerateRequest> reqs;
  for (int i = 0; i < 10; ++i) {
    auto r = MakeRequest(absl::StrCat("g", i), MakePrompt(30 + 9 * i, i % 2 ? 20 : 0, i), 40,
                         i % 3 ? 1.0f : 0.0f, 77 + i);
    r.grammar = Regex(kPattern);
    reqs.push_back(std::move(r));
  }
  return reqs;
}

TEST(EngineConstrainedTest, OutputsMatchTheGrammarAloneBatchedAndAcrossPreemption) {
  const std::regex whole(kPattern);
  std::vector<std::string> alone;
  for (auto& r : ConstrainedMix()) {
    Fixture f;
    std::vector<std::map<int32_t, Choice>> out;
    ASSERT_TRUE(RunChoices(f.engine.get(), {f.Submit(std::move(r))}, &out));
    const Choice& c = out[0][0];
    ASSERT_TRUE(c.completion.has_value());
    EXPECT_EQ(c.completion->reason, FinishReason::kStop);
    // The text is complete when it ends: either the stop token was sampled where the grammar
    // accepts, or nothing but it could follow (after "z", at once).
    EXPECT_TRUE(std::regex_match(c.text, whole)) << c.text;
    alone.push_back(c.text);
    f.ExpectAllFree();
  }
  // 12 global blocks of 4 tokens for 10 sequences of 30..121 prompt tokens: preemption is certain.
  for (auto [sliding, global] : {std::pair{256, 512}, std::pair{40, 48}}) {
    Fixture f(Options(), sliding, global);
    std::vector<std::shared_ptr<RequestHandle>> handles;
    for (auto& r : ConstrainedMix()) handles.push_back(f.Submit(std::move(r)));
    std::vector<std::map<int32_t, Choice>> out;
    ASSERT_TRUE(RunChoices(f.engine.get(), handles, &out));
    for (size_t i = 0; i < handles.size(); ++i) EXPECT_EQ(out[i][0].text, alone[i]) << i;
    if (global == 48) EXPECT_GT(f.engine->Stats().preemptions, 0);
    f.ExpectAllFree();
  }
}

TEST(EngineConstrainedTest, MinTokensYieldsToTheGrammarAndIgnoreEosIsRefused) {
  Fixture f;
  auto r = MakeRequest("m", MakePrompt(12, 0, 1), 40, 1.0f, 5);
  r.grammar = Regex("abc");
  r.stopping.min_tokens = 10;  // The grammar's language has 3 tokens.
  std::vector<std::map<int32_t, Choice>> out;
  ASSERT_TRUE(RunChoices(f.engine.get(), {f.Submit(std::move(r))}, &out));
  EXPECT_EQ(out[0][0].text, "abc");
  EXPECT_EQ(out[0][0].completion->reason, FinishReason::kStop);
  auto bad = MakeRequest("i", MakePrompt(12, 0, 1), 40);
  bad.grammar = Regex("abc");
  bad.stopping.ignore_eos = true;
  auto refused = f.engine->Submit(std::move(bad));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("ignore_eos"), std::string::npos);
}

TEST(EngineChoicesTest, ChoicesPrefillThePromptOnceAndSampleIndependently) {
  const int32_t prompt = 50, n = 4, block = 4;
  // One choice: the reference for choice 0, and the prompt cost.
  Fixture one;
  std::vector<std::map<int32_t, Choice>> single;
  ASSERT_TRUE(RunChoices(one.engine.get(),
                         {one.Submit(MakeRequest("s", MakePrompt(prompt, 0, 3), 12, 1.0f, 99))},
                         &single));
  EXPECT_EQ(one.engine->Stats().prompt_tokens_computed, prompt);

  Fixture f;
  auto r = MakeRequest("n", MakePrompt(prompt, 0, 3), 12, 1.0f, 99);
  r.num_choices = n;
  std::vector<std::map<int32_t, Choice>> out;
  ASSERT_TRUE(RunChoices(f.engine.get(), {f.Submit(std::move(r))}, &out));
  ASSERT_EQ(out[0].size(), static_cast<size_t>(n));
  std::set<std::vector<int32_t>> distinct;
  for (int32_t i = 0; i < n; ++i) {
    const Choice& c = out[0][i];
    ASSERT_TRUE(c.completion.has_value()) << i;
    EXPECT_EQ(c.completion->index, i);
    EXPECT_EQ(c.completion->reason, FinishReason::kLength);
    EXPECT_EQ(c.completion->usage.prompt_tokens, prompt);
    EXPECT_EQ(c.completion->usage.completion_tokens, 12);
    EXPECT_EQ(c.tokens.size(), 12u);
    distinct.insert(c.tokens);
  }
  EXPECT_EQ(distinct.size(), static_cast<size_t>(n)) << "derived seeds must differ";
  // Choice 0 samples with the request's own seed: the single-choice output.
  EXPECT_EQ(out[0][0].tokens, single[0][0].tokens);
  // The prompt once, plus at most the last partial block (and one row) again per extra choice.
  const EngineStats s = f.engine->Stats();
  EXPECT_LE(s.prompt_tokens_computed, prompt + (n - 1) * block);
  EXPECT_GT(s.prefix_hit_tokens, 0);
  f.ExpectAllFree();
}

TEST(EngineChoicesTest, ChoicesWithAGrammarEachMatchIt) {
  Fixture f;
  auto r = MakeRequest("ng", MakePrompt(33, 0, 8), 40, 1.0f, 1234);
  r.num_choices = 5;
  r.grammar = Regex(kPattern);
  std::vector<std::map<int32_t, Choice>> out;
  ASSERT_TRUE(RunChoices(f.engine.get(), {f.Submit(std::move(r))}, &out));
  ASSERT_EQ(out[0].size(), 5u);
  for (auto& [i, c] : out[0]) {
    EXPECT_TRUE(std::regex_match(c.text, std::regex(kPattern))) << i << ": " << c.text;
  }
  f.ExpectAllFree();
}

TEST(EngineChoicesTest, AbortEndsEveryChoiceStartedOrNot) {
  for (int steps_before_abort : {0, 1, 30}) {
    SCOPED_TRACE(steps_before_abort);
    Fixture f;
    auto r = MakeRequest("a", MakePrompt(120, 0, 4), 200, 1.0f, 1);
    r.num_choices = 3;
    auto h = f.Submit(std::move(r));
    for (int i = 0; i < steps_before_abort; ++i) f.engine->Step();
    ASSERT_TRUE(f.engine->Abort("a").ok());
    std::vector<std::map<int32_t, Choice>> out;
    ASSERT_TRUE(RunChoices(f.engine.get(), {h}, &out));
    ASSERT_EQ(out[0].size(), 3u);
    for (auto& [i, c] : out[0]) EXPECT_EQ(c.completion->reason, FinishReason::kAbort) << i;
    // The id is free again once every choice ended.
    EXPECT_EQ(f.engine->Abort("a").code(), absl::StatusCode::kNotFound);
    f.ExpectAllFree();
  }
}

TEST(EngineChoicesTest, AChoiceMayEndBeforeTheOthersStartAndTheIdStaysLive) {
  Fixture f;
  auto r = MakeRequest("e", MakePrompt(40, 0, 6), 1, 1.0f, 3);  // One token each.
  r.num_choices = 3;
  auto h = f.Submit(std::move(r));
  std::vector<std::map<int32_t, Choice>> out;
  ASSERT_TRUE(RunChoices(f.engine.get(), {h}, &out));
  ASSERT_EQ(out[0].size(), 3u);
  for (auto& [i, c] : out[0]) EXPECT_EQ(c.tokens.size(), 1u) << i;
  f.ExpectAllFree();
}

}  // namespace
}  // namespace tessera::scheduler
