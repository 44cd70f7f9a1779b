// Internal to the CPU matmul: the integer dot-product kernels on quantized weights, one set per
// kernel path, and the data layouts they share. quant_matmul.h is the interface.
//
// Weights are never copied whole: a thread unpacks R rows at a time (R <= kTileRows) from the
// mapped blocks into a small tile (integer values, exact scales) and multiplies the tile with the
// quantized activations; the tile then is overwritten by the next R rows.
//
// THE CANONICAL SUM. Every path (portable, AVX2, AVX-512), every batch size and every tiling
// computes each output with exactly these operations, so results are bit-identical across paths
// and do not depend on the batch (the kernel tests check both):
//
// Family A (weights in blocks of 32: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1; activations ggml's Q8_0):
//   16 float lanes; element e of the row goes to lane L = 8 * (b % 2) + (e % 32) / 4, b = e / 32.
//   For each block b in order, each of its 8 lanes L:
//     p_L = sum of w_int * x_int over the lane's 4 elements (exact int32; w_int the signed value:
//           Q8_0 q, Q4_0 q - 8, Q5_0 q - 16, Q4_1 / Q5_1 q),
//     acc_L = fma(dw_b * dx_b, (float)p_L, acc_L)          (dw, dx as float, product rounded)
//   and, for Q4_1 / Q5_1, lane 8 * (b % 2) then takes the block's min:
//     acc = fma(mw_b, dx_b * (float)sum(x_int of block b), acc).
// Family K (super-blocks of 256: Q4_K, Q5_K, Q6_K; activations ggml's Q8_K):
//   Every weight is d * sc_s * q - dmin * mn_s with q >= 0 and s = e / 16 (Q4_K / Q5_K: the
//   sub-block's 6-bit scale and min, Q6_K: dmin = d, mn_s = 32 * sc_s). 16 float lanes; element e
//   of super-block b is lane L = (e % 64) / 4. Per super-block:
//     isum_L = sum over its 4 chunks c (64 elements) of sc_s * (q . x over the lane's 4 elements),
//     imin_l = mn_2l * bsum_2l + mn_2l+1 * bsum_2l+1            (l < 8; bsum = Q8_K's bsums),
//     acc_L = fma(d_b * dx_b, (float)isum_L, acc_L)           (all 16 lanes), then
//     acc_l = fma(-(dmin_b * dx_b), (float)imin_l, acc_l)     (lanes 0-7).
//   Every integer is exact (|isum| < 2^24, so its float conversion is exact too).
// Both: y = ((h2_0 + h2_1)) with h8_l = acc_l + acc_l+8, h4_l = h8_l + h8_l+4, h2_l = h4_l +
// h4_l+2.
//
// Activations are padded with zeros to whole chunks of 64 (family A: a block pair) and the tile's
// padding block has zero scales, so padding adds fma(0, 0, acc) = acc to lanes the portable code
// updates just the same.
#pragma once

#include <cstdint>

#include "runtime/model/weights.h"

namespace tessera::runtime::cpu {

inline constexpr int kTileRows = 4;

// T rows of activations quantized for one weight family, row-major with padded_cols per row.
struct QuantizedRows {
  enum class Kind { kQ8_0, kQ8_K };
  Kind kind = Kind::kQ8_0;
  int64_t rows = 0;
  int64_t cols = 0;         // Values per row.
  int64_t padded_cols = 0;  // Multiple of 64 (kQ8_0) or 256 (kQ8_K); the rest are zeros.
  int8_t* qs = nullptr;     // [rows, padded_cols]
  // kQ8_0: per block of 32: d (the fp16 scale as float), t = d * sum(qs) (for Q4_1 / Q5_1).
  // kQ8_K: per super-block: d; bsums [rows, padded_cols / 16] int16.
  float* d = nullptr;        // [rows, padded_cols / 32] or [rows, padded_cols / 256]
  float* t = nullptr;        // [rows, padded_cols / 32] (kQ8_0 only)
  int16_t* bsums = nullptr;  // [rows, padded_cols / 16] (kQ8_K only)

  int64_t blocks_per_row() const { return padded_cols / (kind == Kind::kQ8_0 ? 32 : 256); }
  const int8_t* row_qs(int64_t r) const { return qs + r * padded_cols; }
  const float* row_d(int64_t r) const { return d + r * blocks_per_row(); }
  const float* row_t(int64_t r) const { return t + r * blocks_per_row(); }
  const int16_t* row_bsums(int64_t r) const { return bsums + r * (padded_cols / 16); }
};

// Family A tile: for each of `rows` weight rows and each pair of blocks (64 values):
//   q:  64 bytes, w_int + 128 (unsigned),
//   dw: 16 floats, lanes 0-7 the first block's scale, 8-15 the second's (0 for a padding block),
//   mw: the same for the mins (only when has_min).
struct TileA {
  int rows = 0;
  int64_t pairs = 0;
  bool has_min = false;
  const uint8_t* q = nullptr;  // [rows, pairs, 64]
  const float* dw = nullptr;   // [rows, pairs, 16]
  const float* mw = nullptr;   // [rows, pairs, 16]
};

// Family K tile: for each of `rows` weight rows and each super-block:
//   q:   256 bytes, the unsigned quants,
//   sc:  4 chunks x 16 int32 lanes, each lane (sc_s, sc_s) as two int16 (s = the lane's sub-block),
//   mn:  16 int16,
//   d, dmin: floats.
struct TileK {
  int rows = 0;
  int64_t blocks = 0;
  const uint8_t* q = nullptr;   // [rows, blocks, 256]
  const int32_t* sc = nullptr;  // [rows, blocks, 64]
  const int16_t* mn = nullptr;  // [rows, blocks, 16]
  const float* d = nullptr;     // [rows, blocks]
  const float* dmin = nullptr;  // [rows, blocks]
};

// y[(t - t0) * ldy + i] for weight rows i < tile.rows and activation rows t in [t0, t1). The
// portable kernels are the definition above written out; the SIMD ones compute the same bits.
void KernelAPortable(const TileA& w, const QuantizedRows& x, int64_t t0, int64_t t1, float* y,
                     int64_t ldy);
void KernelKPortable(const TileK& w, const QuantizedRows& x, int64_t t0, int64_t t1, float* y,
                     int64_t ldy);
void KernelAAvx2(const TileA& w, const QuantizedRows& x, int64_t t0, int64_t t1, float* y,
                 int64_t ldy);
void KernelKAvx2(const TileK& w, const QuantizedRows& x, int64_t t0, int64_t t1, float* y,
                 int64_t ldy);
// Only when DetectCpuFeatures().avx512.
void KernelAAvx512(const TileA& w, const QuantizedRows& x, int64_t t0, int64_t t1, float* y,
                   int64_t ldy);
void KernelKAvx512(const TileK& w, const QuantizedRows& x, int64_t t0, int64_t t1, float* y,
                   int64_t ldy);

// Decode on AVX-512 without a tile: the blocks of `rows` weight rows are decoded in registers.
// Q8_0, Q4_0 for up to 4 activation rows, Q4_K, Q5_K, Q6_K for up to kDirectMaxRows; false
// otherwise (the caller then takes the tile path, which computes the same bits).
inline constexpr int kDirectMaxRows = 8;
bool DirectAvx512(quant::GgmlType type, const uint8_t* row0, int64_t row_bytes, int rows,
                  int64_t cols, const QuantizedRows& x, int64_t t0, int64_t t1, float* y,
                  int64_t ldy);

// Fast unpackers (AVX2) into tile storage laid out as TileA / TileK describe; false for a type
// they do not handle (the caller then uses the portable unpacker). Same output bits.
bool UnpackAAvx2(quant::GgmlType type, const uint8_t* row0, int64_t row_bytes, int rows,
                 int64_t blocks, uint8_t* q, float* dw, float* mw);
bool UnpackKAvx2(quant::GgmlType type, const uint8_t* row0, int64_t row_bytes, int rows,
                 int64_t blocks, uint8_t* q, int32_t* sc, int16_t* mn, float* d, float* dmin);

}  // namespace tessera::runtime::cpu
