#include "runtime/cuda/attention_shapes.h"

#include <algorithm>

namespace tessera::runtime::cuda {
namespace {

struct Shape {
  int32_t head_dim;
  int32_t group;
};
// THE list (attention.cu's dispatch instantiates exactly these).
constexpr Shape kAttentionShapes[] = {{256, 2}, {512, 16}, {16, 2}, {32, 4}, {64, 2}, {128, 4}};

}  // namespace

bool AttentionShapeSupported(int32_t head_dim, int32_t group) {
  for (const Shape& s : kAttentionShapes) {
    if (s.head_dim == head_dim && s.group == group) return true;
  }
  return false;
}

std::string SupportedAttentionShapes() {
  return "256/2 and 512/16 (Gemma 4 12B), 16/2 and 32/4 (gemma4-tiny), 64/2 and 128/4 "
         "(gemma4-quant-s)";
}

int64_t AttentionWorkspaceFloats(int32_t total_rows, int32_t num_q_heads, int32_t head_dim,
                                 int32_t num_splits) {
  if (num_splits <= 1) return 0;
  return static_cast<int64_t>(num_splits) * total_rows * num_q_heads * (head_dim + 2);
}

int32_t ChooseDecodeSplits(int32_t num_seqs, int32_t num_kv_heads, int32_t max_kv_len,
                           int32_t num_sms, int32_t min_keys_per_split) {
  const int64_t ctas = std::max<int64_t>(1, static_cast<int64_t>(num_seqs) * num_kv_heads);
  const int64_t want = std::max<int64_t>(1, (2LL * num_sms + ctas - 1) / ctas);
  const int64_t cap = std::max<int64_t>(1, max_kv_len / std::max(1, min_keys_per_split));
  return static_cast<int32_t>(std::min<int64_t>({want, cap, kMaxAttentionSplits}));
}

}  // namespace tessera::runtime::cuda
