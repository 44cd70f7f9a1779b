// Loading a model directory (config.json + safetensors) and making a runner for it.
//
//   auto model = runtime::LoadModel("/models/gemma4-12b");           // config + mapped weights
//   runtime::CpuRunnerOptions opts;  opts.kv_memory_bytes = 4 << 30;  // or opts.num_blocks_*
//   auto runner = runtime::CreateCpuModelRunner(*model, opts);        //
//   runtime/cpu/cpu_model_runner.h
//   (*runner)->kv_spec()   // the KV groups and pool sizes for the scheduler's block manager
//
// The LoadedModel is immutable once loaded and may be shared by several runners (shared_ptr).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/model/model_config.h"
#include "runtime/model/weights.h"

namespace tessera::runtime {

struct LoadedModel {
  std::string dir;
  ModelConfig config;
  std::unique_ptr<ModelWeights> weights;
};

// Reads `<dir>/config.json`, maps `<dir>/model.safetensors` (or the shards of
// `model.safetensors.index.json`) and binds every tensor. Errors name the file, field or tensor.
absl::StatusOr<std::shared_ptr<const LoadedModel>> LoadModel(const std::string& dir);

}  // namespace tessera::runtime
