// The weight formats the CUDA runner keeps on the device: bf16 matrices (cuBLASLt) and ggml's block
// formats, uploaded as the blocks themselves (quant.h reads them). Plain C++ facts — block sizes,
// row bytes, and when the decode GEMV beats dequantize + GEMM — shared by the kernels' launchers,
// the weight upload and the memory plan.
//
// ggml block layouts (ggml-common.h; every multi-byte field little-endian, half = IEEE fp16):
//   Q8_0  32 values,  34 bytes: half d; int8 qs[32]                      w = d * q
//   Q4_0  32 values,  18 bytes: half d; u8 qs[16] (lo nibble j, hi j+16)  w = d * (q - 8)
//   Q4_1  32 values,  20 bytes: half d, m; u8 qs[16]                      w = d * q + m
//   Q4_K 256 values, 144 bytes: half d, dmin; u8 scales[12] (8 x 6-bit scale and min); u8 qs[128]
//                               w = d * sc_j * q - dmin * m_j per 32-value sub-block j
//   Q5_K 256 values, 176 bytes: as Q4_K plus u8 qh[32] (the 5th bit), before qs
//   Q6_K 256 values, 210 bytes: u8 ql[128]; u8 qh[64]; int8 scales[16]; half d
//                               w = d * sc_j * (q - 32) per 16-value sub-block j
#pragma once

#include <cstdint>
#include <string>

namespace tessera::runtime::cuda {

enum class WeightFormat : int32_t { kBf16, kQ8_0, kQ4_0, kQ4_1, kQ5_K, kQ4_K, kQ6_K };

inline constexpr WeightFormat kQuantFormats[] = {WeightFormat::kQ8_0, WeightFormat::kQ4_0,
                                                 WeightFormat::kQ4_1, WeightFormat::kQ5_K,
                                                 WeightFormat::kQ4_K, WeightFormat::kQ6_K};

const char* WeightFormatName(WeightFormat f);
inline bool IsQuantized(WeightFormat f) { return f != WeightFormat::kBf16; }
// Values per block (1 for bf16) and bytes per block (2 for bf16).
int32_t BlockValues(WeightFormat f);
int32_t BlockBytes(WeightFormat f);
// Bytes of one row of `cols` values; cols must be a multiple of BlockValues (see CheckCols).
int64_t RowBytes(WeightFormat f, int64_t cols);
// Empty when `cols` can be stored in `f`, else why not.
std::string CheckCols(WeightFormat f, int64_t cols);

// The decode GEMV (quant.h) reads the weights once per kMaxGemvRows activation rows; the other
// path dequantizes the weights into a bf16 scratch and runs cuBLASLt, which writes and reads the
// bf16 copy once whatever the rows. Both are memory-bound at small row counts, so the GEMV wins
// while passes * quantized bytes < quantized bytes + 2 * bf16 bytes (Q4_K and Q4_0: up to 64
// rows; Q6_K: 40; Q8_0: 32). Prefill chunks take the dequantize path.
inline constexpr int32_t kMaxGemvRows = 8;
bool PreferGemv(WeightFormat f, int64_t rows);

// Bytes of the q8_1 activation blocks (quant.h) of `rows` x `cols` values.
int64_t Q8_1Bytes(int64_t rows, int64_t cols);

}  // namespace tessera::runtime::cuda
