// The quantized-weight kernels (quant.h) and the projection over mixed-format matrices
// (projection.h) against runtime/quant's reference dequantization (bit-identical to ggml's,
// checked there against llama.cpp's own library), on random blocks of every format in several
// shapes: blocks from ggml's reference quantizer and blocks of random bytes (every bit pattern of
// quants, 6-bit scales and mins, signed Q6_K scales) with sane fp16 scales. Runs on a GPU
// (quant_gpu_test, tag gpu) and, unchanged, on the CPU emulation (quant_emu_test).
#include "runtime/cuda/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/cuda/bf16.h"
#include "runtime/cuda/cuda_weights.h"
#include "runtime/cuda/device.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/gemm.h"
#include "runtime/cuda/projection.h"
#include "runtime/cuda/test_util.h"
#include "runtime/quant/dequantize.h"
#include "runtime/quant/ggml_type.h"
#include "runtime/quant/quantize.h"

namespace tessera::runtime::cuda {
namespace {

using quant::GgmlType;

class Rng : public test_util::SplitMix64 {
 public:
  using SplitMix64::SplitMix64;
  double Uniform(double lo, double hi) { return lo + (hi - lo) * ((Next() >> 11) * 0x1.0p-53); }
  double Normal() {  // Box-Muller.
    const double u = ((Next() >> 11) + 1) * 0x1.0p-53, v = (Next() >> 11) * 0x1.0p-53;
    return std::sqrt(-2.0 * std::log(u)) * std::cos(2.0 * M_PI * v);
  }
};

GgmlType GgmlOf(WeightFormat f) {
  switch (f) {
    case WeightFormat::kQ8_0:
      return GgmlType::kQ8_0;
    case WeightFormat::kQ4_0:
      return GgmlType::kQ4_0;
    case WeightFormat::kQ4_1:
      return GgmlType::kQ4_1;
    case WeightFormat::kQ5_K:
      return GgmlType::kQ5_K;
    case WeightFormat::kQ4_K:
      return GgmlType::kQ4_K;
    case WeightFormat::kQ6_K:
      return GgmlType::kQ6_K;
    case WeightFormat::kBf16:
      break;
  }
  return GgmlType::kBF16;
}

// Offsets of the fp16 fields of a block (quant_formats.h's layouts).
std::vector<int> HalfFields(WeightFormat f) {
  switch (f) {
    case WeightFormat::kQ8_0:
    case WeightFormat::kQ4_0:
      return {0};
    case WeightFormat::kQ4_1:
    case WeightFormat::kQ4_K:
    case WeightFormat::kQ5_K:
      return {0, 2};
    case WeightFormat::kQ6_K:
      return {208};
    case WeightFormat::kBf16:
      break;
  }
  return {};
}

// `rows` rows of `cols` values in format f: even rows from ggml's quantizer (normal values with a
// few outliers), odd rows random bytes with fp16 scales in +-[2^-8, 2^-4] (a min may be negative).
std::vector<uint8_t> RandomRows(WeightFormat f, int64_t rows, int64_t cols, Rng& rng) {
  const int64_t row_bytes = RowBytes(f, cols);
  std::vector<uint8_t> out(rows * row_bytes);
  std::vector<float> x(cols);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = out.data() + r * row_bytes;
    if (r % 2 == 0) {
      for (float& v : x) v = static_cast<float>(0.05 * rng.Normal());
      x[rng.Int(0, static_cast<int>(cols) - 1)] = 0.6f;  // An outlier.
      EXPECT_TRUE(quant::QuantizeRow(GgmlOf(f), x.data(), row, cols).ok());
      continue;
    }
    for (int64_t i = 0; i < row_bytes; ++i) row[i] = static_cast<uint8_t>(rng.Next());
    for (int64_t b = 0; b < row_bytes; b += BlockBytes(f)) {
      for (int at : HalfFields(f)) {
        const float mag = static_cast<float>(std::ldexp(rng.Uniform(1.0, 2.0), rng.Int(-8, -5)));
        const uint16_t h = quant::FloatToFp16(rng.Int(0, 1) ? mag : -mag);
        std::memcpy(row + b + at, &h, 2);
      }
    }
  }
  return out;
}

std::vector<float> Dequantized(WeightFormat f, const std::vector<uint8_t>& blocks, int64_t rows,
                               int64_t cols) {
  std::vector<float> w(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_TRUE(quant::DequantizeRow(GgmlOf(f), blocks.data() + r * RowBytes(f, cols),
                                     w.data() + r * cols, cols)
                    .ok());
  }
  return w;
}

template <typename T>
DeviceBuffer Up(const std::vector<T>& v) {
  auto b = Upload(v);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? std::move(*b) : DeviceBuffer();
}

// Widths per format: one and several blocks, and rows wide enough for the GEMV's 64- and
// 128-thread rows (more than 32 and 64 units of 32 values: GemvThreadsPerRow).
std::vector<int64_t> Widths(WeightFormat f) {
  return BlockValues(f) == 32 ? std::vector<int64_t>{32, 96, 1536}
                              : std::vector<int64_t>{256, 512, 2560};
}

class QuantTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto devices = QueryDevices();
    if (!devices.ok() || devices->empty()) GTEST_SKIP() << "no GPU: " << devices.status();
  }
};

TEST_F(QuantTest, DequantizeEqualsTheReferenceRoundedToBf16) {
  Rng rng(1300);
  for (WeightFormat f : kQuantFormats) {
    for (int64_t cols : Widths(f)) {
      SCOPED_TRACE(absl::StrCat(WeightFormatName(f), " cols ", cols));
      const int64_t rows = 5;
      const std::vector<uint8_t> blocks = RandomRows(f, rows, cols, rng);
      const std::vector<float> ref = Dequantized(f, blocks, rows, cols);
      DeviceBuffer w = Up(blocks);
      // Rows 1..3 in place, then a gather with a skipped (-1) and an out-of-range (zeros) id and
      // the embedding's scale (62 = sqrt(3840) in bf16): each value rounded once.
      struct Case {
        std::vector<int32_t> ids;
        float scale;
      };
      for (const Case& c : {Case{{}, 1.0f}, Case{{4, -1, 0, 7, 2}, 62.0f}}) {
        const int32_t n = c.ids.empty() ? 3 : static_cast<int32_t>(c.ids.size());
        const int64_t stride = cols + 8;
        std::vector<Bf16> init(n * stride, Bf16{0xDEAD});
        DeviceBuffer out = Up(init);
        DeviceBuffer ids = c.ids.empty() ? DeviceBuffer() : Up(c.ids);
        DequantizeParams p;
        p.format = f;
        p.w = w.data();
        p.w_rows = rows;
        p.cols = cols;
        p.ids = c.ids.empty() ? nullptr : ids.as<int32_t>();
        p.row0 = c.ids.empty() ? 1 : 0;
        p.rows = n;
        p.scale = c.scale;
        p.out = out.as<Bf16>();
        p.out_row_stride = stride;
        ASSERT_OK(LaunchDequantizeRows(p, nullptr));
        ASSERT_OK_AND_ASSIGN(got, Download<Bf16>(out, n * stride));
        int mismatches = 0;
        for (int32_t r = 0; r < n; ++r) {
          const int32_t src = c.ids.empty() ? 1 + r : c.ids[r];
          for (int64_t i = 0; i < stride; ++i) {
            uint16_t want = 0xDEAD;  // Padding, and a skipped row, stay untouched.
            if (i < cols && src >= rows) want = 0;
            if (i < cols && src >= 0 && src < rows) {
              want = FloatToBf16(ref[src * cols + i] * c.scale).bits;
            }
            if (got[r * stride + i].bits != want && ++mismatches < 5) {
              ADD_FAILURE() << "row " << r << " (source " << src << ") col " << i << ": got 0x"
                            << std::hex << got[r * stride + i].bits << ", want 0x" << want;
            }
          }
        }
        EXPECT_EQ(mismatches, 0);
      }
    }
  }
}

// x in bf16, as the runner's activations.
std::vector<Bf16> Activations(int64_t rows, int64_t cols, Rng& rng) {
  std::vector<Bf16> x(rows * cols);
  for (Bf16& v : x) v = FloatToBf16(static_cast<float>(rng.Normal()));
  x[rng.Int(0, static_cast<int>(x.size()) - 1)] = FloatToBf16(-9.0f);  // A large activation.
  return x;
}

TEST_F(QuantTest, Q8_1BlocksRoundEachValueToTheNearestStep) {
  Rng rng(1400);
  const int64_t rows = 3, cols = 96, stride = 100;
  std::vector<Bf16> x = Activations(rows, stride, rng);
  for (int i = 0; i < 32; ++i) x[stride + 32 + i] = FloatToBf16(0.0f);  // An all-zero block.
  DeviceBuffer xd = Up(x);
  DeviceBuffer out = Up(std::vector<Q8_1Block>(rows * cols / 32));
  QuantizeQ8_1Params p;
  p.x = xd.as<Bf16>();
  p.x_row_stride = stride;
  p.rows = rows;
  p.cols = cols;
  p.out = out.as<Q8_1Block>();
  ASSERT_OK(LaunchQuantizeQ8_1(p, nullptr));
  ASSERT_OK_AND_ASSIGN(q, Download<Q8_1Block>(out, rows * cols / 32));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < cols / 32; ++b) {
      const Q8_1Block& blk = q[r * (cols / 32) + b];
      float amax = 0.0f;
      for (int i = 0; i < 32; ++i) {
        amax = std::max(amax, std::fabs(Bf16ToFloat(x[r * stride + b * 32 + i])));
      }
      EXPECT_EQ(blk.d, amax / 127.0f) << r << " " << b;  // llama.cpp's scale.
      int sum = 0;
      for (int i = 0; i < 32; ++i) {
        const float v = Bf16ToFloat(x[r * stride + b * 32 + i]);
        // Nearest step (ties may go either way), never past +-127.
        EXPECT_LE(std::fabs(blk.qs[i] * blk.d - v), blk.d * 0.5f * (1 + 1e-5f) + 1e-30f);
        EXPECT_LE(std::abs(static_cast<int>(blk.qs[i])), 127);
        sum += blk.qs[i];
      }
      EXPECT_EQ(blk.s, blk.d * static_cast<float>(sum));
    }
  }
}

// The GEMV against the exact product of the dequantized weights with the bf16 activations. The
// only approximation is the activations' q8_1 rounding, at most d / 2 per value (d = the block's
// max |x| / 127), so |GEMV - exact| <= sum_i |w_i| d(i) / 2, plus fp32 accumulation (<= 64 ulps of
// sum_i |w_i x_i| for these widths).
TEST_F(QuantTest, GemvIsTheExactProductUpToTheActivationRounding) {
  Rng rng(1500);
  for (WeightFormat f : kQuantFormats) {
    for (int64_t k : Widths(f)) {
      for (int32_t m : {1, 3, 8}) {
        SCOPED_TRACE(absl::StrCat(WeightFormatName(f), " k ", k, " m ", m));
        const int64_t n = 6;
        const std::vector<uint8_t> blocks = RandomRows(f, n, k, rng);
        const std::vector<float> w = Dequantized(f, blocks, n, k);
        const std::vector<Bf16> x = Activations(m, k, rng);
        DeviceBuffer wd = Up(blocks), xd = Up(x);
        DeviceBuffer xq = Up(std::vector<Q8_1Block>(m * k / 32));
        QuantizeQ8_1Params qp;
        qp.x = xd.as<Bf16>();
        qp.x_row_stride = k;
        qp.rows = m;
        qp.cols = k;
        qp.out = xq.as<Q8_1Block>();
        ASSERT_OK(LaunchQuantizeQ8_1(qp, nullptr));
        const int64_t ldo = n + 3;
        DeviceBuffer out32 = Up(std::vector<float>(m * ldo, -1.0f));
        DeviceBuffer out16 = Up(std::vector<Bf16>(m * ldo, Bf16{0xDEAD}));
        QuantGemvParams g;
        g.format = f;
        g.w = wd.data();
        g.n = n;
        g.k = k;
        g.xq = xq.as<Q8_1Block>();
        g.m = m;
        g.ldo = ldo;
        g.out = out32.data();
        g.out_fp32 = true;
        ASSERT_OK(LaunchQuantGemv(g, nullptr));
        g.out = out16.data();
        g.out_fp32 = false;
        ASSERT_OK(LaunchQuantGemv(g, nullptr));
        ASSERT_OK_AND_ASSIGN(got, Download<float>(out32, m * ldo));
        ASSERT_OK_AND_ASSIGN(got16, Download<Bf16>(out16, m * ldo));
        for (int32_t r = 0; r < m; ++r) {
          for (int64_t j = 0; j < n; ++j) {
            double exact = 0, abs_sum = 0, bound = 0;
            for (int64_t b = 0; b < k / 32; ++b) {
              double amax = 0;
              for (int i = 0; i < 32; ++i) {
                amax = std::max(amax, std::fabs(double{Bf16ToFloat(x[r * k + b * 32 + i])}));
              }
              const double half_step = amax / 127 / 2;
              for (int i = 0; i < 32; ++i) {
                const double wi = w[j * k + b * 32 + i], xi = Bf16ToFloat(x[r * k + b * 32 + i]);
                exact += wi * xi;
                abs_sum += std::fabs(wi * xi);
                bound += std::fabs(wi) * half_step;
              }
            }
            const double tol = bound * (1 + 1e-5) + abs_sum * 64 * 0x1.0p-24 + 1e-7;
            EXPECT_NEAR(got[r * ldo + j], exact, tol) << "row " << r << " out " << j;
            // The bf16 output is the same sum rounded once.
            EXPECT_EQ(got16[r * ldo + j].bits, FloatToBf16(got[r * ldo + j]).bits);
          }
          EXPECT_EQ(got[r * ldo + n], -1.0f);  // Past n: untouched.
          EXPECT_EQ(got16[r * ldo + n].bits, 0xDEAD);
        }
      }
    }
  }
}

TEST_F(QuantTest, LaunchersRefuseBadShapes) {
  DequantizeParams d;
  d.format = WeightFormat::kQ4_K;
  d.cols = 100;  // Not a multiple of 256.
  EXPECT_EQ(LaunchDequantizeRows(d, nullptr).code(), absl::StatusCode::kInvalidArgument);
  d.format = WeightFormat::kBf16;
  d.cols = 256;
  EXPECT_EQ(LaunchDequantizeRows(d, nullptr).code(), absl::StatusCode::kInvalidArgument);
  QuantGemvParams g;
  g.format = WeightFormat::kQ8_0;
  g.k = 64;
  g.n = 4;
  g.ldo = 4;
  g.m = kMaxGemvRows + 1;
  EXPECT_EQ(LaunchQuantGemv(g, nullptr).code(), absl::StatusCode::kInvalidArgument);
  QuantizeQ8_1Params q;
  q.cols = 48;
  q.x_row_stride = 48;
  EXPECT_EQ(LaunchQuantizeQ8_1(q, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

// A fused matrix of three parts in different formats (as a Q4_K_M layer's q, k in Q4_K and its
// v in Q6_K, here with a bf16 part too) through the Projector: at 2 rows (the GEMV) and at 70 rows
// (dequantized slabs through the GEMM, the scratch holding 3 rows at a time so each part takes
// several slabs), each part landing in its own output columns.
TEST_F(QuantTest, ProjectionOverPartsOfDifferentFormats) {
  Rng rng(1600);
  const int64_t k = 512;
  struct Piece {
    WeightFormat format;
    int64_t rows;
  };
  const std::vector<Piece> pieces = {
      {WeightFormat::kQ4_K, 8}, {WeightFormat::kQ6_K, 5}, {WeightFormat::kBf16, 4}};
  DeviceWeights owner;
  WeightAllocator alloc("test", &owner);
  DeviceMatrix mat;
  std::vector<std::pair<WeightFormat, int64_t>> layout;
  for (const Piece& p : pieces) layout.emplace_back(p.format, p.rows);
  ASSERT_OK(alloc.Allocate(&mat, k, layout));
  ASSERT_EQ(mat.parts.size(), 3u);
  EXPECT_TRUE(mat.quantized());
  std::vector<float> w;  // [17, k], the values each part stands for.
  for (const DeviceMatrixPart& part : mat.parts) {
    std::vector<float> pw;
    if (part.format == WeightFormat::kBf16) {
      std::vector<Bf16> b(part.rows * k);
      for (Bf16& v : b) v = FloatToBf16(static_cast<float>(0.05 * rng.Normal()));
      ASSERT_OK(mat.buf.CopyFromHost(b.data(), b.size() * 2,
                                     static_cast<char*>(part.data) - mat.buf.as<char>()));
      for (Bf16 v : b) pw.push_back(Bf16ToFloat(v));
    } else {
      const std::vector<uint8_t> blocks = RandomRows(part.format, part.rows, k, rng);
      ASSERT_OK(mat.buf.CopyFromHost(blocks.data(), blocks.size(),
                                     static_cast<char*>(part.data) - mat.buf.as<char>()));
      pw = Dequantized(part.format, blocks, part.rows, k);
    }
    w.insert(w.end(), pw.begin(), pw.end());
  }
  ASSERT_OK_AND_ASSIGN(gemm, CreateGemmRunner());
  DeviceBuffer scratch = Up(std::vector<Bf16>(3 * k));
  DeviceBuffer xq = Up(std::vector<Q8_1Block>(8 * k / 32));
  Projector proj(gemm.get(), scratch.as<Bf16>(), 3 * k * 2, xq.as<Q8_1Block>(), 8, k);
  for (int64_t m : {2, 70}) {
    SCOPED_TRACE(absl::StrCat("rows ", m));
    const std::vector<Bf16> x = Activations(m, k, rng);
    DeviceBuffer xd = Up(x);
    const int64_t ldo = mat.rows + 1;
    DeviceBuffer out = Up(std::vector<float>(m * ldo, -1.0f));
    ASSERT_OK(proj.Run(xd.as<Bf16>(), k, mat, out.data(), ldo, m, /*out_fp32=*/true, nullptr));
    ASSERT_OK(Synchronize());
    ASSERT_OK_AND_ASSIGN(got, Download<float>(out, m * ldo));
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t j = 0; j < mat.rows; ++j) {
        double exact = 0, abs_sum = 0, abs_w = 0, amax = 0;
        for (int64_t i = 0; i < k; ++i) {
          const double wi = w[j * k + i], xi = Bf16ToFloat(x[r * k + i]);
          exact += wi * xi;
          abs_sum += std::fabs(wi * xi);
          abs_w += std::fabs(wi);
          amax = std::max(amax, std::fabs(xi));
        }
        // GEMV: the activation rounding (at most amax / 254 per value, bounded by the row's
        // largest block); slabs: the weights rounded to bf16 (2^-9 relative each); fp32 sums.
        const bool gemv = m <= 8 && IsQuantized(mat.parts[j < 8 ? 0 : (j < 13 ? 1 : 2)].format);
        const double tol = (gemv ? abs_w * amax / 254 : abs_sum * 0x1.0p-9) + abs_sum * 1e-5 + 1e-7;
        EXPECT_NEAR(got[r * ldo + j], exact, tol) << "row " << r << " out " << j;
      }
      EXPECT_EQ(got[r * ldo + mat.rows], -1.0f);
    }
  }
}

}  // namespace
}  // namespace tessera::runtime::cuda
