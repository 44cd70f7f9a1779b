// fp32 CPU kernels for the Gemma 4 forward pass: projections over bf16 or fp32 weights, norms,
// RoPE, GeGLU and softcap. AVX2/FMA (the build targets x86-64-v3); every function is
// deterministic: the result for a row never depends on the other rows of the call or on the
// thread count, which is what makes batching invisible in the logits.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/cpu/thread_pool.h"
#include "runtime/model/weights.h"

namespace tessera::runtime::cpu {

// y[t, n] = sum_k x[t, k] * w[n, k] for t < T, n < w.rows; k < w.cols. x has row stride w.cols,
// y row stride ldy (>= w.rows). Parallel over n.
void MatMul(const float* x, int64_t T, const WeightMatrix& w, float* y, int64_t ldy,
            ThreadPool* pool);
// Several projections of the same input in one parallel loop (one thread hand-off instead of one
// per matrix): jobs[i] computes y_i[t, n] = sum_k x[t, k] * w_i[n, k]. Every w_i has the same cols.
struct MatMulJob {
  const WeightMatrix* w;
  float* y;
  int64_t ldy;
};
void MatMulMany(const float* x, int64_t T, const std::vector<MatMulJob>& jobs, ThreadPool* pool);
// Same over output rows [n_begin, n_end) only, single-threaded (for callers that split work).
void MatMulRange(const float* x, int64_t T, const WeightMatrix& w, float* y, int64_t ldy,
                 int64_t n_begin, int64_t n_end);

float Dot(const float* a, const float* b, int64_t n);
// out = x * (mean(x^2) + eps)^-0.5 * weight (weight may be null: no weight). out may alias x.
void RmsNorm(const float* x, int64_t n, const float* weight, float eps, float* out);
// out = (x - mean) / sqrt(var + eps) * weight + bias (biased variance, as torch).
void LayerNorm(const float* x, int64_t n, const float* weight, const float* bias, float eps,
               float* out);
// NeoX rotate-half RoPE in place over one head: pairs (i, i + head_dim/2) for i < rope_pairs
// rotate by pos * inv_freq[i]; the other pairs are left alone (inv_freq = 0).
void ApplyRope(float* x, int32_t head_dim, int32_t rope_pairs, const float* inv_freq, int32_t pos);
// gelu_pytorch_tanh(gate) * up, in place into gate.
void GeluTanhMul(float* gate, const float* up, int64_t n);
// cap * tanh(x / cap), in place.
void Softcap(float* x, int64_t n, float cap);

}  // namespace tessera::runtime::cpu
