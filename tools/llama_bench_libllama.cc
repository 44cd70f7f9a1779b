#include "tools/llama_bench_libllama.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "testdata/testdata.h"

namespace tessera::tools {
namespace {

// include/llama.h (de3ff815), field for field.
struct LlamaModelParams {
  void* devices;
  const void* tensor_buft_overrides;
  int32_t n_gpu_layers;
  int32_t split_mode;
  int32_t load_mode;
  int32_t lazy_mode;
  int32_t main_gpu;
  const float* tensor_split;
  void* progress_callback;
  void* progress_callback_user_data;
  const void* kv_overrides;
  bool vocab_only;
  bool check_tensors;
  bool use_extra_bufts;
  bool no_host;
  bool no_alloc;
  bool load_mtp;
};
static_assert(sizeof(LlamaModelParams) == 80, "llama_model_params layout");

struct LlamaContextParams {
  uint32_t n_ctx;
  uint32_t n_batch;
  uint32_t n_ubatch;
  uint32_t n_seq_max;
  uint32_t n_rs_seq;
  uint32_t n_outputs_max;
  uint32_t n_outputs_max_per_seq;
  int32_t n_threads;
  int32_t n_threads_batch;
  int32_t ctx_type;
  int32_t rope_scaling_type;
  int32_t pooling_type;
  int32_t attention_type;
  int32_t flash_attn_type;
  float rope_freq_base;
  float rope_freq_scale;
  float yarn_ext_factor;
  float yarn_attn_factor;
  float yarn_beta_fast;
  float yarn_beta_slow;
  uint32_t yarn_orig_ctx;
  float defrag_thold;
  void* cb_eval;
  void* cb_eval_user_data;
  int32_t type_k;
  int32_t type_v;
  void* abort_callback;
  void* abort_callback_data;
  bool embeddings;
  bool offload_kqv;
  bool no_perf;
  bool op_offload;
  bool swa_full;
  bool kv_unified;
  void* samplers;
  size_t n_samplers;
  void* ctx_other;
};
static_assert(sizeof(LlamaContextParams) == 160, "llama_context_params layout");
static_assert(offsetof(LlamaContextParams, n_threads) == 28, "llama_context_params layout");
static_assert(offsetof(LlamaContextParams, no_perf) == 130, "llama_context_params layout");

struct LlamaBatch {
  int32_t n_tokens;
  int32_t* token;
  float* embd;
  int32_t* pos;
  int32_t* n_seq_id;
  int32_t** seq_id;
  int8_t* logits;
};
static_assert(sizeof(LlamaBatch) == 56, "llama_batch layout");

void SilentLog(int /*level*/, const char* /*text*/, void* /*user*/) {}

}  // namespace

struct LibLlama::Fns {
  void* llama = nullptr;
  void* ggml = nullptr;
  void (*backend_init)() = nullptr;
  void (*log_set)(void (*)(int, const char*, void*), void*) = nullptr;
  void (*ggml_log_set)(void (*)(int, const char*, void*), void*) = nullptr;
  LlamaModelParams (*model_default_params)() = nullptr;
  LlamaContextParams (*context_default_params)() = nullptr;
  void* (*model_load_from_file)(const char*, LlamaModelParams) = nullptr;
  void (*model_free)(void*) = nullptr;
  void* (*init_from_model)(void*, LlamaContextParams) = nullptr;
  void (*free)(void*) = nullptr;
  const void* (*model_get_vocab)(const void*) = nullptr;
  int32_t (*vocab_n_tokens)(const void*) = nullptr;
  void* (*get_memory)(const void*) = nullptr;
  void (*memory_clear)(void*, bool) = nullptr;
  LlamaBatch (*batch_get_one)(int32_t*, int32_t) = nullptr;
  int32_t (*decode)(void*, LlamaBatch) = nullptr;
  void (*set_n_threads)(void*, int32_t, int32_t) = nullptr;
  void (*synchronize)(void*) = nullptr;
  float* (*get_logits_ith)(void*, int32_t) = nullptr;
};

std::string LibLlama::DefaultDir() {
  const std::string runfiles = testing::RunfilePath("../llama_cpp_prebuilt");
  if (access((runfiles + "/libllama.v0.5.0.so").c_str(), R_OK) == 0) return runfiles;
  return testing::WorkspaceDir() +
         "/third_party/node/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64";
}

absl::StatusOr<std::unique_ptr<LibLlama>> LibLlama::Load(const std::string& dir) {
  const std::string path = dir + "/libllama.v0.5.0.so";
  if (access(path.c_str(), R_OK) != 0) {
    return absl::NotFoundError(absl::StrCat(path, " is absent (run npm ci in third_party/node)"));
  }
  std::unique_ptr<LibLlama> lib(new LibLlama());
  lib->fns_ = std::make_unique<Fns>();
  Fns& f = *lib->fns_;
  f.ggml = dlopen((dir + "/libggml.v0.5.0.so").c_str(), RTLD_NOW | RTLD_LOCAL);
  f.llama = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (f.ggml == nullptr || f.llama == nullptr) {
    return absl::InternalError(absl::StrCat("dlopen: ", dlerror()));
  }
  auto sym = [&](void* h, const char* name, auto* out) -> absl::Status {
    *out = reinterpret_cast<std::remove_pointer_t<decltype(out)>>(dlsym(h, name));
    if (*out == nullptr) return absl::InternalError(absl::StrCat(path, " lacks ", name));
    return absl::OkStatus();
  };
  void (*load_all_from_path)(const char*) = nullptr;
  for (absl::Status s : {
           sym(f.ggml, "ggml_backend_load_all_from_path", &load_all_from_path),
           sym(f.ggml, "ggml_log_set", &f.ggml_log_set),
           sym(f.llama, "llama_backend_init", &f.backend_init),
           sym(f.llama, "llama_log_set", &f.log_set),
           sym(f.llama, "llama_model_default_params", &f.model_default_params),
           sym(f.llama, "llama_context_default_params", &f.context_default_params),
           sym(f.llama, "llama_model_load_from_file", &f.model_load_from_file),
           sym(f.llama, "llama_model_free", &f.model_free),
           sym(f.llama, "llama_init_from_model", &f.init_from_model),
           sym(f.llama, "llama_free", &f.free),
           sym(f.llama, "llama_model_get_vocab", &f.model_get_vocab),
           sym(f.llama, "llama_vocab_n_tokens", &f.vocab_n_tokens),
           sym(f.llama, "llama_get_memory", &f.get_memory),
           sym(f.llama, "llama_memory_clear", &f.memory_clear),
           sym(f.llama, "llama_batch_get_one", &f.batch_get_one),
           sym(f.llama, "llama_decode", &f.decode),
           sym(f.llama, "llama_set_n_threads", &f.set_n_threads),
           sym(f.llama, "llama_synchronize", &f.synchronize),
           sym(f.llama, "llama_get_logits_ith", &f.get_logits_ith),
       }) {
    if (!s.ok()) return s;
  }
  if (std::getenv("LLAMA_BENCH_VERBOSE") == nullptr) {  // Set it to see llama.cpp's own log.
    f.ggml_log_set(SilentLog, nullptr);
    f.log_set(SilentLog, nullptr);
  }
  load_all_from_path(dir.c_str());
  f.backend_init();
  return lib;
}

LibLlama::~LibLlama() {
  // The libraries stay loaded: ggml's CPU backend keeps threads and global state.
}

absl::StatusOr<std::unique_ptr<LibLlama::Model>> LibLlama::LoadModel(const std::string& gguf,
                                                                     int threads) const {
  const Fns& f = *fns_;
  LlamaModelParams mp = f.model_default_params();
  mp.n_gpu_layers = 0;
  void* model = f.model_load_from_file(gguf.c_str(), mp);
  if (model == nullptr) return absl::InvalidArgumentError("llama.cpp could not load " + gguf);
  std::unique_ptr<Model> m(new Model());
  m->lib_ = this;
  m->model_ = model;
  m->vocab_ = f.vocab_n_tokens(f.model_get_vocab(model));
  return m;
}

LibLlama::Model::~Model() {
  const Fns& f = *lib_->fns_;
  if (ctx_ != nullptr) f.free(ctx_);
  if (model_ != nullptr) f.model_free(model_);
}

absl::Status LibLlama::Model::NewContext(int32_t n_ctx, int32_t n_batch, int threads) {
  const Fns& f = *lib_->fns_;
  if (ctx_ != nullptr) f.free(ctx_);
  LlamaContextParams cp = f.context_default_params();
  cp.n_ctx = n_ctx;
  cp.n_batch = n_batch;
  cp.n_ubatch = n_batch;
  cp.n_seq_max = 1;
  cp.n_threads = threads;
  cp.n_threads_batch = threads;
  cp.no_perf = true;
  ctx_ = f.init_from_model(model_, cp);
  if (ctx_ == nullptr) return absl::InternalError("llama_init_from_model failed");
  n_past_ = 0;
  return absl::OkStatus();
}

void LibLlama::Model::SetThreads(int threads) { lib_->fns_->set_n_threads(ctx_, threads, threads); }

void LibLlama::Model::Clear() {
  const Fns& f = *lib_->fns_;
  f.memory_clear(f.get_memory(ctx_), true);
  n_past_ = 0;
}

absl::StatusOr<float> LibLlama::Model::Decode(const std::vector<int32_t>& tokens) {
  const Fns& f = *lib_->fns_;
  std::vector<int32_t> copy = tokens;
  const int32_t rc =
      f.decode(ctx_, f.batch_get_one(copy.data(), static_cast<int32_t>(copy.size())));
  if (rc != 0) return absl::InternalError(absl::StrCat("llama_decode returned ", rc));
  f.synchronize(ctx_);
  n_past_ += static_cast<int32_t>(tokens.size());
  const float* logits = f.get_logits_ith(ctx_, -1);
  return logits != nullptr ? logits[0] : 0.0f;
}

}  // namespace tessera::tools
