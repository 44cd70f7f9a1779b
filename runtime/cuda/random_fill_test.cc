// The random fills (random_fill.h): device values against the host twins, the statistics of 10^6
// samples, fills in pieces against one fill, and argument checks. Runs on the CPU emulation
// (random_fill_emu_test); nothing here is specific to it.
//
// Tolerances:
//  - Device vs host twin: both compute the same fp32 Box-Muller from the same 64-bit hash; only
//    logf/cosf/sqrtf may differ (CUDA's are within 1-2 fp32 ulps of glibc's). After rounding to
//    bf16 that can flip the rounding of a value that sits on a bf16 tie boundary: at most one bf16
//    ulp, and rarely (we also require 99% bit-exact). The uniform fill uses no libm: bit-exact.
//  - Statistics of n = 10^6 samples: sample mean within 5 standard errors (sigma / sqrt(n)),
//    sample standard deviation within 5 of its standard errors (sigma / sqrt(2n)), tail fractions
//    within 5 binomial standard errors, lag-1 correlation within 5 / sqrt(n). bf16 rounding moves
//    each value by at most 2^-8 relative, so the std check also allows 2^-8 relative and the tail
//    fractions 1e-3 (the values within 2^-8 of a boundary that rounding may carry across).
#include "runtime/cuda/random_fill.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cuda/bf16.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/test_util.h"

namespace tessera::runtime::cuda {
namespace {

// One bf16 ulp at the magnitude of v (bf16 keeps 8 significant bits).
double Bf16Ulp(double v) {
  const double a = std::max(std::fabs(v), 0x1.0p-126);
  return std::ldexp(1.0, std::ilogb(a) - 7);
}

// Fills n values on the device and returns them widened to float.
std::vector<float> DeviceNormalBf16(int64_t n, uint64_t seed, float mean, float stddev,
                                    int64_t first_index = 0) {
  auto buf = DeviceBuffer::Allocate(2 * n);
  EXPECT_TRUE(buf.ok()) << buf.status();
  if (!buf.ok()) return {};
  const absl::Status s =
      LaunchFillNormalBf16(buf->as<Bf16>(), n, seed, mean, stddev, nullptr, first_index);
  EXPECT_TRUE(s.ok()) << s;
  auto host = Download<Bf16>(*buf, n);
  EXPECT_TRUE(host.ok()) << host.status();
  std::vector<float> out;
  for (Bf16 b : *host) out.push_back(Bf16ToFloat(b));
  return out;
}

TEST(RandomFillTest, NormalBf16EqualsHostTwin) {
  struct Param {
    uint64_t seed;
    float mean, stddev;
    int64_t first_index;
  };
  for (const Param& p :
       {Param{1, 0.0f, 1.0f, 0}, Param{42, 1.0f, 0.02f, 0}, Param{7, -3.0f, 5.0f, 123456789},
        Param{99, 0.0f, 0.1f, int64_t{1} << 40}}) {
    const int64_t n = 65537;
    const std::vector<float> got = DeviceNormalBf16(n, p.seed, p.mean, p.stddev, p.first_index);
    ASSERT_EQ(static_cast<int64_t>(got.size()), n);
    int64_t exact = 0, bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float host = NormalValueForIndex(p.seed, p.first_index + i, p.mean, p.stddev);
      const float want = RoundBf16(host);
      if (got[i] == want) ++exact;
      if (!(std::fabs(got[i] - want) <= Bf16Ulp(host)) && ++bad <= 5) {
        ADD_FAILURE() << "seed " << p.seed << " index " << p.first_index + i << ": device "
                      << got[i] << ", host " << host;
      }
    }
    EXPECT_EQ(bad, 0);
    EXPECT_GE(exact, n * 99 / 100) << "seed " << p.seed;
  }
}

TEST(RandomFillTest, NormalF32EqualsHostTwin) {
  const int64_t n = 40000;
  const uint64_t seed = 5;
  const float mean = 0.5f, stddev = 2.0f;
  ASSERT_OK_AND_ASSIGN(buf, DeviceBuffer::Allocate(4 * n));
  ASSERT_OK(LaunchFillNormalF32(buf.as<float>(), n, seed, mean, stddev, nullptr));
  ASSERT_OK_AND_ASSIGN(got, Download<float>(buf, n));
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float want = NormalValueForIndex(seed, i, mean, stddev);
    // A few fp32 ulps of libm difference on |stddev * N| <= 2 * 5.8, plus the mean.
    if (!(std::fabs(got[i] - want) <= 1e-6 * (std::fabs(want) + 12.0)) && ++bad <= 5) {
      ADD_FAILURE() << "index " << i << ": device " << got[i] << ", host " << want;
    }
  }
  EXPECT_EQ(bad, 0);
  // The fp32 fill is the bf16 fill before rounding.
  const std::vector<float> b = DeviceNormalBf16(n, seed, mean, stddev);
  int64_t same = 0;
  for (int64_t i = 0; i < n; ++i) same += RoundBf16(got[i]) == b[i];
  EXPECT_GE(same, n * 99 / 100);
}

TEST(RandomFillTest, UniformBf16EqualsHostTwinAndStaysInRange) {
  const int64_t n = 100000;
  const float lo = -1.0f, hi = 3.0f;
  ASSERT_OK_AND_ASSIGN(buf, DeviceBuffer::Allocate(2 * n));
  ASSERT_OK(LaunchFillUniformBf16(buf.as<Bf16>(), n, 3, lo, hi, nullptr, 1000));
  ASSERT_OK_AND_ASSIGN(got, Download<Bf16>(buf, n));
  int bad = 0;
  std::vector<int64_t> bins(16, 0);
  for (int64_t i = 0; i < n; ++i) {
    const float v = Bf16ToFloat(got[i]);
    if (v != RoundBf16(UniformValueForIndex(3, 1000 + i, lo, hi)) && ++bad <= 5) {
      ADD_FAILURE() << "index " << i << ": device " << v;
    }
    ASSERT_GE(v, lo);
    ASSERT_LE(v, hi);  // bf16 rounding may reach hi itself.
    ++bins[std::min<int>(15, static_cast<int>((v - lo) / (hi - lo) * 16))];
  }
  EXPECT_EQ(bad, 0);
  // Each of 16 bins holds n/16 +- 5 binomial SE (bf16 rounding near bin edges moves a few
  // hundred values at most: values in [2, 3) have ulp 2^-6 = 1/64 against bins 1/4 wide, so up to
  // half an ulp's worth, 1/32 of a bin, can cross an edge: allow that too).
  const double expect = n / 16.0, se = std::sqrt(n * (1.0 / 16) * (15.0 / 16));
  for (int b = 0; b < 16; ++b) {
    EXPECT_NEAR(bins[b], expect, 5 * se + expect / 32) << "bin " << b;
  }
}

TEST(RandomFillTest, NormalStatisticsOfAMillionSamples) {
  const int64_t n = 1000000;
  const float mean = 0.5f, stddev = 2.0f;
  const std::vector<float> v = DeviceNormalBf16(n, 2024, mean, stddev);
  ASSERT_EQ(static_cast<int64_t>(v.size()), n);
  double sum = 0, sum2 = 0;
  for (float x : v) sum += x;
  const double m = sum / n;
  int64_t within1 = 0, within2 = 0;
  double lag = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = v[i] - m;
    sum2 += d * d;
    within1 += std::fabs(v[i] - mean) < stddev;
    within2 += std::fabs(v[i] - mean) < 2 * stddev;
    if (i > 0) lag += d * (v[i - 1] - m);
  }
  const double sd = std::sqrt(sum2 / (n - 1));
  EXPECT_NEAR(m, mean, 5 * stddev / std::sqrt(n));
  EXPECT_NEAR(sd, stddev, 5 * stddev / std::sqrt(2.0 * n) + stddev * 0x1.0p-8);
  // P(|Z| < 1) = 0.682689, P(|Z| < 2) = 0.954500.
  const double p1 = 0.682689492, p2 = 0.954499736;
  EXPECT_NEAR(static_cast<double>(within1) / n, p1, 5 * std::sqrt(p1 * (1 - p1) / n) + 1e-3);
  EXPECT_NEAR(static_cast<double>(within2) / n, p2, 5 * std::sqrt(p2 * (1 - p2) / n) + 1e-3);
  EXPECT_NEAR(lag / sum2, 0.0, 5 / std::sqrt(n)) << "neighbouring values are correlated";
}

TEST(RandomFillTest, PiecesEqualOneFill) {
  const int64_t n = 10000;
  const uint64_t seed = 77;
  const std::vector<float> whole = DeviceNormalBf16(n, seed, 0.0f, 1.0f);
  ASSERT_OK_AND_ASSIGN(buf, DeviceBuffer::Allocate(2 * n));
  ASSERT_OK(buf.Memset(0));
  const int64_t cuts[] = {0, 1, 1000, 5096, 5097, n};
  for (int c = 0; c + 1 < 6; ++c) {
    ASSERT_OK(LaunchFillNormalBf16(buf.as<Bf16>() + cuts[c], cuts[c + 1] - cuts[c], seed, 0.0f,
                                   1.0f, nullptr, cuts[c]));
  }
  ASSERT_OK_AND_ASSIGN(pieces, Download<Bf16>(buf, n));
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(Bf16ToFloat(pieces[i]), whole[i]) << "index " << i;
  }
}

TEST(RandomFillTest, SeedsGiveDifferentStreams) {
  const int64_t n = 20000;
  const std::vector<float> a = DeviceNormalBf16(n, 1, 0.0f, 1.0f);
  const std::vector<float> b = DeviceNormalBf16(n, 2, 0.0f, 1.0f);
  const std::vector<float> a_again = DeviceNormalBf16(n, 1, 0.0f, 1.0f);
  int64_t same = 0;
  for (int64_t i = 0; i < n; ++i) same += a[i] == b[i];
  // Two independent N(0,1) values round to the same bf16 value with probability ~1/150.
  EXPECT_LT(same, n / 50);
  EXPECT_EQ(a, a_again) << "a fill must be deterministic";
}

TEST(RandomFillTest, RejectsBadArguments) {
  ASSERT_OK_AND_ASSIGN(buf, DeviceBuffer::Allocate(64));
  EXPECT_EQ(LaunchFillNormalBf16(buf.as<Bf16>(), -1, 1, 0, 1, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LaunchFillNormalBf16(nullptr, 4, 1, 0, 1, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LaunchFillNormalBf16(buf.as<Bf16>(), 4, 1, 0, 1, nullptr, -5).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LaunchFillUniformBf16(buf.as<Bf16>(), 4, 1, 2.0f, 1.0f, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LaunchFillNormalF32(nullptr, 4, 1, 0, 1, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(LaunchFillNormalBf16(nullptr, 0, 1, 0, 1, nullptr).ok()) << "n = 0 is a no-op";
}

}  // namespace
}  // namespace tessera::runtime::cuda
