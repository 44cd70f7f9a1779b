// Which SIMD instruction sets the CPU runs, and which kernel path the matrix multiplies take.
//
// The build targets x86-64-v3 (AVX2, FMA, F16C) everywhere; the AVX-512 kernels live in their own
// translation unit compiled for AVX-512 (F, BW, VL, DQ, VNNI, BF16) and are only ever called when
// CPUID (with the OS's XSAVE state) says the CPU runs them. The portable path is plain C++ (the
// compiler may still use the baseline ISA) and computes exactly what the SIMD paths compute.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera::runtime::cpu {

enum class KernelPath { kPortable, kAvx2, kAvx512 };

struct CpuFeatures {
  bool avx2 = false;         // AVX2 + FMA + F16C, with OS support for YMM state.
  bool avx512 = false;       // AVX-512 F, BW, VL, DQ, VNNI and BF16, with OS support for ZMM state.
  bool avx512_bf16 = false;  // (Included in avx512; reported for the benchmark's machine line.)
  bool avx512_vnni = false;
};

// Read once from CPUID / XGETBV.
const CpuFeatures& DetectCpuFeatures();

// "portable", "avx2", "avx512".
const char* KernelPathName(KernelPath path);
absl::StatusOr<KernelPath> ParseKernelPath(const std::string& name);

// Every path this CPU runs, portable first.
std::vector<KernelPath> SupportedKernelPaths();
bool PathSupported(KernelPath path);

// The path matrix multiplies use: the best one this CPU runs, or the one the environment variable
// TESSERA_CPU_KERNELS names ("portable", "avx2", "avx512"; one the CPU cannot run falls back to
// the best it can, with a warning on stderr). Read once.
KernelPath DefaultKernelPath();

}  // namespace tessera::runtime::cpu
