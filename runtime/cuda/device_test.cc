// Links the nvcc-built library into an ordinary C++ test. On a machine without a GPU (CI) the query
// must fail cleanly with Unavailable and a message naming CUDA; on a GPU host it must list devices.
#include "runtime/cuda/device.h"

#include "gtest/gtest.h"

namespace tessera::runtime::cuda {
namespace {

TEST(CudaDeviceTest, QueryEitherListsDevicesOrSaysPlainlyThereIsNone) {
  auto devices = QueryDevices();
  if (devices.ok()) {
    ASSERT_FALSE(devices->empty());
    for (const GpuInfo& g : *devices) {
      EXPECT_FALSE(g.name.empty());
      EXPECT_GT(g.total_memory, 0u);
      EXPECT_GT(g.multiprocessors, 0);
    }
  } else {
    EXPECT_EQ(devices.status().code(), absl::StatusCode::kUnavailable) << devices.status();
    EXPECT_NE(devices.status().message().find("CUDA"), std::string::npos) << devices.status();
  }
}

TEST(CudaDeviceTest, SelfTestWithoutAGpuIsAnErrorNotACrash) {
  auto devices = QueryDevices();
  if (devices.ok()) GTEST_SKIP() << "a GPU is present; see device_gpu_test";
  const absl::Status s = RunSelfTest(0, 1000);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
}

}  // namespace
}  // namespace tessera::runtime::cuda
