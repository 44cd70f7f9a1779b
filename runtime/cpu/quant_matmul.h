// Matrix multiplies over quantized weights as the formats are meant to be used: the activations are
// quantized to int8 in the blocks each weight format pairs with (ggml's Q8_0, blocks of 32, for
// Q8_0 / Q4_0 / Q4_1 / Q5_0 / Q5_1; ggml's Q8_K, 256, for Q4_K / Q5_K / Q6_K), the products are
// summed in integers inside each block, and the float scales are applied per block (the
// canonical sum in quant_kernels.h). The results equal llama.cpp's vec_dot to rounding and are
// bit-identical on every kernel path and for every batch size.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/cpu/cpu_features.h"
#include "runtime/cpu/quant_kernels.h"
#include "runtime/model/weights.h"

namespace tessera::runtime::cpu {

// Which activation format a weight type pairs with.
enum class DotFamily { kFloat, kBlocks32, kSuperBlocks };
DotFamily FamilyOf(quant::GgmlType type);

// Owns the storage of quantized activations.
class ActivationBuffer {
 public:
  // Quantizes rows [0, T) of x (row stride ldx, K values each): ggml's CPU quantizer values
  // (quantize_row_q8_0 of the x86 build: scale amax / 127 stored as fp16, values rounded to
  // nearest even at 127 / amax; quantize_row_q8_K: ggml's reference). Rows are split over `pool`
  // when given.
  void Quantize(QuantizedRows::Kind kind, const float* x, int64_t T, int64_t K, int64_t ldx,
                class ThreadPool* pool);
  const QuantizedRows& rows() const { return rows_; }

 private:
  std::vector<int8_t> qs_;
  std::vector<float> d_, t_;
  std::vector<int16_t> bsums_;
  QuantizedRows rows_;
};

// y[t * ldy + n] = dot(x row t, w row n) for t in [t0, t1) and n in [n0, n1), single-threaded, on
// the given path. x must hold the activations for w's family (FamilyOf(w.type)) with w.cols values.
void QuantMatMulRange(KernelPath path, const QuantizedRows& x, const WeightMatrix& w, int64_t t0,
                      int64_t t1, float* y, int64_t ldy, int64_t n0, int64_t n1);

}  // namespace tessera::runtime::cpu
