// Writes random Gemma 4 ("gemma4_unified") checkpoints of any shape: config.json and
// generation_config.json laid out like the golden fixture's (testdata/gemma4-tiny), and
// model.safetensors with the 12B's tensor names (text, vision and audio), stored bf16 or f32.
//
// Values follow testdata/gemma4_golden.py: norm weights 1 + 0.2 N(0,1), layer_scalar
// U(0.5, 1.5), biases 0.1 N(0,1), matrices N(0,1) / sqrt(fan_in), token and position embeddings
// 0.5 N(0,1); every value is rounded to bf16 (so the f32 and bf16 files of one seed hold the same
// model). Each tensor draws from its own stream keyed by (seed, name): deterministic, and
// independent of which other tensors exist.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tessera::tools {

// Special token ids of a checkpoint.
struct SpecialIds {
  int32_t pad = 0;
  int32_t eos = 1;
  int32_t bos = 2;
  int32_t image = 500;  // <|image|>
  int32_t boi = 501;    // <|image>
  int32_t eoi = 502;    // <image|>
  int32_t audio = 503;  // <|audio|>
  int32_t boa = 504;    // <|audio>
  int32_t eoa = 505;    // <audio|>
  int32_t video = 506;  // <|video|>
  // Stop tokens listed in generation_config.json (and text_config.eos_token_id).
  std::vector<int32_t> eos_ids = {1};
};

// The ids remapped into a small vocabulary, as in the golden fixture (500..506).
SpecialIds SmallVocabIds();
// The real Gemma 4 ids (MODEL.md); stops on <eos> 1 and <turn|> 106.
SpecialIds Gemma4Ids();

enum class WeightDType { kBF16, kF32 };

// The shape of a model. The defaults are the golden fixture's ("tiny_a").
struct ModelSpec {
  int32_t num_layers = 6;
  // Layer i is global (full attention) when (i + 1) % global_every == 0, as in the 12B (5, 11,
  // ..., 47); 0 = no global layers. Ignored when `global_layers` is non-empty.
  int32_t global_every = 6;
  std::vector<int32_t> global_layers;
  int32_t hidden_size = 64;
  int32_t intermediate_size = 128;
  int32_t num_heads = 4;
  int32_t num_kv_heads = 2;  // Sliding layers.
  int32_t head_dim = 16;     // Sliding layers.
  int32_t global_head_dim = 32;
  int32_t global_kv_heads = 1;
  int32_t sliding_window = 8;
  int32_t vocab_size = 512;
  int32_t mm_embed_dim = 64;
  int32_t mm_posemb_size = 32;
  int32_t max_position_embeddings = 4096;
  uint64_t seed = 1234;
  WeightDType dtype = WeightDType::kBF16;
  SpecialIds ids = SmallVocabIds();

  bool IsGlobal(int32_t layer) const;
};

// Parses a JSON spec: an object with any of the ModelSpec field names ("num_layers",
// "global_every", "global_layers", "hidden_size", ..., "seed", "dtype": "bf16" | "f32") and
// "special_ids": "small" | "gemma4" (when absent but vocab_size is given: "gemma4" for 262144, else
// "small"; when both are absent, the ids of `base`).
// Unknown keys are an error. Fields not given keep the values of `base`.
absl::StatusOr<ModelSpec> ParseModelSpec(const std::string& json_text, const ModelSpec& base);

// Checks the spec describes a model the runtime can run: positive sizes, heads divisible by KV
// heads, global layers in range, special ids inside the vocabulary.
absl::Status ValidateModelSpec(const ModelSpec& spec);

// The text of config.json / generation_config.json (2-space indent, sorted keys, as HF writes).
std::string ConfigJson(const ModelSpec& spec);
std::string GenerationConfigJson(const ModelSpec& spec);

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};

// Every tensor of the checkpoint, sorted by name (the order safetensors writes them).
std::vector<TensorSpec> CheckpointTensors(const ModelSpec& spec);

// The values of one tensor (already rounded to bf16), deterministic from (spec.seed, name).
std::vector<float> TensorValues(const ModelSpec& spec, const TensorSpec& tensor);

// The safetensors header (without the 8-byte length) for `tensors` stored as `dtype`: compact
// JSON, "__metadata__" first, offsets contiguous in the given order, padded with spaces to a
// multiple of 8 bytes as the Python writer does.
std::string SafetensorsHeader(const std::vector<TensorSpec>& tensors, WeightDType dtype);

// Writes `<path>` (model.safetensors) for the spec, streaming one tensor at a time.
absl::Status WriteSafetensors(const ModelSpec& spec, const std::string& path);

// Writes config.json, generation_config.json and model.safetensors into `dir` (created if needed).
absl::Status WriteModel(const ModelSpec& spec, const std::string& dir);

}  // namespace tessera::tools
