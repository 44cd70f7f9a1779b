#include "runtime/cpu/media_embedder.h"

#include <vector>

#include "runtime/cpu/kernels.h"

namespace tessera::runtime::cpu {

void EmbedMediaRows(const ModelConfig& config, const ModelWeights& weights, const MediaItem& item,
                    int32_t item_row, int32_t count, float* out, int64_t ldo, ThreadPool* pool) {
  if (count <= 0) return;
  const int64_t H = config.text.hidden_size;
  if (item.kind == MediaKind::kAudio) {
    std::vector<float> normed(static_cast<size_t>(count) * kAudioFrameSamples);
    for (int32_t i = 0; i < count; ++i) {
      RmsNorm(item.row(item_row + i), kAudioFrameSamples, nullptr, config.audio.rms_norm_eps,
              normed.data() + static_cast<size_t>(i) * kAudioFrameSamples);
    }
    MatMul(normed.data(), count, weights.audio.projection, out, ldo, pool);
    return;
  }
  const VisionWeights& v = weights.vision;
  const VisionConfig& vc = config.vision;
  const int64_t D = vc.mm_embed_dim;
  std::vector<float> ln1(static_cast<size_t>(count) * kPatchValues);
  pool->ParallelFor(count, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      LayerNorm(item.row(item_row + static_cast<int32_t>(i)), kPatchValues, v.ln1_weight.data(),
                v.ln1_bias.data(), vc.layer_norm_eps, ln1.data() + i * kPatchValues);
    }
  });
  std::vector<float> d(static_cast<size_t>(count) * D);
  MatMul(ln1.data(), count, v.patch_dense, d.data(), D, pool);
  for (int32_t i = 0; i < count; ++i) {
    float* row = d.data() + static_cast<size_t>(i) * D;
    for (int64_t j = 0; j < D; ++j) row[j] += v.patch_dense_bias[j];
    LayerNorm(row, D, v.ln2_weight.data(), v.ln2_bias.data(), vc.layer_norm_eps, row);
    const int32_t x = item.positions[2 * (item_row + i)];
    const int32_t y = item.positions[2 * (item_row + i) + 1];
    const float* px = v.pos_embedding.data() + (static_cast<size_t>(x) * 2 + 0) * D;
    const float* py = v.pos_embedding.data() + (static_cast<size_t>(y) * 2 + 1) * D;
    for (int64_t j = 0; j < D; ++j) row[j] += px[j] + py[j];
    LayerNorm(row, D, v.pos_norm_weight.data(), v.pos_norm_bias.data(), vc.layer_norm_eps, row);
    RmsNorm(row, D, nullptr, vc.rms_norm_eps, row);
  }
  MatMul(d.data(), count, v.projection, out, ldo, pool);
  (void)H;
}

}  // namespace tessera::runtime::cpu
