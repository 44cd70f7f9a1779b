// Device code of GPU sampling (sampling.h), one CTA per row.
//
// ArgmaxKernel: each thread scans a strided slice keeping (max, lowest id), then a shared-memory
// tree picks the CTA's winner.
//
// SampleKernel (1024 threads per row) reproduces runtime/sampler.cc step by step:
//  1. The row's penalty entries are applied once: the adjusted value of each entry's token goes to
//     the row's workspace and its bit is set in a bitmap, so every later read of the row is
//     raw[i], replaced by the workspace value where the bit is set (no copy of the row).
//  2. One pass: the raw row's max and sum of exp (online, for the logprob) and the argmax of the
//     adjusted row (lowest id on ties, never NaN or -inf); for top-k rows also a histogram of the
//     adjusted values. Greedy rows end here.
//  3. Scores (a - max) * (1 / temperature) as fp32 exactly as the CPU computes them; candidates
//     are score > -inf and score >= log(min_p). Candidates are ordered by (score desc, id asc),
//     i.e. by (key asc, id asc) with key = the bits of |score|. Top-k and top-p each keep a
//     prefix of that order.
//     a. Small kept sets (the usual top-k of tens, or a narrow nucleus): a prefix of at most 2048
//        candidates known to hold the kept set (from the value histogram for top-k, from a
//        histogram of score masses for top-p alone) is gathered into shared memory in one pass,
//        bitonic-sorted, cut, re-sorted by id and drawn from there.
//     b. Otherwise a 3-level radix selection over the key (11, 11 and 9 bits): a histogram of
//        counts and fp64 masses per digit in shared memory, a scan to the bin that crosses the
//        target, and the next level inside that bin. Equal keys (equal scores) are split by id
//        with one ordered pass (the r-th id among them).
//  4. The draw: u * (kept mass) is located by cumulative fp64 sums in id order: per-256-id tile
//     sums, a scan over tiles, then one tile walked id by id, as sampler.cc's Draw walks its kept
//     candidates (on path a, the same over the sorted list). Rounding differs from the CPU's
//     sequential sums only in the last bits, so the token differs only when the draw lies within
//     rounding of a cumulative-sum boundary.
//
// NOTE: every pass reads the row (1 MB at vocab 262144) with coalesced loads. Passes per row:
// greedy 1; temperature/min-p only 2; top-k (with or without top-p) with a small kept set 2,
// top-p alone with a small nucleus 3; large kept sets up to 10 (top-k and top-p, both cutting
// inside a tie group). Not yet measured on a GPU.
#pragma once

#include <cuda_runtime.h>

#include <climits>
#include <cstddef>
#include <cstdint>

#include "runtime/cuda/cuda_common.cuh"
#include "runtime/cuda/sampling.h"

namespace tessera::runtime::cuda {
namespace sampling_internal {

constexpr int kThreads = 256;

// True when (v, i) beats (best, best_i): larger value, or equal value and lower id. NaN never wins.
__device__ __forceinline__ bool Beats(float v, int i, float best, int best_i) {
  if (v != v) return false;
  if (best_i < 0) return true;
  return v > best || (v == best && i < best_i);
}

__global__ void __launch_bounds__(kThreads) ArgmaxKernel(const ArgmaxParams p) {
  __shared__ float vals[kThreads];
  __shared__ int ids[kThreads];
  const float* x = p.logits + blockIdx.x * p.row_stride;
  float best = 0.0f;
  int best_i = -1;
  for (int i = threadIdx.x; i < p.vocab; i += kThreads) {
    const float v = x[i];
    if (Beats(v, i, best, best_i)) {
      best = v;
      best_i = i;
    }
  }
  vals[threadIdx.x] = best;
  ids[threadIdx.x] = best_i;
  __syncthreads();
  for (int step = kThreads / 2; step > 0; step >>= 1) {
    if (threadIdx.x < step) {
      const float v = vals[threadIdx.x + step];
      const int i = ids[threadIdx.x + step];
      if (i >= 0 && Beats(v, i, vals[threadIdx.x], ids[threadIdx.x])) {
        vals[threadIdx.x] = v;
        ids[threadIdx.x] = i;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    p.out_token[blockIdx.x] = ids[0];
    if (p.out_value != nullptr) p.out_value[blockIdx.x] = ids[0] >= 0 ? vals[0] : 0.0f;
  }
}

// ---- Full sampling (LaunchSample).

constexpr int kSampleThreads = 1024;
constexpr int kSampleWarps = kSampleThreads / 32;
constexpr int kTile = 256;   // Ids per tile of an ordered find: one warp, eight coalesced loads.
constexpr int kBins = 2048;  // Histogram bins of a selection level (at most 11 key bits).
constexpr int kLevels = 3;   // Key bits 30..20, 19..9 and 8..0.
// A kept set that surely lies within this many candidates is finished in shared memory: gathered
// in one pass, sorted (bitonic), cut by top-k and top-p and drawn from, with no more row passes.
constexpr int kSmallSet = 2048;

__host__ __device__ __forceinline__ int LevelShift(int level) {
  return level == 0 ? 20 : level == 1 ? 9 : 0;
}
__host__ __device__ __forceinline__ int LevelBins(int level) { return level < 2 ? 2048 : 512; }

__host__ __device__ __forceinline__ size_t Align16(size_t n) { return (n + 15) & ~size_t{15}; }

// One row's workspace: [adjusted: vocab floats, written only at penalty entries]
// [marked: ceil(vocab / 32) words, bit i set where adjusted[i] replaces the raw logit]
// [tile sums: ceil(vocab / kTile) doubles].
__host__ __device__ __forceinline__ size_t RowWorkspaceBytes(int32_t vocab) {
  const size_t v = static_cast<size_t>(vocab);
  return Align16(4 * v) + Align16(4 * ((v + 31) / 32)) + Align16(8 * ((v + kTile - 1) / kTile));
}

// A prefix of the (key asc, id asc) order: (k, i) is in it when k < key, or k == key and i <= id.
struct Boundary {
  uint32_t key;
  int32_t id;
};

__device__ __forceinline__ Boundary Everything() { return Boundary{0xffffffffu, INT_MAX}; }
__device__ __forceinline__ bool Within(uint32_t key, int id, Boundary b) {
  return key < b.key || (key == b.key && id <= b.id);
}
__device__ __forceinline__ bool Before(Boundary a, Boundary b) {
  return a.key < b.key || (a.key == b.key && a.id < b.id);
}

// Shared memory of one CTA (about 43 KB).
struct SampleShared {
  unsigned int count[kBins];  // Per digit of the current selection level.
  double mass[kBins];
  double walk[kTile];  // One tile's values in id order (the last step of an ordered find).
  // The small-set path's candidates: (key << 32 | id), then (id << 32 | key).
  uint64_t list[kSmallSet];
  int list_count;
  double group_sum[32];
  double group_base[33];
  int group_any[32];
  float red_f[kSampleWarps];
  int red_i[kSampleWarps];
  double red_d[kSampleWarps];
  int red_flag[kSampleWarps];
  // Results broadcast to the CTA.
  int found;
  double found_base;
  double target;
  int result;
  int banned;
};

__device__ __forceinline__ double WarpSumD(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ int WarpMaxI(int v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Max over the CTA; every thread gets it.
__device__ __forceinline__ int BlockMaxI(int v, SampleShared& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = WarpMaxI(v);
  __syncthreads();
  if (lane == 0) sh.red_i[warp] = v;
  __syncthreads();
  int r = sh.red_i[0];
  for (int w = 1; w < kSampleWarps; ++w) r = max(r, sh.red_i[w]);
  return r;
}

// True when adjusted value (v, i) beats (best, best_i) for the greedy argmax: larger, or equal and
// lower id; NaN and -inf never win (sampler.cc's ArgMax). +inf does.
__device__ __forceinline__ bool BeatsFinite(float v, int i, float best, int best_i) {
  if (!(v > -INFINITY)) return false;
  if (best_i < 0) return true;
  return v > best || (v == best && i < best_i);
}

// Online (max, sum of exp(x - max)) of the finite values, merged.
__device__ __forceinline__ void MergeLse(float& m, double& s, float m2, double s2) {
  if (m2 == -INFINITY) return;
  if (m2 > m) {
    s = s * static_cast<double>(expf(m - m2)) + s2;
    m = m2;
  } else {
    s += s2 * static_cast<double>(expf(m2 - m));
  }
}

// One row: raw logits, the penalised values at marked ids, and the score transform.
struct RowView {
  const float* raw;
  const float* adjusted;
  const uint32_t* marked;
  bool has_marks;
  int vocab;
  float max_adjusted;
  float inv_temperature;
  float min_score;

  // The adjusted value at i given raw[i] (already loaded).
  __device__ __forceinline__ float AdjustedFrom(int i, float r) const {
    if (has_marks && ((marked[i >> 5] >> (i & 31)) & 1u)) return adjusted[i];
    return r;
  }
  __device__ __forceinline__ float Adjusted(int i) const { return AdjustedFrom(i, raw[i]); }
  // Exactly sampler.cc's (logits[i] - max_value) * inv_temperature (no contraction is possible).
  __device__ __forceinline__ float ScoreFrom(int i, float r) const {
    return (AdjustedFrom(i, r) - max_adjusted) * inv_temperature;
  }
  __device__ __forceinline__ float Score(int i) const { return ScoreFrom(i, raw[i]); }
  // Drops -inf (banned) and NaN; keeps what min-p keeps.
  __device__ __forceinline__ bool IsCandidate(float score) const {
    return score >= min_score && score > -INFINITY;
  }
};

// Calls f(i, x[i]) for every id this thread owns (threadIdx.x + j * kSampleThreads), in increasing
// order, loading kBatch of them before using any.
// NOTE: one 4-byte load in flight per thread is 4 KB per SM, ~7 GB/s at ~600 ns latency; eight are
// 32 KB, which is what a pass over a 1 MB row needs to approach its share of HBM bandwidth.
template <typename F>
__device__ __forceinline__ void ForEachLogit(const float* x, int vocab, const F& f) {
  constexpr int kBatch = 8;
  int i = threadIdx.x;
  for (; i + (kBatch - 1) * kSampleThreads < vocab; i += kBatch * kSampleThreads) {
    float v[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) v[u] = x[i + u * kSampleThreads];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) f(i + u * kSampleThreads, v[u]);
  }
  for (; i < vocab; i += kSampleThreads) f(i, x[i]);
}

// Finite floats in decreasing order map to increasing keys (NaN never enters).
__device__ __forceinline__ uint32_t DescendingKey(float v) {
  const uint32_t b = __float_as_uint(v);
  return (b & 0x80000000u) != 0u ? b : 0x7fffffffu - b;
}
// The lowest value whose DescendingKey has top 11 bits `bin` (-inf where that is not a number).
__device__ __forceinline__ float LowestValueOfBin(int bin) {
  const uint32_t k = (static_cast<uint32_t>(bin) << 21) | 0x1fffffu;
  const float v = __uint_as_float(k >= 0x80000000u ? k : 0x7fffffffu - k);
  return v == v ? v : -INFINITY;
}

// Candidates have score <= 0 (+0 at the maximum); the bits of |score| order them best first.
__device__ __forceinline__ uint32_t KeyOf(float score) {
  return __float_as_uint(score) & 0x7fffffffu;
}
__device__ __forceinline__ float ScoreOfKey(uint32_t key) {
  return __uint_as_float(key | 0x80000000u);
}

// Run by warp 0 alone, after a __syncthreads that made the values visible; the caller
// __syncthreads before reading the results. Over values get(0..n) (>= 0) with cumulative sums
// c_j = base + (sum of values up to j), summed in fixed groups so that the sums are monotone:
// finds the first j with present(j) whose c_j reaches the target (c_j >= target, or > when
// strict). With scale_by_total (only with base 0) the target is multiplied by the total first.
// Writes sh.found (-1 when none), sh.found_base (the cumulative before it) and sh.target.
template <typename Get, typename Present>
__device__ void ScanFind(int n, const Get& get, const Present& present, double base, double target,
                         bool scale_by_total, bool strict, SampleShared& sh) {
  const int lane = threadIdx.x & 31;
  const int per = (n + 31) / 32;
  const int lo = min(n, lane * per), hi = min(n, lo + per);
  double sum = 0.0;
  int any = 0;
  for (int j = lo; j < hi; ++j) {
    sum += get(j);
    any |= present(j) ? 1 : 0;
  }
  sh.group_sum[lane] = sum;
  sh.group_any[lane] = any;
  __syncwarp();
  if (lane == 0) {
    double b = base;
    for (int g = 0; g < 32; ++g) {
      sh.group_base[g] = b;
      b += sh.group_sum[g];
    }
    sh.group_base[32] = b;
    const double t = scale_by_total ? target * b : target;
    sh.target = t;
    sh.found = -1;
    sh.found_base = 0.0;
    for (int g = 0; g < 32 && sh.found < 0; ++g) {
      const double end = sh.group_base[g + 1];
      if (!sh.group_any[g] || !(strict ? end > t : end >= t)) continue;
      const int glo = min(n, g * per), ghi = min(n, glo + per);
      double local = 0.0;
      for (int j = glo; j < ghi; ++j) {
        const double before = local;
        local += get(j);
        const double c = sh.group_base[g] + local;
        if (present(j) && (strict ? c > t : c >= t)) {
          sh.found = j;
          sh.found_base = sh.group_base[g] + before;
          break;
        }
      }
    }
  }
  __syncwarp();
}

// What an ordered find accumulates at one id: its value (>= 0), and whether it counts for the
// "last" answer given when rounding leaves the target out of reach.
struct FindTerm {
  double value;
  bool member;
};

// Walks the row in id order accumulating term(i).value: returns the first id with a positive
// value whose cumulative sum exceeds the target (scaled by the total when asked), or the largest
// member id when none does (-1 when there is none). All threads call it.
template <typename Term>
__device__ int OrderedFind(const RowView& row, const Term& term, double target, bool scale_by_total,
                           double* tile_sums, SampleShared& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int tiles = (row.vocab + kTile - 1) / kTile;
  // NOTE: the tile sums live in shared memory (sh.mass is free here) up to 2048 tiles, i.e. vocab
  // 524288: lane 0 of warp 0 walks up to 64 of them one after another, and global memory latency
  // would make that walk ~64 x 0.5 us.
  double* sums = tiles <= kBins ? sh.mass : tile_sums;
  int last = -1;
  for (int t = warp; t < tiles; t += kSampleWarps) {
    double sum = 0.0;
#pragma unroll
    for (int m = 0; m < kTile / 32; ++m) {
      const int i = t * kTile + m * 32 + lane;
      if (i < row.vocab) {
        const FindTerm f = term(i);
        sum += f.value;
        if (f.member) last = i;
      }
    }
    sum = WarpSumD(sum);
    if (lane == 0) sums[t] = sum;
  }
  last = BlockMaxI(last, sh);  // Its barriers also publish the sums.
  if (warp == 0) {
    ScanFind(
        tiles, [&](int j) { return sums[j]; }, [&](int j) { return sums[j] > 0.0; }, 0.0, target,
        scale_by_total, /*strict=*/true, sh);
  }
  __syncthreads();
  const int tile = sh.found;
  if (tile < 0) return last;
  if (warp == 0) {
    for (int m = 0; m < kTile / 32; ++m) {
      const int j = m * 32 + lane, i = tile * kTile + j;
      sh.walk[j] = i < row.vocab ? term(i).value : 0.0;
    }
    __syncwarp();
    if (lane == 0) {
      const double base = sh.found_base, t = sh.target;
      double local = 0.0;
      int pick = -1;
      for (int j = 0; j < kTile; ++j) {
        const double v = sh.walk[j];
        if (!(v > 0.0)) continue;
        local += v;
        pick = j;  // The last positive one if rounding leaves the target out of reach.
        if (base + local > t) break;
      }
      sh.result = tile * kTile + pick;
    }
  }
  __syncthreads();
  return sh.result;
}

// The prefix of the candidates within `within`, in (key asc, id asc) order, that holds the first
// `target` of them (by_mass false), or the shortest one whose mass exp(score) reaches
// target * (the set's mass) (by_mass true, the top-p nucleus: the crossing candidate is in it).
// Everything() when the whole set is kept. All threads call it.
// Histogram of one selection level: per digit (key >> shift) & (bins - 1), the count and (with
// by_mass) the mass exp(score) of the candidates within `within` whose key matches `prefix` under
// `mask`. Then warp 0 finds the digit whose cumulative count (or mass) reaches the target
// (ScanFind; a mass target at level 0 is a fraction of the total). All threads call it; on return
// sh.found, sh.found_base and sh.target hold the answer and sh.count/sh.mass the histogram.
__device__ void HistogramFind(const RowView& row, Boundary within, uint32_t prefix, uint32_t mask,
                              int level, bool by_mass, double base, double target,
                              SampleShared& sh) {
  const int tid = threadIdx.x, warp = tid >> 5;
  const int shift = LevelShift(level), bins = LevelBins(level);
  for (int b = tid; b < bins; b += kSampleThreads) {
    sh.count[b] = 0;
    sh.mass[b] = 0.0;
  }
  __syncthreads();
  ForEachLogit(row.raw, row.vocab, [&](int i, float r) {
    const float s = row.ScoreFrom(i, r);
    if (!row.IsCandidate(s)) return;
    const uint32_t key = KeyOf(s);
    if ((key & mask) != prefix || !Within(key, i, within)) return;
    const int d = static_cast<int>((key >> shift) & static_cast<uint32_t>(bins - 1));
    atomicAdd(&sh.count[d], 1u);
    if (by_mass) atomicAdd(&sh.mass[d], static_cast<double>(expf(s)));
  });
  __syncthreads();
  if (warp == 0) {
    auto present = [&](int j) { return sh.count[j] > 0u; };
    if (by_mass) {
      ScanFind(
          bins, [&](int j) { return sh.mass[j]; }, present, base, target, level == 0,
          /*strict=*/false, sh);
    } else {
      ScanFind(
          bins, [&](int j) { return static_cast<double>(sh.count[j]); }, present, base, target,
          false, /*strict=*/false, sh);
    }
  }
  __syncthreads();
}

__device__ Boundary Select(const RowView& row, Boundary within, bool by_mass, double target,
                           double* tile_sums, SampleShared& sh) {
  uint32_t prefix = 0, mask = 0;
  double base = 0.0;
  int eq = 0;
  for (int level = 0; level < kLevels; ++level) {
    const int shift = LevelShift(level), bins = LevelBins(level);
    HistogramFind(row, within, prefix, mask, level, by_mass, base, target, sh);
    const int d = sh.found;
    target = sh.target;
    if (d < 0) {
      // Level 0: the set never reaches the target (fewer than k candidates, or a mass target
      // rounding puts just out of reach): keep it all. Deeper: the sub-bins' sums fell short of
      // their bin's by rounding: keep that whole bin.
      return level == 0 ? Everything()
                        : Boundary{prefix | ((1u << LevelShift(level - 1)) - 1u), INT_MAX};
    }
    const double next_base = sh.found_base;
    eq = static_cast<int>(sh.count[d]);
    __syncthreads();  // Everyone has read this level's results before the next clears them.
    if (!by_mass && level + 1 < kLevels && next_base + eq == target) {
      // The whole bin completes the count: every key of it is kept.
      return Boundary{prefix | (static_cast<uint32_t>(d) << shift) | ((1u << shift) - 1u), INT_MAX};
    }
    prefix |= static_cast<uint32_t>(d) << shift;
    mask |= static_cast<uint32_t>(bins - 1) << shift;
    base = next_base;
  }
  // `prefix` is one key now: its `eq` candidates have equal scores, hence equal weights. Keep the
  // first r of them by id.
  int r;
  if (!by_mass) {
    r = static_cast<int>(target - base);
  } else {
    const double w = static_cast<double>(expf(ScoreOfKey(prefix)));
    double est = ceil((target - base) / w);
    r = est < 1.0 ? 1 : est > eq ? eq : static_cast<int>(est);
    while (r > 1 && base + (r - 1) * w >= target) --r;
    while (r < eq && base + r * w < target) ++r;
  }
  if (r >= eq) return Boundary{prefix, INT_MAX};
  const int id = OrderedFind(
      row,
      [&](int i) {
        const float s = row.Score(i);
        const bool in = row.IsCandidate(s) && KeyOf(s) == prefix && Within(prefix, i, within);
        return FindTerm{in ? 1.0 : 0.0, in};
      },
      r - 0.5, /*scale_by_total=*/false, tile_sums, sh);
  return Boundary{prefix, id};
}

// Sorts sh.list[0..n) ascending, padded with ~0 to a power of two. All threads call it.
__device__ void BitonicSort(int n, SampleShared& sh) {
  int size = 2;
  while (size < n) size <<= 1;
  for (int j = n + threadIdx.x; j < size; j += kSampleThreads) sh.list[j] = ~uint64_t{0};
  __syncthreads();
  for (int k = 2; k <= size; k <<= 1) {
    for (int stride = k >> 1; stride > 0; stride >>= 1) {
      for (int t = threadIdx.x; t < size / 2; t += kSampleThreads) {
        const int lo = 2 * t - (t & (stride - 1)), hi = lo + stride;
        const bool ascending = (lo & k) == 0;
        const uint64_t a = sh.list[lo], b = sh.list[hi];
        if ((a > b) == ascending) {
          sh.list[lo] = b;
          sh.list[hi] = a;
        }
      }
      __syncthreads();
    }
  }
}

__device__ __forceinline__ double WeightOfKey(uint32_t key) {
  return static_cast<double>(expf(ScoreOfKey(key)));
}

// The small-set path: the candidates with key <= max_key (a prefix of the order that holds the
// kept set) are gathered, sorted by (key, id), cut to top_k (when use_k) and to the top-p nucleus
// (when use_p), re-sorted by id and drawn from with the same cumulative sums as OrderedFind.
// Without top-k the nucleus target is `p_target` (top_p times the mass of every candidate, from
// level 0); with it, top_p times the mass of the first top_k. Returns -1, having drawn nothing,
// when more than kSmallSet candidates have key <= max_key. All threads call it.
__device__ int SmallSetDraw(const RowView& row, uint32_t max_key, bool use_k, int top_k, bool use_p,
                            float top_p, double p_target, double uniform, SampleShared& sh) {
  const int tid = threadIdx.x, warp = tid >> 5;
  if (tid == 0) sh.list_count = 0;
  __syncthreads();
  ForEachLogit(row.raw, row.vocab, [&](int i, float r) {
    const float s = row.ScoreFrom(i, r);
    if (!row.IsCandidate(s)) return;
    const uint32_t key = KeyOf(s);
    if (key > max_key) return;
    const int slot = atomicAdd(&sh.list_count, 1);
    if (slot < kSmallSet) sh.list[slot] = (static_cast<uint64_t>(key) << 32) | i;
  });
  __syncthreads();
  const int n = sh.list_count;
  if (n > kSmallSet) return -1;
  // No candidate at all: only a temperature so small that 1 / temperature overflows makes even
  // the maximum's score NaN (the CPU sampler's behaviour is undefined there). Id 0, as below.
  if (n == 0) return 0;
  BitonicSort(n, sh);
  int kept = use_k ? min(top_k, n) : n;
  if (use_p && kept > 1) {
    if (warp == 0) {
      ScanFind(
          kept, [&](int j) { return WeightOfKey(static_cast<uint32_t>(sh.list[j] >> 32)); },
          [&](int j) { return true; }, 0.0, use_k ? top_p : p_target, /*scale_by_total=*/use_k,
          /*strict=*/false, sh);
    }
    __syncthreads();
    if (sh.found >= 0) kept = sh.found + 1;
  }
  // The kept prefix, now by id.
  for (int j = tid; j < n; j += kSampleThreads) {
    const uint64_t e = sh.list[j];
    sh.list[j] = j < kept ? ((e & 0xffffffffu) << 32) | (e >> 32) : ~uint64_t{0};
  }
  __syncthreads();
  BitonicSort(n, sh);
  if (warp == 0) {
    auto weight = [&](int j) { return WeightOfKey(static_cast<uint32_t>(sh.list[j])); };
    ScanFind(
        kept, weight, [&](int j) { return weight(j) > 0.0; }, 0.0, uniform,
        /*scale_by_total=*/true, /*strict=*/true, sh);
  }
  __syncthreads();
  // The last kept candidate when rounding leaves the target out of reach, as on the CPU.
  const int pick = sh.found >= 0 ? sh.found : kept - 1;
  const int token = static_cast<int>(sh.list[pick] >> 32);
  __syncthreads();
  return token;
}

// The lowest id not banned (sampler.cc's Fallback): at most `banned` ids are banned, so it is at
// most that. All threads call it.
__device__ int FallbackToken(const PenaltyEntry* entries, int entry_count, int vocab,
                             SampleShared& sh) {
  if (threadIdx.x == 0) sh.result = INT_MAX;
  __syncthreads();
  const int limit = min(sh.banned, vocab - 1);
  for (int c = threadIdx.x; c <= limit; c += kSampleThreads) {
    bool banned = false;
    for (int e = 0; e < entry_count && !banned; ++e) {
      banned = entries[e].banned != 0 && entries[e].token == c;
    }
    if (!banned) atomicMin(&sh.result, c);
  }
  __syncthreads();
  const int r = sh.result;
  __syncthreads();
  return r == INT_MAX ? 0 : r;
}

__global__ void __launch_bounds__(kSampleThreads) SampleKernel(const SampleParams p) {
  __shared__ SampleShared sh;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int row_index = blockIdx.x;
  const int vocab = p.vocab;
  const SampleRowParams rp = p.row_params[row_index];
  const float* x = p.logits + static_cast<int64_t>(row_index) * p.row_stride;
  char* ws = static_cast<char*>(p.workspace) + RowWorkspaceBytes(vocab) * row_index;
  float* adjusted = reinterpret_cast<float*>(ws);
  uint32_t* marked = reinterpret_cast<uint32_t*>(ws + Align16(4 * static_cast<size_t>(vocab)));
  double* tile_sums =
      reinterpret_cast<double*>(ws + Align16(4 * static_cast<size_t>(vocab)) +
                                Align16(4 * ((static_cast<size_t>(vocab) + 31) / 32)));

  // 1. Penalties and bans of the row's distinct tokens (sampler.cc's ApplyPenalties, entry by
  // entry).
  const PenaltyEntry* entries = p.penalties != nullptr ? p.penalties + rp.penalty_begin : nullptr;
  const int entry_count = p.penalties != nullptr ? max(0, rp.penalty_end - rp.penalty_begin) : 0;
  if (tid == 0) sh.banned = 0;
  if (entry_count > 0) {
    for (int w = tid; w < (vocab + 31) / 32; w += kSampleThreads) marked[w] = 0u;
    __syncthreads();
    int banned = 0;
    for (int e = tid; e < entry_count; e += kSampleThreads) {
      const PenaltyEntry en = entries[e];
      banned += en.banned != 0 ? 1 : 0;
      if (en.token < 0 || en.token >= vocab) continue;
      float v = x[en.token];
      if (en.in_context != 0 && rp.repetition_penalty != 1.0f) {
        v = v > 0.0f ? v / rp.repetition_penalty : v * rp.repetition_penalty;
      }
      if (en.output_count > 0 && (rp.frequency_penalty != 0.0f || rp.presence_penalty != 0.0f)) {
        // NOTE: the CPU build (-march=x86-64-v3, GCC's default -ffp-contract=fast) fuses
        // frequency * count + presence into one FMA; so does this.
        v -= fmaf(rp.frequency_penalty, static_cast<float>(en.output_count), rp.presence_penalty);
      }
      if (en.banned != 0) v = -INFINITY;
      adjusted[en.token] = v;
      atomicOr(&marked[en.token >> 5], 1u << (en.token & 31));
    }
    if (banned > 0) atomicAdd(&sh.banned, banned);
  }
  const bool sampled = rp.temperature > 0.0f && rp.top_k != 1;
  const bool use_k = rp.top_k > 0 && rp.top_k < vocab, use_p = rp.top_p < 1.0f;
  const bool value_histogram = sampled && use_k;
  if (value_histogram) {
    for (int b = tid; b < kBins; b += kSampleThreads) sh.count[b] = 0u;
  }
  __syncthreads();

  RowView row;
  row.raw = x;
  row.adjusted = adjusted;
  row.marked = marked;
  row.has_marks = entry_count > 0;
  row.vocab = vocab;

  // 2. Raw log-sum-exp (online) and the adjusted argmax.
  float m = -INFINITY;
  double s = 0.0;
  int bad_raw = 0;  // A NaN or +inf makes the CPU's log-sum-exp non-finite.
  float best = 0.0f;
  int best_i = -1;
  ForEachLogit(x, vocab, [&](int i, float r) {
    const float a = row.AdjustedFrom(i, r);
    // Top-k rows: a histogram of the adjusted values (top 11 bits of an order-preserving key) to
    // bound the k best before the maximum, and so the scores, are known.
    if (value_histogram && a > -INFINITY) atomicAdd(&sh.count[DescendingKey(a) >> 21], 1u);
    if (r != r || r == INFINITY) {
      bad_raw = 1;
    } else if (r > -INFINITY) {
      if (r > m) {
        s = s * static_cast<double>(expf(m - r)) + 1.0;
        m = r;
      } else {
        s += static_cast<double>(expf(r - m));
      }
    }
    if (BeatsFinite(a, i, best, best_i)) {
      best = a;
      best_i = i;
    }
  });
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const double s2 = __shfl_xor_sync(0xffffffffu, s, o);
    MergeLse(m, s, m2, s2);
    bad_raw |= __shfl_xor_sync(0xffffffffu, bad_raw, o);
    const float b2 = __shfl_xor_sync(0xffffffffu, best, o);
    const int i2 = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (i2 >= 0 && BeatsFinite(b2, i2, best, best_i)) {
      best = b2;
      best_i = i2;
    }
  }
  if (lane == 0) {
    sh.red_f[warp] = m;
    sh.red_d[warp] = s;
    sh.red_flag[warp] = bad_raw;
    sh.walk[warp] = best;  // Free until the first ordered find.
    sh.red_i[warp] = best_i;
  }
  __syncthreads();
  m = sh.red_f[0];
  s = sh.red_d[0];
  bad_raw = sh.red_flag[0];
  best = static_cast<float>(sh.walk[0]);
  best_i = sh.red_i[0];
  for (int w = 1; w < kSampleWarps; ++w) {
    MergeLse(m, s, sh.red_f[w], sh.red_d[w]);
    bad_raw |= sh.red_flag[w];
    const float b2 = static_cast<float>(sh.walk[w]);
    const int i2 = sh.red_i[w];
    if (i2 >= 0 && BeatsFinite(b2, i2, best, best_i)) {
      best = b2;
      best_i = i2;
    }
  }
  __syncthreads();

  int token;
  if (!sampled) {
    token = best_i >= 0 ? best_i : FallbackToken(entries, entry_count, vocab, sh);
  } else if (best_i < 0 || best == INFINITY) {
    // Draw's max is not finite: nothing to draw from.
    token = FallbackToken(entries, entry_count, vocab, sh);
  } else {
    // 3. Selection.
    row.max_adjusted = best;
    row.inv_temperature = 1.0f / rp.temperature;
    row.min_score = rp.min_p > 0.0f ? logf(rp.min_p) : -INFINITY;
    const bool dense = (rp.top_k <= 0 || rp.top_k >= vocab) && rp.top_p >= 1.0f;
    Boundary keep = Everything();
    bool small = false;
    if (!dense) {
      // First try to finish in shared memory: bound the kept set by a prefix of the order that
      // holds at most kSmallSet candidates.
      uint32_t max_key = 0;
      double p_target = 0.0;
      bool try_small;
      if (use_k) {
        // The value bin where the k-th best adjusted value lies: every candidate whose score is at
        // least the score of that bin's lowest value holds the top k (scores are monotone in the
        // value), ties included.
        if (warp == 0) {
          ScanFind(
              kBins, [&](int j) { return static_cast<double>(sh.count[j]); },
              [&](int j) { return sh.count[j] > 0u; }, 0.0, rp.top_k, false, false, sh);
        }
        __syncthreads();
        const float edge = sh.found >= 0 ? LowestValueOfBin(sh.found) : -INFINITY;
        const float edge_score = (edge - best) * row.inv_temperature;
        max_key = edge_score > -INFINITY ? KeyOf(edge_score) : 0x7f800000u;
        try_small = true;
        __syncthreads();
      } else {
        // Top-p alone: level 0 of the selection, by mass; the digit where the nucleus ends and
        // the count up to it.
        HistogramFind(row, Everything(), 0u, 0u, 0, /*by_mass=*/true, 0.0, rp.top_p, sh);
        const int last_digit = sh.found >= 0 ? sh.found : LevelBins(0) - 1;
        p_target = sh.target;
        int up_to = 0;
        for (int b = lane; b <= last_digit; b += 32) up_to += static_cast<int>(sh.count[b]);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) up_to += __shfl_xor_sync(0xffffffffu, up_to, o);
        __syncthreads();
        max_key =
            (static_cast<uint32_t>(last_digit) << LevelShift(0)) | ((1u << LevelShift(0)) - 1u);
        try_small = up_to <= kSmallSet;
      }
      if (try_small) {
        token =
            SmallSetDraw(row, max_key, use_k, rp.top_k, use_p, rp.top_p, p_target, rp.uniform, sh);
        small = token >= 0;
      }
      if (!small) {
        if (use_k) keep = Select(row, Everything(), /*by_mass=*/false, rp.top_k, tile_sums, sh);
        if (use_p) {
          const Boundary nucleus = Select(row, keep, /*by_mass=*/true, rp.top_p, tile_sums, sh);
          if (Before(nucleus, keep)) keep = nucleus;
        }
      }
    }
    // 4. The draw over the kept candidates in id order. The "last" answer (rounding at u near 1)
    // is, as on the CPU, the last positive weight on the dense path and the last kept candidate
    // otherwise.
    if (!small) {
      token = OrderedFind(
          row,
          [&](int i) {
            const float sc = row.Score(i);
            if (!row.IsCandidate(sc) || (!dense && !Within(KeyOf(sc), i, keep))) {
              return FindTerm{0.0, false};
            }
            const float w = expf(sc);
            return FindTerm{static_cast<double>(w), dense ? w > 0.0f : true};
          },
          rp.uniform, /*scale_by_total=*/true, tile_sums, sh);
    }
    if (token < 0) token = 0;  // No candidate at all: unreachable, the maximum always is one.
  }

  if (tid == 0) {
    p.out_token[row_index] = token;
    if (p.out_logprob != nullptr) {
      const bool finite = bad_raw == 0 && m > -INFINITY;
      const double lse = static_cast<double>(m) + log(s);
      p.out_logprob[row_index] =
          finite ? static_cast<float>(static_cast<double>(x[token]) - lse) : -INFINITY;
    }
  }
}

}  // namespace sampling_internal
}  // namespace tessera::runtime::cuda
