// QueryDevices / RunSelfTest for the CPU emulation (cuda_runtime.h here): one pretend device, so
// that kernels_gpu_test.cc runs unchanged as kernels_emu_test.
#include "runtime/cuda/device.h"

namespace tessera::runtime::cuda {

absl::StatusOr<std::vector<GpuInfo>> QueryDevices() {
  GpuInfo g;
  g.name = "CPU emulation of CUDA (runtime/cuda/emu)";
  g.compute_major = 9;
  g.compute_minor = 0;
  g.total_memory = uint64_t{8} << 30;
  g.free_memory = g.total_memory;
  g.multiprocessors = 132;
  return std::vector<GpuInfo>{g};
}

absl::Status RunSelfTest(int device, int n) { return absl::OkStatus(); }

}  // namespace tessera::runtime::cuda
