// The canonical quantized dot products (quant_kernels.h) in plain C++: the definition the SIMD
// kernels are tested against, and the path for CPUs without AVX2.
#include <cmath>

#include "runtime/cpu/quant_kernels.h"

namespace tessera::runtime::cpu {
namespace {

float HorizontalSum16(const float* acc) {
  float h8[8], h4[4], h2[2];
  for (int l = 0; l < 8; ++l) h8[l] = acc[l] + acc[l + 8];
  for (int l = 0; l < 4; ++l) h4[l] = h8[l] + h8[l + 4];
  for (int l = 0; l < 2; ++l) h2[l] = h4[l] + h4[l + 2];
  return h2[0] + h2[1];
}

}  // namespace

void KernelAPortable(const TileA& w, const QuantizedRows& x, int64_t t0, int64_t t1, float* y,
                     int64_t ldy) {
  for (int64_t t = t0; t < t1; ++t) {
    const int8_t* xq = x.row_qs(t);
    const float* dx = x.row_d(t);
    const float* tx = x.row_t(t);
    for (int i = 0; i < w.rows; ++i) {
      float acc[16] = {};
      for (int64_t pr = 0; pr < w.pairs; ++pr) {
        const uint8_t* wq = w.q + (i * w.pairs + pr) * 64;
        const float* dw = w.dw + (i * w.pairs + pr) * 16;
        const int8_t* xp = xq + pr * 64;
        for (int lane = 0; lane < 16; ++lane) {
          int32_t p = 0;
          for (int k = 0; k < 4; ++k) {
            p += (static_cast<int32_t>(wq[4 * lane + k]) - 128) * xp[4 * lane + k];
          }
          const float s = dw[lane] * dx[2 * pr + lane / 8];
          acc[lane] = std::fma(s, static_cast<float>(p), acc[lane]);
        }
        if (w.has_min) {
          const float* mw = w.mw + (i * w.pairs + pr) * 16;
          for (int lane : {0, 8}) {
            acc[lane] = std::fma(mw[lane], tx[2 * pr + lane / 8], acc[lane]);
          }
        }
      }
      y[(t - t0) * ldy + i] = HorizontalSum16(acc);
    }
  }
}

void KernelKPortable(const TileK& w, const QuantizedRows& x, int64_t t0, int64_t t1, float* y,
                     int64_t ldy) {
  for (int64_t t = t0; t < t1; ++t) {
    const int8_t* xq = x.row_qs(t);
    const float* dx = x.row_d(t);
    const int16_t* bs = x.row_bsums(t);
    for (int i = 0; i < w.rows; ++i) {
      float acc[16] = {};
      for (int64_t b = 0; b < w.blocks; ++b) {
        const int64_t wb = i * w.blocks + b;
        const uint8_t* q = w.q + wb * 256;
        const int32_t* sc = w.sc + wb * 64;
        const int16_t* mn = w.mn + wb * 16;
        const int8_t* xb = xq + b * 256;
        int32_t isum[16] = {};
        for (int c = 0; c < 4; ++c) {
          for (int lane = 0; lane < 16; ++lane) {
            int32_t p = 0;
            for (int k = 0; k < 4; ++k) p += q[64 * c + 4 * lane + k] * xb[64 * c + 4 * lane + k];
            isum[lane] += static_cast<int16_t>(sc[16 * c + lane] & 0xffff) * p;
          }
        }
        const float s = w.d[wb] * dx[b];
        const float neg_m = -(w.dmin[wb] * dx[b]);
        for (int lane = 0; lane < 16; ++lane) {
          acc[lane] = std::fma(s, static_cast<float>(isum[lane]), acc[lane]);
        }
        for (int l = 0; l < 8; ++l) {
          const int32_t imin =
              mn[2 * l] * bs[16 * b + 2 * l] + mn[2 * l + 1] * bs[16 * b + 2 * l + 1];
          acc[l] = std::fma(neg_m, static_cast<float>(imin), acc[l]);
        }
      }
      y[(t - t0) * ldy + i] = HorizontalSum16(acc);
    }
  }
}

}  // namespace tessera::runtime::cpu
