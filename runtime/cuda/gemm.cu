// GemmRunner over cuBLASLt (gemm.h): bf16 A/B, fp32 compute, bf16 or fp32 D, the row-major
// projection mapped onto cuBLASLt's column-major "TN" product.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstring>
#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_common.cuh"
#include "runtime/cuda/gemm.h"

namespace tessera::runtime::cuda {
namespace {

absl::Status CublasStatus(cublasStatus_t st, const char* what) {
  if (st == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(what, ": ", cublasLtGetStatusName(st), " (", cublasLtGetStatusString(st), ")"));
}

#define GEMM_RETURN_IF_ERROR(expr) \
  do {                             \
    absl::Status _s = (expr);      \
    if (!_s.ok()) return _s;       \
  } while (0)

// The largest power of two (up to 256, cuBLASLt's default requirement) dividing both the address
// and the row stride in bytes: what every row start of the operand is aligned to.
uint32_t AlignmentBytes(const void* ptr, int64_t ld, int64_t elem_bytes) {
  const uint64_t bits = reinterpret_cast<uintptr_t>(ptr) | static_cast<uint64_t>(ld * elem_bytes);
  uint32_t a = 256;
  while (a > 1 && (bits & (a - 1)) != 0) a >>= 1;
  return a;
}

// Everything that selects a plan: the shape, the strides, the output type, beta, and the alignment
// of the three operands (an algorithm chosen for 16-byte rows may not run on 2-byte ones).
struct PlanKey {
  int64_t m, n, k, ldx, ldw, ldo;
  bool out_fp32, accumulate;
  uint32_t align_x, align_w, align_out;

  auto Tie() const {
    return std::tie(m, n, k, ldx, ldw, ldo, out_fp32, accumulate, align_x, align_w, align_out);
  }
  bool operator<(const PlanKey& o) const { return Tie() < o.Tie(); }
};

// The descriptors and the algorithm chosen for one PlanKey; destroyed with the runner.
struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo;

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
  }
};

struct PreferenceHolder {
  cublasLtMatmulPreference_t pref = nullptr;
  ~PreferenceHolder() {
    if (pref != nullptr) cublasLtMatmulPreferenceDestroy(pref);
  }
};

class CublasLtGemmRunner : public GemmRunner {
 public:
  CublasLtGemmRunner(cublasLtHandle_t handle, void* workspace, size_t workspace_bytes)
      : handle_(handle), workspace_(workspace), workspace_bytes_(workspace_bytes) {}
  ~CublasLtGemmRunner() override {
    plans_.clear();  // Descriptors before the handle.
    if (workspace_ != nullptr) cudaFree(workspace_);
    if (handle_ != nullptr) cublasLtDestroy(handle_);
  }

  absl::Status Run(const GemmParams& p, cudaStream_t stream) override {
    GEMM_RETURN_IF_ERROR(ValidateGemm(p));
    if (p.m == 0) return absl::OkStatus();
    const int64_t out_bytes = p.out_fp32 ? 4 : 2;
    const PlanKey key{p.m,
                      p.n,
                      p.k,
                      p.ldx,
                      p.ldw,
                      p.ldo,
                      p.out_fp32,
                      p.accumulate,
                      AlignmentBytes(p.x, p.ldx, 2),
                      AlignmentBytes(p.w, p.ldw, 2),
                      AlignmentBytes(p.out, p.ldo, out_bytes)};
    auto it = plans_.find(key);
    if (it == plans_.end()) {
      auto plan = MakePlan(key);
      if (!plan.ok()) return plan.status();
      it = plans_.emplace(key, std::move(*plan)).first;
    }
    const Plan& plan = *it->second;
    const float alpha = p.alpha;
    const float beta = p.accumulate ? 1.0f : 0.0f;
    // D[n, m] = op(A)[n, k] B[k, m] with A = W' (the weight rows as columns), B = X'; C is D.
    return CublasStatus(
        cublasLtMatmul(handle_, plan.op, &alpha, p.w, plan.a, p.x, plan.b, &beta, p.out, plan.d,
                       p.out, plan.d, &plan.algo, workspace_, workspace_bytes_, stream),
        "cublasLtMatmul");
  }

 private:
  absl::StatusOr<std::unique_ptr<Plan>> MakePlan(const PlanKey& k) {
    auto plan = std::make_unique<Plan>();
    GEMM_RETURN_IF_ERROR(CublasStatus(
        cublasLtMatmulDescCreate(&plan->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate"));
    const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
    GEMM_RETURN_IF_ERROR(
        CublasStatus(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a,
                                                    sizeof(trans_a)),
                     "MatmulDescSetAttribute(TRANSA)"));
    GEMM_RETURN_IF_ERROR(
        CublasStatus(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b,
                                                    sizeof(trans_b)),
                     "MatmulDescSetAttribute(TRANSB)"));
    // Column-major views of the row-major buffers: W [n, k] is W' [k, n] with ld ldw, X [m, k] is
    // X' [k, m] with ld ldx, out [m, n] is D [n, m] with ld ldo.
    GEMM_RETURN_IF_ERROR(CublasStatus(
        cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_16BF, k.k, k.n, k.ldw), "LayoutCreate(W)"));
    GEMM_RETURN_IF_ERROR(CublasStatus(
        cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_16BF, k.k, k.m, k.ldx), "LayoutCreate(X)"));
    GEMM_RETURN_IF_ERROR(
        CublasStatus(cublasLtMatrixLayoutCreate(&plan->d, k.out_fp32 ? CUDA_R_32F : CUDA_R_16BF,
                                                k.n, k.m, k.ldo),
                     "LayoutCreate(out)"));

    PreferenceHolder pref;
    GEMM_RETURN_IF_ERROR(
        CublasStatus(cublasLtMatmulPreferenceCreate(&pref.pref), "MatmulPreferenceCreate"));
    const uint64_t ws = workspace_bytes_;
    GEMM_RETURN_IF_ERROR(
        CublasStatus(cublasLtMatmulPreferenceSetAttribute(
                         pref.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
                     "PreferenceSetAttribute(MAX_WORKSPACE_BYTES)"));
    const struct {
      cublasLtMatmulPreferenceAttributes_t attr;
      uint32_t bytes;
    } aligns[] = {{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, k.align_w},
                  {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, k.align_x},
                  {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, k.align_out},
                  {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, k.align_out}};
    for (const auto& al : aligns) {
      GEMM_RETURN_IF_ERROR(CublasStatus(
          cublasLtMatmulPreferenceSetAttribute(pref.pref, al.attr, &al.bytes, sizeof(al.bytes)),
          "PreferenceSetAttribute(MIN_ALIGNMENT)"));
    }
    cublasLtMatmulHeuristicResult_t result;
    std::memset(&result, 0, sizeof(result));
    int found = 0;
    GEMM_RETURN_IF_ERROR(
        CublasStatus(cublasLtMatmulAlgoGetHeuristic(handle_, plan->op, plan->a, plan->b, plan->d,
                                                    plan->d, pref.pref, 1, &result, &found),
                     "cublasLtMatmulAlgoGetHeuristic"));
    if (found == 0) {
      return absl::InternalError(absl::StrCat(
          "cublasLtMatmulAlgoGetHeuristic: no algorithm for m=", k.m, " n=", k.n, " k=", k.k,
          " ldx=", k.ldx, " ldw=", k.ldw, " ldo=", k.ldo, " out_fp32=", k.out_fp32,
          " alignments x/w/out=", k.align_x, "/", k.align_w, "/", k.align_out, " bytes"));
    }
    plan->algo = result.algo;
    return plan;
  }

  cublasLtHandle_t handle_;
  void* workspace_;
  size_t workspace_bytes_;
  // NOTE: one entry per distinct (shape, strides, alignment); a serving process sees a few hundred
  // (decode batch sizes x layer projections), each a few hundred bytes of descriptors.
  std::map<PlanKey, std::unique_ptr<Plan>> plans_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GemmRunner>> CreateGemmRunner(size_t workspace_bytes) {
  int devices = 0;
  GEMM_RETURN_IF_ERROR(CudaStatus(cudaGetDeviceCount(&devices), "cudaGetDeviceCount"));
  if (devices == 0) return absl::UnavailableError("CreateGemmRunner: no CUDA device");
  void* workspace = nullptr;
  if (workspace_bytes > 0) {
    GEMM_RETURN_IF_ERROR(
        CudaStatus(cudaMalloc(&workspace, workspace_bytes), "cudaMalloc(gemm workspace)"));
  }
  cublasLtHandle_t handle = nullptr;
  if (absl::Status s = CublasStatus(cublasLtCreate(&handle), "cublasLtCreate"); !s.ok()) {
    if (workspace != nullptr) cudaFree(workspace);
    return s;
  }
  return std::unique_ptr<GemmRunner>(
      std::make_unique<CublasLtGemmRunner>(handle, workspace, workspace_bytes));
}

}  // namespace tessera::runtime::cuda
