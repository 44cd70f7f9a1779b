// Encoder-free media embedding (MODEL.md "Vision", "Audio"): 48x48 patches and 640-sample frames
// become rows of the text model's embedding sequence.
//
//   image patch: LayerNorm(6912) -> Linear(6912 -> D, bias) -> LayerNorm(D)
//                -> + pos[x, 0] + pos[y, 1] -> LayerNorm(D) -> rms (no weight) -> Linear(D ->
//                hidden)
//   audio frame: rms (no weight) -> Linear(640 -> hidden)
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/media/media.h"
#include "runtime/model/model_config.h"
#include "runtime/model/weights.h"

namespace tessera::runtime::cpu {

// Writes `count` embeddings of `hidden` floats each to out[i * ldo]. Assumes a plan that passed
// ValidateBatchPlan (runtime/plan_validation.h).
void EmbedMediaRows(const ModelConfig& config, const ModelWeights& weights, const MediaItem& item,
                    int32_t item_row, int32_t count, float* out, int64_t ldo, ThreadPool* pool);

}  // namespace tessera::runtime::cpu
