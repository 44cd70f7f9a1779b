// Counter-based random fills (random_fill.h). Value i is a pure function of (seed, first_index +
// i): SplitMix64's output function applied to a seeded Weyl sequence, the same on the host (the
// twin functions below, which the tests compare against) and on the device.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_common.cuh"
#include "runtime/cuda/random_fill.h"

namespace tessera::runtime::cuda {
namespace random_fill_internal {

constexpr int kThreads = 256;
// NOTE: a grid-stride loop over at most this many CTAs: enough to fill an H100 (132 SMs x 8), and
// a 3.8 GB weight fill is then ~250 elements per thread.
constexpr int64_t kMaxBlocks = 4096;
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;
constexpr float kTwoPi = 6.28318530717958647692f;
constexpr float kTwoToMinus24 = 5.9604644775390625e-08f;  // 2^-24, exact in fp32.

__host__ __device__ __forceinline__ uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// 64 random bits for (seed, index): value index + 1 of a SplitMix64 stream started at Mix64(seed).
__host__ __device__ __forceinline__ uint64_t HashIndex(uint64_t seed, int64_t index) {
  return Mix64(Mix64(seed) + (static_cast<uint64_t>(index) + 1) * kGolden);
}

// Box-Muller (cosine branch) on the two 32-bit halves, each cut to 24 bits so that the uniforms
// are exact fp32 values: u1 in (0, 1] (log never sees 0), u2 in [0, 1). |N| <= sqrt(48 ln 2) ~ 5.8.
__host__ __device__ __forceinline__ float StandardNormal(uint64_t h) {
  const float u1 = (static_cast<float>(static_cast<uint32_t>(h) >> 8) + 1.0f) * kTwoToMinus24;
  const float u2 = static_cast<float>(static_cast<uint32_t>(h >> 32) >> 8) * kTwoToMinus24;
  const float r = sqrtf(-2.0f * logf(u1));
  return r * cosf(kTwoPi * u2);
}

__host__ __device__ __forceinline__ float Uniform01(uint64_t h) {
  return static_cast<float>(static_cast<uint32_t>(h >> 32) >> 8) * kTwoToMinus24;
}

// The final affine step is an explicit fma on both sides, so the host compiler's contraction
// choices cannot make the twin differ from the device.
__host__ __device__ __forceinline__ float NormalValue(uint64_t seed, int64_t index, float mean,
                                                      float stddev) {
  return fmaf(stddev, StandardNormal(HashIndex(seed, index)), mean);
}
__host__ __device__ __forceinline__ float UniformValue(uint64_t seed, int64_t index, float lo,
                                                       float hi) {
  return fmaf(hi - lo, Uniform01(HashIndex(seed, index)), lo);
}

__global__ void __launch_bounds__(kThreads)
    FillNormalBf16Kernel(Bf16* out, int64_t n, uint64_t seed, float mean, float stddev,
                         int64_t first_index) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    Store(out + i, NormalValue(seed, first_index + i, mean, stddev));
  }
}

__global__ void __launch_bounds__(kThreads)
    FillUniformBf16Kernel(Bf16* out, int64_t n, uint64_t seed, float lo, float hi,
                          int64_t first_index) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    Store(out + i, UniformValue(seed, first_index + i, lo, hi));
  }
}

__global__ void __launch_bounds__(kThreads)
    FillNormalF32Kernel(float* out, int64_t n, uint64_t seed, float mean, float stddev,
                        int64_t first_index) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    out[i] = NormalValue(seed, first_index + i, mean, stddev);
  }
}

// Random bytes, except the fp16 scale fields of each block (at half0 and half1, -1: none), which
// get `half_bits`.
__global__ void __launch_bounds__(kThreads)
    FillRandomBlocksKernel(uint8_t* out, int64_t bytes, int32_t block_bytes, int32_t half0,
                           int32_t half1, uint16_t half_bits, uint64_t seed) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < bytes;
       i += stride) {
    const int b = static_cast<int>(i % block_bytes);
    int field = -1;
    if (b >= half0 && b < half0 + 2) field = b - half0;
    if (half1 >= 0 && b >= half1 && b < half1 + 2) field = b - half1;
    out[i] = field >= 0 ? static_cast<uint8_t>(half_bits >> (8 * field))
                        : static_cast<uint8_t>(HashIndex(seed, i) >> 32);
  }
}

int Blocks(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks));
}

absl::Status Check(const char* what, const void* out, int64_t n, int64_t first_index) {
  if (n < 0 || first_index < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": n=", n, " and first_index=", first_index, " must be >= 0"));
  }
  if (n > 0 && out == nullptr)
    return absl::InvalidArgumentError(absl::StrCat(what, ": out is null"));
  return absl::OkStatus();
}

}  // namespace random_fill_internal

namespace ri = random_fill_internal;

absl::Status LaunchFillNormalBf16(Bf16* out, int64_t n, uint64_t seed, float mean, float stddev,
                                  cudaStream_t stream, int64_t first_index) {
  if (absl::Status s = ri::Check("fill normal bf16", out, n, first_index); !s.ok()) return s;
  if (n == 0) return absl::OkStatus();
  TESSERA_LAUNCH(ri::FillNormalBf16Kernel, ri::Blocks(n), ri::kThreads, stream, out, n, seed, mean,
                 stddev, first_index);
  return LaunchStatus("FillNormalBf16Kernel");
}

absl::Status LaunchFillUniformBf16(Bf16* out, int64_t n, uint64_t seed, float lo, float hi,
                                   cudaStream_t stream, int64_t first_index) {
  if (absl::Status s = ri::Check("fill uniform bf16", out, n, first_index); !s.ok()) return s;
  if (!(lo <= hi)) {
    return absl::InvalidArgumentError(
        absl::StrCat("fill uniform bf16: lo=", lo, " must not exceed hi=", hi));
  }
  if (n == 0) return absl::OkStatus();
  TESSERA_LAUNCH(ri::FillUniformBf16Kernel, ri::Blocks(n), ri::kThreads, stream, out, n, seed, lo,
                 hi, first_index);
  return LaunchStatus("FillUniformBf16Kernel");
}

absl::Status LaunchFillNormalF32(float* out, int64_t n, uint64_t seed, float mean, float stddev,
                                 cudaStream_t stream, int64_t first_index) {
  if (absl::Status s = ri::Check("fill normal f32", out, n, first_index); !s.ok()) return s;
  if (n == 0) return absl::OkStatus();
  TESSERA_LAUNCH(ri::FillNormalF32Kernel, ri::Blocks(n), ri::kThreads, stream, out, n, seed, mean,
                 stddev, first_index);
  return LaunchStatus("FillNormalF32Kernel");
}

absl::Status LaunchFillRandomBlocks(WeightFormat format, void* out, int64_t blocks, uint64_t seed,
                                    uint16_t half_bits, cudaStream_t stream) {
  if (absl::Status s = ri::Check("fill random blocks", out, blocks, 0); !s.ok()) return s;
  int32_t half0 = 0, half1 = -1;
  switch (format) {
    case WeightFormat::kQ8_0:
    case WeightFormat::kQ4_0:
      break;
    case WeightFormat::kQ4_1:
    case WeightFormat::kQ4_K:
    case WeightFormat::kQ5_K:
      half1 = 2;
      break;
    case WeightFormat::kQ6_K:
      half0 = 208;
      break;
    case WeightFormat::kBf16:
      return absl::InvalidArgumentError("fill random blocks: bf16 is not a block format");
  }
  const int64_t bytes = blocks * BlockBytes(format);
  if (bytes == 0) return absl::OkStatus();
  TESSERA_LAUNCH(ri::FillRandomBlocksKernel, ri::Blocks(bytes), ri::kThreads, stream,
                 static_cast<uint8_t*>(out), bytes, BlockBytes(format), half0, half1, half_bits,
                 seed);
  return LaunchStatus("FillRandomBlocksKernel");
}

float NormalValueForIndex(uint64_t seed, int64_t i, float mean, float stddev) {
  return ri::NormalValue(seed, i, mean, stddev);
}

float UniformValueForIndex(uint64_t seed, int64_t i, float lo, float hi) {
  return ri::UniformValue(seed, i, lo, hi);
}

}  // namespace tessera::runtime::cuda
