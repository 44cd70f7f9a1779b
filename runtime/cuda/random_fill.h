// Deterministic random fills of device memory, for models with random weights made directly on the
// GPU (CreateRandomCudaModelRunner, the 12B-shaped benchmark) and for tests. Counter-based: value
// i depends only on (seed, i), so the CPU emulation and every GPU produce the same values (up to
// libm rounding), and a buffer can be filled in pieces.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/bf16.h"

struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace tessera::runtime::cuda {

// out[i] = bf16(mean + stddev * N(0, 1)) for i < n (Box-Muller on two 32-bit hashes of
// (seed, i)). n may exceed 2^31.
absl::Status LaunchFillNormalBf16(Bf16* out, int64_t n, uint64_t seed, float mean, float stddev,
                                  cudaStream_t stream);
// out[i] = bf16(uniform in [lo, hi)).
absl::Status LaunchFillUniformBf16(Bf16* out, int64_t n, uint64_t seed, float lo, float hi,
                                   cudaStream_t stream);
// fp32 variants (media weights are fp32 on the device).
absl::Status LaunchFillNormalF32(float* out, int64_t n, uint64_t seed, float mean, float stddev,
                                 cudaStream_t stream);

// The host twin of value i, for tests (equal to the device value up to libm rounding: within one
// bf16 ulp after rounding).
float NormalValueForIndex(uint64_t seed, int64_t i, float mean, float stddev);

}  // namespace tessera::runtime::cuda
