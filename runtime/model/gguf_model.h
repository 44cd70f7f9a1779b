// Gemma 4 from llama.cpp's GGUF files: the text model (general.architecture "gemma4") and its
// optional mmproj (general.architecture "clip", projector types "gemma4uv" for vision and
// "gemma4ua" for audio), with the metadata and tensor names exactly as llama.cpp's converter writes
// them (convert_hf_to_gguf.py / conversion/gemma.py, src/models/gemma4.cpp, tools/mtmd/).
// docs/gguf.md lists the keys and names and what each becomes.
//
// What the converter changes, and this undoes:
// - per-layer shapes become flat keys: head dims `attention.key_length` (global) / `_swa`, KV heads
//   the array `attention.head_count_kv`, layer types `attention.sliding_window_pattern` (true =
//   sliding);
// - the global layers' "proportional" RoPE becomes the tensor `rope_freqs.weight` (one factor per
//   pair, read as theta / factor by ggml): 1 for the pairs that rotate, 1e30 for those that do not;
// - norms and `layer_output_scale` keep their values (Gemma 4's norms multiply by w, not 1 + w);
// - the mmproj's `patch_dense` columns and `patch_ln1` entries are permuted from the checkpoint's
//   HWC order to ggml's im2col CHW order, and `pos_embedding` [P, 2, D] is stored as [2, P, D].
//
// Weights stay where the file has them: every matrix, in its own type (F32, F16, BF16, Q8_0, Q4_0,
// Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K: WeightMatrix::Validate), is read from the mapping; the
// permuted patch matrix and every vector are decoded to owned fp32 at load (bit-exactly, by
// runtime/quant's dequantization). A tensor the model does not use (an untied
// output head, MoE experts, per-layer embeddings, a fused QKV) is refused by name rather than
// ignored.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "runtime/model/gguf.h"
#include "runtime/model/model_config.h"
#include "runtime/model/weights.h"

namespace tessera::runtime {

// The model's config from the text GGUF's metadata (and the mmproj's, when given). Errors are
// InvalidArgument naming the file and the key or tensor.
absl::StatusOr<ModelConfig> GgufModelConfig(const GgufFile& text, const GgufFile* mmproj);

// Binds every tensor `config` implies. The weights keep both files alive.
absl::StatusOr<std::unique_ptr<ModelWeights>> BindGgufWeights(
    const ModelConfig& config, std::shared_ptr<const GgufFile> text,
    std::shared_ptr<const GgufFile> mmproj);

// Column `i` of the mmproj's patch matrix (ggml's CHW order) is column HwcColumn(i, p) of the
// checkpoint's (HWC order) for p x p RGB patches.
int64_t HwcColumn(int64_t chw_index, int64_t patch);

}  // namespace tessera::runtime
