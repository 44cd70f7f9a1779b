// Finding the GPU: what CUDA devices this process can use, and a self-test kernel that proves the
// compiled device code (sm_90a) runs on one. Without a GPU or driver every call returns a plain
// Unavailable status saying so; nothing here aborts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tessera::runtime::cuda {

struct GpuInfo {
  int ordinal = 0;
  std::string name;       // e.g. "NVIDIA H100 80GB HBM3".
  int compute_major = 0;  // 9 for Hopper.
  int compute_minor = 0;
  uint64_t total_memory = 0;  // Bytes.
  uint64_t free_memory = 0;   // Bytes, when queried.
  int multiprocessors = 0;
};

// The CUDA devices visible to this process. Unavailable (naming the CUDA error) when there is no
// driver or no device.
absl::StatusOr<std::vector<GpuInfo>> QueryDevices();

// Runs a small kernel on `device` that writes out[i] = a * i + b for n elements and checks the
// result on the host. Proves that the sm_90a code in this binary runs on the device.
absl::Status RunSelfTest(int device, int n);

}  // namespace tessera::runtime::cuda
