#include "runtime/cuda/memory_plan.h"

#include <cstdio>

#include "gtest/gtest.h"
#include "runtime/cuda/gemma4_configs.h"
#include "runtime/cuda/quant_mix.h"

namespace tessera::runtime::cuda {
namespace {

ModelConfig Config12B() {
  auto c = ParseModelConfig(Gemma4_12BConfigJson());
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

// The sampler's workspace per row (sampling.cuh RowWorkspaceBytes): the adjusted logits (4 bytes
// each), a mark bit per entry and the fp64 tile sums, about 4.2 bytes per vocabulary entry.
int64_t SamplerBytes(int64_t rows, int64_t vocab) { return rows * (vocab * 42 / 10); }

// The server's defaults (server/main.cc): 256 sequences, a 2048-token step budget.
CudaRunnerOptions ServerOptions(int32_t context) {
  CudaRunnerOptions o;
  o.max_step_seqs = 256;
  o.max_step_tokens = 2048;
  o.max_seq_len = context;
  return o;
}

TEST(MemoryPlanTest, KvGroupsOfThe12B) {
  // cuda_runner_options.h: "Gemma 4 12B at 8k tokens: 65 sliding blocks of 5 MiB and 512 global
  // ones of 256 KiB per sequence" — 40 layers x K, V x 8 heads x 16 x 256 x 2 bytes, and
  // 8 layers x K, V x 1 head x 16 x 512 x 2 bytes.
  const KvCacheSpec spec = KvGroups(Config12B(), 16);
  ASSERT_EQ(spec.groups.size(), 2u);
  EXPECT_EQ(spec.groups[0].name, "sliding");
  EXPECT_EQ(spec.groups[0].bytes_per_block, 5 << 20);
  EXPECT_EQ(spec.groups[0].window, 1024);
  EXPECT_EQ(BlocksPerSequence(spec.groups[0], 8192), 65);
  EXPECT_EQ(BlocksPerSequence(spec.groups[0], 100), 8);
  EXPECT_EQ(spec.groups[1].name, "global");
  EXPECT_EQ(spec.groups[1].bytes_per_block, 256 << 10);
  EXPECT_EQ(BlocksPerSequence(spec.groups[1], 8192), 512);
}

TEST(MemoryPlanTest, KvBudgetSplitsSoBothGroupsRunOutTogether) {
  const KvCacheSpec spec = KvGroups(Config12B(), 16);
  CudaRunnerOptions o = ServerOptions(32768);
  // One 8k sequence costs 65 x 5 MiB + 512 x 256 KiB = 453 MiB: ten of them.
  auto kv = SplitKvBudget(spec, int64_t{4530} << 20, o);
  ASSERT_TRUE(kv.ok()) << kv.status();
  EXPECT_EQ(kv->groups[0].num_blocks, 650);
  EXPECT_EQ(kv->groups[1].num_blocks, 5120);
  // An explicit count comes off the budget first (with its spare block).
  o.num_blocks_sliding = 100;
  kv = SplitKvBudget(spec, int64_t{4530} << 20, o);
  ASSERT_TRUE(kv.ok()) << kv.status();
  EXPECT_EQ(kv->groups[0].num_blocks, 100);
  EXPECT_EQ(kv->groups[1].num_blocks, (int64_t{4530} - 101 * 5) * 4);
  // A pool that cannot hold one step's chunk (2048 tokens: 129 global blocks) is refused.
  o = ServerOptions(32768);
  kv = SplitKvBudget(spec, int64_t{40} << 20, o);
  EXPECT_EQ(kv.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(kv.status().message().find("--gpu_memory_fraction"), std::string::npos);
}

TEST(MemoryPlanTest, StepBuffersOfTheTinyRunnerTest) {
  // cuda_model_runner_test.cc's options on gemma4-tiny's shape (hidden 64, intermediate 128,
  // vocab 512, 4 heads; sliding 2 x 16, global 1 x 32 with K = V).
  auto c = ParseModelConfig(Gemma4TinyShapeConfigJson());
  ASSERT_TRUE(c.ok()) << c.status();
  CudaRunnerOptions o;
  o.max_step_tokens = 128;
  o.max_step_seqs = 8;
  o.max_seq_len = 512;
  o.block_size = 4;
  const StepBufferBytes b = PlanStepBuffers(*c, o, 2, 132, 1000, 0);
  EXPECT_EQ(b.h, 128 * 64 * 2);
  EXPECT_EQ(b.qkv, 128 * (4 * 32 + 32) * 2);  // The global layer's fused Q + K.
  EXPECT_EQ(b.attn, 128 * 4 * 32 * 2);
  EXPECT_EQ(b.gu, 128 * 256 * 2);
  EXPECT_EQ(b.logits, 64 * 512 * 4);  // 64 logits rows (the chunk) > 8 sequences.
  EXPECT_EQ(b.attention_workspace_floats, (2 * 132 + 8 + 1) * 4 * 34);
  EXPECT_EQ(b.max_table, 128);
  EXPECT_EQ(b.dequant_scratch, 0);  // No quantized weights.
  // Every metadata array starts 256-byte aligned and they do not overlap.
  const std::vector<int64_t> at = {b.meta.ids,         b.meta.positions,  b.meta.row_start,
                                   b.meta.start_pos,   b.meta.bidi_begin, b.meta.bidi_end,
                                   b.meta.sample_rows, b.meta.gather,     b.meta.slots[0],
                                   b.meta.tables[0],   b.meta.slots[1],   b.meta.tables[1]};
  for (size_t i = 0; i < at.size(); ++i) {
    EXPECT_EQ(at[i] % 256, 0) << i;
    if (i > 0) {
      EXPECT_GT(at[i], at[i - 1]) << i;
    }
  }
  EXPECT_GE(b.meta.bytes, b.meta.tables[1] + 8 * 128 * 4);
  // Quantized weights add a dequantize slab and the q8_1 activations of 64 rows.
  const StepBufferBytes q = PlanStepBuffers(*c, o, 2, 132, 1000, 128);
  EXPECT_EQ(q.dequant_scratch, int64_t{64} << 20);
  EXPECT_EQ(q.q8_1_scratch, 64 * 4 * 40);
  EXPECT_EQ(q.total(), b.total() + q.dequant_scratch + q.q8_1_scratch);
}

// Issue 13: "A Q4_K_M Gemma 4 12B must plan to fit a 16 GB GPU with a 32k context."
TEST(MemoryPlanTest, Q4KM12BFitsA16GBGpuWithA32kContext) {
  const ModelConfig c = Config12B();
  const ModelFormats q4km = LlamaQuantizeFormats(c, QuantMix::kQ4_K_M);
  const int64_t weights = DeviceWeightBytes(c, q4km);
  ASSERT_EQ(WidestQuantizedCols(c, q4km), 15360);  // ffn_down's intermediate columns.
  const int64_t gpu = 16'000'000'000;  // "16 GB" cards report 16 GiB; the smaller reading.
  const CudaRunnerOptions o = ServerOptions(32768);
  // An RTX 4080-class card has 76 SMs; a larger count only grows the split workspace.
  const MemoryPlan p = PlanMemory(c, weights, gpu, o, 132, SamplerBytes(256, 262144), 15360);
  std::printf("%s\n", p.Describe().c_str());
  ASSERT_TRUE(p.status.ok()) << p.status;
  EXPECT_EQ(p.longest_sequence, 32768);  // One sequence reaches the whole context.
  EXPECT_GE(p.sequences_8k, 8);
  // Everything adds up within the card.
  EXPECT_LE(p.reserve_bytes + p.weight_bytes + p.step_buffer_bytes + p.kv_bytes, gpu);
  // One 32k sequence alone: 65 sliding blocks and 2048 global ones.
  EXPECT_GE(p.kv.groups[1].num_blocks, 2048);
  EXPECT_GE(p.kv.groups[0].num_blocks, 65);

  // With the model's whole 262144-token context allowed, the plan still fits but says how far one
  // sequence can go (the global pool is the limit).
  const MemoryPlan full =
      PlanMemory(c, weights, gpu, ServerOptions(262144), 132, SamplerBytes(256, 262144), 15360);
  ASSERT_TRUE(full.status.ok()) << full.status;
  EXPECT_GE(full.longest_sequence, 32768);
  EXPECT_EQ(full.longest_sequence, int64_t{full.kv.groups[1].num_blocks} * 16);
  std::printf("262144-token context: %s\n", full.Describe().c_str());

  // bf16 (24 GB of weights) does not fit, and says what is short.
  const int64_t bf16 = DeviceWeightBytes(c, LlamaQuantizeFormats(c, QuantMix::kBf16));
  const MemoryPlan no = PlanMemory(c, bf16, gpu, o, 132, SamplerBytes(256, 262144), 0);
  EXPECT_EQ(no.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(no.Describe().find("does not fit"), std::string::npos);
}

TEST(MemoryPlanTest, AFixedKvBudgetIsUsedAsIs) {
  const ModelConfig c = Config12B();
  const int64_t weights = DeviceWeightBytes(c, LlamaQuantizeFormats(c, QuantMix::kQ4_K_M));
  CudaRunnerOptions o = ServerOptions(32768);
  o.kv_memory_bytes = int64_t{4530} << 20;
  const MemoryPlan p = PlanMemory(c, weights, int64_t{80} << 30, o, 132, 0, 15360);
  ASSERT_TRUE(p.status.ok()) << p.status;
  EXPECT_EQ(p.kv_budget_bytes, o.kv_memory_bytes);
  EXPECT_EQ(p.sequences_8k, 10);
  EXPECT_EQ(p.bytes_per_8k_sequence, int64_t{453} << 20);
}

}  // namespace
}  // namespace tessera::runtime::cuda
