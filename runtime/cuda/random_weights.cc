#include "runtime/cuda/random_weights.h"

#include <cmath>

#include "base/status_macros.h"
#include "runtime/cuda/random_fill.h"
#include "runtime/cuda/stream.h"
#include "runtime/media/media.h"
#include "runtime/quant/ggml_type.h"

namespace tessera::runtime {
namespace cuda {

absl::StatusOr<std::unique_ptr<DeviceWeights>> MakeRandomWeights(const RandomModelSpec& spec,
                                                                 const std::string& device_name,
                                                                 cudaStream_t s) {
  const ModelConfig& config = spec.config;
  const TextConfig& tc = config.text;
  const int64_t H = tc.hidden_size, I = tc.intermediate_size, V = tc.vocab_size;
  auto out = std::make_unique<DeviceWeights>();
  WeightAllocator alloc(device_name, out.get());
  uint64_t next_seed = spec.seed;
  // Matrices N(0, 1/fan_in) as the fixture's generator (bf16), or random blocks; norms near 1.
  auto stacked = [&](DeviceMatrix* m, int64_t cols,
                     const std::vector<std::pair<WeightFormat, int64_t>>& pieces) -> absl::Status {
    TESSERA_RETURN_IF_ERROR(alloc.Allocate(m, cols, pieces));
    const float sd = 1.0f / std::sqrt(static_cast<float>(cols));
    for (const DeviceMatrixPart& part : m->parts) {
      if (IsQuantized(part.format)) {
        TESSERA_RETURN_IF_ERROR(LaunchFillRandomBlocks(
            part.format, part.data, part.rows * cols / BlockValues(part.format), ++next_seed,
            quant::FloatToFp16(sd / 16.0f), s));
      } else {
        TESSERA_RETURN_IF_ERROR(LaunchFillNormalBf16(static_cast<Bf16*>(part.data),
                                                     part.rows * cols, ++next_seed, 0.0f, sd, s));
      }
    }
    return absl::OkStatus();
  };
  auto matrix = [&](DeviceMatrix* m, int64_t rows, int64_t cols) -> absl::Status {
    return stacked(m, cols, {{WeightFormat::kBf16, rows}});
  };
  const ModelFormats formats = LlamaQuantizeFormats(config, spec.mix);
  auto vec_bf16 = [&](DeviceBuffer* b, int64_t n, float mean, float sd) -> absl::Status {
    TESSERA_RETURN_IF_ERROR(alloc.Allocate(b, n * 2));
    return LaunchFillNormalBf16(b->as<Bf16>(), n, ++next_seed, mean, sd, s);
  };
  auto vec_f32 = [&](DeviceBuffer* b, int64_t n, float mean, float sd) -> absl::Status {
    TESSERA_RETURN_IF_ERROR(alloc.Allocate(b, n * 4));
    return LaunchFillNormalF32(b->as<float>(), n, ++next_seed, mean, sd, s);
  };
  TESSERA_RETURN_IF_ERROR(stacked(&out->embed, H, {{formats.embed, V}}));
  TESSERA_RETURN_IF_ERROR(vec_bf16(&out->final_norm, H, 1.0f, 0.1f));
  out->embed_scale = RoundBf16(std::sqrt(static_cast<float>(H)));
  out->layers.resize(tc.num_layers);
  for (int32_t l = 0; l < tc.num_layers; ++l) {
    const LayerConfig& lc = tc.layers[l];
    DeviceLayer& d = out->layers[l];
    d.SetShape(tc.num_heads, lc);
    const LayerFormats& f = formats.layers[l];
    std::vector<std::pair<WeightFormat, int64_t>> qkv = {{f.q, d.qd}, {f.k, d.kd}};
    if (!lc.k_eq_v) qkv.emplace_back(f.v, d.kd);
    TESSERA_RETURN_IF_ERROR(stacked(&d.qkv, H, qkv));
    TESSERA_RETURN_IF_ERROR(stacked(&d.o, d.qd, {{f.o, H}}));
    TESSERA_RETURN_IF_ERROR(stacked(&d.gate_up, H, {{f.gate, I}, {f.up, I}}));
    TESSERA_RETURN_IF_ERROR(stacked(&d.down, I, {{f.down, H}}));
    // Norm weights near 1; the layer scalar (the last entry) is then set to exactly 1.
    const int64_t n = 4 * H + 2 * lc.head_dim + 1;
    TESSERA_RETURN_IF_ERROR(vec_bf16(&d.norms, n, 1.0f, 0.1f));
    const Bf16 one = FloatToBf16(1.0f);
    TESSERA_RETURN_IF_ERROR(CopyToDeviceAsync(d.norms.as<Bf16>() + n - 1, &one, sizeof(one), s));
    TESSERA_RETURN_IF_ERROR(UploadInvFreq(lc, /*bf16_constants=*/true, &alloc, &d));
    // `one` leaves scope.
    TESSERA_RETURN_IF_ERROR(Synchronize());
  }
  out->has_vision = config.vision.present;
  out->has_audio = config.audio.present;
  if (out->has_vision) {
    const int64_t D = config.vision.mm_embed_dim, P = config.vision.mm_posemb_size;
    TESSERA_RETURN_IF_ERROR(vec_f32(&out->v_ln1_w, kPatchValues, 1.0f, 0.1f));
    TESSERA_RETURN_IF_ERROR(vec_f32(&out->v_ln1_b, kPatchValues, 0.0f, 0.1f));
    TESSERA_RETURN_IF_ERROR(matrix(&out->v_dense, D, kPatchValues));
    TESSERA_RETURN_IF_ERROR(vec_f32(&out->v_dense_b, D, 0.0f, 0.1f));
    TESSERA_RETURN_IF_ERROR(vec_f32(&out->v_ln2_w, D, 1.0f, 0.1f));
    TESSERA_RETURN_IF_ERROR(vec_f32(&out->v_ln2_b, D, 0.0f, 0.1f));
    TESSERA_RETURN_IF_ERROR(vec_f32(&out->v_pos, P * 2 * D, 0.0f, 1.0f));
    TESSERA_RETURN_IF_ERROR(vec_f32(&out->v_posn_w, D, 1.0f, 0.1f));
    TESSERA_RETURN_IF_ERROR(vec_f32(&out->v_posn_b, D, 0.0f, 0.1f));
    TESSERA_RETURN_IF_ERROR(matrix(&out->v_proj, H, D));
  }
  if (out->has_audio) {
    TESSERA_RETURN_IF_ERROR(matrix(&out->a_proj, H, config.audio.audio_embed_dim));
  }
  // The fills ran on `s`, the small uploads on the legacy stream.
  TESSERA_RETURN_IF_ERROR(Synchronize());
  return out;
}

}  // namespace cuda

absl::StatusOr<std::unique_ptr<CudaModelRunner>> CreateRandomCudaModelRunner(
    const RandomModelSpec& spec, const CudaRunnerOptions& options) {
  return CreateCudaModelRunner(
      spec.config,
      [&spec](const std::string& device_name) {
        return cuda::MakeRandomWeights(spec, device_name, nullptr);
      },
      options);
}

}  // namespace tessera::runtime
