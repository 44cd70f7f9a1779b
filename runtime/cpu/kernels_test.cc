#include "runtime/cpu/kernels.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/model/safetensors.h"
#include "runtime/quant/ggml_type.h"

namespace tessera::runtime::cpu {
namespace {

// Naive double-precision reference.
std::vector<double> Reference(const std::vector<float>& x, int64_t T, const std::vector<float>& w,
                              int64_t N, int64_t K) {
  std::vector<double> y(T * N);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += static_cast<double>(x[t * K + k]) * w[n * K + k];
      y[t * N + n] = s;
    }
  return y;
}

TEST(KernelsTest, MatMulMatchesReferenceForManyShapes) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist;
  ThreadPool pool(2);
  for (int64_t K : {1, 7, 8, 64, 100, 640}) {
    for (int64_t N : {1, 3, 4, 5, 33}) {
      for (int64_t T : {1, 2, 3, 4, 7}) {
        std::vector<float> x(T * K), wf(N * K);
        std::vector<uint16_t> wb(N * K);
        for (float& v : x) v = dist(rng);
        for (size_t i = 0; i < wf.size(); ++i) {
          wb[i] = FloatToBf16(dist(rng));
          wf[i] = Bf16ToFloat(wb[i]);  // Same values in both layouts.
        }
        auto ref = Reference(x, T, wf, N, K);
        for (bool bf16 : {false, true}) {
          WeightMatrix w;
          w.type = bf16 ? WeightMatrix::Type::kBF16 : WeightMatrix::Type::kF32;
          w.data = bf16 ? static_cast<const void*>(wb.data()) : wf.data();
          w.rows = N;
          w.cols = K;
          std::vector<float> y(T * (N + 2), -1.0f);  // ldy > N: padding must stay untouched.
          MatMul(x.data(), T, w, y.data(), N + 2, &pool);
          for (int64_t t = 0; t < T; ++t) {
            for (int64_t n = 0; n < N; ++n) {
              // fp32 accumulation over K terms of magnitude ~1: error ~ sqrt(K) * 6e-8 * |terms|.
              EXPECT_NEAR(y[t * (N + 2) + n], ref[t * N + n], 1e-5 * (1 + std::sqrt(K)) * 4)
                  << "K=" << K << " N=" << N << " T=" << T << " bf16=" << bf16;
            }
            EXPECT_EQ(y[t * (N + 2) + N], -1.0f);
          }
        }
      }
    }
  }
}

TEST(KernelsTest, MatMulRowsDoNotDependOnBatch) {
  std::mt19937 rng(3);
  std::normal_distribution<float> dist;
  const int64_t K = 96, N = 13, T = 9;
  std::vector<float> x(T * K);
  std::vector<uint16_t> wb(N * K);
  for (float& v : x) v = dist(rng);
  for (auto& v : wb) v = FloatToBf16(dist(rng));
  WeightMatrix w{WeightMatrix::Type::kBF16, wb.data(), N, K};
  std::vector<float> all(T * N), one(N);
  MatMul(x.data(), T, w, all.data(), N, nullptr);
  for (int64_t t = 0; t < T; ++t) {
    MatMul(x.data() + t * K, 1, w, one.data(), N, nullptr);
    for (int64_t n = 0; n < N; ++n) EXPECT_EQ(one[n], all[t * N + n]);
  }
}

TEST(KernelsTest, NormsRopeGeluSoftcap) {
  std::vector<float> x = {1, -2, 3, 4}, w = {1, 2, 0.5, 1}, out(4);
  RmsNorm(x.data(), 4, w.data(), 0.0f, out.data());
  const float inv = 1.0f / std::sqrt((1 + 4 + 9 + 16) / 4.0f);
  EXPECT_FLOAT_EQ(out[1], -2 * inv * 2);
  LayerNorm(x.data(), 4, w.data(), w.data(), 0.0f, out.data());
  // mean 1.5, var (0.25 + 12.25 + 2.25 + 6.25) / 4 = 5.25.
  EXPECT_NEAR(out[2], (3 - 1.5) / std::sqrt(5.25) * 0.5 + 0.5, 1e-6);
  // RoPE: head_dim 4, pairs (0, 2) and (1, 3); only the first pair rotates.
  std::vector<float> h = {1, 5, 0, 7};
  const float inv_freq[2] = {0.5f, 0.0f};
  ApplyRope(h.data(), 4, 1, inv_freq, 2);  // angle 1.
  EXPECT_NEAR(h[0], std::cos(1.0), 1e-6);
  EXPECT_NEAR(h[2], std::sin(1.0), 1e-6);
  EXPECT_EQ(h[1], 5);
  EXPECT_EQ(h[3], 7);
  std::vector<float> g = {1.0f, -1.0f}, up = {2.0f, 1.0f};
  GeluTanhMul(g.data(), up.data(), 2);
  EXPECT_NEAR(g[0], 0.8411920 * 2, 1e-5);  // gelu_tanh(1) = 0.841192.
  EXPECT_NEAR(g[1], -0.1588080, 1e-5);
  std::vector<float> l = {0.0f, 30.0f, -1000.0f};
  Softcap(l.data(), 3, 30.0f);
  EXPECT_EQ(l[0], 0.0f);
  EXPECT_NEAR(l[1], 30 * std::tanh(1.0), 1e-5);
  EXPECT_NEAR(l[2], -30.0f, 1e-5);
}

}  // namespace
}  // namespace tessera::runtime::cpu

namespace tessera::runtime::cpu {
namespace {

TEST(KernelsTest, MatMulManyEqualsSeparateMatMuls) {
  std::mt19937 rng(11);
  std::normal_distribution<float> dist;
  const int64_t K = 40, T = 5;
  std::vector<float> x(T * K);
  for (float& v : x) v = dist(rng);
  std::vector<std::vector<uint16_t>> ws;
  std::vector<WeightMatrix> mats;
  for (int64_t rows : {7, 1, 12}) {
    ws.emplace_back(rows * K);
    for (auto& v : ws.back()) v = FloatToBf16(dist(rng));
  }
  int64_t i = 0;
  for (int64_t rows : {7, 1, 12})
    mats.push_back({WeightMatrix::Type::kBF16, ws[i++].data(), rows, K});
  ThreadPool pool(3);
  std::vector<std::vector<float>> together(3), apart(3);
  std::vector<MatMulJob> jobs;
  for (int j = 0; j < 3; ++j) {
    together[j].assign(T * mats[j].rows, 0.0f);
    apart[j].assign(T * mats[j].rows, 0.0f);
    jobs.push_back({&mats[j], together[j].data(), mats[j].rows});
    MatMul(x.data(), T, mats[j], apart[j].data(), mats[j].rows, nullptr);
  }
  MatMulMany(x.data(), T, jobs, &pool);
  for (int j = 0; j < 3; ++j) EXPECT_EQ(together[j], apart[j]) << j;
}

}  // namespace
}  // namespace tessera::runtime::cpu

namespace tessera::runtime::cpu {
namespace {

// Float weights on every path: AVX-512 runs the portable kernel's 16-lane sum exactly; AVX2 sums
// in 8 lanes, so it agrees to fp32 rounding (~sqrt(K) ulps of the magnitude sum). Each path keeps
// rows independent of the batch.
TEST(KernelsTest, FloatWeightsOnEveryPath) {
  std::mt19937 rng(17);
  std::normal_distribution<float> dist;
  ThreadPool pool(2);
  for (auto type :
       {WeightMatrix::Type::kF32, WeightMatrix::Type::kBF16, WeightMatrix::Type::kF16}) {
    for (int64_t K : {5, 16, 40, 256}) {
      const int64_t N = 9, T = 8;
      std::vector<float> x(T * K), wf(N * K);
      std::vector<uint16_t> wh(N * K);
      for (float& v : x) v = dist(rng);
      for (size_t i = 0; i < wf.size(); ++i) {
        const float v = dist(rng);
        if (type == WeightMatrix::Type::kBF16) wh[i] = FloatToBf16(v);
        if (type == WeightMatrix::Type::kF16) wh[i] = quant::FloatToFp16(v);
        wf[i] = v;
      }
      const void* data =
          type == WeightMatrix::Type::kF32 ? static_cast<const void*>(wf.data()) : wh.data();
      const WeightMatrix w{type, data, N, K};
      std::vector<float> ref(T * N);
      MatMul(x.data(), T, w, ref.data(), N, nullptr, KernelPath::kPortable);
      for (KernelPath path : SupportedKernelPaths()) {
        std::vector<float> y(T * N), one(N);
        MatMul(x.data(), T, w, y.data(), N, &pool, path);
        std::vector<float> row(K);
        for (int64_t n = 0; n < N; ++n) {
          w.RowToFloat(n, row.data());
          for (int64_t t = 0; t < T; ++t) {
            double mag = 0;
            for (int64_t k = 0; k < K; ++k) mag += std::fabs(row[k] * x[t * K + k]);
            if (path == KernelPath::kAvx2) {
              EXPECT_NEAR(y[t * N + n], ref[t * N + n], 1.2e-7 * (8 + K) * mag);
            } else {
              EXPECT_EQ(y[t * N + n], ref[t * N + n])
                  << KernelPathName(path) << " K=" << K << " type " << quant::TypeName(type);
            }
          }
        }
        for (int64_t t = 0; t < T; ++t) {
          MatMul(x.data() + t * K, 1, w, one.data(), N, nullptr, path);
          for (int64_t n = 0; n < N; ++n) EXPECT_EQ(one[n], y[t * N + n]) << KernelPathName(path);
        }
      }
    }
  }
}

}  // namespace
}  // namespace tessera::runtime::cpu

namespace tessera::runtime::cpu {
namespace {

TEST(KernelsTest, Dot4GivesDotsBitsAndExpShiftSumAxpy) {
  std::mt19937 rng(23);
  std::normal_distribution<float> dist;
  for (int64_t n : {5, 8, 13, 40, 128}) {
    std::vector<float> a(n), b(4 * n);
    for (float& v : a) v = dist(rng);
    for (float& v : b) v = dist(rng);
    const float* rows[4] = {&b[0], &b[n], &b[2 * n], &b[3 * n]};
    float out[4];
    Dot4(a.data(), rows, n, out);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], Dot(a.data(), rows[i], n)) << n;
    std::vector<float> e = a;
    float max = *std::max_element(a.begin(), a.end());
    double sum = 0;
    const float got = ExpShiftSum(e.data(), n, max);
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(e[i], std::exp(a[i] - max), 3e-7 * std::exp(a[i] - max));
      sum += std::exp(static_cast<double>(a[i]) - max);
    }
    EXPECT_NEAR(got, sum, 1e-6 * sum);
    std::vector<float> y(b.begin(), b.begin() + n);
    Axpy(0.5f, a.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y[i], b[i] + 0.5f * a[i], 1e-6);
  }
}

}  // namespace
}  // namespace tessera::runtime::cpu
