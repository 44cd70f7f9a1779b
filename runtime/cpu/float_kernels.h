// Internal to the CPU matmul: projections over F32, BF16 and F16 weights with fp32 activations and
// fp32 accumulation, one version per kernel path. Within a path the sum for an output depends only
// on K (never on which rows share the call), so batching is invisible; across paths the results
// agree to rounding (different lane counts).
#pragma once

#include <cstdint>

#include "runtime/model/weights.h"

namespace tessera::runtime::cpu {

// y[t * ldy + n] = sum_k x[t * K + k] * w[n, k] for t < T, n in [n0, n1); w.type is F32, BF16 or
// F16; x has row stride w.cols.
void FloatMatMulPortable(const float* x, int64_t T, const WeightMatrix& w, float* y, int64_t ldy,
                         int64_t n0, int64_t n1);
void FloatMatMulAvx2(const float* x, int64_t T, const WeightMatrix& w, float* y, int64_t ldy,
                     int64_t n0, int64_t n1);
// Only when DetectCpuFeatures().avx512.
void FloatMatMulAvx512(const float* x, int64_t T, const WeightMatrix& w, float* y, int64_t ldy,
                       int64_t n0, int64_t n1);

}  // namespace tessera::runtime::cpu
