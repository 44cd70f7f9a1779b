#include "runtime/quant/ggml_reference.h"

#include <dirent.h>
#include <dlfcn.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "testdata/testdata.h"

namespace tessera::runtime::quant {
namespace {

// From ggml.h / ggml-cpu.h (the release node-llama-cpp 3.22.1 ships).
using ToFloatFn = void (*)(const void* x, float* y, int64_t k);
using FromFloatFn = void (*)(const float* x, void* y, int64_t k);
using VecDotFn = void (*)(int n, float* s, size_t bs, const void* x, size_t bx, const void* y,
                          size_t by, int nrc);
struct GgmlTypeTraits {
  const char* type_name;
  int64_t blck_size;
  int64_t blck_size_interleave;
  size_t type_size;
  bool is_quantized;
  ToFloatFn to_float;
  FromFloatFn from_float_ref;
};
struct GgmlTypeTraitsCpu {
  FromFloatFn from_float;
  VecDotFn vec_dot;
  int vec_dot_type;  // enum ggml_type
  int64_t nrows;
};
using GetTraitsFn = const GgmlTypeTraits* (*)(int type);
using GetTraitsCpuFn = const GgmlTypeTraitsCpu* (*)(int type);
using ScoreFn = int (*)();
using InitFn = void (*)();

}  // namespace

struct GgmlReference::Impl {
  void* base = nullptr;
  void* cpu = nullptr;
  GetTraitsFn traits = nullptr;
  GetTraitsCpuFn traits_cpu = nullptr;
  float (*fp16_to_fp32)(uint16_t) = nullptr;
  uint16_t (*fp32_to_fp16)(float) = nullptr;
};

std::string GgmlReference::DefaultDir() {
  // In runfiles, the external repository @llama_cpp_prebuilt sits beside the workspace's own
  // directory; outside Bazel, read node_modules in the source tree.
  const std::string runfiles = testing::RunfilePath("../llama_cpp_prebuilt");
  if (access((runfiles + "/libggml-base.so").c_str(), R_OK) == 0) return runfiles;
  return testing::WorkspaceDir() +
         "/third_party/node/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64";
}

absl::StatusOr<std::unique_ptr<GgmlReference>> GgmlReference::Load(const std::string& dir) {
  const std::string base_path = dir + "/libggml-base.so";
  if (access(base_path.c_str(), R_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat(base_path, " is absent (run npm ci in third_party/node)"));
  }
  std::unique_ptr<GgmlReference> r(new GgmlReference());
  r->impl_ = std::make_unique<Impl>();
  Impl& im = *r->impl_;
  im.base = dlopen(base_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (im.base == nullptr) return absl::InternalError(absl::StrCat("dlopen: ", dlerror()));
  im.traits = reinterpret_cast<GetTraitsFn>(dlsym(im.base, "ggml_get_type_traits"));
  im.fp16_to_fp32 = reinterpret_cast<float (*)(uint16_t)>(dlsym(im.base, "ggml_fp16_to_fp32"));
  im.fp32_to_fp16 = reinterpret_cast<uint16_t (*)(float)>(dlsym(im.base, "ggml_fp32_to_fp16"));
  if (im.traits == nullptr || im.fp16_to_fp32 == nullptr || im.fp32_to_fp16 == nullptr) {
    return absl::InternalError(base_path + " lacks ggml_get_type_traits or the fp16 conversions");
  }

  // The CPU variants: keep the one with the highest score (0 = this CPU cannot run it).
  std::vector<std::string> variants;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (absl::StartsWith(name, "libggml-cpu-") && absl::EndsWith(name, ".so")) {
        variants.push_back(name);
      }
    }
    closedir(d);
  }
  int best_score = 0;
  for (const std::string& name : variants) {
    void* h = dlopen((dir + "/" + name).c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) continue;
    auto score = reinterpret_cast<ScoreFn>(dlsym(h, "ggml_backend_score"));
    const int s = score != nullptr ? score() : 0;
    if (s > best_score && dlsym(h, "ggml_get_type_traits_cpu") != nullptr) {
      if (im.cpu != nullptr) dlclose(im.cpu);
      im.cpu = h;
      best_score = s;
      r->variant_ = name.substr(12, name.size() - 12 - 3);
    } else {
      dlclose(h);
    }
  }
  if (im.cpu == nullptr) {
    return absl::InternalError(absl::StrCat("no libggml-cpu-*.so in ", dir, " runs on this CPU"));
  }
  reinterpret_cast<InitFn>(dlsym(im.cpu, "ggml_cpu_init"))();
  im.traits_cpu = reinterpret_cast<GetTraitsCpuFn>(dlsym(im.cpu, "ggml_get_type_traits_cpu"));
  return r;
}

GgmlReference::~GgmlReference() {
  // The libraries stay loaded: ggml keeps global state (thread pools, tables) that a dlclose would
  // pull from under any thread it started.
}

bool GgmlReference::TypeInfo(uint32_t id, std::string* name, int64_t* block_elems,
                             size_t* block_bytes) const {
  const GgmlTypeTraits* t = impl_->traits(static_cast<int>(id));
  if (t == nullptr || t->blck_size == 0) return false;
  *name = t->type_name != nullptr ? t->type_name : "";
  *block_elems = t->blck_size;
  *block_bytes = t->type_size;
  return true;
}

float GgmlReference::Fp16ToFp32(uint16_t h) const { return impl_->fp16_to_fp32(h); }
uint16_t GgmlReference::Fp32ToFp16(float f) const { return impl_->fp32_to_fp16(f); }

bool GgmlReference::Dequantize(GgmlType type, const void* src, float* dst, int64_t n) const {
  const GgmlTypeTraits* t = impl_->traits(static_cast<int>(type));
  if (t == nullptr || t->to_float == nullptr) return false;
  t->to_float(src, dst, n);
  return true;
}

bool GgmlReference::QuantizeRef(GgmlType type, const float* src, void* dst, int64_t n) const {
  const GgmlTypeTraits* t = impl_->traits(static_cast<int>(type));
  if (t == nullptr) return false;
  FromFloatFn f = t->from_float_ref;
  if (f == nullptr) {
    // Q8_K's reference quantizer is exported but not in the traits table.
    f = reinterpret_cast<FromFloatFn>(
        dlsym(impl_->base, absl::StrCat("quantize_row_", t->type_name, "_ref").c_str()));
  }
  if (f == nullptr) return false;
  f(src, dst, n);
  return true;
}

GgmlType GgmlReference::VecDotType(GgmlType type) const {
  return static_cast<GgmlType>(impl_->traits_cpu(static_cast<int>(type))->vec_dot_type);
}

bool GgmlReference::VecDot(GgmlType type, int64_t n, const void* x, const void* y,
                           float* out) const {
  const GgmlTypeTraitsCpu* t = impl_->traits_cpu(static_cast<int>(type));
  if (t == nullptr || t->vec_dot == nullptr) return false;
  t->vec_dot(static_cast<int>(n), out, 0, x, 0, y, 0, 1);
  return true;
}

bool GgmlReference::FromFloat(GgmlType type, const float* src, void* dst, int64_t n) const {
  const GgmlTypeTraitsCpu* t = impl_->traits_cpu(static_cast<int>(type));
  if (t == nullptr || t->from_float == nullptr) return false;
  t->from_float(src, dst, n);
  return true;
}

}  // namespace tessera::runtime::quant
