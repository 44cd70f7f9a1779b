#include <cuda_runtime.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/device.h"

namespace tessera::runtime::cuda {
namespace {

absl::Status CudaError(cudaError_t err, const char* what) {
  return absl::UnavailableError(absl::StrCat(what, ": CUDA error ", static_cast<int>(err), " (",
                                             cudaGetErrorName(err), ": ", cudaGetErrorString(err),
                                             ")"));
}

__global__ void AffineFillKernel(float* out, int n, float a, float b) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a * static_cast<float>(i) + b;
}

}  // namespace

absl::StatusOr<std::vector<GpuInfo>> QueryDevices() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return CudaError(err, "no usable CUDA device");
  if (count == 0) return absl::UnavailableError("no CUDA device is visible to this process");
  std::vector<GpuInfo> out;
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp prop;
    err = cudaGetDeviceProperties(&prop, d);
    if (err != cudaSuccess) return CudaError(err, "cudaGetDeviceProperties");
    GpuInfo info;
    info.ordinal = d;
    info.name = prop.name;
    info.compute_major = prop.major;
    info.compute_minor = prop.minor;
    info.total_memory = prop.totalGlobalMem;
    info.multiprocessors = prop.multiProcessorCount;
    if (cudaSetDevice(d) == cudaSuccess) {
      size_t free_b = 0, total_b = 0;
      if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) info.free_memory = free_b;
    }
    out.push_back(std::move(info));
  }
  return out;
}

absl::Status RunSelfTest(int device, int n) {
  cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) return CudaError(err, "cudaSetDevice");
  float* d_out = nullptr;
  err = cudaMalloc(&d_out, sizeof(float) * n);
  if (err != cudaSuccess) return CudaError(err, "cudaMalloc");
  const float a = 0.5f, b = -3.0f;
  AffineFillKernel<<<(n + 255) / 256, 256>>>(d_out, n, a, b);
  err = cudaGetLastError();
  std::vector<float> host(n);
  if (err == cudaSuccess) {
    err = cudaMemcpy(host.data(), d_out, sizeof(float) * n, cudaMemcpyDeviceToHost);
  }
  cudaFree(d_out);
  if (err != cudaSuccess) return CudaError(err, "self-test kernel");
  for (int i = 0; i < n; ++i) {
    const float want = a * static_cast<float>(i) + b;
    if (std::fabs(host[i] - want) > 1e-6f * std::fabs(want) + 1e-6f) {
      return absl::InternalError(
          absl::StrCat("self-test kernel wrote ", host[i], " at ", i, "; expected ", want));
    }
  }
  return absl::OkStatus();
}

}  // namespace tessera::runtime::cuda
