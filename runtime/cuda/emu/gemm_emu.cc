// GemmRunner for the CPU emulation (gemm.h): device memory is host memory here, so the product is a
// plain host loop, out = alpha * x w^T (+ out), fp32 accumulation, bf16 output rounded once. It
// runs the tiny golden model in CI, so it widens each weight row to fp32 once per call and takes
// contiguous inner products over k (8 partial sums, which the compiler vectorises).
#include <algorithm>
#include <memory>
#include <vector>

#include "runtime/cuda/gemm.h"

namespace tessera::runtime::cuda {
namespace {

float Dot(const float* a, const float* b, int64_t k) {
  constexpr int kLanes = 8;
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= k; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
  }
  for (; i < k; ++i) acc[0] += a[i] * b[i];
  float sum = 0.0f;
  for (int l = 0; l < kLanes; ++l) sum += acc[l];
  return sum;
}

class EmulatedGemmRunner : public GemmRunner {
 public:
  absl::Status Run(const GemmParams& p, cudaStream_t stream) override {
    if (absl::Status s = ValidateGemm(p); !s.ok()) return s;
    if (p.m == 0) return absl::OkStatus();
    const int64_t m = p.m, n = p.n, k = p.k;
    // Widen x once (each row is read n times), then each weight row once (read m times).
    x_.resize(static_cast<size_t>(m * k));
    for (int64_t i = 0; i < m; ++i) {
      const Bf16* row = p.x + i * p.ldx;
      for (int64_t c = 0; c < k; ++c) x_[i * k + c] = Bf16ToFloat(row[c]);
    }
    w_.resize(static_cast<size_t>(k));
    for (int64_t j = 0; j < n; ++j) {
      const Bf16* wrow = p.w + j * p.ldw;
      for (int64_t c = 0; c < k; ++c) w_[c] = Bf16ToFloat(wrow[c]);
      for (int64_t i = 0; i < m; ++i) {
        const float v = p.alpha * Dot(&x_[i * k], w_.data(), k);
        if (p.out_fp32) {
          float* o = static_cast<float*>(p.out) + i * p.ldo + j;
          *o = p.accumulate ? *o + v : v;
        } else {
          static_cast<Bf16*>(p.out)[i * p.ldo + j] = FloatToBf16(v);
        }
      }
    }
    return absl::OkStatus();
  }

 private:
  std::vector<float> x_, w_;  // fp32 copies of x and of one weight row.
};

}  // namespace

absl::StatusOr<std::unique_ptr<GemmRunner>> CreateGemmRunner(size_t workspace_bytes) {
  return std::unique_ptr<GemmRunner>(std::make_unique<EmulatedGemmRunner>());
}

}  // namespace tessera::runtime::cuda
