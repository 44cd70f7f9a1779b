#include "runtime/cpu/cpu_features.h"

#include "gtest/gtest.h"

namespace tessera::runtime::cpu {
namespace {

TEST(CpuFeaturesTest, PathsAreOrderedAndParse) {
  const std::vector<KernelPath> paths = SupportedKernelPaths();
  ASSERT_FALSE(paths.empty());
  EXPECT_EQ(paths.front(), KernelPath::kPortable);
  // The build targets x86-64-v3, so a CPU running this test has AVX2.
  EXPECT_TRUE(PathSupported(KernelPath::kAvx2));
  EXPECT_TRUE(PathSupported(DefaultKernelPath()));
  for (KernelPath p : {KernelPath::kPortable, KernelPath::kAvx2, KernelPath::kAvx512}) {
    absl::StatusOr<KernelPath> parsed = ParseKernelPath(KernelPathName(p));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, p);
  }
  absl::StatusOr<KernelPath> bad = ParseKernelPath("sse2");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("sse2"), std::string::npos);
  const CpuFeatures& f = DetectCpuFeatures();
  if (f.avx512) {
    EXPECT_TRUE(f.avx2 && f.avx512_vnni && f.avx512_bf16);
  }
}

}  // namespace
}  // namespace tessera::runtime::cpu
