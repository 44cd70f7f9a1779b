// Projections over F32 / BF16 / F16 weights in plain C++: the same 16-lane fused multiply-add
// sequence as the AVX-512 kernel (so the two agree bit for bit), for CPUs without AVX2 and as the
// tests' reference.
#include <cmath>
#include <vector>

#include "runtime/cpu/float_kernels.h"

namespace tessera::runtime::cpu {

void FloatMatMulPortable(const float* x, int64_t T, const WeightMatrix& w, float* y, int64_t ldy,
                         int64_t n0, int64_t n1) {
  const int64_t K = w.cols;
  const int64_t K16 = K & ~int64_t{15};
  std::vector<float> row(K);
  for (int64_t n = n0; n < n1; ++n) {
    w.RowToFloat(n, row.data());  // Exact: every F32 / BF16 / F16 value is a float.
    for (int64_t t = 0; t < T; ++t) {
      const float* xr = x + t * K;
      float acc[16] = {};
      for (int64_t k = 0; k < K16; k += 16) {
        for (int l = 0; l < 16; ++l) acc[l] = std::fma(row[k + l], xr[k + l], acc[l]);
      }
      float h8[8], h4[4], h2[2];
      for (int l = 0; l < 8; ++l) h8[l] = acc[l] + acc[l + 8];
      for (int l = 0; l < 4; ++l) h4[l] = h8[l] + h8[l + 4];
      for (int l = 0; l < 2; ++l) h2[l] = h4[l] + h4[l + 2];
      float s = h2[0] + h2[1];
      for (int64_t k = K16; k < K; ++k) s = std::fma(row[k], xr[k], s);
      y[t * ldy + n] = s;
    }
  }
}

}  // namespace tessera::runtime::cpu
