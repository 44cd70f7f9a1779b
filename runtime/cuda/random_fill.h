// Deterministic random fills of device memory, for models with random weights made directly on the
// GPU (CreateRandomCudaModelRunner, the 12B-shaped benchmark) and for tests. Counter-based: value
// i depends only on (seed, i), so the CPU emulation and every GPU produce the same values (up to
// libm rounding), and a buffer can be filled in pieces.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/bf16.h"
#include "runtime/cuda/quant_formats.h"

struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace tessera::runtime::cuda {

// out[i] = bf16(mean + stddev * N(0, 1)) for i < n, where the normal deviate is value number
// first_index + i of the stream `seed` (Box-Muller on two 32-bit halves of a SplitMix64 hash of
// (seed, index)). It depends only on (seed, first_index + i), not on n: a buffer filled in pieces
// (piece j at out + offset_j with first_index = offset_j) equals the buffer filled at once.
// n may exceed 2^31; n = 0 is a no-op.
absl::Status LaunchFillNormalBf16(Bf16* out, int64_t n, uint64_t seed, float mean, float stddev,
                                  cudaStream_t stream, int64_t first_index = 0);
// out[i] = bf16(lo + (hi - lo) * u), u uniform in [0, 1) on a 2^-24 grid, from the same hash (the
// bf16 rounding may give hi itself).
absl::Status LaunchFillUniformBf16(Bf16* out, int64_t n, uint64_t seed, float lo, float hi,
                                   cudaStream_t stream, int64_t first_index = 0);
// fp32 variant of the normal fill, same values before rounding (media weights are fp32 on the
// device).
absl::Status LaunchFillNormalF32(float* out, int64_t n, uint64_t seed, float mean, float stddev,
                                 cudaStream_t stream, int64_t first_index = 0);

// `blocks` blocks of a ggml block format (quant_formats.h) with random quants, sub-block scales and
// mins (byte i from the hash of (seed, i)) and every fp16 block scale (d, and m or dmin) set to
// `half_bits`: weights of the right bytes and layout for benchmarks (model_bench); their values
// mean nothing.
absl::Status LaunchFillRandomBlocks(WeightFormat format, void* out, int64_t blocks, uint64_t seed,
                                    uint16_t half_bits, cudaStream_t stream);

// The host twins of value number i, for tests: the normal one equals the device's fp32 value up
// to libm rounding (a few fp32 ulps; within one bf16 ulp after rounding); the uniform one is
// exact (no libm).
float NormalValueForIndex(uint64_t seed, int64_t i, float mean, float stddev);
float UniformValueForIndex(uint64_t seed, int64_t i, float lo, float hi);

}  // namespace tessera::runtime::cuda
