// Host-side planning of one CUDA runner step: from a (validated) BatchPlan to the step's shape —
// rows, padded graph batch and block-table width, decode KV splits, which sequences sample on the
// GPU and which on the CPU, the penalty entries of the GPU-sampled rows, the rows whose logits come
// back to the host — and the per-row metadata the kernels read (ids, positions, slots, block
// tables, spans, sampling parameters), written into host arrays (the runner's pinned staging
// buffer; plain vectors in tests). Pure: no CUDA, no device, so every rule is unit-tested with
// tables of plans and expected shapes (step_planner_test.cc).
//
// Rules (docs/cuda.md):
//   - A step is "decode" when every sequence has exactly one text row.
//   - Sampling: a sequence that asks for top_logprobs, has a constrained-decoding mask, or whose
//     penalty entries do not fit the buffer, samples on the CPU from downloaded logits; the others
//     on the GPU.
//   - A decode step runs as a CUDA graph when graphs are on, every sequence samples on the GPU, no
//     sequence wants logits rows or has a bidirectional span, and the batch is at most
//     max_graph_batch: the batch is padded to the next of kGraphBatches (padding sequences: one row
//     at position 0, reading the zeroed spare block, writing nothing, sampled greedily and
//     ignored) and the table width rounded up to a power of two >= 16, so a few graphs cover every
//     step.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/cuda/sampling.h"
#include "runtime/model_runner.h"

namespace tessera::runtime::cuda {

// Batch sizes decode graphs are captured for; a graph step pads up to the next one.
inline constexpr int32_t kGraphBatches[] = {1,  2,  4,   8,   16,  24,  32,  48, 64,
                                            80, 96, 112, 128, 160, 192, 224, 256};

struct StepPlannerConfig {
  // The runner's KV groups (num_blocks = the spare block's id: padding and released table entries
  // point at it).
  KvCacheSpec spec;
  int32_t vocab_size = 0;
  int32_t num_q_heads = 0;
  int32_t max_table_width = 0;  // Block-table entries per sequence the device buffer holds.
  int32_t max_step_seqs = 0;
  bool graphs = false;  // CUDA graphs on and supported by this build.
  int32_t max_graph_batch = 0;
  int32_t num_sms = 1;
  int64_t attention_workspace_floats = 0;  // The split workspace the runner allocated.
};

// Where a step's metadata goes: arrays of the runner's capacities (max_step_tokens rows,
// max_step_seqs sequences, max_table_width entries per table).
struct StepArrays {
  int32_t* ids = nullptr;         // [rows]; -1 for a media row (the media path fills it).
  int32_t* positions = nullptr;   // [rows]
  int32_t* row_start = nullptr;   // [seqs + 1]
  int32_t* start_pos = nullptr;   // [seqs]
  int32_t* bidi_begin = nullptr;  // [rows]: the row's bidirectional span, or [0, 0).
  int32_t* bidi_end = nullptr;    // [rows]
  std::vector<int64_t*> slots;    // Per group, [rows]: the KV slot written, -1 for padding.
  std::vector<int32_t*> tables;   // Per group, [seqs, table_width].
  SampleRowParams* sample_rows = nullptr;  // [sample rows]
  PenaltyEntry* penalties = nullptr;       // [penalty_capacity]
  int64_t penalty_capacity = 0;
};

// A row whose logits the host needs.
struct HostLogitsRow {
  int32_t seq = 0;
  int32_t step_row = 0;
  int32_t slot = 0;  // Index into the sequence's logits_rows, or -1: the row samples on the CPU.
};

struct StepShape {
  int32_t plan_seqs = 0;  // Sequences of the plan.
  int32_t seqs = 0;       // Sequences run: plan_seqs, or the padded batch of a graph step.
  int32_t rows = 0;       // Rows run, padding included.
  int32_t table_width = 0;
  int32_t max_rows_per_seq = 1;
  bool decode = false;
  bool bidi = false;
  bool graph = false;             // Runs through the graph cache with key (seqs, table_width).
  std::vector<int32_t> splits;    // Decode KV splits per group (1 when not decode).
  std::vector<int64_t> seq_row0;  // First step row of each run sequence.
  int64_t max_media_rows = 0;     // The largest media run (sizes the media staging).

  // GPU sampling: logits rows [0, sample_rows) are sampled on the GPU; row i belongs to
  // gpu_sample_seqs[i] (rows past it are graph padding). They are step rows [0, sample_rows)
  // themselves (a decode step where every sequence samples on the GPU), or gathered from
  // sample_src.
  std::vector<int32_t> gpu_sample_seqs;
  int32_t sample_rows = 0;
  bool gathered = false;
  std::vector<int32_t> sample_src;
  int64_t penalty_entries = 0;

  std::vector<bool> cpu_sample;          // Per plan sequence.
  std::vector<HostLogitsRow> host_rows;  // Requested logits rows, then CPU-sampled rows' last rows.
};

class StepPlanner {
 public:
  explicit StepPlanner(StepPlannerConfig config);

  // Plans `plan` (already validated: runtime/plan_validation.h and the runner's capacities) and
  // writes its metadata into `arrays`. The returned shape is valid until the next call.
  const StepShape& Plan(const BatchPlan& plan, const StepArrays& arrays);

  const StepPlannerConfig& config() const { return config_; }

 private:
  void PlanSampling(const BatchPlan& plan, const StepArrays& arrays);
  void PlanGraph();
  void LayOutRows(const BatchPlan& plan, const StepArrays& arrays);
  void PlanSplits();
  void WriteSampleRows(const BatchPlan& plan, const StepArrays& arrays);
  void PlanHostRows(const BatchPlan& plan);
  // The penalty entries of plan.seqs[si] from entries[begin); false when they do not fit.
  bool AddPenaltyEntries(const SequencePlan& sp, const StepArrays& arrays, int64_t* count);

  StepPlannerConfig config_;
  StepShape shape_;
  int32_t max_table_ = 1;  // Longest table of the plan (entries), before graph rounding.
  int32_t max_kv_ = 1;     // Longest sequence (positions) the attention reads.
  std::vector<int32_t> pen_begin_, pen_end_;
  std::vector<bool> media_row_;
  // Penalty entry index per token, valid where stamp == the current sequence's stamp.
  std::vector<int32_t> penalty_slot_;
  std::vector<uint32_t> penalty_stamp_;
  uint32_t stamp_ = 0;
};

}  // namespace tessera::runtime::cuda
