// Gemma 4 weights bound by name from a Checkpoint, with every shape checked against the config.
//
// Storage choice: matrices stay where the checkpoint put them. A BF16 matrix is read straight from
// the memory mapping and widened to fp32 inside the kernels (half the memory traffic of fp32, and
// no second copy of a 24 GB file); an F32 matrix is read from the mapping too. Only F16 matrices
// are converted once, at load, to owned fp32 (F16 -> bf16 would lose bits). Vectors (norm weights,
// biases, the position table, layer scalars) are small and converted to fp32 at load. All
// arithmetic is fp32.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/model_config.h"
#include "runtime/model/safetensors.h"
#include "runtime/quant/ggml_type.h"

namespace tessera::runtime {

class GgufFile;

// A row-major [rows, cols] matrix in torch's [out, in] layout, in any ggml type the kernels read:
// F32, BF16 and F16 elements, or quantized blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K;
// runtime/quant/ggml_type.h). Row r is the row_bytes() bytes at data + r * row_bytes(), cols /
// block values per row; `data` points into the mapped file (or, for converted matrices, into
// ModelWeights::owned) and is never copied.
struct WeightMatrix {
  using Type = quant::GgmlType;
  Type type = Type::kF32;
  const void* data = nullptr;  // Not necessarily aligned; kernels use unaligned loads.
  int64_t rows = 0;
  int64_t cols = 0;

  bool empty() const { return data == nullptr; }
  // Bytes of one row (cols must be a whole number of blocks: Validate()).
  int64_t row_bytes() const {
    const quant::TypeTraits& t = quant::Traits(type);
    return cols / t.block_elems * t.block_bytes;
  }
  size_t bytes() const { return static_cast<size_t>(rows * row_bytes()); }
  const uint8_t* row(int64_t r) const {
    return static_cast<const uint8_t*>(data) + r * row_bytes();
  }
  // OK when the kernels can read this matrix: a type they support and cols a whole number of its
  // blocks; otherwise InvalidArgument naming `name`, the type and the shape.
  absl::Status Validate(const std::string& name) const;
  // Row `r` decoded to fp32 into `out` (cols values), bit-identical to ggml's dequantization.
  void RowToFloat(int64_t r, float* out) const;
};

struct LayerWeights {
  WeightMatrix q_proj;              // [num_heads * head_dim, hidden]
  WeightMatrix k_proj;              // [num_kv_heads * head_dim, hidden]
  WeightMatrix v_proj;              // [num_kv_heads * head_dim, hidden]; empty when k_eq_v.
  WeightMatrix o_proj;              // [hidden, num_heads * head_dim]
  WeightMatrix gate_proj, up_proj;  // [intermediate, hidden]
  WeightMatrix down_proj;           // [hidden, intermediate]
  std::vector<float> input_norm, post_attention_norm, pre_feedforward_norm,
      post_feedforward_norm;          // [hidden]
  std::vector<float> q_norm, k_norm;  // [head_dim]
  float layer_scalar = 1.0f;
};

struct VisionWeights {
  std::vector<float> ln1_weight, ln1_bias;            // [6912]
  WeightMatrix patch_dense;                           // [mm_embed_dim, 6912]
  std::vector<float> patch_dense_bias;                // [mm_embed_dim]
  std::vector<float> ln2_weight, ln2_bias;            // [mm_embed_dim]
  std::vector<float> pos_embedding;                   // [mm_posemb_size, 2, mm_embed_dim]
  std::vector<float> pos_norm_weight, pos_norm_bias;  // [mm_embed_dim]
  WeightMatrix projection;                            // [hidden, mm_embed_dim]
};

struct AudioWeights {
  WeightMatrix projection;  // [hidden, audio_embed_dim]
};

struct ModelWeights {
  WeightMatrix embed_tokens;  // [vocab, hidden]; also the output head (tied).
  // Whether the model's constants (embedding scale, RoPE frequencies) are rounded to bf16, as
  // transformers' buffers are when the model runs in bf16: config.json "dtype" == "bfloat16", or,
  // without a dtype, a BF16 embedding. The storage dtype of the matrices does not change it.
  bool bf16_constants = false;
  // sqrt(hidden), rounded to bf16 when bf16_constants (sqrt(3840) -> 62).
  float embed_scale = 1.0f;
  std::vector<float> final_norm;  // [hidden]
  std::vector<LayerWeights> layers;
  bool has_vision = false, has_audio = false;
  VisionWeights vision;
  AudioWeights audio;
  uint64_t total_bytes = 0;  // Checkpoint bytes bound.

  // Keeps the mappings (and converted F16 data) alive: a safetensors checkpoint, or the GGUF text
  // model and its optional mmproj.
  std::unique_ptr<Checkpoint> checkpoint;
  std::shared_ptr<const GgufFile> gguf, gguf_mmproj;
  std::vector<std::unique_ptr<float[]>> owned;
};

// Binds every tensor the config implies. A missing tensor, a wrong shape or a non-float dtype is
// InvalidArgument naming the tensor and both shapes. Vision/audio weights are bound when the
// config has that sub-config.
absl::StatusOr<std::unique_ptr<ModelWeights>> BindWeights(const ModelConfig& config,
                                                          std::unique_ptr<Checkpoint> checkpoint);

}  // namespace tessera::runtime
