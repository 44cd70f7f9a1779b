// Which ggml format llama.cpp's llama-quantize gives each Gemma 4 matrix for a file type (the
// "_M" mixes keep some attn_v / ffn_down matrices and the tied embedding in Q6_K), and the device
// bytes of a model so stored. For the benchmark's random quantized weights (random_weights.h) and
// the memory plan of a GGUF model nobody has loaded here (memory_plan_test.cc). The rules are
// llama.cpp's src/llama-quant.cpp (llama_tensor_get_type) for the types Gemma 4 GGUFs use; the
// test checks them against the types llama-quantize chose for testdata/gguf/gemma4-quant-s.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/cuda/quant_formats.h"
#include "runtime/model/model_config.h"

namespace tessera::runtime::cuda {

enum class QuantMix { kBf16, kQ8_0, kQ6_K, kQ5_K_M, kQ4_K_M, kQ4_0 };

const char* QuantMixName(QuantMix mix);

struct LayerFormats {
  WeightFormat q, k, v, o, gate, up, down;  // v: meaningless for a K = V layer (no v_proj).
};

struct ModelFormats {
  WeightFormat embed = WeightFormat::kBf16;  // token_embd, also the tied output head.
  std::vector<LayerFormats> layers;
};

ModelFormats LlamaQuantizeFormats(const ModelConfig& config, QuantMix mix);

// Device bytes of the text model stored in `formats` (the runner's layout: matrices in their
// formats, norm weights and layer scalars bf16, RoPE frequencies fp32) plus the media weights in
// bf16 (matrices) and fp32 (vectors), as the CUDA runner uploads an mmproj.
int64_t DeviceWeightBytes(const ModelConfig& config, const ModelFormats& formats);

// The widest quantized matrix's columns (the runner's q8_1 and dequantize scratch); 0 when every
// matrix is bf16.
int64_t WidestQuantizedCols(const ModelConfig& config, const ModelFormats& formats);

}  // namespace tessera::runtime::cuda
