// The checks every ModelRunner makes on a BatchPlan before computing (runtime/model_runner.h), in
// one place so the CPU and CUDA runners refuse exactly the same plans with the same messages.
#pragma once

#include "absl/status/status.h"
#include "runtime/model/model_config.h"
#include "runtime/model_runner.h"

namespace tessera::runtime {

// What a runner's model can embed besides tokens.
struct MediaSupport {
  bool vision = false;
  bool audio = false;
};

// InvalidArgument naming the sequence and the problem when a plan is malformed for `spec` and
// `config`: no rows, a negative start, block tables missing, short, out of the pool or released
// inside the window; media rows outside the step or the item, of a kind the model cannot embed,
// short of data or with patch positions outside the position table, or overlapping; token ids
// outside the vocabulary; bidirectional spans outside the new rows; logits rows outside them.
absl::Status ValidateBatchPlan(const BatchPlan& plan, const KvCacheSpec& spec,
                               const ModelConfig& config, MediaSupport media);

}  // namespace tessera::runtime
