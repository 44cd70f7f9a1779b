#include "runtime/cpu/media_embedder.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/kernels.h"

namespace tessera::runtime::cpu {

absl::Status ValidateMediaRows(const ModelConfig& config, const ModelWeights& weights,
                               const MediaItem* item, int32_t item_row, int32_t count) {
  if (item == nullptr) return absl::InvalidArgumentError("media rows without an item");
  if (count < 0 || item_row < 0 || item_row + static_cast<int64_t>(count) > item->num_rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("media rows [", item_row, ", ", item_row + static_cast<int64_t>(count),
                     ") outside the item's ", item->num_rows, " rows"));
  }
  if (item->kind == MediaKind::kImage) {
    if (!weights.has_vision) {
      return absl::InvalidArgumentError("this model has no vision weights; it cannot take images");
    }
    if (item->rows.size() < static_cast<size_t>(item->num_rows) * kPatchValues ||
        item->positions.size() < static_cast<size_t>(item->num_rows) * 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("image item of ", item->num_rows, " patches carries ", item->rows.size(),
                       " values and ", item->positions.size(), " position entries; expected ",
                       kPatchValues, " and 2 per patch"));
    }
    const int32_t limit = config.vision.mm_posemb_size;
    for (int32_t r = item_row; r < item_row + count; ++r) {
      const int32_t x = item->positions[2 * r], y = item->positions[2 * r + 1];
      if (x < 0 || y < 0 || x >= limit || y >= limit) {
        return absl::InvalidArgumentError(
            absl::StrCat("image patch ", r, " at (x=", x, ", y=", y,
                         ") is outside the model's position table of ", limit, " per side"));
      }
    }
    return absl::OkStatus();
  }
  if (item->kind == MediaKind::kAudio) {
    if (!weights.has_audio) {
      return absl::InvalidArgumentError("this model has no audio weights; it cannot take audio");
    }
    if (config.audio.audio_embed_dim != kAudioFrameSamples) {
      return absl::InvalidArgumentError(
          absl::StrCat("the model's audio frames are ", config.audio.audio_embed_dim,
                       " samples; media items carry ", kAudioFrameSamples));
    }
    if (item->rows.size() < static_cast<size_t>(item->num_rows) * kAudioFrameSamples) {
      return absl::InvalidArgumentError(absl::StrCat("audio item of ", item->num_rows,
                                                     " frames carries only ", item->rows.size(),
                                                     " samples"));
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError("unknown media kind");
}

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
