// Runs only on a GPU host (tags = ["gpu"]): the sm_90a self-test kernel computes the right values.
#include "gtest/gtest.h"
#include "runtime/cuda/device.h"

namespace tessera::runtime::cuda {
namespace {

TEST(CudaDeviceGpuTest, SelfTestKernelRunsOnEveryDevice) {
  auto devices = QueryDevices();
  ASSERT_TRUE(devices.ok()) << devices.status();
  for (const GpuInfo& g : *devices) {
    EXPECT_GE(g.compute_major, 9) << g.name << ": this build targets sm_90a (Hopper)";
    EXPECT_TRUE(RunSelfTest(g.ordinal, 1 << 20).ok()) << g.name;
  }
}

}  // namespace
}  // namespace tessera::runtime::cuda
