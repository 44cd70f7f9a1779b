#include "runtime/cuda/cuda_weights.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "runtime/cuda/rope_kv.h"
#include "runtime/cuda/stream.h"
#include "runtime/media/media.h"

namespace tessera::runtime::cuda {

void DeviceLayer::SetShape(int32_t num_heads, const LayerConfig& lc) {
  qd = int64_t{num_heads} * lc.head_dim;
  kd = int64_t{lc.num_kv_heads} * lc.head_dim;
  qkv_width = qd + kd * (lc.k_eq_v ? 1 : 2);
}

absl::Status WeightAllocator::Allocate(DeviceBuffer* b, int64_t bytes) {
  auto buf = DeviceBuffer::Allocate(bytes);
  if (!buf.ok()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("CUDA runner: the weights do not fit on ", device_name_, " (", weights_->bytes,
                     " bytes so far, then ", bytes, " more): ", buf.status().message()));
  }
  *b = std::move(*buf);
  weights_->bytes += bytes;
  return absl::OkStatus();
}

absl::Status WeightAllocator::Allocate(DeviceMatrix* m, int64_t rows, int64_t cols) {
  m->rows = rows;
  m->cols = cols;
  return Allocate(&m->buf, rows * cols * int64_t{sizeof(Bf16)});
}

absl::Status WeightAllocator::UploadF32(DeviceBuffer* b, const std::vector<float>& v) {
  TESSERA_RETURN_IF_ERROR(Allocate(b, std::max<int64_t>(1, v.size()) * 4));
  return v.empty() ? absl::OkStatus() : b->CopyFromHost(v.data(), v.size() * 4);
}

absl::Status WeightAllocator::UploadBf16(DeviceBuffer* b, const std::vector<float>& v) {
  std::vector<Bf16> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = FloatToBf16(v[i]);
  TESSERA_RETURN_IF_ERROR(Allocate(b, std::max<int64_t>(1, h.size()) * 2));
  return h.empty() ? absl::OkStatus() : b->CopyFromHost(h.data(), h.size() * 2);
}

absl::Status UploadInvFreq(const LayerConfig& lc, bool bf16_constants, WeightAllocator* alloc,
                           DeviceLayer* layer) {
  std::vector<float> f = RopeInvFreq(lc.head_dim, lc.rope_theta, lc.rope_pairs);
  if (bf16_constants) {
    for (float& v : f) v = RoundBf16(v);
  }
  return alloc->UploadF32(&layer->inv_freq, f);
}

namespace {

// Widens a WeightMatrix into bf16 rows starting at row `row0_out` of `dst` (device), through a
// host buffer of about 64 MiB. The copies are from pageable memory on the legacy stream, so each
// returns once its source has been staged and the buffer may be refilled.
absl::Status UploadMatrixRows(const WeightMatrix& m, DeviceMatrix* dst, int64_t row0_out) {
  const int64_t cols = m.cols;
  if (cols != dst->cols || row0_out + m.rows > dst->rows) {
    return absl::InternalError(absl::StrCat("CUDA runner: a [", m.rows, ", ", m.cols,
                                            "] matrix does not fit rows ", row0_out, ".. of [",
                                            dst->rows, ", ", dst->cols, "]"));
  }
  const int64_t chunk = std::max<int64_t>(1, (int64_t{32} << 20) / std::max<int64_t>(1, cols));
  std::vector<Bf16> host;
  std::vector<float> row(cols);
  Bf16* out = dst->buf.as<Bf16>();
  for (int64_t r0 = 0; r0 < m.rows; r0 += chunk) {
    const int64_t n = std::min(chunk, m.rows - r0);
    host.resize(n * cols);
    if (m.type == WeightMatrix::Type::kBF16) {
      std::memcpy(host.data(), static_cast<const char*>(m.data) + r0 * cols * 2, n * cols * 2);
    } else {
      for (int64_t r = 0; r < n; ++r) {
        m.RowToFloat(r0 + r, row.data());
        for (int64_t c = 0; c < cols; ++c) host[r * cols + c] = FloatToBf16(row[c]);
      }
    }
    TESSERA_RETURN_IF_ERROR(CopyToDeviceAsync(out + (row0_out + r0) * cols, host.data(),
                                              n * cols * sizeof(Bf16), nullptr));
  }
  return absl::OkStatus();
}

absl::Status UploadLayer(const ModelConfig& config, const LayerWeights& lw, bool bf16_constants,
                         const LayerConfig& lc, WeightAllocator* alloc, DeviceLayer* d) {
  const int64_t H = config.text.hidden_size, I = config.text.intermediate_size;
  d->SetShape(config.text.num_heads, lc);
  TESSERA_RETURN_IF_ERROR(alloc->Allocate(&d->qkv, d->qkv_width, H));
  TESSERA_RETURN_IF_ERROR(UploadMatrixRows(lw.q_proj, &d->qkv, 0));
  TESSERA_RETURN_IF_ERROR(UploadMatrixRows(lw.k_proj, &d->qkv, d->qd));
  if (!lc.k_eq_v) TESSERA_RETURN_IF_ERROR(UploadMatrixRows(lw.v_proj, &d->qkv, d->qd + d->kd));
  TESSERA_RETURN_IF_ERROR(alloc->Allocate(&d->o, H, d->qd));
  TESSERA_RETURN_IF_ERROR(UploadMatrixRows(lw.o_proj, &d->o, 0));
  TESSERA_RETURN_IF_ERROR(alloc->Allocate(&d->gate_up, 2 * I, H));
  TESSERA_RETURN_IF_ERROR(UploadMatrixRows(lw.gate_proj, &d->gate_up, 0));
  TESSERA_RETURN_IF_ERROR(UploadMatrixRows(lw.up_proj, &d->gate_up, I));
  TESSERA_RETURN_IF_ERROR(alloc->Allocate(&d->down, H, I));
  TESSERA_RETURN_IF_ERROR(UploadMatrixRows(lw.down_proj, &d->down, 0));
  std::vector<float> norms;
  for (const auto* v : {&lw.input_norm, &lw.post_attention_norm, &lw.pre_feedforward_norm,
                        &lw.post_feedforward_norm, &lw.q_norm, &lw.k_norm}) {
    norms.insert(norms.end(), v->begin(), v->end());
  }
  norms.push_back(lw.layer_scalar);
  TESSERA_RETURN_IF_ERROR(alloc->UploadBf16(&d->norms, norms));
  return UploadInvFreq(lc, bf16_constants, alloc, d);
}

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceWeights>> UploadCheckpointWeights(
    const ModelConfig& config, const ModelWeights& w, const std::string& device_name) {
  auto out = std::make_unique<DeviceWeights>();
  WeightAllocator alloc(device_name, out.get());
  const TextConfig& tc = config.text;
  const int64_t H = tc.hidden_size;
  TESSERA_RETURN_IF_ERROR(alloc.Allocate(&out->embed, tc.vocab_size, H));
  TESSERA_RETURN_IF_ERROR(UploadMatrixRows(w.embed_tokens, &out->embed, 0));
  TESSERA_RETURN_IF_ERROR(alloc.UploadBf16(&out->final_norm, w.final_norm));
  out->embed_scale = w.embed_scale;
  out->layers.resize(tc.num_layers);
  for (int32_t l = 0; l < tc.num_layers; ++l) {
    TESSERA_RETURN_IF_ERROR(
        UploadLayer(config, w.layers[l], w.bf16_constants, tc.layers[l], &alloc, &out->layers[l]));
  }
  out->has_vision = w.has_vision;
  out->has_audio = w.has_audio;
  if (out->has_vision) {
    const VisionWeights& v = w.vision;
    const int64_t D = config.vision.mm_embed_dim;
    for (auto [buf, src] : std::vector<std::pair<DeviceBuffer*, const std::vector<float>*>>{
             {&out->v_ln1_w, &v.ln1_weight},
             {&out->v_ln1_b, &v.ln1_bias},
             {&out->v_dense_b, &v.patch_dense_bias},
             {&out->v_ln2_w, &v.ln2_weight},
             {&out->v_ln2_b, &v.ln2_bias},
             {&out->v_pos, &v.pos_embedding},
             {&out->v_posn_w, &v.pos_norm_weight},
             {&out->v_posn_b, &v.pos_norm_bias}}) {
      TESSERA_RETURN_IF_ERROR(alloc.UploadF32(buf, *src));
    }
    TESSERA_RETURN_IF_ERROR(alloc.Allocate(&out->v_dense, D, kPatchValues));
    TESSERA_RETURN_IF_ERROR(UploadMatrixRows(v.patch_dense, &out->v_dense, 0));
    TESSERA_RETURN_IF_ERROR(alloc.Allocate(&out->v_proj, H, D));
    TESSERA_RETURN_IF_ERROR(UploadMatrixRows(v.projection, &out->v_proj, 0));
  }
  if (out->has_audio) {
    TESSERA_RETURN_IF_ERROR(alloc.Allocate(&out->a_proj, H, config.audio.audio_embed_dim));
    TESSERA_RETURN_IF_ERROR(UploadMatrixRows(w.audio.projection, &out->a_proj, 0));
  }
  TESSERA_RETURN_IF_ERROR(Synchronize());
  return out;
}

}  // namespace tessera::runtime::cuda
