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

bool DeviceMatrix::quantized() const {
  for (const DeviceMatrixPart& p : parts) {
    if (IsQuantized(p.format)) return true;
  }
  return false;
}

absl::Status WeightAllocator::Allocate(DeviceMatrix* m, int64_t rows, int64_t cols) {
  return Allocate(m, cols, {{WeightFormat::kBf16, rows}});
}

absl::Status WeightAllocator::Allocate(
    DeviceMatrix* m, int64_t cols, const std::vector<std::pair<WeightFormat, int64_t>>& pieces) {
  m->cols = cols;
  m->rows = 0;
  m->parts.clear();
  for (const auto& [format, rows] : pieces) {
    if (std::string why = CheckCols(format, cols); !why.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("CUDA runner: a ", WeightFormatName(format),
                                                     " matrix of ", cols, " columns: ", why));
    }
    if (!m->parts.empty() && m->parts.back().format == format) {
      m->parts.back().rows += rows;
    } else {
      m->parts.push_back(DeviceMatrixPart{format, m->rows, rows, nullptr});
    }
    m->rows += rows;
  }
  // Each part 256-byte aligned in one buffer.
  std::vector<int64_t> offsets;
  int64_t bytes = 0;
  for (const DeviceMatrixPart& p : m->parts) {
    offsets.push_back(bytes);
    bytes = (bytes + p.rows * RowBytes(p.format, cols) + 255) / 256 * 256;
  }
  TESSERA_RETURN_IF_ERROR(Allocate(&m->buf, std::max<int64_t>(bytes, 1)));
  for (size_t i = 0; i < m->parts.size(); ++i) {
    m->parts[i].data = m->buf.as<char>() + offsets[i];
  }
  return absl::OkStatus();
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

WeightFormat DeviceFormatOf(const WeightMatrix& m) {
  using T = WeightMatrix::Type;
  switch (m.type) {
    case T::kQ8_0:
      return WeightFormat::kQ8_0;
    case T::kQ4_0:
      return WeightFormat::kQ4_0;
    case T::kQ4_1:
      return WeightFormat::kQ4_1;
    case T::kQ4_K:
      return WeightFormat::kQ4_K;
    case T::kQ5_K:
      return WeightFormat::kQ5_K;
    case T::kQ6_K:
      return WeightFormat::kQ6_K;
    default:
      // F32, F16 and BF16 are stored in bf16, as is anything else RowToFloat decodes (Q5_0 and
      // Q5_1, which no Gemma 4 GGUF uses and no kernel here reads as blocks).
      return WeightFormat::kBf16;
  }
}

int64_t WidestQuantizedCols(const DeviceWeights& w) {
  int64_t widest = 0;
  auto see = [&](const DeviceMatrix& m) {
    if (m.quantized()) widest = std::max(widest, m.cols);
  };
  see(w.embed);
  for (const DeviceLayer& l : w.layers) {
    for (const DeviceMatrix* m : {&l.qkv, &l.o, &l.gate_up, &l.down}) see(*m);
  }
  see(w.v_dense);
  see(w.v_proj);
  see(w.a_proj);
  return widest;
}

ModelFormats FormatsOf(const ModelConfig& config, const ModelWeights& w) {
  ModelFormats f;
  f.embed = DeviceFormatOf(w.embed_tokens);
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& lw = w.layers[l];
    const WeightFormat v =
        config.text.layers[l].k_eq_v ? WeightFormat::kBf16 : DeviceFormatOf(lw.v_proj);
    f.layers.push_back(LayerFormats{DeviceFormatOf(lw.q_proj), DeviceFormatOf(lw.k_proj), v,
                                    DeviceFormatOf(lw.o_proj), DeviceFormatOf(lw.gate_proj),
                                    DeviceFormatOf(lw.up_proj), DeviceFormatOf(lw.down_proj)});
  }
  return f;
}

namespace {

// The part of `dst` holding output row `row`.
const DeviceMatrixPart* PartOf(const DeviceMatrix& dst, int64_t row) {
  for (const DeviceMatrixPart& p : dst.parts) {
    if (row >= p.row0 && row < p.row0 + p.rows) return &p;
  }
  return nullptr;
}

// Uploads a WeightMatrix into rows [row0_out, row0_out + m.rows) of `dst`, which must lie in one
// part of m's device format: quantized blocks are copied as they are; float rows are widened to
// bf16 through a host buffer of about 64 MiB. The copies are from pageable memory on the legacy
// stream, so each returns once its source has been staged and the buffer may be refilled.
absl::Status UploadMatrixRows(const WeightMatrix& m, DeviceMatrix* dst, int64_t row0_out) {
  const int64_t cols = m.cols;
  const DeviceMatrixPart* part = PartOf(*dst, row0_out);
  const WeightFormat format = DeviceFormatOf(m);
  if (cols != dst->cols || part == nullptr || part->format != format ||
      row0_out + m.rows > part->row0 + part->rows) {
    return absl::InternalError(absl::StrCat("CUDA runner: a [", m.rows, ", ", m.cols, "] ",
                                            WeightFormatName(format), " matrix does not fit rows ",
                                            row0_out, ".. of [", dst->rows, ", ", dst->cols, "]"));
  }
  char* base = static_cast<char*>(part->data) + (row0_out - part->row0) * RowBytes(format, cols);
  if (IsQuantized(format)) {
    return CopyToDeviceAsync(base, m.data, m.rows * RowBytes(format, cols), nullptr);
  }
  const int64_t chunk = std::max<int64_t>(1, (int64_t{32} << 20) / std::max<int64_t>(1, cols));
  std::vector<Bf16> host;
  std::vector<float> row(cols);
  Bf16* out = reinterpret_cast<Bf16*>(base);
  for (int64_t r0 = 0; r0 < m.rows; r0 += chunk) {
    const int64_t n = std::min(chunk, m.rows - r0);
    host.resize(n * cols);
    if (m.type == WeightMatrix::Type::kBF16) {
      std::memcpy(host.data(), m.row(r0), n * cols * 2);
    } else {
      for (int64_t r = 0; r < n; ++r) {
        m.RowToFloat(r0 + r, row.data());
        for (int64_t c = 0; c < cols; ++c) host[r * cols + c] = FloatToBf16(row[c]);
      }
    }
    TESSERA_RETURN_IF_ERROR(
        CopyToDeviceAsync(out + r0 * cols, host.data(), n * cols * sizeof(Bf16), nullptr));
  }
  return absl::OkStatus();
}

// Allocates `dst` as `pieces` stacked in order (each in its device format) and uploads them.
absl::Status UploadStacked(const std::vector<const WeightMatrix*>& pieces, int64_t cols,
                           WeightAllocator* alloc, DeviceMatrix* dst) {
  std::vector<std::pair<WeightFormat, int64_t>> layout;
  for (const WeightMatrix* m : pieces) layout.emplace_back(DeviceFormatOf(*m), m->rows);
  TESSERA_RETURN_IF_ERROR(alloc->Allocate(dst, cols, layout));
  int64_t row = 0;
  for (const WeightMatrix* m : pieces) {
    TESSERA_RETURN_IF_ERROR(UploadMatrixRows(*m, dst, row));
    row += m->rows;
  }
  return absl::OkStatus();
}

absl::Status UploadLayer(const ModelConfig& config, const LayerWeights& lw, bool bf16_constants,
                         const LayerConfig& lc, WeightAllocator* alloc, DeviceLayer* d) {
  const int64_t H = config.text.hidden_size, I = config.text.intermediate_size;
  d->SetShape(config.text.num_heads, lc);
  std::vector<const WeightMatrix*> qkv = {&lw.q_proj, &lw.k_proj};
  if (!lc.k_eq_v) qkv.push_back(&lw.v_proj);
  TESSERA_RETURN_IF_ERROR(UploadStacked(qkv, H, alloc, &d->qkv));
  TESSERA_RETURN_IF_ERROR(UploadStacked({&lw.o_proj}, d->qd, alloc, &d->o));
  TESSERA_RETURN_IF_ERROR(UploadStacked({&lw.gate_proj, &lw.up_proj}, H, alloc, &d->gate_up));
  TESSERA_RETURN_IF_ERROR(UploadStacked({&lw.down_proj}, I, alloc, &d->down));
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
  TESSERA_RETURN_IF_ERROR(UploadStacked({&w.embed_tokens}, H, &alloc, &out->embed));
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
    TESSERA_RETURN_IF_ERROR(UploadStacked({&v.patch_dense}, kPatchValues, &alloc, &out->v_dense));
    TESSERA_RETURN_IF_ERROR(UploadStacked({&v.projection}, D, &alloc, &out->v_proj));
  }
  if (out->has_audio) {
    TESSERA_RETURN_IF_ERROR(
        UploadStacked({&w.audio.projection}, config.audio.audio_embed_dim, &alloc, &out->a_proj));
  }
  TESSERA_RETURN_IF_ERROR(Synchronize());
  return out;
}

}  // namespace tessera::runtime::cuda
