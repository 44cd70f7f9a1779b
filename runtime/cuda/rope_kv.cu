// Launcher of the fused QK-norm + RoPE + V-norm + KV write (rope_kv.h): validation and the one
// dispatch over head_dim.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/rope_kv.cuh"
#include "runtime/cuda/rope_kv.h"

namespace tessera::runtime::cuda {

std::vector<float> RopeInvFreq(int32_t head_dim, float theta, int32_t rotated_pairs) {
  std::vector<float> f(head_dim / 2, 0.0f);
  for (int i = 0; i < rotated_pairs && i < head_dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    f[i] = 1.0f / std::pow(theta, exponent);
  }
  return f;
}

absl::Status ValidateRopeKv(const RopeKvParams& p) {
  const int d = p.kv.head_dim;
  if (d != 16 && d != 32 && d != 64 && d != 128 && d != 256 && d != 512) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope+kv write: unsupported head_dim ", d,
                     "; supported: 16, 32 (gemma4-tiny), 64, 128 (gemma4-quant-s), 256, 512"));
  }
  if (p.num_rows < 0 || p.num_q_heads <= 0 || p.kv.num_kv_heads <= 0 || p.kv.block_size < 1 ||
      p.kv.layer < 0 || p.kv.layer >= p.kv.num_layers) {
    return absl::InvalidArgumentError("rope+kv write: bad head counts, block size or layer");
  }
  if (p.num_rows > 0 &&
      (p.qkv == nullptr || p.q_out == nullptr || p.q_norm_weight == nullptr ||
       p.k_norm_weight == nullptr || p.inv_freq == nullptr || p.positions == nullptr ||
       p.slot_mapping == nullptr || p.kv.pool == nullptr)) {
    return absl::InvalidArgumentError("rope+kv write: a required device pointer is null");
  }
  return absl::OkStatus();
}

absl::Status LaunchRopeKvWrite(const RopeKvParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateRopeKv(p); !s.ok()) return s;
  if (p.num_rows == 0) return absl::OkStatus();
  using rope_kv_internal::RopeKvKernel;
  const dim3 grid(p.num_rows), block(rope_kv_internal::kWarps * 32);
  switch (p.kv.head_dim) {
    case 16:
      TESSERA_LAUNCH(RopeKvKernel<16>, grid, block, stream, p);
      break;
    case 32:
      TESSERA_LAUNCH(RopeKvKernel<32>, grid, block, stream, p);
      break;
    case 64:
      TESSERA_LAUNCH(RopeKvKernel<64>, grid, block, stream, p);
      break;
    case 128:
      TESSERA_LAUNCH(RopeKvKernel<128>, grid, block, stream, p);
      break;
    case 256:
      TESSERA_LAUNCH(RopeKvKernel<256>, grid, block, stream, p);
      break;
    case 512:
      TESSERA_LAUNCH(RopeKvKernel<512>, grid, block, stream, p);
      break;
    default:
      return absl::InternalError("rope+kv write: validated head_dim missing from dispatch");
  }
  return LaunchStatus("RopeKvKernel");
}

}  // namespace tessera::runtime::cuda
