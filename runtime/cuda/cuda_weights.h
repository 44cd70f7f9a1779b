// The CUDA runner's weights on the device, and their upload from a checkpoint (ModelWeights).
// Random weights for benchmarks are made by random_weights.h, which the server does not link.
//
// Layout (docs/cuda.md, "Weights"): per layer the Q, K (and V) projections are one fused
// [q + k (+ v), hidden] matrix and gate/up one [2 * intermediate, hidden] matrix, so a layer is
// four projections. A float matrix (F32, F16, BF16) is stored in bf16; a ggml-quantized one stays
// in its blocks (quant_formats.h), never expanded: a fused matrix whose pieces differ in format
// (a Q4_K_M layer's Q6_K attn_v beside Q4_K q and k) is several parts, one per run of equal
// formats. Norm weights and the layer scalar are bf16; the media path's norm weights, biases and
// position table are fp32.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/cuda/bf16.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/quant_formats.h"
#include "runtime/cuda/quant_mix.h"
#include "runtime/model/model_config.h"
#include "runtime/model/weights.h"

namespace tessera::runtime::cuda {

// Output rows [row0, row0 + rows) of a DeviceMatrix, stored in one format: RowBytes(format, cols)
// per row from `data` (256-byte aligned inside the matrix's buffer).
struct DeviceMatrixPart {
  WeightFormat format = WeightFormat::kBf16;
  int64_t row0 = 0;
  int64_t rows = 0;
  void* data = nullptr;
};

// A projection matrix on the device: [rows, cols] in torch's [out, in] layout, in parts.
struct DeviceMatrix {
  DeviceBuffer buf;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<DeviceMatrixPart> parts;

  bool is_bf16() const { return parts.size() == 1 && parts[0].format == WeightFormat::kBf16; }
  // The whole matrix as bf16 (null unless is_bf16()).
  Bf16* bf16() const { return is_bf16() ? static_cast<Bf16*>(parts[0].data) : nullptr; }
  bool quantized() const;
};

struct DeviceLayer {
  DeviceMatrix qkv;      // [qd + kd (+ kd), H]
  DeviceMatrix o;        // [H, qd]
  DeviceMatrix gate_up;  // [2I, H]
  DeviceMatrix down;     // [H, I]
  // input, post_attn, pre_ffw, post_ffw [4][H], q_norm, k_norm [2][hd], layer scalar [1], bf16.
  DeviceBuffer norms;
  DeviceBuffer inv_freq;                  // [hd / 2] fp32
  int64_t qd = 0, kd = 0, qkv_width = 0;  // Query, K (and V) widths; fused QKV width.

  void SetShape(int32_t num_heads, const LayerConfig& lc);
  // Norm `i` of the four [H] norms (then q_norm at norm(0) + 4H, k_norm, the layer scalar).
  const Bf16* norm(int i, int64_t H) const { return norms.as<Bf16>() + i * H; }
};

struct DeviceWeights {
  DeviceMatrix embed;       // [V, H]; also the (tied) output head.
  DeviceBuffer final_norm;  // [H] bf16
  float embed_scale = 1.0f;
  std::vector<DeviceLayer> layers;
  bool has_vision = false, has_audio = false;
  // Vision: fp32 vectors, bf16 matrices.
  DeviceBuffer v_ln1_w, v_ln1_b, v_dense_b, v_ln2_w, v_ln2_b, v_pos, v_posn_w, v_posn_b;
  DeviceMatrix v_dense;  // [mm_embed_dim, 6912]
  DeviceMatrix v_proj;   // [H, mm_embed_dim]
  DeviceMatrix a_proj;   // [H, 640]
  uint64_t bytes = 0;    // Device bytes of everything above.
};

// Allocates weight buffers into a DeviceWeights, counting their bytes; ResourceExhausted naming
// the device when one does not fit.
class WeightAllocator {
 public:
  WeightAllocator(std::string device_name, DeviceWeights* weights)
      : device_name_(std::move(device_name)), weights_(weights) {}
  absl::Status Allocate(DeviceBuffer* b, int64_t bytes);
  // A bf16 matrix.
  absl::Status Allocate(DeviceMatrix* m, int64_t rows, int64_t cols);
  // A matrix of `pieces` (format, rows) stacked in order; consecutive pieces of one format share a
  // part. InvalidArgument when `cols` does not fill a format's blocks.
  absl::Status Allocate(DeviceMatrix* m, int64_t cols,
                        const std::vector<std::pair<WeightFormat, int64_t>>& pieces);
  // Allocates and uploads `v` (fp32, or rounded to bf16).
  absl::Status UploadF32(DeviceBuffer* b, const std::vector<float>& v);
  absl::Status UploadBf16(DeviceBuffer* b, const std::vector<float>& v);

 private:
  std::string device_name_;
  DeviceWeights* weights_;
};

// The layer's RoPE frequencies (rope_kv.h RopeInvFreq, as the CPU runner computes them), rounded
// to bf16 when the model's constants are, uploaded into layer->inv_freq.
absl::Status UploadInvFreq(const LayerConfig& lc, bool bf16_constants, WeightAllocator* alloc,
                           DeviceLayer* layer);

// The format a checkpoint matrix is kept in on the device: bf16 for float types, its own block
// format for ggml-quantized ones.
WeightFormat DeviceFormatOf(const WeightMatrix& m);

// The widest quantized matrix's columns (sizes the runner's q8_1 and dequantize scratch); 0 when
// no matrix is quantized.
int64_t WidestQuantizedCols(const DeviceWeights& w);

// The device format of every matrix of a checkpoint (for quant_mix.h's DeviceWeightBytes and the
// memory plan of a model before it is uploaded).
ModelFormats FormatsOf(const ModelConfig& config, const ModelWeights& weights);

// Uploads a checkpoint's weights to the current device (float matrices in bf16, quantized ones as
// their blocks). ResourceExhausted when they do not fit.
absl::StatusOr<std::unique_ptr<DeviceWeights>> UploadCheckpointWeights(
    const ModelConfig& config, const ModelWeights& weights, const std::string& device_name);

}  // namespace tessera::runtime::cuda
