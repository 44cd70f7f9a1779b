#include "runtime/cpu/kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace tessera::runtime::cpu {
namespace {

inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 Load8(const uint16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline float Load1(const float* p) { return *p; }
inline float Load1(const uint16_t* p) {
  uint32_t bits = static_cast<uint32_t>(*p) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline float HorizontalSum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 shuf = _mm_movehdup_ps(lo);
  __m128 sums = _mm_add_ps(lo, shuf);
  shuf = _mm_movehl_ps(shuf, sums);
  sums = _mm_add_ss(sums, shuf);
  return _mm_cvtss_f32(sums);
}

// NW weight rows x NT input rows of dot products over K. The summation order depends only on K,
// so a given (row, output) pair gives the same bits whatever tile it falls in.
template <int NW, int NT, typename WT>
void MicroKernel(const WT* w, int64_t ldw, const float* x, int64_t ldx, int64_t K, float* y,
                 int64_t ldy) {
  // NOTE: the unroll pragmas keep acc/wv in registers; without them GCC -O2 leaves the small
  // loops rolled and spills the accumulators to the stack every iteration (decode ran at 4.5 GB/s
  // instead of streaming at memory speed).
  __m256 acc[NW][NT];
#pragma GCC unroll 4
  for (int i = 0; i < NW; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm256_setzero_ps();
  const int64_t K8 = K & ~int64_t{7};
  for (int64_t k = 0; k < K8; k += 8) {
    __m256 wv[NW];
#pragma GCC unroll 4
    for (int i = 0; i < NW; ++i) wv[i] = Load8(w + i * ldw + k);
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) {
      __m256 xv = _mm256_loadu_ps(x + j * ldx + k);
#pragma GCC unroll 4
      for (int i = 0; i < NW; ++i) acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < NW; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) {
      float s = HorizontalSum(acc[i][j]);
      for (int64_t k = K8; k < K; ++k) s += Load1(w + i * ldw + k) * x[j * ldx + k];
      y[j * ldy + i] = s;
    }
  }
}

template <typename WT>
using KernelFn = void (*)(const WT*, int64_t, const float*, int64_t, int64_t, float*, int64_t);

template <typename WT>
KernelFn<WT> PickKernel(int nw, int nt) {
  static const KernelFn<WT> table[4][3] = {
      {MicroKernel<1, 1, WT>, MicroKernel<1, 2, WT>, MicroKernel<1, 3, WT>},
      {MicroKernel<2, 1, WT>, MicroKernel<2, 2, WT>, MicroKernel<2, 3, WT>},
      {MicroKernel<3, 1, WT>, MicroKernel<3, 2, WT>, MicroKernel<3, 3, WT>},
      {MicroKernel<4, 1, WT>, MicroKernel<4, 2, WT>, MicroKernel<4, 3, WT>},
  };
  return table[nw - 1][nt - 1];
}

constexpr int kTileW = 4;
constexpr int kTileT = 3;

template <typename WT>
void RunTiles(const WT* w, int64_t ldw, int64_t nw, const float* x, int64_t T, int64_t K, float* y,
              int64_t ldy) {
  for (int64_t t = 0; t < T; t += kTileT) {
    const int nt = static_cast<int>(std::min<int64_t>(kTileT, T - t));
    PickKernel<WT>(static_cast<int>(nw), nt)(w, ldw, x + t * K, K, K, y + t * ldy, ldy);
  }
}

}  // namespace

void MatMulRange(const float* x, int64_t T, const WeightMatrix& w, float* y, int64_t ldy,
                 int64_t n_begin, int64_t n_end) {
  const int64_t K = w.cols;
  if (w.type == WeightMatrix::Type::kF32) {
    const float* base = static_cast<const float*>(w.data);
    for (int64_t n = n_begin; n < n_end; n += kTileW) {
      const int64_t nw = std::min<int64_t>(kTileW, n_end - n);
      RunTiles(base + n * K, K, nw, x, T, K, y + n, ldy);
    }
    return;
  }
  const uint16_t* base = static_cast<const uint16_t*>(w.data);
  if (T <= 2) {
    // Decode: stream the bf16 rows once, widening in registers (memory bound).
    for (int64_t n = n_begin; n < n_end; n += kTileW) {
      const int64_t nw = std::min<int64_t>(kTileW, n_end - n);
      RunTiles(base + n * K, K, nw, x, T, K, y + n, ldy);
    }
    return;
  }
  // Prefill / batched decode: widen kTileW rows once into a cache-resident fp32 tile, then reuse
  // it for every input row. Same summation order as the direct path (products of the same fp32
  // values), so results do not depend on T.
  thread_local std::vector<float> tile;
  tile.resize(kTileW * K);
  for (int64_t n = n_begin; n < n_end; n += kTileW) {
    const int64_t nw = std::min<int64_t>(kTileW, n_end - n);
    for (int64_t i = 0; i < nw; ++i) {
      const uint16_t* src = base + (n + i) * K;
      float* dst = tile.data() + i * K;
      int64_t k = 0;
      for (; k + 8 <= K; k += 8) _mm256_storeu_ps(dst + k, Load8(src + k));
      for (; k < K; ++k) dst[k] = Load1(src + k);
    }
    RunTiles(tile.data(), K, nw, x, T, K, y + n, ldy);
  }
}

void MatMul(const float* x, int64_t T, const WeightMatrix& w, float* y, int64_t ldy,
            ThreadPool* pool) {
  const int64_t N = w.rows;
  const int64_t units = (N + kTileW - 1) / kTileW;
  // NOTE: below ~64K multiply-adds per thread the wake-up costs more than it saves.
  const int64_t work_per_unit = std::max<int64_t>(1, kTileW * w.cols * T);
  const int64_t min_units = std::max<int64_t>(1, (1 << 16) / work_per_unit);
  auto body = [&](int64_t u0, int64_t u1) {
    MatMulRange(x, T, w, y, ldy, u0 * kTileW, std::min(N, u1 * kTileW));
  };
  if (pool == nullptr) {
    body(0, units);
  } else {
    pool->ParallelFor(units, min_units, body);
  }
}

void MatMulMany(const float* x, int64_t T, const std::vector<MatMulJob>& jobs, ThreadPool* pool) {
  // Units of kTileW output rows, numbered across the jobs in order.
  std::vector<int64_t> first_unit(jobs.size() + 1, 0);
  int64_t cols = 0;
  for (size_t j = 0; j < jobs.size(); ++j) {
    first_unit[j + 1] = first_unit[j] + (jobs[j].w->rows + kTileW - 1) / kTileW;
    cols = std::max(cols, jobs[j].w->cols);
  }
  const int64_t units = first_unit.back();
  const int64_t work_per_unit = std::max<int64_t>(1, kTileW * cols * T);
  const int64_t min_units = std::max<int64_t>(1, (1 << 16) / work_per_unit);
  auto body = [&](int64_t u0, int64_t u1) {
    for (size_t j = 0; j < jobs.size(); ++j) {
      const int64_t a = std::max(u0, first_unit[j]), b = std::min(u1, first_unit[j + 1]);
      if (a >= b) continue;
      const MatMulJob& job = jobs[j];
      MatMulRange(x, T, *job.w, job.y, job.ldy, (a - first_unit[j]) * kTileW,
                  std::min(job.w->rows, (b - first_unit[j]) * kTileW));
    }
  };
  if (pool == nullptr) {
    body(0, units);
  } else {
    pool->ParallelFor(units, min_units, body);
  }
}

float Dot(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), acc1);
  }
  for (; k + 8 <= n; k += 8) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), acc0);
  }
  float s = HorizontalSum(_mm256_add_ps(acc0, acc1));
  for (; k < n; ++k) s += a[k] * b[k];
  return s;
}

void RmsNorm(const float* x, int64_t n, const float* weight, float eps, float* out) {
  const float ms = Dot(x, x, n) / static_cast<float>(n);
  const float inv = 1.0f / std::sqrt(ms + eps);
  if (weight == nullptr) {
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * inv;
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * inv * weight[i];
  }
}

void LayerNorm(const float* x, int64_t n, const float* weight, const float* bias, float eps,
               float* out) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const float mean = static_cast<float>(sum / n);
  double var = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = x[i] - mean;
    var += d * d;
  }
  const float inv = static_cast<float>(1.0 / std::sqrt(var / n + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] - mean) * inv * weight[i] + bias[i];
}

void ApplyRope(float* x, int32_t head_dim, int32_t rope_pairs, const float* inv_freq, int32_t pos) {
  const int32_t half = head_dim / 2;
  for (int32_t i = 0; i < rope_pairs; ++i) {
    // As transformers: the angle is an fp32 product, its cos/sin taken in fp32.
    const float angle = static_cast<float>(pos) * inv_freq[i];
    const float c = std::cos(angle), s = std::sin(angle);
    const float a = x[i], b = x[i + half];
    x[i] = a * c - b * s;
    x[i + half] = b * c + a * s;
  }
}

void GeluTanhMul(float* gate, const float* up, int64_t n) {
  constexpr float kAlpha = 0.7978845608028654f;  // sqrt(2 / pi)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float inner = kAlpha * (g + 0.044715f * g * g * g);
    gate[i] = 0.5f * g * (1.0f + std::tanh(inner)) * up[i];
  }
}

void Softcap(float* x, int64_t n, float cap) {
  const float inv = 1.0f / cap;
  for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] * inv);
}

}  // namespace tessera::runtime::cpu
