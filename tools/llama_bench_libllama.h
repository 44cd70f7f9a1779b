// llama.cpp's libllama, loaded at run time from the prebuilt libraries node-llama-cpp ships
// (@llama_cpp_prebuilt, bazel/llama_cpp.bzl), for side-by-side benchmarks: load a GGUF file, run
// prompts and single tokens through llama_decode on the CPU with a given thread count.
//
// No llama.cpp header is vendored: the .cc declares the few structs and functions it uses, copied
// field for field from include/llama.h of the release node-llama-cpp 3.22.1 bundles (de3ff815);
// their sizes are checked against that header's (80 / 160 / 56 bytes).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera::tools {

class LibLlama {
 public:
  // dlopens libllama.v0.5.0.so in `dir` and loads ggml's CPU backends from there (the best variant
  // for this CPU, as llama.cpp does). Logging is silenced.
  static absl::StatusOr<std::unique_ptr<LibLlama>> Load(const std::string& dir);
  // The library directory in a Bazel binary's runfiles, else in the source tree's node_modules.
  static std::string DefaultDir();
  ~LibLlama();

  class Model {
   public:
    ~Model();
    int32_t vocab_size() const { return vocab_; }
    // A fresh context of n_ctx positions whose llama_decode takes up to n_batch tokens per call.
    absl::Status NewContext(int32_t n_ctx, int32_t n_batch, int threads);
    void SetThreads(int threads);
    // Forgets every position (llama_memory_clear).
    void Clear();
    // Decodes `tokens` at the next positions of sequence 0, logits for the last one only; returns
    // the last logits' first value (keeps the work observable).
    absl::StatusOr<float> Decode(const std::vector<int32_t>& tokens);

   private:
    friend class LibLlama;
    const LibLlama* lib_ = nullptr;
    void* model_ = nullptr;
    void* ctx_ = nullptr;
    int32_t vocab_ = 0;
    int32_t n_past_ = 0;
  };

  absl::StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& gguf, int threads) const;

  struct Fns;

 private:
  LibLlama() = default;
  std::unique_ptr<Fns> fns_;
};

}  // namespace tessera::tools
