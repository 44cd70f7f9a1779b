#include "runtime/cuda/quant_formats.h"

#include "gtest/gtest.h"

namespace tessera::runtime::cuda {
namespace {

TEST(QuantFormatsTest, GgmlBlockSizes) {
  // ggml-common.h's static_asserts: sizeof(block_q8_0) == 2 + 32, block_q4_0 == 2 + 16,
  // block_q4_1 == 4 + 16, block_q4_K == 4 + 12 + 128, block_q5_K == 4 + 12 + 32 + 128,
  // block_q6_K == 128 + 64 + 16 + 2.
  EXPECT_EQ(BlockBytes(WeightFormat::kQ8_0), 34);
  EXPECT_EQ(BlockBytes(WeightFormat::kQ4_0), 18);
  EXPECT_EQ(BlockBytes(WeightFormat::kQ4_1), 20);
  EXPECT_EQ(BlockBytes(WeightFormat::kQ4_K), 144);
  EXPECT_EQ(BlockBytes(WeightFormat::kQ5_K), 176);
  EXPECT_EQ(BlockBytes(WeightFormat::kQ6_K), 210);
  for (WeightFormat f : {WeightFormat::kQ8_0, WeightFormat::kQ4_0, WeightFormat::kQ4_1}) {
    EXPECT_EQ(BlockValues(f), 32) << WeightFormatName(f);
  }
  for (WeightFormat f : {WeightFormat::kQ4_K, WeightFormat::kQ5_K, WeightFormat::kQ6_K}) {
    EXPECT_EQ(BlockValues(f), 256) << WeightFormatName(f);
  }
  // Bits per weight as ggml documents them: 4.5 (Q4_K), 5.5 (Q5_K), 6.5625 (Q6_K), 8.5 (Q8_0).
  EXPECT_EQ(RowBytes(WeightFormat::kQ4_K, 3840) * 8, 3840 * 9 / 2);
  EXPECT_EQ(RowBytes(WeightFormat::kQ5_K, 3840) * 8, 3840 * 11 / 2);
  EXPECT_EQ(RowBytes(WeightFormat::kQ6_K, 3840) * 8 * 16, 3840 * 105);
  EXPECT_EQ(RowBytes(WeightFormat::kQ8_0, 3840) * 8 * 2, 3840 * 17);
  EXPECT_EQ(RowBytes(WeightFormat::kBf16, 3840), 7680);
}

TEST(QuantFormatsTest, ColumnsMustFillBlocks) {
  EXPECT_EQ(CheckCols(WeightFormat::kQ8_0, 64), "");
  EXPECT_NE(CheckCols(WeightFormat::kQ8_0, 48).find("multiples of 32"), std::string::npos);
  EXPECT_NE(CheckCols(WeightFormat::kQ4_K, 64).find("multiples of 256"), std::string::npos);
  EXPECT_EQ(CheckCols(WeightFormat::kQ6_K, 15360), "");
  EXPECT_NE(CheckCols(WeightFormat::kQ4_0, 0), "");
}

TEST(QuantFormatsTest, GemvWhileItReadsLessThanDequantizing) {
  // Per block: passes x the block's bytes against the block once + its bf16 copy written and read.
  EXPECT_TRUE(PreferGemv(WeightFormat::kQ4_K, 1));
  EXPECT_TRUE(PreferGemv(WeightFormat::kQ4_K, 64));   // 8 x 144 < 144 + 1024
  EXPECT_FALSE(PreferGemv(WeightFormat::kQ4_K, 65));  // 9 x 144 > 1168
  EXPECT_TRUE(PreferGemv(WeightFormat::kQ8_0, 32));   // 4 x 34 < 34 + 128
  EXPECT_FALSE(PreferGemv(WeightFormat::kQ8_0, 33));
  EXPECT_TRUE(PreferGemv(WeightFormat::kQ6_K, 40));
  EXPECT_FALSE(PreferGemv(WeightFormat::kQ6_K, 41));
  EXPECT_FALSE(PreferGemv(WeightFormat::kQ4_0, 2048));  // A prefill chunk.
  EXPECT_FALSE(PreferGemv(WeightFormat::kBf16, 1));     // bf16 always goes to cuBLASLt.
  EXPECT_FALSE(PreferGemv(WeightFormat::kQ4_K, 0));
}

}  // namespace
}  // namespace tessera::runtime::cuda
