// The model's shape and constants, read from a Hugging Face `config.json` of the gemma4_unified
// family (MODEL.md). Everything the forward pass needs per layer is resolved here once, so that
// the runners never look at JSON: layer type, head_dim and KV heads (with per-layer overrides),
// RoPE theta and how many frequency pairs rotate, and whether V comes from the K projection.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera::runtime {

enum class LayerType { kSliding = 0, kGlobal = 1 };

struct LayerConfig {
  LayerType type = LayerType::kSliding;
  int32_t head_dim = 0;
  int32_t num_kv_heads = 0;
  float rope_theta = 10000.0f;
  // Frequency pairs that rotate (inv_freq[i] = theta^(-2i/head_dim) for i < rope_pairs, 0 after);
  // head_dim / 2 for default RoPE, partial_rotary_factor * head_dim / 2 for "proportional".
  int32_t rope_pairs = 0;
  bool k_eq_v = false;  // No v_proj: V is the raw k_proj output (attention_k_eq_v, global layers).
  int32_t window = 0;   // Sliding window in tokens; 0 for global layers.
};

struct TextConfig {
  int32_t vocab_size = 0;
  int32_t hidden_size = 0;
  int32_t intermediate_size = 0;
  int32_t num_layers = 0;
  int32_t num_heads = 0;  // Query heads, every layer.
  float rms_norm_eps = 1e-6f;
  float final_logit_softcapping = 0.0f;  // 0 = none.
  int32_t sliding_window = 0;
  int32_t max_position_embeddings = 0;
  bool tie_word_embeddings = true;
  std::string hidden_activation;  // "gelu_pytorch_tanh".
  int32_t pad_token_id = 0;
  int32_t bos_token_id = 2;
  std::vector<int32_t> eos_token_ids;
  std::vector<LayerConfig> layers;
};

struct VisionConfig {
  bool present = false;
  int32_t mm_embed_dim = 0;
  int32_t mm_posemb_size = 0;    // Rows of the 2-D position table.
  float layer_norm_eps = 1e-5f;  // nn.LayerNorm default in transformers.
  float rms_norm_eps = 1e-6f;
};

struct AudioConfig {
  bool present = false;
  int32_t audio_embed_dim = 640;  // Samples per frame.
  float rms_norm_eps = 1e-6f;
};

struct ModelConfig {
  std::string architecture;  // "Gemma4UnifiedForConditionalGeneration".
  std::string model_type;    // "gemma4_unified".
  std::string dtype;         // "bfloat16", informational.
  TextConfig text;
  VisionConfig vision;
  AudioConfig audio;
  // Special ids; -1 when the config does not define them.
  int32_t image_token_id = -1;  // <|image|>
  int32_t boi_token_id = -1;    // <|image>
  int32_t eoi_token_id = -1;    // <image|>
  int32_t audio_token_id = -1;  // <|audio|>
  int32_t boa_token_id = -1;    // <|audio>
  int32_t eoa_token_id = -1;    // <audio|>
  int32_t video_token_id = -1;  // <|video|>

  int32_t num_layers_of(LayerType type) const;
  // The first layer of `type`, or -1.
  int32_t first_layer_of(LayerType type) const;
};

// The checks every source of a config (config.json, GGUF metadata) must pass, with messages that
// start with `source`: one resolved LayerConfig per layer, even head_dim, query heads a multiple of
// each layer's KV heads, rotated pairs within head_dim / 2, one KV shape per layer type.
absl::Status ValidateTextLayers(const TextConfig& text, const std::string& source);

// Parses config.json text. Unknown model types, missing or ill-typed fields give InvalidArgument
// naming the field ("text_config.hidden_size").
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text);
// Reads `<dir>/config.json`.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir);

}  // namespace tessera::runtime
