// CPU kernels for the Gemma 4 forward pass: projections over fp32, bf16, fp16 or quantized (GGUF)
// weights, norms, RoPE, GeGLU and softcap. Every function is deterministic: the result for a row
// never depends on the other rows of the call or on the thread count, which is what makes batching
// invisible in the logits.
//
// Projections run on a kernel path (cpu_features.h): portable C++, AVX2 (the build's baseline) or
// AVX-512 (VNNI, BF16), picked from CPUID at run time. Float weights (F32 / BF16 / F16) multiply
// fp32 activations in fp32; quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)
// multiply activations quantized to ggml's Q8_0 / Q8_K blocks in integers (quant_matmul.h), so the
// result matches llama.cpp's to rounding. Quantized results are bit-identical on every path.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/cpu/cpu_features.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/model/weights.h"

namespace tessera::runtime::cpu {

// y[t, n] = sum_k x[t, k] * w[n, k] for t < T, n < w.rows; k < w.cols. x has row stride w.cols,
// y row stride ldy (>= w.rows). Parallel over n.
void MatMul(const float* x, int64_t T, const WeightMatrix& w, float* y, int64_t ldy,
            ThreadPool* pool, KernelPath path = DefaultKernelPath());
// Several projections of the same input in one parallel loop (one thread hand-off instead of one
// per matrix, and the activations quantized once): jobs[i] computes y_i[t, n] = sum_k x[t, k] *
// w_i[n, k]. Every w_i has the same cols.
struct MatMulJob {
  const WeightMatrix* w;
  float* y;
  int64_t ldy;
};
void MatMulMany(const float* x, int64_t T, const std::vector<MatMulJob>& jobs, ThreadPool* pool,
                KernelPath path = DefaultKernelPath());
// Same over output rows [n_begin, n_end) only, single-threaded (for callers that split work).
void MatMulRange(const float* x, int64_t T, const WeightMatrix& w, float* y, int64_t ldy,
                 int64_t n_begin, int64_t n_end, KernelPath path = DefaultKernelPath());

float Dot(const float* a, const float* b, int64_t n);
// out[i] = Dot(a, b[i], n) for i < 4, bit for bit, sharing the loads of `a`.
void Dot4(const float* a, const float* const b[4], int64_t n, float* out);
// out = x * (mean(x^2) + eps)^-0.5 * weight (weight may be null: no weight). out may alias x.
void RmsNorm(const float* x, int64_t n, const float* weight, float eps, float* out);
// out = (x - mean) / sqrt(var + eps) * weight + bias (biased variance, as torch).
void LayerNorm(const float* x, int64_t n, const float* weight, const float* bias, float eps,
               float* out);
// NeoX rotate-half RoPE in place over one head: pairs (i, i + head_dim/2) for i < rope_pairs
// rotate by pos * inv_freq[i]; the other pairs are left alone (inv_freq = 0).
void ApplyRope(float* x, int32_t head_dim, int32_t rope_pairs, const float* inv_freq, int32_t pos);
// y[i] += a * x[i].
void Axpy(float a, const float* x, float* y, int64_t n);
// x[i] = exp(x[i] - max) (within 2 ulp); returns their sum. The sum's order depends only on n.
float ExpShiftSum(float* x, int64_t n, float max);
// gelu_pytorch_tanh(gate) * up, in place into gate.
void GeluTanhMul(float* gate, const float* up, int64_t n);
// cap * tanh(x / cap), in place.
void Softcap(float* x, int64_t n, float cap);

}  // namespace tessera::runtime::cpu
