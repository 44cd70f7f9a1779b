// make_model: writes a random Gemma 4 checkpoint (config.json, generation_config.json,
// model.safetensors) of any shape, for tests and for the server's built-in default model.
//
//   make_model --out DIR [--spec SPEC.json] [--num_layers 8 --global_every 4 ...]
//              [--tokenizer tokenizer.json] [--chat_template chat_template.jinja]
//
// The spec is a JSON object with the fields of tools/make_model_lib.h's ModelSpec; flags given on
// the command line override it; anything given nowhere is the golden fixture's shape.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tools/make_model_lib.h"

ABSL_FLAG(std::string, out, "", "Output directory (created if needed).");
ABSL_FLAG(std::string, spec, "", "JSON spec file (ModelSpec fields); flags below override it.");
ABSL_FLAG(int32_t, num_layers, -1, "Decoder layers.");
ABSL_FLAG(int32_t, global_every, -1, "Layer i is global when (i+1) % N == 0 (0 = none).");
ABSL_FLAG(std::string, global_layers, "", "Comma-separated global layer indices (overrides).");
ABSL_FLAG(int32_t, hidden_size, -1, "Hidden size.");
ABSL_FLAG(int32_t, intermediate_size, -1, "MLP intermediate size.");
ABSL_FLAG(int32_t, num_heads, -1, "Query heads.");
ABSL_FLAG(int32_t, num_kv_heads, -1, "KV heads of sliding layers.");
ABSL_FLAG(int32_t, head_dim, -1, "Head dim of sliding layers.");
ABSL_FLAG(int32_t, global_head_dim, -1, "Head dim of global layers.");
ABSL_FLAG(int32_t, global_kv_heads, -1, "KV heads of global layers.");
ABSL_FLAG(int32_t, sliding_window, -1, "Sliding window in tokens.");
ABSL_FLAG(int32_t, vocab_size, -1, "Vocabulary size (262144 selects the real Gemma 4 ids).");
ABSL_FLAG(int32_t, mm_embed_dim, -1, "Vision embedding width.");
ABSL_FLAG(int32_t, mm_posemb_size, -1, "Rows of the 2-D vision position table.");
ABSL_FLAG(int32_t, max_position_embeddings, -1, "Context length written to config.json.");
ABSL_FLAG(int64_t, seed, -1, "Random seed.");
ABSL_FLAG(std::string, dtype, "", "bf16 or f32.");
ABSL_FLAG(std::string, special_ids, "", "small (ids 500..506) or gemma4 (the real ids).");
ABSL_FLAG(std::string, tokenizer, "", "tokenizer.json to copy into the output directory.");
ABSL_FLAG(std::string, chat_template, "",
          "Chat template to copy into the output directory as chat_template.jinja.");

namespace {

using json = nlohmann::json;

absl::Status ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return absl::OkStatus();
}

absl::Status CopyInto(const std::string& from, const std::string& dir, const std::string& name) {
  std::error_code ec;
  std::filesystem::copy_file(from, dir + "/" + name,
                             std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("copying ", from, ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status Run() {
  using tessera::tools::ModelSpec;
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return absl::InvalidArgumentError("--out is required");

  ModelSpec spec;
  if (!absl::GetFlag(FLAGS_spec).empty()) {
    std::string text;
    if (absl::Status st = ReadFile(absl::GetFlag(FLAGS_spec), &text); !st.ok()) return st;
    absl::StatusOr<ModelSpec> parsed = tessera::tools::ParseModelSpec(text, spec);
    if (!parsed.ok()) return parsed.status();
    spec = *parsed;
  }
  // Flags become a second spec layered over the first, so both go through one parser.
  json overrides = json::object();
  const std::pair<const char*, int32_t> ints[] = {
      {"num_layers", absl::GetFlag(FLAGS_num_layers)},
      {"global_every", absl::GetFlag(FLAGS_global_every)},
      {"hidden_size", absl::GetFlag(FLAGS_hidden_size)},
      {"intermediate_size", absl::GetFlag(FLAGS_intermediate_size)},
      {"num_heads", absl::GetFlag(FLAGS_num_heads)},
      {"num_kv_heads", absl::GetFlag(FLAGS_num_kv_heads)},
      {"head_dim", absl::GetFlag(FLAGS_head_dim)},
      {"global_head_dim", absl::GetFlag(FLAGS_global_head_dim)},
      {"global_kv_heads", absl::GetFlag(FLAGS_global_kv_heads)},
      {"sliding_window", absl::GetFlag(FLAGS_sliding_window)},
      {"vocab_size", absl::GetFlag(FLAGS_vocab_size)},
      {"mm_embed_dim", absl::GetFlag(FLAGS_mm_embed_dim)},
      {"mm_posemb_size", absl::GetFlag(FLAGS_mm_posemb_size)},
      {"max_position_embeddings", absl::GetFlag(FLAGS_max_position_embeddings)}};
  for (const auto& [key, value] : ints) {
    if (value >= 0) overrides[key] = value;
  }
  if (absl::GetFlag(FLAGS_seed) >= 0) {
    overrides["seed"] = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  }
  if (!absl::GetFlag(FLAGS_global_layers).empty()) {
    json layers = json::array();
    std::stringstream ss(absl::GetFlag(FLAGS_global_layers));
    std::string item;
    while (std::getline(ss, item, ',')) {
      char* end = nullptr;
      const long v = std::strtol(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0') {
        return absl::InvalidArgumentError(
            absl::StrCat("--global_layers: \"", item, "\" is not an integer"));
      }
      layers.push_back(v);
    }
    overrides["global_layers"] = layers;
  }
  if (!absl::GetFlag(FLAGS_dtype).empty()) overrides["dtype"] = absl::GetFlag(FLAGS_dtype);
  if (!absl::GetFlag(FLAGS_special_ids).empty()) {
    overrides["special_ids"] = absl::GetFlag(FLAGS_special_ids);
  }
  absl::StatusOr<ModelSpec> merged = tessera::tools::ParseModelSpec(overrides.dump(), spec);
  if (!merged.ok()) return merged.status();
  spec = *merged;

  if (absl::Status st = tessera::tools::WriteModel(spec, out); !st.ok()) return st;
  if (!absl::GetFlag(FLAGS_tokenizer).empty()) {
    if (absl::Status st = CopyInto(absl::GetFlag(FLAGS_tokenizer), out, "tokenizer.json");
        !st.ok()) {
      return st;
    }
  }
  if (!absl::GetFlag(FLAGS_chat_template).empty()) {
    if (absl::Status st = CopyInto(absl::GetFlag(FLAGS_chat_template), out, "chat_template.jinja");
        !st.ok()) {
      return st;
    }
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Writes a random Gemma 4 checkpoint. See tools/make_model.cc.");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = Run();
  if (!status.ok()) {
    std::cerr << "make_model: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
