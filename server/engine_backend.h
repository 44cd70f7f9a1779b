// The real Backend: loads a model directory, builds prompts (chat template, tokenizer, media
// preprocessing) and runs requests on the scheduler's Engine over a ModelRunner. Also feeds the
// serving metrics from the engine's observer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/structured/grammar_compiler.h"
#include "server/backend.h"
#include "server/limits.h"
#include "server/metrics.h"

namespace tessera::server {

struct EngineBackendOptions {
  // Model directory: config.json, model.safetensors (or shards), tokenizer.json,
  // chat_template.jinja.
  std::string model_dir;
  // Served model id; empty: the directory's name.
  std::string served_model_name;
  // "auto" (cuda when a GPU is visible, else cpu), "cpu", "cuda" or "cuda:N".
  std::string device = "auto";
  // Every request limit (limits.h); reported by GetModelInfo.
  ServingLimits limits;
  // Engine: sequences at once and tokens per step (see scheduler::EngineOptions).
  int32_t max_num_seqs = 256;
  int32_t max_num_batched_tokens = 2048;
  bool enable_prefix_caching = true;
  absl::Duration session_ttl = absl::Seconds(300);
  int32_t max_session_tokens = 32768;
  // KV memory for both pools. CPU: 0 means 1 GiB. CUDA: 0 means gpu_memory_fraction of the GPU
  // memory free after the weights and step buffers.
  int64_t kv_memory_bytes = 0;
  // CPU runner: step threads (0: one per hardware thread).
  int num_threads = 0;
  // CUDA runner.
  double gpu_memory_fraction = 0.90;
  bool cuda_graphs = true;
  // Structured outputs and forced tool calls: the compiled-grammar cache and the compile limits
  // (docs/structured_outputs.md). The vocabulary index is built on the first constrained request.
  runtime::structured::GrammarCompilerOptions structured_outputs;
};

// The served model id for `options` (known before loading, for metrics labels).
std::string ServedModelName(const EngineBackendOptions& options);

// Loads the model and starts the engine. `metrics` (not owned) receives per-request timings.
absl::StatusOr<std::unique_ptr<Backend>> CreateEngineBackend(const EngineBackendOptions& options,
                                                             ServingMetrics* metrics);

}  // namespace tessera::server
