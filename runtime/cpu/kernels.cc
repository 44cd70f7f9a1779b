#include "runtime/cpu/kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "runtime/cpu/float_kernels.h"
#include "runtime/cpu/quant_matmul.h"

namespace tessera::runtime::cpu {
namespace {

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

// Output rows per unit of parallel work (one weight tile).
constexpr int64_t kUnitRows = 4;

void FloatRange(KernelPath path, const float* x, int64_t T, const WeightMatrix& w, float* y,
                int64_t ldy, int64_t n0, int64_t n1) {
  switch (path) {
    case KernelPath::kAvx512:
      FloatMatMulAvx512(x, T, w, y, ldy, n0, n1);
      break;
    case KernelPath::kAvx2:
      FloatMatMulAvx2(x, T, w, y, ldy, n0, n1);
      break;
    default:
      FloatMatMulPortable(x, T, w, y, ldy, n0, n1);
  }
}

// Activation rows per pass over the weights: enough that a weight tile is reused many times, few
// enough that the rows stay in L2 (~256 KiB of activations) while every tile streams past them.
int64_t RowsPerPass(DotFamily family, int64_t T, int64_t K) {
  const int64_t bytes_per_row = family == DotFamily::kFloat ? 4 * K : K;
  const int64_t rows =
      std::max<int64_t>(12, (int64_t{256} << 10) / std::max<int64_t>(1, bytes_per_row));
  return std::min(T, rows / 12 * 12);
}

}  // namespace

void MatMulMany(const float* x, int64_t T, const std::vector<MatMulJob>& jobs, ThreadPool* pool,
                KernelPath path) {
  if (T <= 0 || jobs.empty()) return;
  // Activations quantized once per format the jobs need (on the calling thread's buffers; the
  // workers only read them).
  thread_local ActivationBuffer blocks32, super_blocks;
  const int64_t K = jobs[0].w->cols;
  bool need32 = false, need256 = false, all_float = true;
  for (const MatMulJob& j : jobs) {
    const DotFamily f = FamilyOf(j.w->type);
    need32 |= f == DotFamily::kBlocks32;
    need256 |= f == DotFamily::kSuperBlocks;
    all_float &= f == DotFamily::kFloat;
  }
  if (need32) blocks32.Quantize(QuantizedRows::Kind::kQ8_0, x, T, K, K, pool);
  if (need256) super_blocks.Quantize(QuantizedRows::Kind::kQ8_K, x, T, K, K, pool);
  // Plain pointers for the workers: inside the loop body a thread_local name would be the worker's.
  const QuantizedRows* rows32 = &blocks32.rows();
  const QuantizedRows* rows256 = &super_blocks.rows();

  // Units of kUnitRows output rows, numbered across the jobs in order.
  std::vector<int64_t> first_unit(jobs.size() + 1, 0);
  for (size_t j = 0; j < jobs.size(); ++j) {
    first_unit[j + 1] = first_unit[j] + (jobs[j].w->rows + kUnitRows - 1) / kUnitRows;
  }
  const int64_t units = first_unit.back();
  const int64_t pass_rows = RowsPerPass(all_float ? DotFamily::kFloat : DotFamily::kBlocks32, T, K);
  for (int64_t t0 = 0; t0 < T; t0 += pass_rows) {
    const int64_t t1 = std::min(T, t0 + pass_rows);
    // NOTE: below ~64K multiply-adds per chunk the wake-up costs more than it saves.
    const int64_t work_per_unit = std::max<int64_t>(1, kUnitRows * K * (t1 - t0));
    const int64_t min_units = std::max<int64_t>(1, (1 << 16) / work_per_unit);
    auto body = [&](int64_t u0, int64_t u1) {
      for (size_t j = 0; j < jobs.size(); ++j) {
        const int64_t a = std::max(u0, first_unit[j]), b = std::min(u1, first_unit[j + 1]);
        if (a >= b) continue;
        const MatMulJob& job = jobs[j];
        const int64_t n0 = (a - first_unit[j]) * kUnitRows;
        const int64_t n1 = std::min(job.w->rows, (b - first_unit[j]) * kUnitRows);
        switch (FamilyOf(job.w->type)) {
          case DotFamily::kFloat:
            FloatRange(path, x + t0 * K, t1 - t0, *job.w, job.y + t0 * job.ldy, job.ldy, n0, n1);
            break;
          case DotFamily::kBlocks32:
            QuantMatMulRange(path, *rows32, *job.w, t0, t1, job.y, job.ldy, n0, n1);
            break;
          case DotFamily::kSuperBlocks:
            QuantMatMulRange(path, *rows256, *job.w, t0, t1, job.y, job.ldy, n0, n1);
            break;
        }
      }
    };
    if (pool == nullptr) {
      body(0, units);
    } else {
      pool->ParallelFor(units, min_units, body);
    }
  }
}

void MatMul(const float* x, int64_t T, const WeightMatrix& w, float* y, int64_t ldy,
            ThreadPool* pool, KernelPath path) {
  MatMulMany(x, T, {{&w, y, ldy}}, pool, path);
}

void MatMulRange(const float* x, int64_t T, const WeightMatrix& w, float* y, int64_t ldy,
                 int64_t n_begin, int64_t n_end, KernelPath path) {
  const DotFamily family = FamilyOf(w.type);
  if (family == DotFamily::kFloat) {
    FloatRange(path, x, T, w, y, ldy, n_begin, n_end);
    return;
  }
  ActivationBuffer act;
  act.Quantize(
      family == DotFamily::kBlocks32 ? QuantizedRows::Kind::kQ8_0 : QuantizedRows::Kind::kQ8_K, x,
      T, w.cols, w.cols, nullptr);
  QuantMatMulRange(path, act.rows(), w, 0, T, y, ldy, n_begin, n_end);
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

void Dot4(const float* a, const float* const b[4], int64_t n, float* out) {
  __m256 acc0[4], acc1[4];
  for (int i = 0; i < 4; ++i) acc0[i] = acc1[i] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
    const __m256 a0 = _mm256_loadu_ps(a + k), a1 = _mm256_loadu_ps(a + k + 8);
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      acc0[i] = _mm256_fmadd_ps(a0, _mm256_loadu_ps(b[i] + k), acc0[i]);
      acc1[i] = _mm256_fmadd_ps(a1, _mm256_loadu_ps(b[i] + k + 8), acc1[i]);
    }
  }
  for (; k + 8 <= n; k += 8) {
    const __m256 a0 = _mm256_loadu_ps(a + k);
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) acc0[i] = _mm256_fmadd_ps(a0, _mm256_loadu_ps(b[i] + k), acc0[i]);
  }
  for (int i = 0; i < 4; ++i) {
    float s = HorizontalSum(_mm256_add_ps(acc0[i], acc1[i]));
    for (int64_t j = k; j < n; ++j) s += a[j] * b[i][j];
    out[i] = s;
  }
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

namespace {

// exp(x) for x in [-87, 88], Cephes' expf (range reduction by ln 2, degree-6 polynomial): within 2
// ulp of the true value.
inline __m256 Exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// tanh(z) = 1 - 2 / (exp(2z) + 1): within ~2e-7 absolute of the true value.
inline __m256 Tanh8(__m256 z) {
  const __m256 e = Exp8(_mm256_add_ps(z, z));
  return _mm256_sub_ps(_mm256_set1_ps(1.0f),
                       _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
}

// gelu_pytorch_tanh(g) * u for 8 values.
inline __m256 GeluTanhMul8(__m256 g, __m256 u) {
  const __m256 g3 = _mm256_mul_ps(_mm256_mul_ps(g, g), g);
  const __m256 z = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f),
                                 _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), g3, g));
  const __m256 t = Tanh8(z);
  const __m256 half_g = _mm256_mul_ps(_mm256_set1_ps(0.5f), g);
  return _mm256_mul_ps(_mm256_mul_ps(half_g, _mm256_add_ps(_mm256_set1_ps(1.0f), t)), u);
}

}  // namespace

void Axpy(float a, const float* x, float* y, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] = std::fma(a, x[i], y[i]);
}

float ExpShiftSum(float* x, int64_t n, float max) {
  const __m256 m = _mm256_set1_ps(max);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = Exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  if (i < n) {
    // The tail through the same vector code; the padding lanes are left out of the sum.
    float v[8];
    std::fill(v, v + 8, max);
    std::copy(x + i, x + n, v);
    const __m256 e = Exp8(_mm256_sub_ps(_mm256_loadu_ps(v), m));
    _mm256_storeu_ps(v, e);
    std::copy(v, v + (n - i), x + i);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 keep =
        _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - i)), lane));
    acc = _mm256_add_ps(acc, _mm256_and_ps(e, keep));
  }
  return HorizontalSum(acc);
}

void GeluTanhMul(float* gate, const float* up, int64_t n) {
  // NOTE: libm's tanhf cost ~8% of a decode step (expm1f per value); this vector form is within
  // 2e-7 of it. The tail goes through the same vector code (padded), so a value's result never
  // depends on where a chunk boundary falls.
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(gate + i, GeluTanhMul8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  }
  if (i < n) {
    float g[8] = {}, u[8] = {};
    std::copy(gate + i, gate + n, g);
    std::copy(up + i, up + n, u);
    _mm256_storeu_ps(g, GeluTanhMul8(_mm256_loadu_ps(g), _mm256_loadu_ps(u)));
    std::copy(g, g + (n - i), gate + i);
  }
}

void Softcap(float* x, int64_t n, float cap) {
  // Same vector tanh as GeluTanhMul (the vocabulary-wide logits rows made libm's tanhf visible).
  const __m256 inv = _mm256_set1_ps(1.0f / cap), c = _mm256_set1_ps(cap);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(x + i, _mm256_mul_ps(c, Tanh8(_mm256_mul_ps(_mm256_loadu_ps(x + i), inv))));
  }
  if (i < n) {
    float v[8] = {};
    std::copy(x + i, x + n, v);
    _mm256_storeu_ps(v, _mm256_mul_ps(c, Tanh8(_mm256_mul_ps(_mm256_loadu_ps(v), inv))));
    std::copy(v, v + (n - i), x + i);
  }
}

}  // namespace tessera::runtime::cpu
