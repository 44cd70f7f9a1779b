#include "runtime/cuda/gemma4_configs.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tessera::runtime::cuda {
namespace {

// The 12B text_config's layer_types: every 6th layer (5, 11, ..., 47) global.
std::string LayerTypesJson(int layers, int global_every) {
  std::vector<std::string> t;
  for (int i = 0; i < layers; ++i) {
    t.push_back((i + 1) % global_every == 0 ? "\"full_attention\"" : "\"sliding_attention\"");
  }
  return absl::StrCat("[", absl::StrJoin(t, ", "), "]");
}

}  // namespace

std::string Gemma4_12BConfigJson() {
  return absl::StrCat(R"({
  "architectures": ["Gemma4UnifiedForConditionalGeneration"],
  "model_type": "gemma4_unified",
  "dtype": "bfloat16",
  "image_token_id": 258880, "boi_token_id": 255999, "eoi_token_id": 258882,
  "audio_token_id": 258881, "boa_token_id": 256000, "eoa_token_index": 258883,
  "video_token_id": 258884,
  "text_config": {
    "model_type": "gemma4_unified_text",
    "vocab_size": 262144, "hidden_size": 3840, "intermediate_size": 15360,
    "num_hidden_layers": 48, "num_attention_heads": 16,
    "head_dim": 256, "num_key_value_heads": 8,
    "global_head_dim": 512, "num_global_key_value_heads": 1,
    "attention_k_eq_v": true, "sliding_window": 1024, "max_position_embeddings": 262144,
    "final_logit_softcapping": 30.0, "rms_norm_eps": 1e-06,
    "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": true,
    "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": [1, 106],
    "layer_types": )",
                      LayerTypesJson(48, 6), R"(,
    "rope_parameters": {
      "full_attention": {"partial_rotary_factor": 0.25, "rope_theta": 1000000.0,
                         "rope_type": "proportional"},
      "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}
    }
  },
  "vision_config": {"mm_embed_dim": 3840, "mm_posemb_size": 1120, "layer_norm_eps": 1e-05,
                    "rms_norm_eps": 1e-06},
  "audio_config": {"audio_embed_dim": 640, "rms_norm_eps": 1e-06}
})");
}

// The shape of testdata/gemma4-tiny/config.json (for --smoke).
std::string Gemma4TinyShapeConfigJson() {
  return absl::StrCat(R"({
  "architectures": ["Gemma4UnifiedForConditionalGeneration"],
  "model_type": "gemma4_unified",
  "dtype": "bfloat16",
  "image_token_id": 500, "boi_token_id": 501, "eoi_token_id": 502,
  "audio_token_id": 503, "boa_token_id": 504, "eoa_token_index": 505, "video_token_id": 506,
  "text_config": {
    "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 6, "num_attention_heads": 4,
    "head_dim": 16, "num_key_value_heads": 2,
    "per_layer_config": {"5": {"head_dim": 32, "num_key_value_heads": 1}},
    "attention_k_eq_v": true, "sliding_window": 8, "max_position_embeddings": 4096,
    "final_logit_softcapping": 30.0, "rms_norm_eps": 1e-06,
    "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": true,
    "eos_token_id": 1,
    "layer_types": )",
                      LayerTypesJson(6, 6), R"(,
    "rope_parameters": {
      "full_attention": {"partial_rotary_factor": 0.25, "rope_theta": 1000000.0,
                         "rope_type": "proportional"},
      "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}
    }
  },
  "vision_config": {"mm_embed_dim": 64, "mm_posemb_size": 32},
  "audio_config": {"audio_embed_dim": 640}
})");
}

}  // namespace tessera::runtime::cuda
