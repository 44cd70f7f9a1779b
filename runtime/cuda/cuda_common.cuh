// Helpers shared by the kernel families: CUDA errors as absl::Status, bf16 <-> float, warp sums.
// Included only from .cu files (nvcc).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/cuda/bf16.h"

// kernel<<<grid, block, 0, stream>>>(args...), written so that the CPU emulation (emu/) can run the
// same launchers: `kernel` must be one token (take a pointer to a template instance first).
#if defined(TESSERA_CUDA_EMULATION)
#define TESSERA_LAUNCH(kernel, grid, block, stream, ...) \
  TESSERA_EMU_LAUNCH(kernel, grid, block, stream, __VA_ARGS__)
#else
#define TESSERA_LAUNCH(kernel, grid, block, stream, ...) \
  kernel<<<grid, block, 0, stream>>>(__VA_ARGS__)
#endif

namespace tessera::runtime::cuda {

// A launch or runtime failure. Without a GPU (no driver: error 35; no device: error 100) this is
// Unavailable, which is what callers and the non-GPU tests expect; anything else is Internal.
inline absl::Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  const std::string msg = absl::StrCat(what, ": CUDA error ", static_cast<int>(err), " (",
                                       cudaGetErrorName(err), ": ", cudaGetErrorString(err), ")");
  if (err == cudaErrorInsufficientDriver || err == cudaErrorNoDevice ||
      err == cudaErrorInitializationError || err == cudaErrorDevicesUnavailable) {
    return absl::UnavailableError(msg);
  }
  return absl::InternalError(msg);
}

// The status of the launch just made on this thread (does not synchronise).
inline absl::Status LaunchStatus(const char* kernel) {
  return CudaStatus(cudaGetLastError(), kernel);
}

__device__ __forceinline__ const __nv_bfloat16* AsDevice(const Bf16* p) {
  return reinterpret_cast<const __nv_bfloat16*>(p);
}
__device__ __forceinline__ __nv_bfloat16* AsDevice(Bf16* p) {
  return reinterpret_cast<__nv_bfloat16*>(p);
}
__device__ __forceinline__ float Load(const Bf16* p) { return __bfloat162float(*AsDevice(p)); }
__device__ __forceinline__ void Store(Bf16* p, float v) { *AsDevice(p) = __float2bfloat16_rn(v); }

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); every thread gets it.
// `scratch` holds 32 floats of shared memory. Two __syncthreads.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read by a previous call.
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < warps ? scratch[lane] : 0.0f;
  return WarpSum(t);
}

}  // namespace tessera::runtime::cuda
