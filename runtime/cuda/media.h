// The normalisation kernels of the media paths (MODEL.md "Vision", "Audio"); the two projections
// between them are GEMMs (gemm.h) run by the CUDA runner, the last one writing straight into the
// step's embedding rows. Per image patch / audio frame row:
//
//   image:  a = LayerNorm1(patch)                       LaunchPatchInputNorm  (fp32 in, bf16 out)
//           d = a Wdense^T                              GEMM (bf16 out)
//           e = rms(LayerNormPos(LayerNorm2(d + bias)   LaunchPatchOutputNorm (bf16 in, bf16 out)
//                   + pos[x, 0] + pos[y, 1]))
//           h_row = e Wproj^T                           GEMM into the embedding rows
//   audio:  a = rms(frame)                              LaunchAudioFrameNorm  (fp32 in, bf16 out)
//           h_row = a Waudio^T                          GEMM into the embedding rows
//
// LayerNorm(x) = (x - mean) * (var + eps)^-0.5 * w + b with the biased variance (torch);
// rms(x) = x * (mean(x^2) + eps)^-0.5 with no weight. All statistics in fp32 (two-pass: mean,
// then the centred sum of squares, as the CPU reference in runtime/cpu/kernels.cc does).
// Intermediate values inside one kernel stay fp32; each kernel rounds its output to bf16 once.
//
// Norm weights, biases and the position table are fp32 device arrays (they are small, and the
// checkpoint's bf16 values are exact in fp32).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/bf16.h"

struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace tessera::runtime::cuda {

struct PatchInputNormParams {
  const float* patches = nullptr;  // [rows, dim] with in_row_stride: pixel values in [0, 1].
  int64_t in_row_stride = 0;
  const float* weight = nullptr;  // [dim]
  const float* bias = nullptr;    // [dim]
  Bf16* out = nullptr;            // [rows, dim] with out_row_stride.
  int64_t out_row_stride = 0;
  int32_t rows = 0;
  int32_t dim = 0;  // 6912 for 48x48x3 patches; any dim >= 1 works.
  float eps = 1e-5f;
};

struct PatchOutputNormParams {
  const Bf16* dense = nullptr;  // [rows, dim]: the patch_dense GEMM output, before its bias.
  int64_t dense_row_stride = 0;
  const float* dense_bias = nullptr;                              // [dim]
  const float* ln2_weight = nullptr, *ln2_bias = nullptr;         // [dim]
  const float* pos_table = nullptr;                               // [pos_size, 2, dim]
  int32_t pos_size = 0;                                           // Entries per axis.
  const int32_t* positions = nullptr;                             // [rows, 2]: (x, y) per row.
  const float* pos_norm_weight = nullptr, *pos_norm_bias = nullptr;  // [dim]
  Bf16* out = nullptr;  // [rows, dim] with out_row_stride.
  int64_t out_row_stride = 0;
  int32_t rows = 0;
  int32_t dim = 0;  // mm_embed_dim.
  float layer_norm_eps = 1e-5f;
  float rms_eps = 1e-6f;
};

struct AudioFrameNormParams {
  const float* frames = nullptr;  // [rows, dim] with in_row_stride: samples.
  int64_t in_row_stride = 0;
  Bf16* out = nullptr;  // [rows, dim] with out_row_stride.
  int64_t out_row_stride = 0;
  int32_t rows = 0;
  int32_t dim = 0;  // 640.
  float eps = 1e-6f;
};

// Each returns InvalidArgument naming the bad field for a bad shape or a null pointer (rows == 0
// is a no-op). A position outside [0, pos_size) is the host's to reject (the runner validates the
// plan); the kernel clamps it only to keep memory safe.
absl::Status LaunchPatchInputNorm(const PatchInputNormParams& p, cudaStream_t stream);
absl::Status LaunchPatchOutputNorm(const PatchOutputNormParams& p, cudaStream_t stream);
absl::Status LaunchAudioFrameNorm(const AudioFrameNormParams& p, cudaStream_t stream);

}  // namespace tessera::runtime::cuda
