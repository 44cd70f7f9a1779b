#include "runtime/cpu/cpu_features.h"

#include <cpuid.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace tessera::runtime::cpu {
namespace {

uint64_t Xgetbv() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures Detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
             f16c = c & (1u << 29);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = Xgetbv();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;
  const bool zmm_state = (xcr0 & 0xe6) == 0xe6;  // SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM.
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5);
  const bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30),
             avx512vl = b & (1u << 31);
  const bool vnni = c & (1u << 11);
  __cpuid_count(7, 1, a, b, c, d);
  const bool bf16 = a & (1u << 5);
  f.avx2 = ymm_state && avx2 && fma && f16c;
  f.avx512_vnni = zmm_state && avx512f && vnni;
  f.avx512_bf16 = zmm_state && avx512f && bf16;
  f.avx512 = f.avx2 && zmm_state && avx512f && avx512dq && avx512bw && avx512vl && vnni && bf16;
  return f;
}

}  // namespace

const CpuFeatures& DetectCpuFeatures() {
  static const CpuFeatures f = Detect();
  return f;
}

const char* KernelPathName(KernelPath path) {
  switch (path) {
    case KernelPath::kPortable:
      return "portable";
    case KernelPath::kAvx2:
      return "avx2";
    case KernelPath::kAvx512:
      return "avx512";
  }
  return "?";
}

absl::StatusOr<KernelPath> ParseKernelPath(const std::string& name) {
  for (KernelPath p : {KernelPath::kPortable, KernelPath::kAvx2, KernelPath::kAvx512}) {
    if (name == KernelPathName(p)) return p;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown CPU kernel path \"", name, "\"; expected portable, avx2 or avx512"));
}

bool PathSupported(KernelPath path) {
  switch (path) {
    case KernelPath::kPortable:
      return true;
    case KernelPath::kAvx2:
      return DetectCpuFeatures().avx2;
    case KernelPath::kAvx512:
      return DetectCpuFeatures().avx512;
  }
  return false;
}

std::vector<KernelPath> SupportedKernelPaths() {
  std::vector<KernelPath> paths;
  for (KernelPath p : {KernelPath::kPortable, KernelPath::kAvx2, KernelPath::kAvx512}) {
    if (PathSupported(p)) paths.push_back(p);
  }
  return paths;
}

KernelPath DefaultKernelPath() {
  static const KernelPath path = [] {
    const KernelPath best = SupportedKernelPaths().back();
    const char* env = std::getenv("TESSERA_CPU_KERNELS");
    if (env == nullptr || *env == '\0') return best;
    absl::StatusOr<KernelPath> p = ParseKernelPath(env);
    if (!p.ok()) {
      std::fprintf(stderr, "TESSERA_CPU_KERNELS: %s; using %s\n",
                   std::string(p.status().message()).c_str(), KernelPathName(best));
      return best;
    }
    if (!PathSupported(*p)) {
      std::fprintf(stderr, "TESSERA_CPU_KERNELS=%s: this CPU cannot run it; using %s\n", env,
                   KernelPathName(best));
      return best;
    }
    return *p;
  }();
  return path;
}

}  // namespace tessera::runtime::cpu
