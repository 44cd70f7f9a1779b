#include "runtime/quant/dequantize.h"

#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/quant/ggml_reference.h"
#include "runtime/quant/quantize.h"

namespace tessera::runtime::quant {
namespace {

constexpr GgmlType kTypes[] = {GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16, GgmlType::kQ4_0,
                               GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ8_0,
                               GgmlType::kQ4_K, GgmlType::kQ5_K, GgmlType::kQ6_K};

// Offsets of the fp16 scale fields in each block (d, m / dmin), so tests can put chosen halves
// there: random bits elsewhere, never a NaN or infinity as a scale.
std::vector<int> HalfFields(GgmlType type) {
  switch (type) {
    case GgmlType::kQ4_0:
    case GgmlType::kQ5_0:
    case GgmlType::kQ8_0:
      return {0};
    case GgmlType::kQ4_1:
    case GgmlType::kQ5_1:
    case GgmlType::kQ4_K:
    case GgmlType::kQ5_K:
      return {0, 2};
    case GgmlType::kQ6_K:
      return {208};
    default:
      return {};
  }
}

uint16_t FiniteHalf(std::mt19937& rng) {
  for (;;) {
    const uint16_t h = static_cast<uint16_t>(rng());
    if ((h & 0x7c00) != 0x7c00) return h;
  }
}

// Blocks of random bytes with finite random scales; every `edge`-th block gets special scales
// (zero, the largest half, the smallest subnormal, negative) and saturated or zero quants.
std::vector<uint8_t> RandomBlocks(GgmlType type, int64_t n, std::mt19937& rng) {
  const TypeTraits& t = Traits(type);
  const int64_t blocks = n / t.block_elems;
  std::vector<uint8_t> data(blocks * t.block_bytes);
  for (uint8_t& b : data) b = static_cast<uint8_t>(rng());
  const std::vector<int> halves = HalfFields(type);
  if (type == GgmlType::kF16) {
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t h = FiniteHalf(rng);
      std::memcpy(&data[2 * i], &h, 2);
    }
  }
  const uint16_t specials[] = {0x0000, 0x7bff, 0x0001, 0x8001, 0xfbff, 0x3c00, 0x8000, 0x0400};
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t* block = &data[b * t.block_bytes];
    for (size_t f = 0; f < halves.size(); ++f) {
      uint16_t h = FiniteHalf(rng);
      if (b % 5 == 1) h = specials[(b / 5 + f) % 8];
      std::memcpy(block + halves[f], &h, 2);
    }
    if (!halves.empty() && b % 7 == 3) {
      // Saturated quants (every nibble / bit set) or all zero, scales kept.
      const uint8_t fill = (b / 7) % 2 ? 0xff : 0x00;
      std::vector<uint8_t> saved(t.block_bytes);
      std::memcpy(saved.data(), block, t.block_bytes);
      std::memset(block, fill, t.block_bytes);
      for (int off : halves) std::memcpy(block + off, saved.data() + off, 2);
    }
  }
  return data;
}

TEST(DequantizeTest, EqualsGgmlBitForBitOnRandomAndEdgeBlocks) {
  TESSERA_LOAD_GGML_OR_SKIP(ggml);
  std::mt19937 rng(13);
  for (GgmlType type : kTypes) {
    const int64_t n = 256 * 40;  // 40 super-blocks, 320 small blocks.
    const std::vector<uint8_t> data = RandomBlocks(type, n, rng);
    std::vector<float> ours(n, -1.0f), theirs(n, -2.0f);
    ASSERT_TRUE(DequantizeRow(type, data.data(), ours.data(), n).ok()) << TypeName(type);
    if (type == GgmlType::kF32) {
      std::memcpy(theirs.data(), data.data(), n * 4);  // ggml has no to_float for f32.
    } else {
      ASSERT_TRUE(ggml.Dequantize(type, data.data(), theirs.data(), n)) << TypeName(type);
    }
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(std::memcmp(&ours[i], &theirs[i], 4), 0)
          << TypeName(type) << " value " << i << ": " << ours[i] << " vs " << theirs[i];
    }
  }
}

TEST(DequantizeTest, DecodesWhatTheQuantizerEncodesWithinTheFormatsError) {
  // Independent of ggml: the round trip of a smooth row is within half a quantization step.
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int64_t n = 1024;
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  struct Case {
    GgmlType type;
    float max_error;  // In units of the row's max |x| (3-4 sigma here).
  } cases[] = {
      {GgmlType::kQ8_0, 1.0f / 127}, {GgmlType::kQ4_0, 1.0f / 8},   {GgmlType::kQ4_1, 1.0f / 15},
      {GgmlType::kQ4_K, 2.0f / 15},  {GgmlType::kQ5_K, 2.0f / 31},  {GgmlType::kQ6_K, 2.0f / 32},
      {GgmlType::kBF16, 1.0f / 256}, {GgmlType::kF16, 1.0f / 2048},
  };
  float amax = 0;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  for (const Case& c : cases) {
    std::vector<uint8_t> q(*RowBytes(c.type, n));
    ASSERT_TRUE(QuantizeRow(c.type, x.data(), q.data(), n).ok());
    std::vector<float> y(n);
    ASSERT_TRUE(DequantizeRow(c.type, q.data(), y.data(), n).ok());
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(y[i], x[i], c.max_error * amax) << TypeName(c.type) << " at " << i;
    }
  }
}

TEST(DequantizeTest, RefusesWhatItCannotDecode) {
  float out[256];
  uint8_t in[512] = {};
  absl::Status s = DequantizeRow(GgmlType::kIQ2_XXS, in, out, 256);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("iq2_xxs"), std::string::npos) << s;
  s = DequantizeRow(GgmlType::kQ4_K, in, out, 128);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("256"), std::string::npos) << s;
}

}  // namespace
}  // namespace tessera::runtime::quant
