#include "runtime/quant/quantize.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "base/bf16.h"
#include "gtest/gtest.h"
#include "runtime/quant/ggml_reference.h"

namespace tessera::runtime::quant {
namespace {

// Rows that reach the quantizers' branches: gaussian, uniform of one sign (min > 0), with an
// outlier, all zero, constant, tiny (subnormal scales), huge, sparse, and bf16-rounded values (what
// make_model writes).
std::vector<std::vector<float>> Rows(int64_t n) {
  std::mt19937 rng(99);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.1f, 2.0f);
  std::vector<std::vector<float>> rows;
  auto add = [&](auto f) {
    std::vector<float> r(n);
    for (int64_t i = 0; i < n; ++i) r[i] = f(i);
    rows.push_back(std::move(r));
  };
  for (int rep = 0; rep < 6; ++rep) add([&](int64_t) { return normal(rng) * 0.02f; });
  add([&](int64_t) { return uniform(rng); });
  add([&](int64_t) { return -uniform(rng); });
  add([&](int64_t i) { return i % 97 == 5 ? 40.0f : normal(rng); });
  add([&](int64_t) { return 0.0f; });
  add([&](int64_t) { return 0.75f; });
  add([&](int64_t) { return normal(rng) * 1e-6f; });
  add([&](int64_t) { return normal(rng) * 3000.0f; });
  add([&](int64_t i) { return i % 13 == 0 ? normal(rng) : 0.0f; });
  add([&](int64_t) { return RoundBf16(normal(rng)); });
  return rows;
}

TEST(QuantizeTest, WritesTheBytesGgmlsReferenceQuantizersWrite) {
  TESSERA_LOAD_GGML_OR_SKIP(ggml);
  const int64_t n = 256 * 8;
  for (GgmlType type :
       {GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ8_0, GgmlType::kQ4_K, GgmlType::kQ5_K,
        GgmlType::kQ6_K, GgmlType::kQ8_K, GgmlType::kF16, GgmlType::kBF16}) {
    int row_index = 0;
    for (const std::vector<float>& x : Rows(n)) {
      const int64_t bytes = *RowBytes(type, n);
      std::vector<uint8_t> ours(bytes, 0), theirs(bytes, 0);
      ASSERT_TRUE(QuantizeRow(type, x.data(), ours.data(), n).ok());
      ASSERT_TRUE(ggml.QuantizeRef(type, x.data(), theirs.data(), n)) << TypeName(type);
      const int block = Traits(type).block_bytes;
      for (int64_t i = 0; i < bytes; ++i) {
        ASSERT_EQ(ours[i], theirs[i]) << TypeName(type) << " row " << row_index << " block "
                                      << i / block << " byte " << i % block;
      }
      ++row_index;
    }
  }
}

TEST(QuantizeTest, RefusesUnsupportedTypesAndPartialBlocks) {
  std::vector<float> x(256, 1.0f);
  std::vector<uint8_t> out(1024);
  absl::Status s = QuantizeRow(GgmlType::kQ3_K, x.data(), out.data(), 256);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("q3_K"), std::string::npos) << s;
  EXPECT_FALSE(QuantizeRow(GgmlType::kQ8_0, x.data(), out.data(), 33).ok());
}

}  // namespace
}  // namespace tessera::runtime::quant
