// A Gemma 4 safetensors checkpoint (config.json, model.safetensors, the tokenizer files) written as
// GGUF files the way llama.cpp's tools write them: the text model as convert_hf_to_gguf.py writes
// it (same metadata keys, types and order, same tensor names, order and layouts, rope_freqs), with
// its weights quantized as llama-quantize would (its default mix for the file type, no importance
// matrix, runtime/quant's quantizers which write ggml's bytes), and the vision + audio projector as
// the converter's --mmproj file (the patch projection's columns permuted to CHW order).
//
// Used by tools/gguf_writer and by tests that need GGUF files of their own.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/model/gguf.h"

namespace tessera::tools {

struct GgufConvertOptions {
  std::string model_dir;  // The safetensors checkpoint.
  std::string out;        // The text GGUF to write.
  // A llama.cpp file type: F32, F16, BF16 (as the converter's --outtype), or Q8_0, Q4_0, Q4_1,
  // Q6_K, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M (as llama-quantize's).
  std::string type = "BF16";
  std::string mmproj_out;           // The mmproj GGUF to write; empty: none.
  std::string mmproj_type = "F32";  // F32, F16 or BF16 (the converter's --outtype for --mmproj).
  std::string name;                 // general.name; default: the directory's name, capitalized.
  // Tokenizer files; defaults: <model_dir>/tokenizer.json, tokenizer_config.json,
  // chat_template.jinja (each optional; without tokenizer.json the file carries no tokenizer).
  std::string tokenizer_json, tokenizer_config_json, chat_template;
};

absl::Status ConvertToGguf(const GgufConvertOptions& options);

// The type llama-quantize gives each text matrix for file type `type` (tensor name, type), in the
// converter's tensor order, for a model of `num_layers` layers whose matrices have the given row
// lengths (ne[0]). Exposed for tests.
struct MatrixInfo {
  std::string name;  // GGUF name, "blk.2.attn_v.weight".
  int64_t row_length = 0;
};
absl::StatusOr<std::vector<std::pair<std::string, runtime::GgmlType>>> QuantizationPlan(
    const std::string& type, const std::vector<MatrixInfo>& matrices);

// llama.cpp's general.file_type value (LLAMA_FTYPE_*) for a file type name.
absl::StatusOr<uint32_t> LlamaFileType(const std::string& type);

// gguf-py's general.size_label for a parameter count ("262K", "3.8M", "12B").
std::string SizeLabel(uint64_t params);

}  // namespace tessera::tools
