#include "runtime/cuda/attention_shapes.h"

#include "gtest/gtest.h"

namespace tessera::runtime::cuda {
namespace {

TEST(AttentionShapesTest, TheListedShapesAndNoOthers) {
  // Gemma 4 12B (MODEL.md): sliding 16 q / 8 kv heads of 256, global 16 q / 1 kv head of 512;
  // gemma4-tiny (testdata): sliding 4 q / 2 kv heads of 16, global 4 q / 1 kv head of 32.
  EXPECT_TRUE(AttentionShapeSupported(256, 2));
  EXPECT_TRUE(AttentionShapeSupported(512, 16));
  EXPECT_TRUE(AttentionShapeSupported(16, 2));
  EXPECT_TRUE(AttentionShapeSupported(32, 4));
  // gemma4-quant-s (testdata/gguf): 4 q / 2 kv heads of 64, global 4 q / 1 kv head of 128.
  EXPECT_TRUE(AttentionShapeSupported(64, 2));
  EXPECT_TRUE(AttentionShapeSupported(128, 4));
  EXPECT_FALSE(AttentionShapeSupported(256, 1));
  EXPECT_FALSE(AttentionShapeSupported(128, 2));
  EXPECT_FALSE(AttentionShapeSupported(512, 8));
  EXPECT_FALSE(AttentionShapeSupported(0, 0));
  EXPECT_NE(SupportedAttentionShapes().find("512/16"), std::string::npos);
}

TEST(AttentionShapesTest, DecodeSplitsFillTheGpuWithinTheKeys) {
  EXPECT_EQ(ChooseDecodeSplits(1, 1, 32768, 132), 128);  // 264 CTAs wanted, 128 splits of 256 keys.
  EXPECT_EQ(ChooseDecodeSplits(1, 1, 1000, 132), 3);     // Capped by 1000 / 256 keys.
  EXPECT_EQ(ChooseDecodeSplits(64, 8, 32768, 132), 1);   // 512 CTAs already.
  EXPECT_EQ(ChooseDecodeSplits(1, 1, 1 << 30, 132), kMaxAttentionSplits);
  EXPECT_EQ(AttentionWorkspaceFloats(10, 16, 256, 1), 0);
  EXPECT_EQ(AttentionWorkspaceFloats(10, 16, 256, 4), 4LL * 10 * 16 * 258);
}

}  // namespace
}  // namespace tessera::runtime::cuda
