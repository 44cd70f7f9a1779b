// Launchers of the media-path norms (media.h): validation, and the one dispatch between 16-byte
// vector access (dim, strides and pointers allow it: every real shape) and scalar access.
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/media.cuh"
#include "runtime/cuda/media.h"

namespace tessera::runtime::cuda {
namespace {

using media_internal::kCacheFloats;
using media_internal::kMaxThreads;

bool Aligned(const void* ptr, int bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % static_cast<uintptr_t>(bytes) == 0;
}

// One thread per kVec-vector of the row, rounded up to whole warps, at most kMaxThreads.
int Threads(int32_t dim, int vec) {
  const int vectors = dim / vec;
  return vectors >= kMaxThreads ? kMaxThreads : (vectors + 31) / 32 * 32;
}

// The checks the three launchers share, each naming the field.
absl::Status CheckShape(const char* what, int32_t rows, int32_t dim) {
  if (rows < 0) return absl::InvalidArgumentError(absl::StrCat(what, ": rows is ", rows));
  if (dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": dim is ", dim, "; it must be >= 1"));
  }
  return absl::OkStatus();
}

absl::Status CheckStride(const char* what, const char* field, int64_t stride, int32_t dim) {
  if (stride >= dim) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": ", field, " ", stride, " is less than dim ", dim));
}

absl::Status CheckPointer(const char* what, const char* field, const void* ptr) {
  if (ptr != nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", field, " is null"));
}

#define RETURN_IF_BAD(expr)                   \
  do {                                        \
    if (absl::Status _s = (expr); !_s.ok()) { \
      return _s;                              \
    }                                         \
  } while (0)

}  // namespace

absl::Status LaunchPatchInputNorm(const PatchInputNormParams& p, cudaStream_t stream) {
  constexpr const char* kWhat = "patch input norm";
  RETURN_IF_BAD(CheckShape(kWhat, p.rows, p.dim));
  RETURN_IF_BAD(CheckStride(kWhat, "in_row_stride", p.in_row_stride, p.dim));
  RETURN_IF_BAD(CheckStride(kWhat, "out_row_stride", p.out_row_stride, p.dim));
  if (p.rows == 0) return absl::OkStatus();
  RETURN_IF_BAD(CheckPointer(kWhat, "patches", p.patches));
  RETURN_IF_BAD(CheckPointer(kWhat, "weight", p.weight));
  RETURN_IF_BAD(CheckPointer(kWhat, "bias", p.bias));
  RETURN_IF_BAD(CheckPointer(kWhat, "out", p.out));
  const bool vec4 = p.dim % 4 == 0 && p.in_row_stride % 4 == 0 && p.out_row_stride % 4 == 0 &&
                    Aligned(p.patches, 16) && Aligned(p.weight, 16) && Aligned(p.bias, 16) &&
                    Aligned(p.out, 8);
  if (vec4) {
    auto* kernel = &media_internal::PatchInputNormKernel<4, kCacheFloats / 4>;
    TESSERA_LAUNCH(kernel, p.rows, Threads(p.dim, 4), stream, p);
  } else {
    auto* kernel = &media_internal::PatchInputNormKernel<1, kCacheFloats>;
    TESSERA_LAUNCH(kernel, p.rows, Threads(p.dim, 1), stream, p);
  }
  return LaunchStatus("PatchInputNormKernel");
}

absl::Status LaunchPatchOutputNorm(const PatchOutputNormParams& p, cudaStream_t stream) {
  constexpr const char* kWhat = "patch output norm";
  RETURN_IF_BAD(CheckShape(kWhat, p.rows, p.dim));
  RETURN_IF_BAD(CheckStride(kWhat, "dense_row_stride", p.dense_row_stride, p.dim));
  RETURN_IF_BAD(CheckStride(kWhat, "out_row_stride", p.out_row_stride, p.dim));
  if (p.pos_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(kWhat, ": pos_size is ", p.pos_size, "; it must be >= 1"));
  }
  if (p.rows == 0) return absl::OkStatus();
  RETURN_IF_BAD(CheckPointer(kWhat, "dense", p.dense));
  RETURN_IF_BAD(CheckPointer(kWhat, "dense_bias", p.dense_bias));
  RETURN_IF_BAD(CheckPointer(kWhat, "ln2_weight", p.ln2_weight));
  RETURN_IF_BAD(CheckPointer(kWhat, "ln2_bias", p.ln2_bias));
  RETURN_IF_BAD(CheckPointer(kWhat, "pos_table", p.pos_table));
  RETURN_IF_BAD(CheckPointer(kWhat, "positions", p.positions));
  RETURN_IF_BAD(CheckPointer(kWhat, "pos_norm_weight", p.pos_norm_weight));
  RETURN_IF_BAD(CheckPointer(kWhat, "pos_norm_bias", p.pos_norm_bias));
  RETURN_IF_BAD(CheckPointer(kWhat, "out", p.out));
  const bool vec4 = p.dim % 4 == 0 && p.dense_row_stride % 4 == 0 && p.out_row_stride % 4 == 0 &&
                    Aligned(p.dense, 8) && Aligned(p.out, 8) && Aligned(p.dense_bias, 16) &&
                    Aligned(p.ln2_weight, 16) && Aligned(p.ln2_bias, 16) &&
                    Aligned(p.pos_table, 16) && Aligned(p.pos_norm_weight, 16) &&
                    Aligned(p.pos_norm_bias, 16);
  if (vec4) {
    auto* kernel = &media_internal::PatchOutputNormKernel<4, kCacheFloats / 4>;
    TESSERA_LAUNCH(kernel, p.rows, Threads(p.dim, 4), stream, p);
  } else {
    auto* kernel = &media_internal::PatchOutputNormKernel<1, kCacheFloats>;
    TESSERA_LAUNCH(kernel, p.rows, Threads(p.dim, 1), stream, p);
  }
  return LaunchStatus("PatchOutputNormKernel");
}

absl::Status LaunchAudioFrameNorm(const AudioFrameNormParams& p, cudaStream_t stream) {
  constexpr const char* kWhat = "audio frame norm";
  RETURN_IF_BAD(CheckShape(kWhat, p.rows, p.dim));
  RETURN_IF_BAD(CheckStride(kWhat, "in_row_stride", p.in_row_stride, p.dim));
  RETURN_IF_BAD(CheckStride(kWhat, "out_row_stride", p.out_row_stride, p.dim));
  if (p.rows == 0) return absl::OkStatus();
  RETURN_IF_BAD(CheckPointer(kWhat, "frames", p.frames));
  RETURN_IF_BAD(CheckPointer(kWhat, "out", p.out));
  const bool vec4 = p.dim % 4 == 0 && p.in_row_stride % 4 == 0 && p.out_row_stride % 4 == 0 &&
                    Aligned(p.frames, 16) && Aligned(p.out, 8);
  if (vec4) {
    auto* kernel = &media_internal::AudioFrameNormKernel<4, kCacheFloats / 4>;
    TESSERA_LAUNCH(kernel, p.rows, Threads(p.dim, 4), stream, p);
  } else {
    auto* kernel = &media_internal::AudioFrameNormKernel<1, kCacheFloats>;
    TESSERA_LAUNCH(kernel, p.rows, Threads(p.dim, 1), stream, p);
  }
  return LaunchStatus("AudioFrameNormKernel");
}

}  // namespace tessera::runtime::cuda
