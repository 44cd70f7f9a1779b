// The fused attention prologue for one layer, on the output of the QKV projection:
//   q   = rope(rms_per_head(q0) * w_qnorm)        -> q_out
//   k   = rope(rms_per_head(k0) * w_knorm)        -> K of the paged cache
//   v   = rms_per_head(v0)  (no weight)           -> V of the paged cache
// where v0 is the raw k projection on K=V (global) layers: pass v_offset == k_offset.
// Rounding follows the reference implementation (transformers): the normed value is rounded to
// bf16, RoPE uses cos/sin rounded to bf16 and the result is rounded once more. NeoX (rotate-half)
// pairs (i, i + head_dim/2); pair i turns by pos * inv_freq[i]; inv_freq[i] == 0 leaves it
// unrotated, which is how partial ("proportional") RoPE is expressed (RopeInvFreq).
//
// Closed list of head_dim: 16, 32, 64, 128, 256, 512.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "runtime/cuda/bf16.h"
#include "runtime/cuda/paged_kv.h"

struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace tessera::runtime::cuda {

struct RopeKvParams {
  // QKV projection output, bf16: row r, q head h, dim d at qkv[r * qkv_row_stride + q_offset +
  // h * head_dim + d]; K heads at k_offset, V heads at v_offset likewise.
  const Bf16* qkv = nullptr;
  int64_t qkv_row_stride = 0;
  int64_t q_offset = 0;
  int64_t k_offset = 0;
  int64_t v_offset = 0;
  // Normed, rotated queries: q_out[r * q_out_row_stride + h * head_dim + d]. May alias the q part
  // of qkv (each warp reads a head before writing it).
  Bf16* q_out = nullptr;
  int64_t q_out_row_stride = 0;
  const Bf16* q_norm_weight = nullptr;  // [head_dim]
  const Bf16* k_norm_weight = nullptr;  // [head_dim]
  const float* inv_freq = nullptr;      // [head_dim / 2], device.
  const int32_t* positions = nullptr;   // [num_rows]: absolute position of each row.
  // [num_rows]: where each row's K/V go, block_id * block_size + slot; negative = do not write.
  const int64_t* slot_mapping = nullptr;
  PagedKvView kv;  // This layer's view; kv.head_dim is the head_dim of q too.
  int32_t num_rows = 0;
  int32_t num_q_heads = 0;
  float eps = 1e-6f;
};

// inv_freq[i] = theta^(-2i / head_dim) for i < rotated_pairs, 0 for the rest (head_dim / 2
// entries), computed in fp32 like the reference. Sliding layers: rotated_pairs = head_dim / 2;
// Gemma 4 global layers: partial_rotary_factor * head_dim / 2 (64 of 256).
std::vector<float> RopeInvFreq(int32_t head_dim, float theta, int32_t rotated_pairs);

absl::Status ValidateRopeKv(const RopeKvParams& p);
absl::Status LaunchRopeKvWrite(const RopeKvParams& p, cudaStream_t stream);

}  // namespace tessera::runtime::cuda
