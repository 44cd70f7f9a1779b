// Loading a model (a safetensors directory or llama.cpp GGUF files) and making a runner for it.
//
//   auto model = runtime::LoadModel("/models/gemma4-12b");           // config + mapped weights
//   runtime::LoadModelOptions lo;  lo.mmproj = "mmproj-gemma-4-12B-bf16.gguf";
//   auto model = runtime::LoadModel("gemma-4-12B-Q4_K_M.gguf", lo);   // or a directory of both
//   runtime::CpuRunnerOptions opts;  opts.kv_memory_bytes = 4 << 30;  // or opts.num_blocks_*
//   auto runner = runtime::CreateCpuModelRunner(*model, opts);        //
//   runtime/cpu/cpu_model_runner.h
//   (*runner)->kv_spec()   // the KV groups and pool sizes for the scheduler's block manager
//   auto tokenizer = runtime::LoadTokenizer(**model);                 // the file's own, or
//   tokenizer.json
//
// The LoadedModel is immutable once loaded and may be shared by several runners (shared_ptr).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/model/model_config.h"
#include "runtime/model/weights.h"
#include "runtime/prompt/tokenizer.h"

namespace tessera::runtime {

enum class ModelFormat { kSafetensors, kGguf };

struct LoadModelOptions {
  // A GGUF mmproj file (vision and audio projections) for a GGUF text model. Empty: none for a
  // .gguf path; for a directory, the mmproj GGUF it holds, if any.
  std::string mmproj;
};

struct LoadedModel {
  std::string path;  // What was loaded: the directory or the .gguf file.
  std::string dir;   // The directory holding it (tokenizer.json, chat_template.jinja live here).
  ModelFormat format = ModelFormat::kSafetensors;
  std::string mmproj_path;  // GGUF: the mmproj file used, or empty.
  ModelConfig config;
  std::unique_ptr<ModelWeights> weights;
  // GGUF: the tokenizer.json rebuilt from the file's tokenizer.ggml.* metadata and its
  // tokenizer.chat_template; empty when the file carries none (then <dir>'s files are used).
  std::string tokenizer_json;
  std::string chat_template;
};

// `path` is one of:
// - a directory with config.json and model.safetensors (or the shards of
//   model.safetensors.index.json);
// - a .gguf file (general.architecture "gemma4"), with options.mmproj naming its mmproj;
// - a directory without config.json holding one text GGUF and at most one mmproj GGUF (told apart
//   by general.architecture, "gemma4" / "clip").
// Errors name the file, field or tensor.
absl::StatusOr<std::shared_ptr<const LoadedModel>> LoadModel(const std::string& path,
                                                             const LoadModelOptions& options = {});

// The model's tokenizer: the GGUF's own when it has one, else <dir>/tokenizer.json.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const LoadedModel& model);

// A one-line description for logs and --dry_run: format, weight types and bytes, layers.
std::string DescribeModel(const LoadedModel& model);

}  // namespace tessera::runtime
