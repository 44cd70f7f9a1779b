#include "runtime/cuda/quant_formats.h"

#include "absl/strings/str_cat.h"

namespace tessera::runtime::cuda {

const char* WeightFormatName(WeightFormat f) {
  switch (f) {
    case WeightFormat::kBf16:
      return "bf16";
    case WeightFormat::kQ8_0:
      return "Q8_0";
    case WeightFormat::kQ4_0:
      return "Q4_0";
    case WeightFormat::kQ4_1:
      return "Q4_1";
    case WeightFormat::kQ5_K:
      return "Q5_K";
    case WeightFormat::kQ4_K:
      return "Q4_K";
    case WeightFormat::kQ6_K:
      return "Q6_K";
  }
  return "?";
}

int32_t BlockValues(WeightFormat f) {
  switch (f) {
    case WeightFormat::kBf16:
      return 1;
    case WeightFormat::kQ8_0:
    case WeightFormat::kQ4_0:
    case WeightFormat::kQ4_1:
      return 32;
    case WeightFormat::kQ5_K:
    case WeightFormat::kQ4_K:
    case WeightFormat::kQ6_K:
      return 256;
  }
  return 1;
}

int32_t BlockBytes(WeightFormat f) {
  switch (f) {
    case WeightFormat::kBf16:
      return 2;
    case WeightFormat::kQ8_0:
      return 34;
    case WeightFormat::kQ4_0:
      return 18;
    case WeightFormat::kQ4_1:
      return 20;
    case WeightFormat::kQ5_K:
      return 176;
    case WeightFormat::kQ4_K:
      return 144;
    case WeightFormat::kQ6_K:
      return 210;
  }
  return 2;
}

int64_t RowBytes(WeightFormat f, int64_t cols) { return cols / BlockValues(f) * BlockBytes(f); }

std::string CheckCols(WeightFormat f, int64_t cols) {
  if (cols < 1 || cols % BlockValues(f) != 0) {
    return absl::StrCat(WeightFormatName(f), " rows hold multiples of ", BlockValues(f),
                        " values; got ", cols);
  }
  return "";
}

bool PreferGemv(WeightFormat f, int64_t rows) {
  if (!IsQuantized(f) || rows < 1) return false;
  const int64_t passes = (rows + kMaxGemvRows - 1) / kMaxGemvRows;
  // Per block of the weights: the GEMV reads it `passes` times; dequantize + GEMM reads it once
  // and writes and reads its bf16 copy (2 bytes per value each way).
  const int64_t gemv = passes * BlockBytes(f);
  const int64_t dequant = BlockBytes(f) + 4 * int64_t{BlockValues(f)};
  return gemv < dequant;
}

int64_t Q8_1Bytes(int64_t rows, int64_t cols) { return rows * (cols / 32) * 40; }

}  // namespace tessera::runtime::cuda
