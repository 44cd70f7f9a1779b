#include "runtime/cpu/quant_matmul.h"

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/bf16.h"
#include "gtest/gtest.h"
#include "runtime/cpu/kernels.h"
#include "runtime/quant/dequantize.h"
#include "runtime/quant/ggml_reference.h"
#include "runtime/quant/quantize.h"

namespace tessera::runtime::cpu {
namespace {

using quant::GgmlType;

constexpr GgmlType kQuantTypes[] = {GgmlType::kQ8_0, GgmlType::kQ4_0, GgmlType::kQ4_1,
                                    GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ4_K,
                                    GgmlType::kQ5_K, GgmlType::kQ6_K};

// A quantized [N, K] matrix: written by the reference quantizer where there is one, otherwise
// random blocks whose fp16 scale fields are set to moderate values.
struct Matrix {
  std::vector<uint8_t> bytes;
  WeightMatrix w;
};

Matrix MakeMatrix(GgmlType type, int64_t N, int64_t K, std::mt19937& rng) {
  Matrix m;
  const int64_t row_bytes = *quant::RowBytes(type, K);
  m.bytes.resize(N * row_bytes);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  if (quant::CanQuantize(type)) {
    std::vector<float> row(K);
    for (int64_t n = 0; n < N; ++n) {
      for (float& v : row) v = normal(rng) * 0.05f;
      if (n % 3 == 1) row[n % K] = 0.8f;  // An outlier: a block with a large scale.
      EXPECT_TRUE(quant::QuantizeRow(type, row.data(), m.bytes.data() + n * row_bytes, K).ok());
    }
  } else {
    // Q5_0 / Q5_1: d (and m) then random quant bits.
    for (uint8_t& b : m.bytes) b = static_cast<uint8_t>(rng());
    const int bb = quant::Traits(type).block_bytes;
    for (size_t off = 0; off < m.bytes.size(); off += bb) {
      const uint16_t d = quant::FloatToFp16(0.001f + 0.01f * std::fabs(normal(rng)));
      const uint16_t mn = quant::FloatToFp16(-0.05f * std::fabs(normal(rng)));
      std::memcpy(&m.bytes[off], &d, 2);
      if (type == GgmlType::kQ5_1) std::memcpy(&m.bytes[off + 2], &mn, 2);
    }
  }
  m.w = WeightMatrix{type, m.bytes.data(), N, K};
  EXPECT_TRUE(m.w.Validate("test").ok());
  return m;
}

std::vector<float> RandomActivations(int64_t T, int64_t K, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(T * K);
  for (float& v : x) v = normal(rng);
  for (int64_t t = 0; t < T; ++t) {
    if (t % 4 == 3) std::fill_n(&x[t * K], std::min<int64_t>(K, 40), 0.0f);  // All-zero blocks.
    if (t % 5 == 2) x[t * K + K / 2] = 30.0f;  // An activation outlier.
  }
  return x;
}

bool SameBits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

std::string Name(GgmlType type, int64_t N, int64_t K, int64_t T) {
  return absl::StrCat(quant::TypeName(type), " N=", N, " K=", K, " T=", T);
}

std::vector<int64_t> Ks(GgmlType type) {
  if (FamilyOf(type) == DotFamily::kSuperBlocks) return {256, 768};
  return {32, 96, 160, 320};
}

TEST(QuantMatMulTest, EveryPathEqualsThePortableOneBitForBit) {
  std::mt19937 rng(1);
  ThreadPool pool(3);
  for (GgmlType type : kQuantTypes) {
    for (int64_t K : Ks(type)) {
      for (int64_t N : {1, 3, 5, 13}) {
        const Matrix m = MakeMatrix(type, N, K, rng);
        for (int64_t T : {1, 2, 3, 5, 8, 13}) {
          const std::vector<float> x = RandomActivations(T, K, rng);
          std::vector<float> ref(T * N);
          MatMul(x.data(), T, m.w, ref.data(), N, nullptr, KernelPath::kPortable);
          for (KernelPath path : SupportedKernelPaths()) {
            std::vector<float> y(T * (N + 1), -7.0f);
            MatMul(x.data(), T, m.w, y.data(), N + 1, &pool, path);
            for (int64_t t = 0; t < T; ++t) {
              for (int64_t n = 0; n < N; ++n) {
                ASSERT_TRUE(SameBits(y[t * (N + 1) + n], ref[t * N + n]))
                    << Name(type, N, K, T) << " path " << KernelPathName(path) << " t=" << t
                    << " n=" << n << ": " << y[t * (N + 1) + n] << " vs " << ref[t * N + n];
              }
              ASSERT_EQ(y[t * (N + 1) + N], -7.0f) << "padding column written";
            }
          }
        }
      }
    }
  }
}

TEST(QuantMatMulTest, RowsDoNotDependOnTheBatchOnAnyPath) {
  std::mt19937 rng(2);
  for (GgmlType type : kQuantTypes) {
    const int64_t K = FamilyOf(type) == DotFamily::kSuperBlocks ? 512 : 96, N = 9, T = 11;
    const Matrix m = MakeMatrix(type, N, K, rng);
    const std::vector<float> x = RandomActivations(T, K, rng);
    for (KernelPath path : SupportedKernelPaths()) {
      std::vector<float> all(T * N), one(N);
      MatMul(x.data(), T, m.w, all.data(), N, nullptr, path);
      for (int64_t t = 0; t < T; ++t) {
        MatMul(x.data() + t * K, 1, m.w, one.data(), N, nullptr, path);
        for (int64_t n = 0; n < N; ++n) {
          ASSERT_TRUE(SameBits(one[n], all[t * N + n]))
              << quant::TypeName(type) << " " << KernelPathName(path) << " t=" << t;
        }
      }
    }
  }
}

// Against the same weights dequantized to fp32 and the unquantized activations (double sums): the
// only difference allowed is the activations' int8 rounding, at most half a step (d / 2) per value,
// so |error| <= sum over blocks of d_b / 2 * sum |w| over the block (+ fp32 rounding).
TEST(QuantMatMulTest, WithinTheActivationRoundingOfTheDequantizedProduct) {
  std::mt19937 rng(3);
  for (GgmlType type : kQuantTypes) {
    const int64_t K = FamilyOf(type) == DotFamily::kSuperBlocks ? 768 : 320, N = 7, T = 4;
    const Matrix m = MakeMatrix(type, N, K, rng);
    const std::vector<float> x = RandomActivations(T, K, rng);
    std::vector<float> y(T * N);
    MatMul(x.data(), T, m.w, y.data(), N, nullptr);
    const int block = FamilyOf(type) == DotFamily::kSuperBlocks ? 256 : 32;
    std::vector<float> wrow(K);
    for (int64_t n = 0; n < N; ++n) {
      m.w.RowToFloat(n, wrow.data());
      for (int64_t t = 0; t < T; ++t) {
        const float* xr = &x[t * K];
        double exact = 0, bound = 0, magnitude = 0;
        for (int64_t b = 0; b < K / block; ++b) {
          float amax = 0;
          for (int k = 0; k < block; ++k) amax = std::max(amax, std::fabs(xr[b * block + k]));
          const double half_step = amax / 127.0 / 2 * (1 + 1e-3);  // fp16 scale rounding.
          for (int k = 0; k < block; ++k) {
            const double wv = wrow[b * block + k], xv = xr[b * block + k];
            exact += wv * xv;
            bound += half_step * std::fabs(wv);
            magnitude += std::fabs(wv * xv);
          }
        }
        EXPECT_NEAR(y[t * N + n], exact, bound + 1e-5 * magnitude + 1e-30)
            << quant::TypeName(type) << " n=" << n << " t=" << t;
      }
    }
  }
}

// llama.cpp's own CPU kernels (libggml-cpu, the variant ggml picks for this CPU): its activation
// quantizer must write the same blocks as ours, and its vec_dot on those blocks must agree with our
// product to fp32 rounding: both sum exact integer block products scaled in fp32, in different
// orders, so they differ by at most ~(blocks + 16) roundings of the magnitude sum.
TEST(QuantMatMulTest, MatchesGgmlVecDot) {
  TESSERA_LOAD_GGML_OR_SKIP(ggml);
  std::mt19937 rng(4);
  for (GgmlType type : kQuantTypes) {
    const bool k_quant = FamilyOf(type) == DotFamily::kSuperBlocks;
    const int64_t K = k_quant ? 1024 : 320, N = 6, T = 5;
    const Matrix m = MakeMatrix(type, N, K, rng);
    const std::vector<float> x = RandomActivations(T, K, rng);
    ActivationBuffer ours;
    ours.Quantize(k_quant ? QuantizedRows::Kind::kQ8_K : QuantizedRows::Kind::kQ8_0, x.data(), T, K,
                  K, nullptr);
    const GgmlType act_type = ggml.VecDotType(type);
    const int64_t act_bytes = *quant::RowBytes(act_type, K);
    std::vector<float> y(T * N);
    MatMul(x.data(), T, m.w, y.data(), N, nullptr);
    for (int64_t t = 0; t < T; ++t) {
      std::vector<uint8_t> act(act_bytes);
      ASSERT_TRUE(ggml.FromFloat(act_type, &x[t * K], act.data(), K));
      // Same activation blocks: values and scales.
      const QuantizedRows& q = ours.rows();
      for (int64_t b = 0; b < K / (k_quant ? 256 : 32); ++b) {
        const uint8_t* blk = act.data() + b * quant::Traits(act_type).block_bytes;
        float d;
        const int8_t* qs;
        if (k_quant) {
          const auto* kb = reinterpret_cast<const quant::BlockQ8_K*>(blk);
          d = kb->d;
          qs = kb->qs;
        } else {
          uint16_t dh;
          std::memcpy(&dh, blk, 2);
          d = quant::Fp16ToFloat(dh);
          qs = reinterpret_cast<const int8_t*>(blk + (act_type == GgmlType::kQ8_1 ? 4 : 2));
        }
        const int bl = k_quant ? 256 : 32;
        ASSERT_TRUE(SameBits(d, q.row_d(t)[b])) << quant::TypeName(type) << " block " << b;
        ASSERT_EQ(std::memcmp(qs, q.row_qs(t) + b * bl, bl), 0)
            << quant::TypeName(type) << " block " << b;
      }
      std::vector<float> wrow(K);
      for (int64_t n = 0; n < N; ++n) {
        float theirs = 0;
        ASSERT_TRUE(ggml.VecDot(type, K, m.w.row(n), act.data(), &theirs));
        m.w.RowToFloat(n, wrow.data());
        double magnitude = 0;
        for (int64_t k = 0; k < K; ++k) magnitude += std::fabs(wrow[k] * x[t * K + k]);
        double tol = (K / 32 + 16) * 1.2e-7 * magnitude;
        if (type == GgmlType::kQ4_1 || type == GgmlType::kQ5_1) {
          // ggml pairs these with Q8_1, whose block sum s = d * sum(q) is stored as fp16: the min
          // term m * s carries up to 2^-11 of relative rounding that our fp32 t = d * sum does not.
          const QuantizedRows& q = ours.rows();
          const int bb = quant::Traits(type).block_bytes;
          for (int64_t b = 0; b < K / 32; ++b) {
            uint16_t mh;
            std::memcpy(&mh, m.w.row(n) + b * bb + 2, 2);
            tol += std::fabs(quant::Fp16ToFloat(mh) * q.row_t(t)[b]) * std::ldexp(1.0, -11);
          }
        }
        EXPECT_NEAR(y[t * N + n], theirs, tol) << quant::TypeName(type) << " n=" << n << " t=" << t
                                               << " (ggml " << ggml.cpu_variant() << ")";
      }
    }
  }
}

TEST(QuantMatMulTest, MatMulManyQuantizesOnceAndEqualsSeparateCalls) {
  std::mt19937 rng(5);
  const int64_t K = 512, T = 6;
  const Matrix a = MakeMatrix(GgmlType::kQ4_K, 8, K, rng);
  const Matrix b = MakeMatrix(GgmlType::kQ8_0, 5, K, rng);
  const Matrix c = MakeMatrix(GgmlType::kQ6_K, 3, K, rng);
  std::vector<uint16_t> bf(4 * K);
  for (auto& v : bf) v = FloatToBf16(std::normal_distribution<float>()(rng));
  const WeightMatrix d{GgmlType::kBF16, bf.data(), 4, K};
  const std::vector<float> x = RandomActivations(T, K, rng);
  ThreadPool pool(2);
  std::vector<std::vector<float>> together(4), apart(4);
  const WeightMatrix* ws[] = {&a.w, &b.w, &c.w, &d};
  std::vector<MatMulJob> jobs;
  for (int j = 0; j < 4; ++j) {
    together[j].assign(T * ws[j]->rows, 0.0f);
    apart[j].assign(T * ws[j]->rows, 0.0f);
    jobs.push_back({ws[j], together[j].data(), ws[j]->rows});
    MatMul(x.data(), T, *ws[j], apart[j].data(), ws[j]->rows, nullptr);
  }
  MatMulMany(x.data(), T, jobs, &pool);
  for (int j = 0; j < 4; ++j) EXPECT_EQ(together[j], apart[j]) << j;
}

}  // namespace
}  // namespace tessera::runtime::cpu
