// The CUDA runner's step planning on tables of plans and the shapes they must give (no GPU, no
// emulation): graph padding and widths, GPU/CPU sampling, gathered sample rows, host logits rows,
// penalty layout, and the per-row metadata (ids, slots, block tables, spans, padding rows).
#include "runtime/cuda/step_planner.h"

#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/sampler.h"

namespace tessera::runtime::cuda {
namespace {

constexpr int32_t kBlock = 4;
constexpr int32_t kSpare = 100;  // num_blocks of each pool: the spare block's id.
constexpr int32_t kRows = 256, kSeqs = 8, kWidth = 128;

// gemma4-tiny's KV groups (sliding window 8, 2 KV heads of 16; global 1 KV head of 32).
StepPlannerConfig TinyConfig() {
  StepPlannerConfig c;
  KvGroupSpec sliding{"sliding", 5, 2, 16, 8, kBlock, kSpare, 0};
  KvGroupSpec global{"global", 1, 1, 32, 0, kBlock, kSpare, 0};
  c.spec.groups = {sliding, global};
  c.vocab_size = 512;
  c.num_q_heads = 4;
  c.max_table_width = kWidth;
  c.max_step_seqs = kSeqs;
  c.graphs = true;
  c.max_graph_batch = kSeqs;
  c.num_sms = 132;
  c.attention_workspace_floats = int64_t{1} << 30;
  return c;
}

// Host arrays of the runner's capacities.
struct Arrays {
  std::vector<int32_t> ids = std::vector<int32_t>(kRows, -7), positions = ids, bidi_begin = ids,
                       bidi_end = ids, row_start = std::vector<int32_t>(kSeqs + 1, -7),
                       start_pos = row_start;
  std::vector<std::vector<int64_t>> slots{2, std::vector<int64_t>(kRows, -7)};
  std::vector<std::vector<int32_t>> tables{2, std::vector<int32_t>(kSeqs* kWidth, -7)};
  std::vector<SampleRowParams> sample_rows = std::vector<SampleRowParams>(kSeqs);
  std::vector<PenaltyEntry> penalties;

  explicit Arrays(int64_t penalty_capacity = 1000) : penalties(penalty_capacity) {}
  StepArrays View() {
    StepArrays a;
    a.ids = ids.data();
    a.positions = positions.data();
    a.row_start = row_start.data();
    a.start_pos = start_pos.data();
    a.bidi_begin = bidi_begin.data();
    a.bidi_end = bidi_end.data();
    for (auto& s : slots) a.slots.push_back(s.data());
    for (auto& t : tables) a.tables.push_back(t.data());
    a.sample_rows = sample_rows.data();
    a.penalties = penalties.data();
    a.penalty_capacity = static_cast<int64_t>(penalties.size());
    return a;
  }
};

// A sequence of `n` rows at `start`, blocks 10 * (seq + 1) + i in both groups, sampled greedily.
SequencePlan Seq(int32_t seq, int32_t start, int32_t n) {
  SequencePlan sp;
  sp.seq_id = seq;
  sp.start_pos = start;
  for (int32_t i = 0; i < n; ++i) sp.token_ids.push_back(20 + seq * 10 + i);
  const int32_t blocks = (start + n + kBlock - 1) / kBlock;
  sp.block_tables.resize(2);
  for (int32_t b = 0; b < blocks; ++b) {
    for (auto& t : sp.block_tables) t.push_back(10 * (seq + 1) + b);
  }
  sp.sample = true;
  sp.sampling.temperature = 0.0f;
  return sp;
}

struct Expected {
  int32_t seqs, rows, table_width;
  bool decode, graph;
  int32_t sample_rows;
  bool gathered;
  std::vector<int32_t> gpu_sample_seqs;
  std::vector<int32_t> sample_src;
  std::vector<bool> cpu_sample;
  // (seq, step row, slot) of each host logits row.
  std::vector<std::vector<int32_t>> host_rows;
};

struct Case {
  std::string name;
  std::function<void(StepPlannerConfig*)> config;
  std::function<BatchPlan()> plan;
  Expected want;
};

TEST(StepPlannerTest, ShapesOfPlans) {
  const std::vector<Case> cases = {
      {"decode of 3 pads to the graph batch 4 and table width 16",
       nullptr,
       [] {
         return BatchPlan{{Seq(0, 10, 1), Seq(1, 20, 1), Seq(2, 30, 1)}};
       },
       {4, 4, 16, true, true, 4, false, {0, 1, 2}, {}, {false, false, false}, {}}},
      {"without graphs the decode keeps its batch and longest table (31 positions: 8 blocks)",
       [](StepPlannerConfig* c) { c->graphs = false; },
       [] {
         return BatchPlan{{Seq(0, 10, 1), Seq(1, 20, 1), Seq(2, 30, 1)}};
       },
       {3, 3, 8, true, false, 3, false, {0, 1, 2}, {}, {false, false, false}, {}}},
      {"a batch above max_graph_batch runs eagerly",
       [](StepPlannerConfig* c) { c->max_graph_batch = 2; },
       [] {
         return BatchPlan{{Seq(0, 10, 1), Seq(1, 20, 1), Seq(2, 30, 1)}};
       },
       {3, 3, 8, true, false, 3, false, {0, 1, 2}, {}, {false, false, false}, {}}},
      {"a 69-position table rounds up to width 32",
       nullptr,
       [] { return BatchPlan{{Seq(0, 68, 1)}}; },
       {1, 1, 32, true, true, 1, false, {0}, {}, {false}, {}}},
      {"a padded batch past max_step_seqs is not padded",
       [](StepPlannerConfig* c) { c->max_step_seqs = 5; },
       [] {
         return BatchPlan{{Seq(0, 1, 1), Seq(1, 1, 1), Seq(2, 1, 1), Seq(3, 1, 1), Seq(4, 1, 1)}};
       },
       {5,
        5,
        16,
        true,
        true,
        5,
        false,
        {0, 1, 2, 3, 4},
        {},
        {false, false, false, false, false},
        {}}},
      {"a prefill chunk beside a decode row: eager, sampled rows gathered from each last row",
       nullptr,
       [] {
         return BatchPlan{{Seq(0, 0, 5), Seq(1, 7, 1)}};
       },
       {2, 6, 2, false, false, 2, true, {0, 1}, {4, 5}, {false, false}, {}}},
      {"top_logprobs samples on the CPU from a downloaded row",
       nullptr,
       [] {
         BatchPlan p{{Seq(0, 3, 1), Seq(1, 5, 1)}};
         p.seqs[1].sampling.top_logprobs = 2;
         return p;
       },
       {2, 2, 2, true, false, 1, true, {0}, {0}, {false, true}, {{1, 1, -1}}}},
      {"a constrained-decoding mask samples on the CPU from a downloaded row",
       nullptr,
       [] {
         static const uint64_t kMask[1] = {~uint64_t{0}};
         BatchPlan p{{Seq(0, 3, 1), Seq(1, 5, 1)}};
         p.seqs[1].sampling_context.allowed_tokens = kMask;
         p.seqs[1].sampling_context.allowed_tokens_vocab = 64;
         return p;
       },
       {2, 2, 2, true, false, 1, true, {0}, {0}, {false, true}, {{1, 1, -1}}}},
      {"logits rows come back to the host, in the sequence's order",
       nullptr,
       [] {
         BatchPlan p{{Seq(0, 0, 2), Seq(1, 0, 3)}};
         p.seqs[1].logits_rows = {0, 2};
         return p;
       },
       {2, 5, 1, false, false, 2, true, {0, 1}, {1, 4}, {false, false}, {{1, 2, 0}, {1, 4, 1}}}},
      {"a decode row that is not sampled: eager and gathered",
       nullptr,
       [] {
         BatchPlan p{{Seq(0, 3, 1), Seq(1, 5, 1)}};
         p.seqs[0].sample = false;
         return p;
       },
       {2, 2, 2, true, false, 1, true, {1}, {1}, {false, false}, {}}},
      {"a bidirectional span runs eagerly",
       nullptr,
       [] {
         BatchPlan p{{Seq(0, 0, 6)}};
         p.seqs[0].bidirectional = {{1, 4}};
         return p;
       },
       {1, 6, 2, false, false, 1, true, {0}, {5}, {false}, {}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    StepPlannerConfig config = TinyConfig();
    if (c.config) c.config(&config);
    StepPlanner planner(config);
    Arrays arrays;
    const BatchPlan plan = c.plan();
    const StepShape& s = planner.Plan(plan, arrays.View());
    const Expected& w = c.want;
    EXPECT_EQ(s.plan_seqs, static_cast<int32_t>(plan.seqs.size()));
    EXPECT_EQ(s.seqs, w.seqs);
    EXPECT_EQ(s.rows, w.rows);
    EXPECT_EQ(s.table_width, w.table_width);
    EXPECT_EQ(s.decode, w.decode);
    EXPECT_EQ(s.graph, w.graph);
    EXPECT_EQ(s.sample_rows, w.sample_rows);
    EXPECT_EQ(s.gathered, w.gathered);
    EXPECT_EQ(s.gpu_sample_seqs, w.gpu_sample_seqs);
    EXPECT_EQ(s.sample_src, w.sample_src);
    EXPECT_EQ(s.cpu_sample, w.cpu_sample);
    std::vector<std::vector<int32_t>> host;
    for (const HostLogitsRow& r : s.host_rows) host.push_back({r.seq, r.step_row, r.slot});
    EXPECT_EQ(host, w.host_rows);
    // Row starts follow the rows of each run sequence.
    int32_t row = 0;
    for (int32_t si = 0; si < s.seqs; ++si) {
      EXPECT_EQ(arrays.row_start[si], row);
      EXPECT_EQ(s.seq_row0[si], row);
      row += si < s.plan_seqs ? static_cast<int32_t>(plan.seqs[si].token_ids.size()) : 1;
    }
    EXPECT_EQ(arrays.row_start[s.seqs], s.rows);
  }
}

TEST(StepPlannerTest, RowMetadataOfAChunkWithMediaAndASpan) {
  StepPlanner planner(TinyConfig());
  Arrays arrays;
  MediaItem item;
  BatchPlan plan{{Seq(0, 2, 6), Seq(1, 9, 1)}};
  plan.seqs[0].media = {MediaRows{&item, 0, 1, 3}};  // Rows 1..3 (positions 3..5).
  plan.seqs[0].bidirectional = {{3, 6}};
  const StepShape& s = planner.Plan(plan, arrays.View());
  EXPECT_TRUE(s.bidi);
  EXPECT_FALSE(s.decode);
  EXPECT_EQ(s.max_rows_per_seq, 6);
  EXPECT_EQ(s.max_media_rows, 3);
  EXPECT_EQ(std::vector<int32_t>(arrays.ids.begin(), arrays.ids.begin() + 7),
            std::vector<int32_t>({20, -1, -1, -1, 24, 25, 30}));
  EXPECT_EQ(std::vector<int32_t>(arrays.positions.begin(), arrays.positions.begin() + 7),
            std::vector<int32_t>({2, 3, 4, 5, 6, 7, 9}));
  EXPECT_EQ(std::vector<int32_t>(arrays.bidi_begin.begin(), arrays.bidi_begin.begin() + 7),
            std::vector<int32_t>({0, 3, 3, 3, 0, 0, 0}));
  EXPECT_EQ(std::vector<int32_t>(arrays.bidi_end.begin(), arrays.bidi_end.begin() + 7),
            std::vector<int32_t>({0, 6, 6, 6, 0, 0, 0}));
  EXPECT_EQ(arrays.start_pos[0], 2);
  EXPECT_EQ(arrays.start_pos[1], 9);
  // Slot = block * block_size + position % block_size: sequence 0's blocks are 10, 11, ...
  EXPECT_EQ(std::vector<int64_t>(arrays.slots[0].begin(), arrays.slots[0].begin() + 7),
            std::vector<int64_t>({42, 43, 44, 45, 46, 47, 89}));
  // Width 3 (sequence 1 covers 10 positions): sequence 0's 2 blocks, then the spare block.
  EXPECT_EQ(s.table_width, 3);
  EXPECT_EQ(std::vector<int32_t>(arrays.tables[1].begin(), arrays.tables[1].begin() + 6),
            std::vector<int32_t>({10, 11, kSpare, 20, 21, 22}));
}

TEST(StepPlannerTest, GraphPaddingRowsReadTheSpareBlockAndWriteNothing) {
  StepPlanner planner(TinyConfig());
  Arrays arrays;
  BatchPlan plan{{Seq(0, 10, 1), Seq(1, 20, 1), Seq(2, 30, 1)}};
  plan.seqs[1].block_tables[0][0] = kReleasedBlock;  // Released sliding block: never read.
  plan.seqs[0].sampling.temperature = 0.7f;
  plan.seqs[0].sampling.seed = 99;
  plan.seqs[0].sampling_context.step = 5;
  const StepShape& s = planner.Plan(plan, arrays.View());
  ASSERT_TRUE(s.graph);
  ASSERT_EQ(s.seqs, 4);
  EXPECT_EQ(arrays.ids[3], 0);
  EXPECT_EQ(arrays.positions[3], 0);
  EXPECT_EQ(arrays.start_pos[3], 0);
  for (int g = 0; g < 2; ++g) {
    EXPECT_EQ(arrays.slots[g][3], -1);
    for (int j = 0; j < 16; ++j) EXPECT_EQ(arrays.tables[g][3 * 16 + j], kSpare);
    // Entries past a table and released ones point at the spare block too.
    EXPECT_EQ(arrays.tables[g][0 * 16 + 2], 12);
    EXPECT_EQ(arrays.tables[g][0 * 16 + 3], kSpare);
  }
  EXPECT_EQ(arrays.tables[0][1 * 16 + 0], kSpare);
  EXPECT_EQ(arrays.tables[1][1 * 16 + 0], 20);
  // Sample rows: the plan's parameters, then greedy padding.
  EXPECT_FLOAT_EQ(arrays.sample_rows[0].temperature, 0.7f);
  EXPECT_EQ(arrays.sample_rows[0].uniform, UniformForStep(99, 5));
  EXPECT_EQ(arrays.sample_rows[3].temperature, 0.0f);
}

TEST(StepPlannerTest, DecodeSplitsFollowTheKeysEachGroupReads) {
  StepPlannerConfig config = TinyConfig();
  config.graphs = false;
  {
    StepPlanner planner(config);
    Arrays arrays;
    // 2001 keys: the sliding group reads its window of 8 (one split), the global group splits
    // the 2001 keys into 7 of >= 256 (ChooseDecodeSplits).
    const StepShape& s = planner.Plan(BatchPlan{{Seq(0, 2000, 1)}}, arrays.View());
    EXPECT_EQ(s.splits, std::vector<int32_t>({1, 7}));
  }
  {
    // A workspace too small for the split falls back to one split.
    config.attention_workspace_floats = 10;
    StepPlanner planner(config);
    Arrays arrays;
    const StepShape& s = planner.Plan(BatchPlan{{Seq(0, 2000, 1)}}, arrays.View());
    EXPECT_EQ(s.splits, std::vector<int32_t>({1, 1}));
  }
  {
    StepPlanner planner(config);
    Arrays arrays;
    const StepShape& s = planner.Plan(BatchPlan{{Seq(0, 0, 3)}}, arrays.View());
    EXPECT_EQ(s.splits, std::vector<int32_t>({1, 1}));  // Not decode.
  }
}

TEST(StepPlannerTest, PenaltyEntriesAndOverflowToTheCpu) {
  StepPlannerConfig config = TinyConfig();
  StepPlanner planner(config);
  Arrays arrays(/*penalty_capacity=*/6);
  const std::vector<int32_t> prompt0 = {5, 7, 5, 600};  // 600: outside the vocabulary, ignored.
  const std::vector<int32_t> output0 = {7, 9};
  std::vector<int32_t> prompt1;
  for (int32_t t = 100; t < 110; ++t) prompt1.push_back(t);
  BatchPlan plan{{Seq(0, 10, 1), Seq(1, 10, 1), Seq(2, 10, 1), Seq(3, 10, 1)}};
  // Sequence 0: repetition penalty (prompt and output), one ban: 4 entries.
  plan.seqs[0].sampling.repetition_penalty = 1.2f;
  plan.seqs[0].sampling_context.prompt_tokens = &prompt0;
  plan.seqs[0].sampling_context.output_tokens = &output0;
  plan.seqs[0].sampling_context.banned_tokens = {3};
  // Sequence 1: 10 distinct prompt tokens do not fit the 2 entries left: it samples on the CPU
  // and leaves the buffer as it found it.
  plan.seqs[1].sampling.repetition_penalty = 1.1f;
  plan.seqs[1].sampling_context.prompt_tokens = &prompt1;
  // Sequence 2: frequency penalty counts outputs only (the prompt is not read).
  plan.seqs[2].sampling.frequency_penalty = 0.5f;
  plan.seqs[2].sampling_context.prompt_tokens = &prompt1;
  plan.seqs[2].sampling_context.output_tokens = &output0;
  // Sequence 3: no penalties, no entries.
  const StepShape& s = planner.Plan(plan, arrays.View());
  EXPECT_EQ(s.cpu_sample, std::vector<bool>({false, true, false, false}));
  EXPECT_EQ(s.gpu_sample_seqs, std::vector<int32_t>({0, 2, 3}));
  EXPECT_FALSE(s.graph);
  ASSERT_EQ(s.penalty_entries, 6);
  struct E {
    int32_t token, output_count, in_context, banned;
  };
  const std::vector<E> want = {{5, 0, 1, 0}, {7, 1, 1, 0}, {9, 1, 1, 0},
                               {3, 0, 0, 1}, {7, 1, 1, 0}, {9, 1, 1, 0}};
  for (size_t i = 0; i < want.size(); ++i) {
    const PenaltyEntry& e = arrays.penalties[i];
    EXPECT_EQ(e.token, want[i].token) << i;
    EXPECT_EQ(e.output_count, want[i].output_count) << i;
    EXPECT_EQ(e.in_context, want[i].in_context) << i;
    EXPECT_EQ(e.banned, want[i].banned) << i;
  }
  // Sample rows are the GPU-sampled sequences in order, each with its own range of entries.
  EXPECT_EQ(arrays.sample_rows[0].penalty_begin, 0);
  EXPECT_EQ(arrays.sample_rows[0].penalty_end, 4);
  EXPECT_EQ(arrays.sample_rows[1].penalty_begin, 4);
  EXPECT_EQ(arrays.sample_rows[1].penalty_end, 6);
  EXPECT_FLOAT_EQ(arrays.sample_rows[1].frequency_penalty, 0.5f);
  EXPECT_EQ(arrays.sample_rows[2].penalty_begin, arrays.sample_rows[2].penalty_end);
  EXPECT_EQ(s.host_rows.size(), 1u);  // The CPU-sampled row's logits.

  // The planner's per-token bookkeeping starts afresh each step.
  const StepShape& again = planner.Plan(plan, arrays.View());
  EXPECT_EQ(again.penalty_entries, 6);
}

}  // namespace
}  // namespace tessera::runtime::cuda
