// A ModelRunner for scheduler tests and benchmarks whose "logits" depend deterministically on the
// K/V rows a real model would read: every new row writes a value (its token id, or its media row's
// content, and its position) into the slot its block table names, and the logits of a row are a
// hash of every visible slot read back through the block tables (all earlier positions for a full
// attention group, the window for a sliding group). A scheduler that hands out wrong blocks, frees
// a block still in use, or shares a block whose content differs changes the output; one that asks
// to read or write a released block gets InvalidArgument. Sampling is the real runtime::Sample over
// those logits, so seeds, penalties and banned tokens behave as with a real model.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/model_runner.h"

namespace tessera::scheduler {

class FakeModelRunner : public runtime::ModelRunner {
 public:
  // `verify_kv` false skips the KV store and hashing (benchmarks: the scheduler's cost alone);
  // logits then depend only on the sequence's last token and position.
  FakeModelRunner(runtime::KvCacheSpec spec, int32_t vocab_size, bool verify_kv = true);

  const runtime::KvCacheSpec& kv_spec() const override { return spec_; }
  int32_t vocab_size() const override { return vocab_size_; }
  absl::Status Execute(const runtime::BatchPlan& plan, runtime::StepOutput* out) override;

  // Called before each step; a non-OK status fails the step (error-path tests).
  void SetFailureHook(std::function<absl::Status(const runtime::BatchPlan&)> hook) {
    failure_hook_ = std::move(hook);
  }

  int64_t rows_computed() const { return rows_computed_; }
  int64_t steps() const { return steps_; }
  // Rows computed per seq_id over the runner's life.
  int64_t rows_for(uint64_t seq_id) const;

  // The value a row writes into KV (exposed for tests).
  static uint64_t RowValue(int32_t token, int32_t position, const runtime::MediaItem* item,
                           int32_t item_row);

 private:
  absl::Status RunSequence(const runtime::SequencePlan& seq, runtime::SequenceOutput* out);
  // Hash of what a query at `pos` sees.
  absl::StatusOr<uint64_t> ReadState(const runtime::SequencePlan& seq, int32_t pos) const;
  void FillLogits(uint64_t state, float* logits) const;

  runtime::KvCacheSpec spec_;
  int32_t vocab_size_;
  bool verify_kv_;
  // Per group: [num_blocks, block_size] row values (0 = never written).
  std::vector<std::vector<uint64_t>> kv_;
  std::function<absl::Status(const runtime::BatchPlan&)> failure_hook_;
  int64_t rows_computed_ = 0;
  int64_t steps_ = 0;
  absl::flat_hash_map<uint64_t, int64_t> rows_by_seq_;
};

}  // namespace tessera::scheduler
