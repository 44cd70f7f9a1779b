// Device code of paged attention (attention.h): one kernel template for decode and prefill, and the
// merge of KV-length splits. Compiled only through the explicit instantiations in
// attention_instances_*.cu; attention.cu holds the one dispatch over the closed shape list.
//
// Work decomposition. A CTA owns (sequence, tile of QR query rows, KV head, KV split) and all
// GROUP query heads that share that KV head: NQ = QR * GROUP query vectors. Four warps split the
// query vectors (QPW each) or, when there are fewer than four, the keys (KS warps per query, merged
// through shared memory at the end). K/V are staged tile by tile (TK keys) into shared memory with
// 16-byte loads gathered through the block table, so each key is read from memory once per CTA.
// Each warp keeps, per query, the running max m, denominator l and an fp32 accumulator spread over
// the lanes (online softmax), so no score matrix is ever materialised.
//
// Lane mapping of a head_dim vector: for head_dim >= 256, lane L owns dims c * 256 + 8 L + i
// (c < head_dim / 256, i < 8): one 16-byte vector per chunk, conflict-free in shared memory. For
// head_dim 64 / 128 (the gemma4-quant-s GGUF fixture), lane L owns dims [L v, L v + v), v =
// head_dim / 32. For the tiny fixture's head_dim 16 / 32, lane L owns dim L (lanes >= head_dim
// idle).
//
// NOTE: this is the SIMT first version; scores and P*V run on CUDA cores in fp32. Decode is
// memory-bound and fits this; prefill at 12B scale wants a tensor-core (wgmma) kernel, measured by
// tools/gpu_bench before and after.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "runtime/cuda/attention.h"
#include "runtime/cuda/cuda_common.cuh"

namespace tessera::runtime::cuda {
namespace attention_internal {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
// Mask value for scores and the initial running max. Finite, so exp(m_old - m_new) never sees
// (-inf) - (-inf).
constexpr float kNoScore = -1e30f;

template <int D>
struct LaneDims {
  static_assert(D % 256 == 0 || D <= 32 || (D % 32 == 0 && D < 256),
                "head_dim must be a multiple of 256, a multiple of 32 below 256, or at most 32");
  // head_dim >= 256: 8 contiguous dims per 256-dim chunk; 32 < head_dim < 256: head_dim / 32
  // contiguous dims; head_dim <= 32: one dim.
  static constexpr int kVec = D >= 256 ? 8 : (D > 32 ? D / 32 : 1);  // Contiguous dims per chunk.
  static constexpr int kChunks = D >= 256 ? D / 256 : 1;
  static constexpr int kPerLane = kVec * kChunks;  // Floats per lane.
  __device__ static __forceinline__ int Dim(int lane, int c, int i) {
    return D >= 256 ? c * 256 + lane * 8 + i : (D > 32 ? lane * kVec + i : lane);
  }
  __device__ static __forceinline__ bool Active(int lane) { return D > 32 || lane < D; }
  // Reads this lane's dims of a bf16 vector (global or shared memory) as floats; 0 when idle.
  __device__ static __forceinline__ void Read(const __nv_bfloat16* v, int lane, float* out) {
    if constexpr (D >= 256) {
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        const uint4 u = *reinterpret_cast<const uint4*>(v + c * 256 + lane * 8);
        const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float2 f = __bfloat1622float2(h[i]);
          out[c * 8 + 2 * i] = f.x;
          out[c * 8 + 2 * i + 1] = f.y;
        }
      }
    } else if constexpr (D > 32) {
#pragma unroll
      for (int i = 0; i < kVec; ++i) out[i] = __bfloat162float(v[lane * kVec + i]);
    } else {
      out[0] = lane < D ? __bfloat162float(v[lane]) : 0.0f;
    }
  }
};

template <int D, int GROUP, int QR>
struct Config {
  static constexpr int kNq = QR * GROUP;
  static constexpr int kQpw = kNq >= kWarps ? kNq / kWarps : 1;  // Query vectors per warp.
  static constexpr int kKs = kNq >= kWarps ? 1 : kWarps / kNq;   // Warps sharing one query.
  static constexpr int kTk =
      (8192 / D) < 64 ? (8192 / D) : 64;       // Keys per shared tile (32 KiB K+V).
  static constexpr int kChunksPerKey = D / 8;  // 16-byte chunks per key row.
  static_assert(kNq % kWarps == 0 || kWarps % kNq == 0, "query vectors must tile the warps");
  static_assert(kWarps * (D + 2) * 4 <= 2 * kTk * D * 2, "split-warp merge must fit the K/V tile");
};

template <int D, int GROUP, int QR>
__global__ void __launch_bounds__(kThreads) PagedAttentionKernel(const AttentionParams p) {
  using C = Config<D, GROUP, QR>;
  using L = LaneDims<D>;
  constexpr int E = L::kPerLane;

  __shared__ __align__(16) __nv_bfloat16 smem_kv[2 * C::kTk * D];  // [K tile | V tile], [key][D].
  __shared__ bool key_ok[C::kTk];
  __nv_bfloat16* sk = smem_kv;
  __nv_bfloat16* sv = smem_kv + C::kTk * D;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int num_kv_heads = p.kv.num_kv_heads;
  const int seq = blockIdx.x;
  const int tile = blockIdx.y;
  const int kv_head = blockIdx.z % num_kv_heads;
  const int split = blockIdx.z / num_kv_heads;

  const int row0 = p.row_start[seq];
  const int rows = p.row_start[seq + 1] - row0;
  if (tile * QR >= rows) return;  // Uniform over the CTA.
  const int start = p.start_pos[seq];
  const int kv_len = start + rows;
  const int first_local = tile * QR;
  const int tile_rows = min(QR, rows - first_local);

  // Key range any row of this tile can see: [lo, hi).
  int lo = 0;
  if (p.window > 0) lo = max(0, start + first_local - p.window + 1);
  int hi = 0;
  for (int i = 0; i < tile_rows; ++i) {
    const int row = row0 + first_local + i;
    int reach = start + first_local + i + 1;
    if (p.bidi_end != nullptr && p.bidi_end[row] > p.bidi_begin[row])
      reach = max(reach, p.bidi_end[row]);
    hi = max(hi, reach);
  }
  hi = min(hi, kv_len);
  const int span = max(0, hi - lo);
  const int per_split = (span + p.num_splits - 1) / p.num_splits;
  const int k_begin = lo + split * per_split;
  const int k_end = min(hi, k_begin + per_split);

  // This warp's query vectors: index j = (warp / KS) * QPW + qi -> (local row j / GROUP, head j %
  // GROUP).
  const int ks = warp % C::kKs;
  float q[C::kQpw][E];
  float m[C::kQpw], l[C::kQpw], acc[C::kQpw][E];
  int qpos[C::kQpw], bb[C::kQpw], be[C::kQpw];
  bool qvalid[C::kQpw];
#pragma unroll
  for (int qi = 0; qi < C::kQpw; ++qi) {
    const int j = (warp / C::kKs) * C::kQpw + qi;
    const int local = j / GROUP;
    const int head = kv_head * GROUP + j % GROUP;
    qvalid[qi] = local < tile_rows;
    const int row = row0 + first_local + (qvalid[qi] ? local : 0);
    qpos[qi] = start + first_local + local;
    bb[qi] = p.bidi_begin != nullptr ? p.bidi_begin[row] : 0;
    be[qi] = p.bidi_end != nullptr ? p.bidi_end[row] : 0;
    L::Read(reinterpret_cast<const __nv_bfloat16*>(p.q) + row * p.q_row_stride + head * D, lane,
            q[qi]);
#pragma unroll
    for (int e = 0; e < E; ++e) {
      q[qi][e] *= p.scale;
      acc[qi][e] = 0.0f;
    }
    m[qi] = kNoScore;
    l[qi] = 0.0f;
  }

  const __nv_bfloat16* pool = reinterpret_cast<const __nv_bfloat16*>(p.kv.pool);
  const int32_t* table = p.block_tables + static_cast<int64_t>(seq) * p.block_table_stride;
  const int bs = p.kv.block_size;

  for (int t0 = k_begin; t0 < k_end; t0 += C::kTk) {
    const int n = min(C::kTk, k_end - t0);
    __syncthreads();  // The previous tile is consumed.
    for (int idx = threadIdx.x; idx < 2 * C::kTk * C::kChunksPerKey; idx += kThreads) {
      const int which = idx / (C::kTk * C::kChunksPerKey);  // 0 = K, 1 = V.
      const int rem = idx % (C::kTk * C::kChunksPerKey);
      const int key = rem / C::kChunksPerKey, c = rem % C::kChunksPerKey;
      uint4 v = make_uint4(0, 0, 0, 0);
      bool ok = false;
      if (key < n) {
        const int pos = t0 + key;
        const int block = table[pos / bs];
        if (block >= 0) {
          ok = true;
          v = *reinterpret_cast<const uint4*>(pool + p.kv.Offset(block, which, kv_head, pos % bs) +
                                              c * 8);
        }
      }
      reinterpret_cast<uint4*>(which == 0 ? sk : sv)[key * C::kChunksPerKey + c] = v;
      if (which == 0 && c == 0) key_ok[key] = ok;
    }
    __syncthreads();

    for (int kk = ks; kk < n; kk += C::kKs) {
      if (!key_ok[kk]) continue;
      const int kpos = t0 + kk;
      float kf[E];
      L::Read(sk + kk * D, lane, kf);
      float s[C::kQpw];
      bool any = false;
#pragma unroll
      for (int qi = 0; qi < C::kQpw; ++qi) {
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < E; ++e) dot = fmaf(q[qi][e], kf[e], dot);
        dot = WarpSum(dot);
        const bool visible = qvalid[qi] && (p.window == 0 || qpos[qi] - kpos < p.window) &&
                             (kpos <= qpos[qi] || (kpos >= bb[qi] && kpos < be[qi]));
        s[qi] = visible ? dot : kNoScore;
        any |= visible;
      }
      if (!any) continue;  // Warp-uniform: every lane has the same scores.
      float vf[E];
      L::Read(sv + kk * D, lane, vf);
#pragma unroll
      for (int qi = 0; qi < C::kQpw; ++qi) {
        if (s[qi] == kNoScore) continue;
        const float m_new = fmaxf(m[qi], s[qi]);
        const float c = __expf(m[qi] - m_new);
        const float pr = __expf(s[qi] - m_new);
        l[qi] = l[qi] * c + pr;
#pragma unroll
        for (int e = 0; e < E; ++e) acc[qi][e] = fmaf(pr, vf[e], acc[qi][e] * c);
        m[qi] = m_new;
      }
    }
  }

  if constexpr (C::kKs > 1) {
    // kQpw == 1 here: KS warps hold partial (m, l, acc) of the same query; fold them into warp ks
    // 0.
    __syncthreads();
    float* red = reinterpret_cast<float*>(smem_kv);  // [warp][D + 2]
    float* mine = red + warp * (D + 2);
#pragma unroll
    for (int c = 0; c < L::kChunks; ++c)
#pragma unroll
      for (int i = 0; i < L::kVec; ++i)
        if (L::Active(lane)) mine[L::Dim(lane, c, i)] = acc[0][c * L::kVec + i];
    if (lane == 0) {
      mine[D] = m[0];
      mine[D + 1] = l[0];
    }
    __syncthreads();
    if (ks == 0) {
      float mm = kNoScore;
      for (int w = 1; w < C::kKs; ++w) mm = fmaxf(mm, red[(warp + w) * (D + 2) + D]);
      const float m_all = fmaxf(m[0], mm);
      const float c0 = __expf(m[0] - m_all);
      l[0] *= c0;
#pragma unroll
      for (int e = 0; e < E; ++e) acc[0][e] *= c0;
      for (int w = 1; w < C::kKs; ++w) {
        const float* other = red + (warp + w) * (D + 2);
        const float cw = __expf(other[D] - m_all);
        l[0] += other[D + 1] * cw;
#pragma unroll
        for (int c = 0; c < L::kChunks; ++c)
#pragma unroll
          for (int i = 0; i < L::kVec; ++i)
            if (L::Active(lane)) acc[0][c * L::kVec + i] += cw * other[L::Dim(lane, c, i)];
      }
      m[0] = m_all;
    }
  }
  if (ks != 0) return;

#pragma unroll
  for (int qi = 0; qi < C::kQpw; ++qi) {
    if (!qvalid[qi]) continue;
    const int j = (warp / C::kKs) * C::kQpw + qi;
    const int row = row0 + first_local + j / GROUP;
    const int head = kv_head * GROUP + j % GROUP;
    if (p.num_splits == 1) {
      const float inv = l[qi] > 0.0f ? 1.0f / l[qi] : 0.0f;
      __nv_bfloat16* o = AsDevice(p.out) + row * p.out_row_stride + head * D;
#pragma unroll
      for (int c = 0; c < L::kChunks; ++c)
#pragma unroll
        for (int i = 0; i < L::kVec; ++i)
          if (L::Active(lane))
            o[L::Dim(lane, c, i)] = __float2bfloat16_rn(acc[qi][c * L::kVec + i] * inv);
    } else {
      // Workspace: acc [splits][total_rows][q_heads][D], then (m, l)
      // [splits][total_rows][q_heads][2].
      const int64_t slot =
          (static_cast<int64_t>(split) * p.total_rows + row) * p.num_q_heads + head;
      float* wa = p.workspace + slot * D;
#pragma unroll
      for (int c = 0; c < L::kChunks; ++c)
#pragma unroll
        for (int i = 0; i < L::kVec; ++i)
          if (L::Active(lane)) wa[L::Dim(lane, c, i)] = acc[qi][c * L::kVec + i];
      if (lane == 0) {
        float* wml =
            p.workspace + static_cast<int64_t>(p.num_splits) * p.total_rows * p.num_q_heads * D;
        wml[slot * 2] = m[qi];
        wml[slot * 2 + 1] = l[qi];
      }
    }
  }
}

// One CTA per (row, q head): out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s.
template <int D>
__global__ void MergeSplitsKernel(const AttentionParams p) {
  const int row = blockIdx.x, head = blockIdx.y;
  const int64_t per_split = static_cast<int64_t>(p.total_rows) * p.num_q_heads;
  const int64_t slot = static_cast<int64_t>(row) * p.num_q_heads + head;
  const float* wml = p.workspace + p.num_splits * per_split * D;
  float mm = kNoScore;
  for (int s = 0; s < p.num_splits; ++s) mm = fmaxf(mm, wml[(s * per_split + slot) * 2]);
  float denom = 0.0f;
  for (int s = 0; s < p.num_splits; ++s) {
    const float ls = wml[(s * per_split + slot) * 2 + 1];
    if (ls > 0.0f) denom += ls * __expf(wml[(s * per_split + slot) * 2] - mm);
  }
  const float inv = denom > 0.0f ? 1.0f / denom : 0.0f;
  __nv_bfloat16* o = AsDevice(p.out) + row * p.out_row_stride + head * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float sum = 0.0f;
    for (int s = 0; s < p.num_splits; ++s) {
      const float ls = wml[(s * per_split + slot) * 2 + 1];
      if (ls > 0.0f)
        sum += p.workspace[(s * per_split + slot) * D + d] *
               __expf(wml[(s * per_split + slot) * 2] - mm);
    }
    o[d] = __float2bfloat16_rn(sum * inv);
  }
}

// Launches one shape; the caller (attention.cu) has validated p.
template <int D, int GROUP, int QR>
absl::Status RunPagedAttention(const AttentionParams& p, cudaStream_t stream) {
  const int tiles = (p.max_rows_per_seq + QR - 1) / QR;
  const dim3 grid(p.num_seqs, tiles, p.kv.num_kv_heads * p.num_splits);
  auto* kernel = &PagedAttentionKernel<D, GROUP, QR>;
  TESSERA_LAUNCH(kernel, grid, kThreads, stream, p);
  absl::Status s = LaunchStatus("PagedAttentionKernel");
  if (!s.ok() || p.num_splits == 1) return s;
  const dim3 merge_grid(p.total_rows, p.num_q_heads);
  constexpr int kMergeThreads = D < 128 ? 32 : 128;
  auto* merge = &MergeSplitsKernel<D>;
  TESSERA_LAUNCH(merge, merge_grid, kMergeThreads, stream, p);
  return LaunchStatus("MergeSplitsKernel");
}

}  // namespace attention_internal

#define TESSERA_ATTENTION_INSTANCE(D, GROUP, QR)                             \
  template absl::Status attention_internal::RunPagedAttention<D, GROUP, QR>( \
      const AttentionParams&, cudaStream_t)

}  // namespace tessera::runtime::cuda
