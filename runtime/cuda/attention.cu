// Launchers for paged attention (attention.h): validation and the one dispatch over the closed list
// of (head_dim, query heads per KV head). The kernels are instantiated in attention_instances_*.cu.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/attention.h"
#include "runtime/cuda/cuda_common.cuh"

namespace tessera::runtime::cuda {
namespace attention_internal {
template <int D, int GROUP, int QR>
absl::Status RunPagedAttention(const AttentionParams& p, cudaStream_t stream);
}  // namespace attention_internal

namespace {

// Query rows per prefill CTA: 16 query vectors per CTA (4 per warp) whatever the group size.
template <int GROUP>
constexpr int PrefillRows() {
  return GROUP >= 16 ? 1 : 16 / GROUP;
}

// THE dispatch over attention_shapes.h's list (ValidateAttention has checked the shape against it);
// adding a shape means adding it there, here, and instantiating it in an attention_instances_*.cu
// file.
template <bool kDecode>
absl::Status Dispatch(const AttentionParams& p, cudaStream_t stream) {
  using attention_internal::RunPagedAttention;
  const int d = p.kv.head_dim, g = p.num_q_heads / p.kv.num_kv_heads;
  if (d == 256 && g == 2)
    return RunPagedAttention < 256, 2, kDecode ? 1 : PrefillRows<2>() > (p, stream);
  if (d == 512 && g == 16)
    return RunPagedAttention < 512, 16, kDecode ? 1 : PrefillRows<16>() > (p, stream);
  if (d == 16 && g == 2)
    return RunPagedAttention < 16, 2, kDecode ? 1 : PrefillRows<2>() > (p, stream);
  if (d == 32 && g == 4)
    return RunPagedAttention < 32, 4, kDecode ? 1 : PrefillRows<4>() > (p, stream);
  if (d == 64 && g == 2)
    return RunPagedAttention < 64, 2, kDecode ? 1 : PrefillRows<2>() > (p, stream);
  if (d == 128 && g == 4)
    return RunPagedAttention < 128, 4, kDecode ? 1 : PrefillRows<4>() > (p, stream);
  return absl::InternalError(absl::StrCat("paged attention: shape head_dim=", d, " with ", g,
                                          " query heads per KV head is listed in "
                                          "attention_shapes.cc but not dispatched"));
}

}  // namespace

absl::Status ValidateAttention(const AttentionParams& p) {
  if (p.kv.num_kv_heads <= 0 || p.num_q_heads <= 0 || p.num_q_heads % p.kv.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("paged attention: ", p.num_q_heads,
                                                   " query heads do not divide into ",
                                                   p.kv.num_kv_heads, " KV heads"));
  }
  const int d = p.kv.head_dim, g = p.num_q_heads / p.kv.num_kv_heads;
  if (!AttentionShapeSupported(d, g)) {
    return absl::InvalidArgumentError(
        absl::StrCat("paged attention: unsupported shape head_dim=", d, " with ", g,
                     " query heads per KV head; supported: ", SupportedAttentionShapes()));
  }
  if (p.kv.block_size < 1 || p.kv.block_size > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("paged attention: block_size ", p.kv.block_size, " is outside [1, 256]"));
  }
  if (p.kv.layer < 0 || p.kv.layer >= p.kv.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("paged attention: layer ", p.kv.layer,
                                                   " is outside the group's ", p.kv.num_layers));
  }
  if (p.num_seqs < 0 || p.total_rows < 0 || p.max_rows_per_seq < 1 || p.window < 0) {
    return absl::InvalidArgumentError("paged attention: negative sizes or max_rows_per_seq < 1");
  }
  if (p.num_seqs > 0 &&
      (p.q == nullptr || p.out == nullptr || p.kv.pool == nullptr || p.row_start == nullptr ||
       p.start_pos == nullptr || p.block_tables == nullptr)) {
    return absl::InvalidArgumentError("paged attention: a required device pointer is null");
  }
  if ((p.bidi_begin == nullptr) != (p.bidi_end == nullptr)) {
    return absl::InvalidArgumentError("paged attention: bidi_begin and bidi_end go together");
  }
  if (p.q_row_stride < static_cast<int64_t>(p.num_q_heads) * d ||
      p.out_row_stride < static_cast<int64_t>(p.num_q_heads) * d || p.q_row_stride % 8 != 0) {
    return absl::InvalidArgumentError(
        "paged attention: row strides must cover num_q_heads * head_dim and q's be a multiple of 8 "
        "(16-byte loads)");
  }
  // The kernels read q rows and K/V rows with 16-byte vector loads.
  if (reinterpret_cast<uintptr_t>(p.q) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(p.kv.pool) % 16 != 0) {
    return absl::InvalidArgumentError("paged attention: q and the KV pool must be 16-byte aligned");
  }
  if (p.num_splits < 1 || p.num_splits > kMaxAttentionSplits) {
    return absl::InvalidArgumentError(absl::StrCat("paged attention: num_splits ", p.num_splits,
                                                   " is outside [1, ", kMaxAttentionSplits, "]"));
  }
  if (p.num_splits > 1 && p.workspace == nullptr) {
    return absl::InvalidArgumentError("paged attention: num_splits > 1 needs a workspace");
  }
  if (static_cast<int64_t>(p.max_rows_per_seq) > 65535LL * 16) {
    return absl::InvalidArgumentError(
        "paged attention: max_rows_per_seq is too large for one launch");
  }
  return absl::OkStatus();
}

absl::Status LaunchPagedDecodeAttention(const AttentionParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateAttention(p); !s.ok()) return s;
  if (p.max_rows_per_seq != 1) {
    return absl::InvalidArgumentError("paged decode attention: max_rows_per_seq must be 1");
  }
  if (p.num_seqs == 0) return absl::OkStatus();
  return Dispatch<true>(p, stream);
}

absl::Status LaunchPagedPrefillAttention(const AttentionParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateAttention(p); !s.ok()) return s;
  if (p.num_seqs == 0) return absl::OkStatus();
  return Dispatch<false>(p, stream);
}

}  // namespace tessera::runtime::cuda
