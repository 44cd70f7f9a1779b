// Launchers of the quantized-weight kernels (quant.h): validation and the one dispatch over the
// formats (and, for the GEMV, the activation rows 1..kMaxGemvRows).
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/quant.cuh"

namespace tessera::runtime::cuda {
namespace {

using quant_internal::kThreads;

absl::Status CheckFormat(const char* what, WeightFormat f, int64_t cols) {
  if (!IsQuantized(f)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", WeightFormatName(f), " is not a block format"));
  }
  if (std::string why = CheckCols(f, cols); !why.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", why));
  }
  return absl::OkStatus();
}

bool Aligned4(const void* p) { return reinterpret_cast<uintptr_t>(p) % 4 == 0; }

template <WeightFormat F>
absl::Status LaunchDequantize(const DequantizeParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((p.cols / 32 + kThreads - 1) / kThreads), p.rows);
  auto* kernel = &quant_internal::DequantizeKernel<F>;
  TESSERA_LAUNCH(kernel, grid, kThreads, stream, p);
  return LaunchStatus("DequantizeKernel");
}

template <WeightFormat F, int M>
absl::Status LaunchGemvRows(const QuantGemvParams& p, cudaStream_t stream) {
  auto* kernel = &quant_internal::GemvKernel<F, M>;
  const int64_t rows_per_cta = kThreads / quant_internal::GemvThreadsPerRow(p.k / 32);
  const auto grid = static_cast<unsigned>((p.n + rows_per_cta - 1) / rows_per_cta);
  TESSERA_LAUNCH(kernel, grid, kThreads, stream, p);
  return LaunchStatus("GemvKernel");
}

template <WeightFormat F>
absl::Status LaunchGemv(const QuantGemvParams& p, cudaStream_t stream) {
  switch (p.m) {
    case 1:
      return LaunchGemvRows<F, 1>(p, stream);
    case 2:
      return LaunchGemvRows<F, 2>(p, stream);
    case 3:
      return LaunchGemvRows<F, 3>(p, stream);
    case 4:
      return LaunchGemvRows<F, 4>(p, stream);
    case 5:
      return LaunchGemvRows<F, 5>(p, stream);
    case 6:
      return LaunchGemvRows<F, 6>(p, stream);
    case 7:
      return LaunchGemvRows<F, 7>(p, stream);
    case 8:
      return LaunchGemvRows<F, 8>(p, stream);
  }
  return absl::InvalidArgumentError("quant gemv: m outside [1, kMaxGemvRows]");
}

// THE dispatch over the formats.
template <template <WeightFormat> class Fn, typename P>
absl::Status DispatchFormat(const P& p, cudaStream_t stream) {
  switch (p.format) {
    case WeightFormat::kQ8_0:
      return Fn<WeightFormat::kQ8_0>::Run(p, stream);
    case WeightFormat::kQ4_0:
      return Fn<WeightFormat::kQ4_0>::Run(p, stream);
    case WeightFormat::kQ4_1:
      return Fn<WeightFormat::kQ4_1>::Run(p, stream);
    case WeightFormat::kQ5_K:
      return Fn<WeightFormat::kQ5_K>::Run(p, stream);
    case WeightFormat::kQ4_K:
      return Fn<WeightFormat::kQ4_K>::Run(p, stream);
    case WeightFormat::kQ6_K:
      return Fn<WeightFormat::kQ6_K>::Run(p, stream);
    case WeightFormat::kBf16:
      break;
  }
  return absl::InvalidArgumentError("not a block format");
}

template <WeightFormat F>
struct DequantizeFn {
  static absl::Status Run(const DequantizeParams& p, cudaStream_t s) {
    return LaunchDequantize<F>(p, s);
  }
};
template <WeightFormat F>
struct GemvFn {
  static absl::Status Run(const QuantGemvParams& p, cudaStream_t s) { return LaunchGemv<F>(p, s); }
};

}  // namespace

absl::Status LaunchDequantizeRows(const DequantizeParams& p, cudaStream_t stream) {
  if (absl::Status s = CheckFormat("dequantize", p.format, p.cols); !s.ok()) return s;
  if (p.rows < 0 || p.w_rows < 0 || p.row0 < 0 ||
      (p.ids == nullptr && p.row0 + p.rows > p.w_rows)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dequantize: rows [", p.row0, ", ", p.row0 + p.rows, ") outside the matrix's ", p.w_rows));
  }
  if (p.out_row_stride < p.cols) {
    return absl::InvalidArgumentError("dequantize: out_row_stride is less than cols");
  }
  if (p.rows == 0) return absl::OkStatus();
  if (p.w == nullptr || p.out == nullptr || !Aligned4(p.w)) {
    return absl::InvalidArgumentError("dequantize: w (4-byte aligned) and out must be set");
  }
  return DispatchFormat<DequantizeFn>(p, stream);
}

absl::Status LaunchQuantizeQ8_1(const QuantizeQ8_1Params& p, cudaStream_t stream) {
  if (p.cols < 32 || p.cols % 32 != 0 || p.rows < 0 || p.x_row_stride < p.cols) {
    return absl::InvalidArgumentError(absl::StrCat("quantize q8_1: cols ", p.cols,
                                                   " must be a positive multiple of 32 within "
                                                   "the row stride"));
  }
  if (p.rows == 0) return absl::OkStatus();
  if (p.x == nullptr || p.out == nullptr) {
    return absl::InvalidArgumentError("quantize q8_1: x and out must be set");
  }
  const dim3 grid(static_cast<unsigned>((p.cols / 32 + 7) / 8), p.rows);
  auto* kernel = &quant_internal::QuantizeQ8_1Kernel;
  TESSERA_LAUNCH(kernel, grid, 256, stream, p);
  return LaunchStatus("QuantizeQ8_1Kernel");
}

absl::Status LaunchQuantGemv(const QuantGemvParams& p, cudaStream_t stream) {
  if (absl::Status s = CheckFormat("quant gemv", p.format, p.k); !s.ok()) return s;
  if (p.m < 1 || p.m > kMaxGemvRows || p.n < 1 || p.ldo < p.n) {
    return absl::InvalidArgumentError(absl::StrCat("quant gemv: m ", p.m, " must be in [1, ",
                                                   kMaxGemvRows, "], n ", p.n,
                                                   " >= 1 and ldo >= n"));
  }
  if (p.w == nullptr || p.xq == nullptr || p.out == nullptr || !Aligned4(p.w)) {
    return absl::InvalidArgumentError("quant gemv: w (4-byte aligned), xq and out must be set");
  }
  return DispatchFormat<GemvFn>(p, stream);
}

}  // namespace tessera::runtime::cuda
