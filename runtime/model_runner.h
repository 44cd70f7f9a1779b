// The contract between the scheduler and a backend (ARCHITECTURE.md, "Contracts").
//
// The scheduler decides *what* runs in a step and owns block accounting; the runner owns the KV
// memory and the weights and computes. A step is described by a BatchPlan: for each sequence, the
// new rows (a prefill chunk, one decode token, media rows), where they sit, the block tables
// through which their K/V are written and earlier K/V are read, and whether to sample.
//
// KV memory: each KV group (Gemma 4: "sliding" layers and "global" layers) has its own pool of
// `num_blocks` blocks of `block_size` consecutive token positions, covering every layer of the
// group. Block ids are indices into the group's pool, handed out by the scheduler. Position p of a
// sequence lives in block `block_tables[g][p / block_size]`, slot `p % block_size`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "runtime/media/media.h"
#include "runtime/sampling_params.h"

namespace tessera::runtime {

// A block-table entry for a sliding-window block that was released because no future query can
// see it. The runner never reads it (the window mask excludes those positions).
inline constexpr int32_t kReleasedBlock = -1;

struct KvGroupSpec {
  std::string name;        // "sliding" or "global".
  int32_t num_layers = 0;  // Layers in this group.
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t window = 0;       // Sliding window in tokens (key visible if q - k < window); 0 = full.
  int32_t block_size = 16;  // Token positions per block.
  int32_t num_blocks = 0;   // Pool size.
  int64_t bytes_per_block = 0;
};

struct KvCacheSpec {
  std::vector<KvGroupSpec> groups;  // Index = group id used in block tables.
};

// Media rows among a sequence's new rows: rows [seq_row, seq_row + count) of this step (absolute
// positions start_pos + seq_row ...) are rows [item_row, item_row + count) of `item`.
struct MediaRows {
  const MediaItem* item = nullptr;  // Not owned; alive for the step.
  int32_t item_row = 0;
  int32_t seq_row = 0;
  int32_t count = 0;
};

// An absolute position range [begin, end) whose rows attend to each other bidirectionally (one
// image or video frame). The reference (transformers 5.17, the gemma4-tiny fixture) applies this in
// every layer, global ones included; the sliding window still bounds sliding layers.
struct BidirectionalSpan {
  int32_t begin = 0;
  int32_t end = 0;
};

struct SequencePlan {
  uint64_t seq_id = 0;    // For diagnostics.
  int32_t start_pos = 0;  // Absolute position of the first new row = tokens already in KV.
  // Token id of every new row; for media rows the placeholder id (ignored in favour of the media).
  std::vector<int32_t> token_ids;
  std::vector<MediaRows> media;
  // Every bidirectional span that any new row belongs to. A chunk never splits one, so each span
  // lies wholly inside [start_pos, start_pos + token_ids.size()).
  std::vector<BidirectionalSpan> bidirectional;
  // One table per KV group, covering positions [0, start_pos + token_ids.size()).
  std::vector<std::vector<int32_t>> block_tables;
  // Rows (indices into token_ids) whose full logits the caller wants back (tests, golden checks,
  // prompt logprobs). Usually empty.
  std::vector<int32_t> logits_rows;
  // Sample one token from the last new row.
  bool sample = false;
  SamplingParams sampling;
  SamplingContext sampling_context;
};

struct BatchPlan {
  std::vector<SequencePlan> seqs;
};

struct SequenceOutput {
  // [logits_rows.size(), vocab_size] row-major, after the final softcap.
  std::vector<float> logits;
  SampleResult sampled;  // Valid when the plan asked to sample.
};

struct StepOutput {
  std::vector<SequenceOutput> seqs;  // Same order as BatchPlan::seqs.
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;

  // The KV groups and pool sizes this runner allocated.
  virtual const KvCacheSpec& kv_spec() const = 0;
  virtual int32_t vocab_size() const = 0;

  // Runs one step. On error nothing is guaranteed about the KV rows this step wrote; the caller
  // fails the step's sequences (and frees their blocks). InvalidArgument for a malformed plan.
  virtual absl::Status Execute(const BatchPlan& plan, StepOutput* out) = 0;
};

}  // namespace tessera::runtime
