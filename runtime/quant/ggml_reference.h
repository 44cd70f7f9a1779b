// llama.cpp's own ggml library, loaded at run time from the prebuilt binaries node-llama-cpp ships
// (//third_party/node:llama_cpp_libs), as an independent reference for tests: its dequantizers,
// reference quantizers and the CPU backend's vec_dot kernels. No ggml header is vendored: the few
// C declarations used are written out in the .cc (ggml.h / ggml-cpu.h of that release).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/quant/ggml_type.h"

namespace tessera::runtime::quant {

class GgmlReference {
 public:
  // Loads libggml-base.so and the best libggml-cpu-<variant>.so this CPU runs (the highest
  // ggml_backend_score, as ggml's own loader picks) from `dir`. NotFound when the directory lacks
  // libggml-base.so (node_modules not installed); other errors name the file and dlerror().
  static absl::StatusOr<std::unique_ptr<GgmlReference>> Load(const std::string& dir);
  // The directory of //third_party/node:llama_cpp_libs in a test's runfiles.
  static std::string DefaultDir();
  ~GgmlReference();

  // Which CPU variant was loaded ("zen4", "haswell", ...).
  const std::string& cpu_variant() const { return variant_; }

  // ggml's traits of a type id (block size 0 marks a removed id: false then).
  bool TypeInfo(uint32_t id, std::string* name, int64_t* block_elems, size_t* block_bytes) const;
  // ggml_fp16_to_fp32 / ggml_fp32_to_fp16.
  float Fp16ToFp32(uint16_t h) const;
  uint16_t Fp32ToFp16(float f) const;

  // ggml's to_float / from_float_ref for the type; false when ggml has none for it.
  bool Dequantize(GgmlType type, const void* src, float* dst, int64_t n) const;
  bool QuantizeRef(GgmlType type, const float* src, void* dst, int64_t n) const;
  // The type ggml's CPU backend quantizes activations to for a dot with `type` (Q8_0 for Q4_0 /
  // Q8_0, Q8_1 for Q4_1, Q8_K for the K-quants, BF16 for BF16, ...).
  GgmlType VecDotType(GgmlType type) const;
  // ggml's CPU vec_dot: the dot product of n values of a `type` row and a VecDotType(type) row.
  bool VecDot(GgmlType type, int64_t n, const void* x, const void* y, float* out) const;
  // ggml's CPU from_float for the activation type (the quantizer the matmul uses on the fly).
  bool FromFloat(GgmlType type, const float* src, void* dst, int64_t n) const;

 private:
  GgmlReference() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string variant_;
};

}  // namespace tessera::runtime::quant

// In a GoogleTest body: loads the reference into `const GgmlReference& var`, or skips the test
// naming the missing file when node_modules is not installed (any other failure fails the test).
#define TESSERA_LOAD_GGML_OR_SKIP(var)                                                           \
  auto var##_or = ::tessera::runtime::quant::GgmlReference::Load(                                \
      ::tessera::runtime::quant::GgmlReference::DefaultDir());                                   \
  if (absl::IsNotFound(var##_or.status())) {                                                     \
    GTEST_SKIP() << "llama.cpp's ggml (node-llama-cpp) is not installed: " << var##_or.status(); \
  }                                                                                              \
  ASSERT_TRUE(var##_or.ok()) << var##_or.status();                                               \
  const ::tessera::runtime::quant::GgmlReference& var = **var##_or
