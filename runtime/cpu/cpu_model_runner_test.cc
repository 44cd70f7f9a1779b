#include "runtime/cpu/cpu_model_runner.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/model/safetensors.h"
#include "runtime/testing/golden.h"
#include "testdata/testdata.h"

namespace tessera::runtime {
namespace {

using cpu::CheckGoldenPrompt;
using cpu::GoldenPrompt;
using cpu::LinearBlockAllocator;
using cpu::PrefillAll;

// The fixture's logits come from transformers in fp32 on a GPU; fp32 CPU arithmetic with a
// different summation order agrees to about 1e-5 of the row's largest logit (README: ~1e-4).
constexpr float kGoldenTolerance = 1e-4f;

std::string FixtureDir() { return tessera::testing::FixturesDir() + "/gemma4-tiny"; }

class CpuModelRunnerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto model = LoadModel(FixtureDir());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = new std::shared_ptr<const LoadedModel>(*model);
    auto golden = cpu::ReadGolden(FixtureDir() + "/golden.safetensors", (*model)->config);
    ASSERT_TRUE(golden.ok()) << golden.status();
    golden_ = new std::vector<GoldenPrompt>(std::move(*golden));
  }

  std::unique_ptr<CpuModelRunner> MakeRunner(int threads = 2, int32_t block_size = 4) {
    CpuRunnerOptions o;
    o.block_size = block_size;
    o.num_blocks_sliding = 256;
    o.num_blocks_global = 256;
    o.num_threads = threads;
    auto r = CreateCpuModelRunner(*model_, o);
    EXPECT_TRUE(r.ok()) << r.status();
    return std::move(*r);
  }

  const GoldenPrompt& Golden(const std::string& name) {
    for (const auto& g : *golden_) {
      if (g.name == name) return g;
    }
    ADD_FAILURE() << "no golden prompt " << name;
    return golden_->front();
  }

  static std::shared_ptr<const LoadedModel>* model_;
  static std::vector<GoldenPrompt>* golden_;
};

std::shared_ptr<const LoadedModel>* CpuModelRunnerTest::model_ = nullptr;
std::vector<GoldenPrompt>* CpuModelRunnerTest::golden_ = nullptr;

TEST_F(CpuModelRunnerTest, KvSpec) {
  auto runner = MakeRunner();
  const KvCacheSpec& spec = runner->kv_spec();
  ASSERT_EQ(spec.groups.size(), 2u);
  EXPECT_EQ(spec.groups[0].name, "sliding");
  EXPECT_EQ(spec.groups[0].num_layers, 5);
  EXPECT_EQ(spec.groups[0].num_kv_heads, 2);
  EXPECT_EQ(spec.groups[0].head_dim, 16);
  EXPECT_EQ(spec.groups[0].window, 8);
  EXPECT_EQ(spec.groups[0].bytes_per_block, 5 * 2 * 2 * 4 * 16 * 4);
  EXPECT_EQ(spec.groups[1].name, "global");
  EXPECT_EQ(spec.groups[1].num_layers, 1);
  EXPECT_EQ(spec.groups[1].num_kv_heads, 1);
  EXPECT_EQ(spec.groups[1].head_dim, 32);
  EXPECT_EQ(spec.groups[1].window, 0);
  EXPECT_EQ(runner->vocab_size(), 512);
}

TEST_F(CpuModelRunnerTest, GoldenParity) {
  auto runner = MakeRunner();
  ASSERT_EQ(golden_->size(), 2u);
  for (const GoldenPrompt& g : *golden_) {
    auto res = CheckGoldenPrompt(runner.get(), g, /*chunk=*/1 << 20);
    ASSERT_TRUE(res.ok()) << res.status();
    EXPECT_LT(res->prefill_error, kGoldenTolerance) << g.name;
    EXPECT_LT(res->decode_error, kGoldenTolerance) << g.name;
    EXPECT_EQ(res->greedy_matched, res->greedy_total) << g.name;
    EXPECT_EQ(res->greedy_ids, g.greedy_ids) << g.name;
    EXPECT_FALSE(g.logits.empty());
    EXPECT_FALSE(g.decode_logits.empty());
    std::printf("%s: prefill err %.3g, decode err %.3g, greedy %d/%d\n", g.name.c_str(),
                res->prefill_error, res->decode_error, res->greedy_matched, res->greedy_total);
  }
}

}  // namespace
}  // namespace tessera::runtime

namespace tessera::runtime {
namespace {

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float d = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

TEST_F(CpuModelRunnerTest, ChunkedPrefillAndDecodeEqualOnePrefill) {
  // Every row's arithmetic is the same whatever the chunk (same kernels, same summation order),
  // so chunked prefill and one-token decode give bit-identical logits.
  for (const GoldenPrompt& g : *golden_) {
    auto runner = MakeRunner();
    LinearBlockAllocator alloc(runner->kv_spec());
    std::vector<std::vector<int32_t>> tables;
    auto whole = PrefillAll(runner.get(), &alloc, g.prompt, 1 << 20, &tables);
    ASSERT_TRUE(whole.ok()) << whole.status();
    for (int32_t chunk : {1, 2, 3, 5, 7, 16}) {
      LinearBlockAllocator alloc2(runner->kv_spec());
      std::vector<std::vector<int32_t>> tables2;
      auto chunked = PrefillAll(runner.get(), &alloc2, g.prompt, chunk, &tables2);
      ASSERT_TRUE(chunked.ok()) << chunked.status();
      EXPECT_EQ(MaxAbsDiff(*whole, *chunked), 0.0f) << g.name << " chunk " << chunk;
    }
  }
}

TEST_F(CpuModelRunnerTest, ImagesAreNeverSplitByChunks) {
  const GoldenPrompt& mm = Golden("mm");
  ASSERT_FALSE(mm.prompt.media.empty());
  for (int32_t chunk : {1, 4, 15}) {
    int32_t begin = 0;
    for (int32_t end : cpu::ChunkEnds(mm.prompt, chunk)) {
      for (const MediaRun& run : mm.prompt.media) {
        if (!run.bidirectional()) continue;
        EXPECT_FALSE(begin > run.start && begin < run.end()) << chunk;
        EXPECT_FALSE(end > run.start && end < run.end()) << chunk;
      }
      begin = end;
    }
  }
}

TEST_F(CpuModelRunnerTest, ReleasedSlidingBlocksGiveIdenticalLogits) {
  // Block size 2 and window 8: by the end of the 24-token prompt most sliding blocks are released.
  for (const GoldenPrompt& g : *golden_) {
    auto runner = MakeRunner(2, /*block_size=*/2);
    LinearBlockAllocator alloc(runner->kv_spec());
    std::vector<std::vector<int32_t>> tables;
    auto kept = PrefillAll(runner.get(), &alloc, g.prompt, 3, &tables);
    ASSERT_TRUE(kept.ok()) << kept.status();
    LinearBlockAllocator alloc2(runner->kv_spec());
    std::vector<std::vector<int32_t>> tables2;
    auto released = PrefillAll(runner.get(), &alloc2, g.prompt, 3, &tables2,
                               /*release_outside_window=*/true);
    ASSERT_TRUE(released.ok()) << released.status();
    int n = std::count(tables2[0].begin(), tables2[0].end(), kReleasedBlock);
    EXPECT_GT(n, 3) << g.name;
    EXPECT_EQ(std::count(tables2[1].begin(), tables2[1].end(), kReleasedBlock), 0);
    EXPECT_EQ(MaxAbsDiff(*kept, *released), 0.0f) << g.name;
    // The golden still holds with released blocks.
    EXPECT_LT(cpu::MaxRowRelativeError(released->data(), g.logits.data(), g.prompt.size(), 512),
              kGoldenTolerance);
  }
}

TEST_F(CpuModelRunnerTest, ReleasedBlockInsideTheWindowIsRejected) {
  auto runner = MakeRunner(2, /*block_size=*/2);
  BatchPlan plan;
  SequencePlan sp;
  sp.start_pos = 10;
  sp.token_ids = {5};
  sp.block_tables = {std::vector<int32_t>(6), std::vector<int32_t>(6)};
  for (int i = 0; i < 6; ++i) sp.block_tables[0][i] = sp.block_tables[1][i] = i;
  sp.block_tables[0][0] = kReleasedBlock;  // Positions 0-1: outside the window of position 10.
  plan.seqs.push_back(sp);
  StepOutput out;
  EXPECT_TRUE(runner->Execute(plan, &out).ok());
  plan.seqs[0].block_tables[0][2] = kReleasedBlock;  // Positions 4-5: inside (10 - 4 < 8).
  absl::Status st = runner->Execute(plan, &out);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("released"), std::string::npos) << st;
}

TEST_F(CpuModelRunnerTest, BatchInvariance) {
  // The text prompt decoded step by step alone, and batched with two other sequences of other
  // lengths (the multimodal prompt mid-prefill, and a short text prefix), in one Execute per step.
  const GoldenPrompt& text = Golden("text");
  const GoldenPrompt& mm = Golden("mm");
  auto runner = MakeRunner();
  LinearBlockAllocator alloc(runner->kv_spec());
  std::vector<std::vector<int32_t>> alone_tables;
  auto alone = PrefillAll(runner.get(), &alloc, text.prompt, 5, &alone_tables);
  ASSERT_TRUE(alone.ok()) << alone.status();

  auto runner2 = MakeRunner(/*threads=*/1);  // Thread count must not matter either.
  LinearBlockAllocator alloc2(runner2->kv_spec());
  std::vector<std::vector<int32_t>> t_text, t_mm, t_short;
  Prompt short_prompt;
  short_prompt.token_ids.assign(text.prompt.token_ids.begin(), text.prompt.token_ids.begin() + 3);
  std::vector<float> batched;
  std::vector<int32_t> mm_ends = cpu::ChunkEnds(mm.prompt, 4);
  int32_t mm_begin = 0;
  std::vector<float> mm_logits;
  for (int32_t i = 0; i < text.prompt.size() || mm_begin < mm.prompt.size(); i += 5) {
    const int32_t end = std::min(text.prompt.size(), i + 5);
    BatchPlan plan;
    // Sequence 0: another request's chunk (multimodal), when any is left.
    size_t mm_index = static_cast<size_t>(-1);
    if (mm_begin < mm.prompt.size()) {
      int32_t mm_end = *std::upper_bound(mm_ends.begin(), mm_ends.end(), mm_begin);
      ASSERT_TRUE(alloc2.Grow(mm_end, &t_mm).ok());
      SequencePlan sp;
      sp.seq_id = 7;
      cpu::FillRows(mm.prompt, mm_begin, mm_end, &sp);
      sp.block_tables = t_mm;
      for (int32_t r = 0; r < mm_end - mm_begin; ++r) sp.logits_rows.push_back(r);
      mm_index = plan.seqs.size();
      plan.seqs.push_back(sp);
      mm_begin = mm_end;
    }
    // Sequence 1: the text prompt chunk, when any is left.
    size_t text_index = static_cast<size_t>(-1);
    if (i < end) {
      ASSERT_TRUE(alloc2.Grow(end, &t_text).ok());
      SequencePlan sp;
      sp.seq_id = 1;
      cpu::FillRows(text.prompt, i, end, &sp);
      sp.block_tables = t_text;
      for (int32_t r = 0; r < end - i; ++r) sp.logits_rows.push_back(r);
      text_index = plan.seqs.size();
      plan.seqs.push_back(sp);
    }
    // Sequence 2: a short prompt prefilled again each step (fresh blocks), no logits.
    t_short.clear();
    ASSERT_TRUE(alloc2.Grow(3, &t_short).ok());
    SequencePlan ss;
    ss.seq_id = 2;
    cpu::FillRows(short_prompt, 0, 3, &ss);
    ss.block_tables = t_short;
    plan.seqs.push_back(ss);
    StepOutput out;
    ASSERT_TRUE(runner2->Execute(plan, &out).ok());
    ASSERT_EQ(out.seqs.size(), plan.seqs.size());
    if (text_index != static_cast<size_t>(-1)) {
      batched.insert(batched.end(), out.seqs[text_index].logits.begin(),
                     out.seqs[text_index].logits.end());
    }
    if (mm_index != static_cast<size_t>(-1)) {
      mm_logits.insert(mm_logits.end(), out.seqs[mm_index].logits.begin(),
                       out.seqs[mm_index].logits.end());
    }
    EXPECT_TRUE(out.seqs.back().logits.empty());
  }
  EXPECT_EQ(MaxAbsDiff(*alone, batched), 0.0f);
  ASSERT_EQ(mm_logits.size(), mm.logits.size());
  EXPECT_LT(cpu::MaxRowRelativeError(mm_logits.data(), mm.logits.data(), mm.prompt.size(), 512),
            kGoldenTolerance);
}

TEST_F(CpuModelRunnerTest, LogitsOnlyForRequestedRows) {
  const GoldenPrompt& text = Golden("text");
  auto runner = MakeRunner();
  LinearBlockAllocator alloc(runner->kv_spec());
  BatchPlan plan;
  SequencePlan sp;
  cpu::FillRows(text.prompt, 0, text.prompt.size(), &sp);
  ASSERT_TRUE(alloc.Grow(text.prompt.size(), &sp.block_tables).ok());
  sp.logits_rows = {23, 4};
  plan.seqs.push_back(sp);
  StepOutput out;
  ASSERT_TRUE(runner->Execute(plan, &out).ok());
  ASSERT_EQ(out.seqs[0].logits.size(), 2u * 512);
  EXPECT_LT(cpu::MaxRowRelativeError(&out.seqs[0].logits[0], &text.logits[23 * 512], 1, 512),
            kGoldenTolerance);
  EXPECT_LT(cpu::MaxRowRelativeError(&out.seqs[0].logits[512], &text.logits[4 * 512], 1, 512),
            kGoldenTolerance);
}

TEST_F(CpuModelRunnerTest, GreedySampling) {
  const GoldenPrompt& text = Golden("text");
  auto runner = MakeRunner();
  LinearBlockAllocator alloc(runner->kv_spec());
  std::vector<std::vector<int32_t>> tables;
  std::vector<int32_t> prompt = text.prompt.token_ids, output;
  int32_t pos = 0;
  std::vector<int32_t> next = prompt;
  for (int step = 0; step < 6; ++step) {
    BatchPlan plan;
    SequencePlan sp;
    sp.start_pos = pos;
    sp.token_ids = next;
    ASSERT_TRUE(alloc.Grow(pos + static_cast<int32_t>(next.size()), &tables).ok());
    sp.block_tables = tables;
    sp.sample = true;
    sp.sampling.temperature = 0.0f;
    sp.sampling_context.prompt_tokens = &prompt;
    sp.sampling_context.output_tokens = &output;
    sp.sampling_context.step = step;
    plan.seqs.push_back(sp);
    StepOutput out;
    ASSERT_TRUE(runner->Execute(plan, &out).ok());
    EXPECT_TRUE(out.seqs[0].logits.empty());
    pos += static_cast<int32_t>(next.size());
    output.push_back(out.seqs[0].sampled.token);
    next = {out.seqs[0].sampled.token};
  }
  EXPECT_EQ(output, std::vector<int32_t>(text.greedy_ids.begin(), text.greedy_ids.begin() + 6));
}

TEST_F(CpuModelRunnerTest, EmptyPlanIsANoOp) {
  auto runner = MakeRunner();
  StepOutput out;
  out.seqs.resize(3);
  ASSERT_TRUE(runner->Execute(BatchPlan(), &out).ok());
  EXPECT_TRUE(out.seqs.empty());
  EXPECT_EQ(runner->Execute(BatchPlan(), nullptr).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CpuModelRunnerTest, MalformedPlansAreInvalidArgument) {
  auto runner = MakeRunner();
  auto make = [] {
    SequencePlan sp;
    sp.start_pos = 0;
    sp.token_ids = {2, 5, 7};
    sp.block_tables = {{0}, {0}};
    return sp;
  };
  struct Case {
    std::function<void(SequencePlan&)> edit;
    const char* expect;
  };
  static const MediaItem image = [] {
    MediaItem m;
    m.kind = MediaKind::kImage;
    m.num_rows = 1;
    m.rows.assign(kPatchValues, 0.5f);
    m.positions = {40, 0};
    return m;
  }();
  std::vector<Case> cases = {
      {[](SequencePlan& s) { s.token_ids.clear(); }, "no new rows"},
      {[](SequencePlan& s) { s.token_ids[1] = 512; }, "outside the vocabulary"},
      {[](SequencePlan& s) { s.token_ids[1] = -3; }, "outside the vocabulary"},
      {[](SequencePlan& s) { s.block_tables.pop_back(); }, "1 block tables for 2"},
      {[](SequencePlan& s) { s.block_tables[1][0] = 9999; }, "the pool has 256"},
      {[](SequencePlan& s) { s.start_pos = 3; }, "need 2"},
      {[](SequencePlan& s) { s.logits_rows = {3}; }, "logits row 3"},
      {[](SequencePlan& s) {
         s.bidirectional = {{2, 5}};
       },
       "not inside the new rows"},
      {[](SequencePlan& s) {
         s.media = {{nullptr, 0, 0, 1}};
       },
       "without an item"},
      {[](SequencePlan& s) {
         s.media = {{&image, 0, 2, 2}};
       },
       "outside the 3 new rows"},
      {[](SequencePlan& s) {
         s.media = {{&image, 0, 1, 1}};
       },
       "outside the model's position"},
  };
  for (const auto& c : cases) {
    BatchPlan plan;
    plan.seqs.push_back(make());
    c.edit(plan.seqs[0]);
    StepOutput out;
    absl::Status st = runner->Execute(plan, &out);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.expect;
    EXPECT_NE(st.message().find(c.expect), std::string::npos) << st;
  }
}

}  // namespace
}  // namespace tessera::runtime

namespace tessera::runtime {
namespace {

// Rewrites the fixture checkpoint with every BF16 tensor stored as F32 (same values).
std::string WriteF32Copy(const std::string& src_dir) {
  auto f = SafetensorsFile::Open(src_dir + "/model.safetensors");
  EXPECT_TRUE(f.ok());
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& [name, view] : (*f)->tensors()) {
    auto values = ToFloatVector(view);
    EXPECT_TRUE(values.ok());
    const size_t begin = data.size();
    data.append(reinterpret_cast<const char*>(values->data()), values->size() * 4);
    header[name] = {
        {"dtype", "F32"}, {"shape", view.shape}, {"data_offsets", {begin, data.size()}}};
  }
  const std::string dir = std::string(std::getenv("TEST_TMPDIR")) + "/f32_model";
  EXPECT_EQ(std::system(("mkdir -p " + dir + " && cp " + src_dir + "/config.json " + dir).c_str()),
            0);
  const std::string h = header.dump();
  const uint64_t n = h.size();
  std::ofstream out(dir + "/model.safetensors", std::ios::binary);
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << h << data;
  return dir;
}

TEST(CpuModelRunnerF32Test, F32WeightsMatchTheGolden) {
  const std::string dir = WriteF32Copy(FixtureDir());
  auto model = LoadModel(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->weights->layers[0].q_proj.type, WeightMatrix::Type::kF32);
  EXPECT_TRUE((*model)->weights->bf16_constants);
  CpuRunnerOptions o;
  o.num_blocks_sliding = o.num_blocks_global = 64;
  auto runner = CreateCpuModelRunner(*model, o);
  ASSERT_TRUE(runner.ok());
  auto golden = cpu::ReadGolden(FixtureDir() + "/golden.safetensors", (*model)->config);
  ASSERT_TRUE(golden.ok());
  for (const GoldenPrompt& g : *golden) {
    auto res = CheckGoldenPrompt(runner->get(), g, 7);
    ASSERT_TRUE(res.ok()) << res.status();
    // Same values, same config (dtype bfloat16): the same logits as the bf16 checkpoint.
    EXPECT_LT(res->prefill_error, kGoldenTolerance) << g.name;
    EXPECT_LT(res->decode_error, kGoldenTolerance) << g.name;
    EXPECT_EQ(res->greedy_matched, res->greedy_total) << g.name;
  }
}

}  // namespace
}  // namespace tessera::runtime

namespace tessera::runtime {
namespace {

// `w` with every matrix replaced by an owned F32 copy of its dequantized values (bit-identical to
// ggml's dequantization): the same model, without the int8 activation quantization.
std::unique_ptr<ModelWeights> DequantizedCopy(const ModelWeights& w) {
  auto out = std::make_unique<ModelWeights>();
  auto convert = [&](const WeightMatrix& m) {
    if (m.empty()) return m;
    std::unique_ptr<float[]> buf(new float[m.rows * m.cols]);
    for (int64_t r = 0; r < m.rows; ++r) m.RowToFloat(r, buf.get() + r * m.cols);
    WeightMatrix f{WeightMatrix::Type::kF32, buf.get(), m.rows, m.cols};
    out->owned.push_back(std::move(buf));
    return f;
  };
  out->embed_tokens = convert(w.embed_tokens);
  out->bf16_constants = w.bf16_constants;
  out->embed_scale = w.embed_scale;
  out->final_norm = w.final_norm;
  for (const LayerWeights& l : w.layers) {
    LayerWeights c = l;
    for (WeightMatrix* m :
         {&c.q_proj, &c.k_proj, &c.v_proj, &c.o_proj, &c.gate_proj, &c.up_proj, &c.down_proj}) {
      *m = convert(*m);
    }
    out->layers.push_back(std::move(c));
  }
  return out;
}

std::vector<float> PrefillLogits(const std::shared_ptr<const LoadedModel>& model,
                                 const Prompt& prompt, int32_t chunk,
                                 cpu::KernelPath path = cpu::DefaultKernelPath()) {
  CpuRunnerOptions o;
  o.kernel_path = path;
  o.block_size = 8;
  o.num_blocks_sliding = 64;
  o.num_blocks_global = 64;
  o.num_threads = 2;
  auto runner = CreateCpuModelRunner(model, o);
  EXPECT_TRUE(runner.ok()) << runner.status();
  LinearBlockAllocator alloc((*runner)->kv_spec());
  std::vector<std::vector<int32_t>> tables;
  auto logits = PrefillAll(runner->get(), &alloc, prompt, chunk, &tables);
  EXPECT_TRUE(logits.ok()) << logits.status();
  return logits.ok() ? *logits : std::vector<float>();
}

// llama.cpp's quantized GGUF fixtures (testdata/gguf/gemma4-quant-s: hidden 256, every matrix
// quantized) through the integer kernels, against the same weights dequantized to fp32 through the
// fp32 kernels. The only difference is the activations' rounding to int8 before every matmul
// (ggml's Q8_0 / Q8_K: at most half a step, 1/254 of the block's largest value): ~2.3e-3 RMS of
// a block's range per value, ~2e-3 relative on each of the model's 42 projections and the logits,
// compounding like a random walk to ~1.5e-2 RMS, and up to ~3x that at a row's worst logit: 5e-2.
// Measured 1.8e-2 (Q4_0) to 3.3e-2 (Q8_0). For scale: llama.cpp's own Q8_0 file (weights and
// activations in int8) is 4.1e-2 from its f32 file (gguf/gemma4-quant-s/deviation.md), i.e. about
// sqrt(2) times the activation part alone. Chunked and whole prefills must agree exactly (the
// canonical sums do not depend on the batch).
TEST(CpuModelRunnerQuantTest, QuantizedWeightsAgreeWithTheirDequantizedCopy) {
  const std::string dir = tessera::testing::FixturesDir() + "/gguf/gemma4-quant-s";
  Prompt prompt;
  std::ifstream ids(tessera::testing::FixturesDir() + "/gguf/tools/prompt_ids.txt");
  for (int32_t id; ids >> id;) prompt.token_ids.push_back(id);
  ASSERT_EQ(prompt.size(), 40);
  for (const char* type : {"Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"}) {
    auto quantized = LoadModel(dir + "/gemma4-quant-s-" + type + ".gguf");
    ASSERT_TRUE(quantized.ok()) << quantized.status();
    auto dequantized = std::make_shared<LoadedModel>();
    dequantized->config = (*quantized)->config;
    dequantized->weights = DequantizedCopy(*(*quantized)->weights);
    const int32_t vocab = (*quantized)->config.text.vocab_size;
    const std::vector<float> q = PrefillLogits(*quantized, prompt, 40);
    const std::vector<float> q_chunked = PrefillLogits(*quantized, prompt, 3);
    const std::vector<float> f = PrefillLogits(dequantized, prompt, 40);
    ASSERT_EQ(q.size(), f.size());
    EXPECT_EQ(q, q_chunked) << type;
    // Every matrix of these files is quantized, and the quantized kernels are bit-identical on
    // every path: so are the logits.
    for (cpu::KernelPath path : cpu::SupportedKernelPaths()) {
      EXPECT_EQ(PrefillLogits(*quantized, prompt, 7, path), q)
          << type << " on the " << cpu::KernelPathName(path) << " path";
    }
    const float err = cpu::MaxRowRelativeError(q.data(), f.data(), prompt.size(), vocab);
    EXPECT_LT(err, 5e-2f) << type;
    EXPECT_GT(err, 0.0f) << type << ": the activations were not quantized";
    std::printf("%s: max row relative deviation from the dequantized fp32 model %.3g\n", type, err);
  }
}

}  // namespace
}  // namespace tessera::runtime
