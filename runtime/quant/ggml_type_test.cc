#include "runtime/quant/ggml_type.h"

#include <cmath>
#include <cstring>
#include <random>

#include "gtest/gtest.h"
#include "runtime/quant/ggml_reference.h"

namespace tessera::runtime::quant {
namespace {

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

TEST(GgmlTypeTest, TraitsMatchGgmlForEveryId) {
  TESSERA_LOAD_GGML_OR_SKIP(ggml);
  int known = 0;
  for (uint32_t id = 0; id < 43; ++id) {
    std::string name;
    int64_t elems = 0;
    size_t bytes = 0;
    const bool defined = ggml.TypeInfo(id, &name, &elems, &bytes);
    const TypeTraits* t = FindTypeTraits(id);
    ASSERT_EQ(defined, t != nullptr) << "id " << id << " (" << name << ")";
    if (!defined) continue;
    ++known;
    EXPECT_EQ(name, t->name) << id;
    EXPECT_EQ(elems, t->block_elems) << name;
    EXPECT_EQ(bytes, static_cast<size_t>(t->block_bytes)) << name;
  }
  EXPECT_EQ(known, 35);
  EXPECT_EQ(FindTypeTraits(43), nullptr);
  EXPECT_EQ(FindTypeTraits(4), nullptr);  // Removed Q4_2.
}

TEST(GgmlTypeTest, RowBytes) {
  EXPECT_EQ(*RowBytes(GgmlType::kQ4_K, 3840), 15 * 144);
  EXPECT_EQ(*RowBytes(GgmlType::kQ8_0, 64), 68);
  EXPECT_EQ(*RowBytes(GgmlType::kBF16, 7), 14);
  EXPECT_EQ(*MatrixBytes(GgmlType::kQ6_K, 10, 512), 10 * 2 * 210);
  absl::StatusOr<int64_t> bad = RowBytes(GgmlType::kQ4_K, 100);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("q4_K"), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("256"), std::string::npos) << bad.status();
  EXPECT_FALSE(RowBytes(static_cast<GgmlType>(77), 32).ok());
  EXPECT_FALSE(MatrixBytes(GgmlType::kF32, int64_t{1} << 40, int64_t{1} << 40).ok());
  EXPECT_EQ(TypeName(77), "type 77");
  EXPECT_EQ(TypeName(GgmlType::kQ5_K), "q5_K");
}

TEST(GgmlTypeTest, Fp16ConversionsMatchGgml) {
  TESSERA_LOAD_GGML_OR_SKIP(ggml);
  // Every half, NaNs and subnormals included.
  for (uint32_t h = 0; h < 65536; ++h) {
    ASSERT_EQ(Bits(Fp16ToFloat(h)), Bits(ggml.Fp16ToFp32(h))) << std::hex << h;
  }
  // Floats near every half, at the rounding ties and their neighbours, plus random bit patterns.
  std::mt19937 rng(1);
  std::vector<float> probes = {0.0f,      -0.0f, 65504.0f,      65519.99f,
                               65520.0f,  1e10f, -1e-10f,       INFINITY,
                               -INFINITY, NAN,   5.9604645e-8f, 2.9802322e-8f};
  for (uint32_t h = 0; h < 0x7c00; h += 7) {
    const float f = Fp16ToFloat(h), g = Fp16ToFloat(h + 1);
    const float mid = (f + g) / 2;  // Exact in fp32: the tie.
    for (float v : {f, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) {
      probes.push_back(v);
      probes.push_back(-v);
    }
  }
  for (int i = 0; i < 200000; ++i) {
    uint32_t b = rng();
    float f;
    std::memcpy(&f, &b, 4);
    probes.push_back(f);
  }
  for (float f : probes) {
    ASSERT_EQ(FloatToFp16(f), ggml.Fp32ToFp16(f)) << std::hex << Bits(f);
  }
}

}  // namespace
}  // namespace tessera::runtime::quant
