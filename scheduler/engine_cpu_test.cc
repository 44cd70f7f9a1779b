// The engine over the real CPU runner and //models:tiny_test (8 layers, 2 global, window 16, vocab
// 512): outputs are identical alone or batched, with or without prefix caching and across
// preemption, and a shared prefix (with an image and audio) is computed once.
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/cpu/cpu_model_runner.h"
#if defined(TESSERA_ENGINE_TEST_CUDA)
#include "runtime/cuda/cuda_model_runner.h"
#endif
#include "runtime/model/model_loader.h"
#include "scheduler/engine.h"
#include "scheduler/engine_test_util.h"

namespace tessera::scheduler {
namespace {

using testing::MakePrompt;
using testing::MakeRequest;
using testing::Result;
using testing::RunUntilDone;

// Counts the rows each step computes, then lets the CPU runner compute them.
class CountingRunner : public runtime::ModelRunner {
 public:
  explicit CountingRunner(std::unique_ptr<runtime::ModelRunner> inner) : inner_(std::move(inner)) {}
  const runtime::KvCacheSpec& kv_spec() const override { return inner_->kv_spec(); }
  int32_t vocab_size() const override { return inner_->vocab_size(); }
  absl::Status Execute(const runtime::BatchPlan& plan, runtime::StepOutput* out) override {
    for (const auto& s : plan.seqs) rows_ += s.token_ids.size();
    return inner_->Execute(plan, out);
  }
  int64_t rows() const { return rows_; }

 private:
  std::unique_ptr<runtime::ModelRunner> inner_;
  int64_t rows_ = 0;
};

std::shared_ptr<const runtime::LoadedModel> Model() {
  static auto* model = [] {
    auto m = runtime::LoadModel("models/tiny_test");
    EXPECT_TRUE(m.ok()) << m.status();
    return new std::shared_ptr<const runtime::LoadedModel>(m.ok() ? *m : nullptr);
  }();
  return *model;
}

std::unique_ptr<CountingRunner> MakeRunner(int32_t blocks) {
#if defined(TESSERA_ENGINE_TEST_CUDA)
  runtime::CudaRunnerOptions o;
  o.block_size = 16;
  o.num_blocks_sliding = blocks;
  o.num_blocks_global = blocks;
  o.max_step_tokens = 64;
  o.max_step_seqs = 8;
  o.max_seq_len = 1024;
  auto r = runtime::CreateCudaModelRunner(Model(), o);
#else
  runtime::CpuRunnerOptions o;
  o.block_size = 16;
  o.num_blocks_sliding = blocks;
  o.num_blocks_global = blocks;
  o.num_threads = 1;
  auto r = runtime::CreateCpuModelRunner(Model(), o);
#endif
  EXPECT_TRUE(r.ok()) << r.status();
  return std::make_unique<CountingRunner>(std::move(*r));
}

EngineOptions Options(bool prefix_caching = true) {
  EngineOptions o;
  o.start_loop_thread = false;
  o.max_num_seqs = 8;
  o.max_num_batched_tokens = 48;
  o.max_context_length = 1024;
  o.enable_prefix_caching = prefix_caching;
  o.eos_token_ids = Model()->config.text.eos_token_ids;
  return o;
}

std::shared_ptr<runtime::MediaItem> Image(int side, uint64_t seed) {
  auto item = std::make_shared<runtime::MediaItem>();
  item->kind = runtime::MediaKind::kImage;
  item->num_rows = side * side;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  item->rows.resize(static_cast<size_t>(item->num_rows) * runtime::kPatchValues);
  for (float& v : item->rows) v = u(rng);
  for (int y = 0; y < side; ++y) {
    for (int x = 0; x < side; ++x) item->positions.insert(item->positions.end(), {x, y});
  }
  item->width = item->height = side * runtime::kPatchSide;
  item->hash = {seed, seed * 31 + 7};
  return item;
}

std::shared_ptr<runtime::MediaItem> Audio(int frames, uint64_t seed) {
  auto item = std::make_shared<runtime::MediaItem>();
  item->kind = runtime::MediaKind::kAudio;
  item->num_rows = frames;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0.f, 0.1f);
  item->rows.resize(static_cast<size_t>(frames) * runtime::kAudioFrameSamples);
  for (float& v : item->rows) v = n(rng);
  item->hash = {seed ^ 0xa0d10, seed};
  return item;
}

// Token ids below the tiny model's special ids (500..506).
runtime::Prompt TextPrompt(int32_t n, int32_t shared, uint64_t seed) {
  runtime::Prompt p = MakePrompt(n, shared, seed);
  for (int32_t& t : p.token_ids) t = 7 + t % 480;
  return p;
}

void AddMedia(runtime::Prompt* p, int32_t start, std::shared_ptr<runtime::MediaItem> item) {
  const auto& cfg = Model()->config;
  const int32_t id =
      item->kind == runtime::MediaKind::kImage ? cfg.image_token_id : cfg.audio_token_id;
  for (int32_t i = 0; i < item->num_rows; ++i) p->token_ids[start + i] = id;
  p->media.push_back({start, std::move(item)});
}

std::vector<GenerateRequest> Mix() {
  std::vector<GenerateRequest> reqs;
  for (int i = 0; i < 6; ++i) {
    runtime::Prompt p = TextPrompt(40 + 17 * i, i % 2 == 0 ? 36 : 0, i);
    if (i == 1) AddMedia(&p, 4, Image(3, 11));
    if (i == 4) AddMedia(&p, 40, Audio(20, 12));
    reqs.push_back(
        MakeRequest(absl::StrCat("r", i), std::move(p), 12, i % 2 ? 0.9f : 0.0f, 77 + i));
  }
  return reqs;
}

std::vector<Result> RunAll(std::vector<GenerateRequest> reqs, int32_t blocks, bool caching,
                           EngineStats* stats) {
  auto runner = MakeRunner(blocks);
  auto engine = *Engine::Create(Options(caching), runner.get(), nullptr);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (auto& r : reqs) {
    auto h = engine->Submit(std::move(r));
    EXPECT_TRUE(h.ok()) << h.status();
    hs.push_back(*h);
  }
  std::vector<Result> results;
  EXPECT_TRUE(RunUntilDone(engine.get(), hs, &results));
  *stats = engine->Stats();
  return results;
}

TEST(EngineCpuTest, IdenticalAloneBatchedCachedAndAcrossPreemption) {
  std::vector<Result> alone;
  for (auto& r : Mix()) {
    EngineStats s;
    std::vector<GenerateRequest> one;
    one.push_back(std::move(r));
    alone.push_back(RunAll(std::move(one), 64, true, &s)[0]);
  }
  EngineStats roomy, tight, uncached;
  auto batched = RunAll(Mix(), 64, true, &roomy);
  auto preempted = RunAll(Mix(), 12, true, &tight);  // 192 tokens for 6 sequences up to 137.
  auto without = RunAll(Mix(), 12, false, &uncached);
  EXPECT_EQ(roomy.preemptions, 0);
  EXPECT_GT(tight.preemptions, 0);
  EXPECT_GT(uncached.preemptions, 0);
  EXPECT_GT(roomy.prefix_hit_tokens, 0);
  for (size_t i = 0; i < alone.size(); ++i) {
    ASSERT_TRUE(alone[i].completion.has_value());
    EXPECT_FALSE(alone[i].tokens.empty());
    EXPECT_EQ(batched[i].tokens, alone[i].tokens) << i;
    EXPECT_EQ(preempted[i].tokens, alone[i].tokens) << i;
    EXPECT_EQ(without[i].tokens, alone[i].tokens) << i;
  }
}

TEST(EngineCpuTest, SharedPrefixWithImageAndAudioIsComputedOnce) {
  auto runner = MakeRunner(64);
  auto engine = *Engine::Create(Options(), runner.get(), nullptr);
  auto prompt = [](int32_t n) {
    runtime::Prompt p = TextPrompt(n, n, 0);
    AddMedia(&p, 5, Image(2, 3));
    AddMedia(&p, 30, Audio(25, 4));
    return p;
  };
  std::vector<Result> r;
  ASSERT_TRUE(RunUntilDone(engine.get(), {*engine->Submit(MakeRequest("a", prompt(96), 1))}, &r));
  const int64_t before = runner->rows();
  std::vector<Result> r2;
  ASSERT_TRUE(RunUntilDone(engine.get(), {*engine->Submit(MakeRequest("b", prompt(120), 4))}, &r2));
  EXPECT_EQ(r2[0].completion->usage.cached_prompt_tokens, 96);
  EXPECT_EQ(runner->rows() - before, 24 + 3);  // New prompt rows, then 3 decodes.
  // Same output as a cold engine.
  auto cold_runner = MakeRunner(64);
  auto cold = *Engine::Create(Options(), cold_runner.get(), nullptr);
  std::vector<Result> r3;
  ASSERT_TRUE(RunUntilDone(cold.get(), {*cold->Submit(MakeRequest("b", prompt(120), 4))}, &r3));
  EXPECT_EQ(r3[0].tokens, r2[0].tokens);
}

}  // namespace
}  // namespace tessera::scheduler
