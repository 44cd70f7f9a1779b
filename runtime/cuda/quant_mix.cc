#include "runtime/cuda/quant_mix.h"

#include <algorithm>

#include "runtime/media/media.h"

namespace tessera::runtime::cuda {
namespace {

// llama-quant.cpp's use_more_bits: the first and last eighth of the layers, and every third in
// between, get more bits in the _M mixes. i counts only the layers that have the tensor (K = V
// layers have no attn_v).
bool UseMoreBits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

}  // namespace

const char* QuantMixName(QuantMix mix) {
  switch (mix) {
    case QuantMix::kBf16:
      return "bf16";
    case QuantMix::kQ8_0:
      return "Q8_0";
    case QuantMix::kQ6_K:
      return "Q6_K";
    case QuantMix::kQ5_K_M:
      return "Q5_K_M";
    case QuantMix::kQ4_K_M:
      return "Q4_K_M";
    case QuantMix::kQ4_0:
      return "Q4_0";
  }
  return "?";
}

ModelFormats LlamaQuantizeFormats(const ModelConfig& config, QuantMix mix) {
  WeightFormat base = WeightFormat::kBf16;
  switch (mix) {
    case QuantMix::kBf16:
      base = WeightFormat::kBf16;
      break;
    case QuantMix::kQ8_0:
      base = WeightFormat::kQ8_0;
      break;
    case QuantMix::kQ6_K:
      base = WeightFormat::kQ6_K;
      break;
    case QuantMix::kQ5_K_M:
      base = WeightFormat::kQ5_K;
      break;
    case QuantMix::kQ4_K_M:
      base = WeightFormat::kQ4_K;
      break;
    case QuantMix::kQ4_0:
      base = WeightFormat::kQ4_0;
      break;
  }
  const bool more_bits_mix = mix == QuantMix::kQ4_K_M || mix == QuantMix::kQ5_K_M;
  ModelFormats f;
  // The tied embedding is the output head: Q6_K unless the base is Q8_0, Q6_K or bf16.
  f.embed = (mix == QuantMix::kQ4_K_M || mix == QuantMix::kQ5_K_M || mix == QuantMix::kQ4_0)
                ? WeightFormat::kQ6_K
                : base;
  const std::vector<LayerConfig>& layers = config.text.layers;
  const int n = static_cast<int>(layers.size());
  int n_v = 0;
  for (const LayerConfig& lc : layers) n_v += lc.k_eq_v ? 0 : 1;
  int i_v = 0;
  for (int l = 0; l < n; ++l) {
    LayerFormats lf{base, base, base, base, base, base, base};
    if (!layers[l].k_eq_v) {
      if (more_bits_mix && UseMoreBits(i_v, n_v)) lf.v = WeightFormat::kQ6_K;
      ++i_v;
    }
    if (more_bits_mix && UseMoreBits(l, n)) lf.down = WeightFormat::kQ6_K;
    f.layers.push_back(lf);
  }
  return f;
}

int64_t DeviceWeightBytes(const ModelConfig& config, const ModelFormats& formats) {
  const TextConfig& tc = config.text;
  const int64_t H = tc.hidden_size, I = tc.intermediate_size;
  int64_t bytes = int64_t{tc.vocab_size} * RowBytes(formats.embed, H) + 2 * H;  // + final norm.
  for (size_t l = 0; l < tc.layers.size(); ++l) {
    const LayerConfig& lc = tc.layers[l];
    const LayerFormats& f = formats.layers[l];
    const int64_t qd = int64_t{tc.num_heads} * lc.head_dim;
    const int64_t kd = int64_t{lc.num_kv_heads} * lc.head_dim;
    bytes += qd * RowBytes(f.q, H) + kd * RowBytes(f.k, H);
    if (!lc.k_eq_v) bytes += kd * RowBytes(f.v, H);
    bytes += H * RowBytes(f.o, qd);
    bytes += I * (RowBytes(f.gate, H) + RowBytes(f.up, H)) + H * RowBytes(f.down, I);
    bytes += 2 * (4 * H + 2 * int64_t{lc.head_dim} + 1);  // Norms and the layer scalar, bf16.
    bytes += 4 * (lc.head_dim / 2);                       // RoPE frequencies, fp32.
  }
  if (config.vision.present) {
    const int64_t D = config.vision.mm_embed_dim;
    bytes += 2 * (D * kPatchValues + H * D);  // patch_dense, projection (bf16)
    bytes +=
        4 * (2 * int64_t{kPatchValues} + 5 * D + int64_t{config.vision.mm_posemb_size} * 2 * D);
  }
  if (config.audio.present) bytes += 2 * H * config.audio.audio_embed_dim;
  return bytes;
}

int64_t WidestQuantizedCols(const ModelConfig& config, const ModelFormats& formats) {
  const TextConfig& tc = config.text;
  int64_t widest = IsQuantized(formats.embed) ? tc.hidden_size : 0;
  for (size_t l = 0; l < tc.layers.size(); ++l) {
    const LayerFormats& f = formats.layers[l];
    const int64_t qd = int64_t{tc.num_heads} * tc.layers[l].head_dim;
    for (WeightFormat x : {f.q, f.k, f.v, f.gate, f.up}) {
      if (IsQuantized(x)) widest = std::max<int64_t>(widest, tc.hidden_size);
    }
    if (IsQuantized(f.o)) widest = std::max(widest, qd);
    if (IsQuantized(f.down)) widest = std::max<int64_t>(widest, tc.intermediate_size);
  }
  return widest;
}

}  // namespace tessera::runtime::cuda
