// libFuzzer target for the GGUF reader and the Gemma 4 GGUF loader (built outside Bazel by
// tests/fuzz/run.sh; replayed under bazel test by gguf_regression_test).
#include "tests/fuzz/gguf_fuzz.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/model/gguf.h"
#include "runtime/model/gguf_model.h"
#include "runtime/model/gguf_tokenizer.h"
#include "runtime/model/gguf_writer.h"
#include "runtime/prompt/tokenizer.h"

namespace tessera::runtime {
namespace {

std::string Refusal(const absl::Status& s, const char* what) {
  if (s.code() == absl::StatusCode::kInvalidArgument) return "";
  return absl::StrCat(what, " failed with a non-InvalidArgument status: ", s.ToString());
}

// A small valid Gemma 4 text model (2 layers: sliding head_dim 4, global head_dim 8 with 2 rotated
// pairs; hidden 8; vocab 8; zero weights), the text side for fuzzed mmproj files.
const std::string& TextModelBytes() {
  static const std::string* bytes = [] {
    GgufWriter w;
    w.AddString("general.architecture", "gemma4");
    w.AddUint32("gemma4.block_count", 2);
    w.AddUint32("gemma4.context_length", 64);
    w.AddUint32("gemma4.embedding_length", 8);
    w.AddUint32("gemma4.feed_forward_length", 8);
    w.AddUint32("gemma4.attention.head_count", 2);
    w.AddInt32Array("gemma4.attention.head_count_kv", {1, 1});
    w.AddFloat32("gemma4.rope.freq_base", 1e6f);
    w.AddFloat32("gemma4.rope.freq_base_swa", 1e4f);
    w.AddFloat32("gemma4.attention.layer_norm_rms_epsilon", 1e-6f);
    w.AddUint32("gemma4.attention.key_length", 8);
    w.AddUint32("gemma4.attention.value_length", 8);
    w.AddUint32("gemma4.attention.key_length_swa", 4);
    w.AddUint32("gemma4.attention.value_length_swa", 4);
    w.AddUint32("gemma4.attention.sliding_window", 4);
    w.AddBoolArray("gemma4.attention.sliding_window_pattern", {true, false});
    const auto zeros = [&](const std::string& name, std::vector<int64_t> ne) {
      int64_t n = 1;
      for (int64_t d : ne) n *= d;
      w.AddTensor(name, GgmlType::kF32, ne, std::string(n * 4, '\0'));
    };
    const std::vector<float> freqs = {1.0f, 1.0f, 1e30f, 1e30f};
    w.AddTensor("rope_freqs.weight", GgmlType::kF32, {4},
                std::string(reinterpret_cast<const char*>(freqs.data()), 16));
    zeros("token_embd.weight", {8, 8});
    zeros("output_norm.weight", {8});
    for (int l = 0; l < 2; ++l) {
      const int64_t hd = l == 0 ? 4 : 8;
      const std::string p = absl::StrCat("blk.", l, ".");
      zeros(p + "attn_q.weight", {8, 2 * hd});
      zeros(p + "attn_k.weight", {8, hd});
      if (l == 0) zeros(p + "attn_v.weight", {8, hd});
      zeros(p + "attn_output.weight", {2 * hd, 8});
      zeros(p + "attn_q_norm.weight", {hd});
      zeros(p + "attn_k_norm.weight", {hd});
      zeros(p + "ffn_gate.weight", {8, 8});
      zeros(p + "ffn_up.weight", {8, 8});
      zeros(p + "ffn_down.weight", {8, 8});
      for (const char* n : {"attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"}) {
        zeros(p + n + ".weight", {8});
      }
    }
    return new std::string(*w.Serialize());
  }();
  return *bytes;
}

// Decodes the first and last rows of a bound matrix (reads must stay inside the mapping).
void Touch(const WeightMatrix& m) {
  if (m.empty()) return;
  std::vector<float> row(m.cols);
  m.RowToFloat(0, row.data());
  m.RowToFloat(m.rows - 1, row.data());
}

std::string CheckModel(std::unique_ptr<GgufFile> text, std::unique_ptr<GgufFile> mmproj) {
  auto config = GgufModelConfig(*text, mmproj.get());
  if (!config.ok()) return Refusal(config.status(), "GgufModelConfig");
  std::shared_ptr<const GgufFile> t = std::move(text), m = std::move(mmproj);
  auto weights = BindGgufWeights(*config, t, m);
  if (!weights.ok()) return Refusal(weights.status(), "BindGgufWeights");
  const ModelWeights& w = **weights;
  if (w.layers.size() != config->text.layers.size()) return "a layer's weights are missing";
  Touch(w.embed_tokens);
  for (const LayerWeights& l : w.layers) {
    for (const WeightMatrix* x :
         {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj}) {
      Touch(*x);
    }
  }
  Touch(w.vision.patch_dense);
  Touch(w.vision.projection);
  Touch(w.audio.projection);
  return "";
}

}  // namespace

std::string CheckGgufFuzzInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto file = GgufFile::Parse(bytes, "fuzz.gguf");
  if (!file.ok()) return Refusal(file.status(), "Parse");
  const GgufFile& f = **file;
  const uint8_t* end = data + size;
  for (const GgufTensor& t : f.tensors()) {
    if (t.data < data || t.data > end || t.num_bytes > static_cast<uint64_t>(end - t.data)) {
      return "tensor " + t.name + " lies outside the input";
    }
    if ((t.data - data) % f.alignment() != 0) return "tensor " + t.name + " is not aligned";
    auto row = quant::RowBytes(t.ggml_type(), t.ne[0]);
    if (!row.ok() || static_cast<uint64_t>(*row) * t.num_rows() != t.num_bytes) {
      return "tensor " + t.name + " has a size its type and shape do not give";
    }
  }
  for (std::string_view key : f.keys()) {
    const GgufValue* v = f.Find(key);
    if (v == nullptr) return "a listed key cannot be found";
    // Every typed read answers; none may crash.
    (void)f.GetInt(key);
    (void)f.GetFloat(key);
    (void)f.GetBool(key);
    (void)f.GetString(key);
    (void)f.GetIntArray(key);
    (void)f.GetFloatArray(key);
    (void)f.GetBoolArray(key);
    (void)f.GetStringArray(key);
  }
  auto tokenizer_json = GgufTokenizerJson(f);
  if (tokenizer_json.ok()) {
    auto tokenizer = Tokenizer::FromJson(*tokenizer_json);
    if (!tokenizer.ok()) {
      const std::string why = Refusal(tokenizer.status(), "Tokenizer::FromJson");
      if (!why.empty()) return why;
    } else {
      const std::vector<int32_t> ids = (*tokenizer)->Encode("hello <bos> w\xC3\xB6rld \xFF");
      (void)(*tokenizer)->Decode(ids);
    }
  } else if (tokenizer_json.status().code() != absl::StatusCode::kNotFound) {
    const std::string why = Refusal(tokenizer_json.status(), "GgufTokenizerJson");
    if (!why.empty()) return why;
  }
  (void)GgufChatTemplate(f);
  auto arch = f.GetString("general.architecture");
  if (!arch.ok()) return "";
  if (*arch == "gemma4") return CheckModel(std::move(*file), nullptr);
  if (*arch == "clip") {
    auto text = GgufFile::Parse(TextModelBytes(), "text.gguf");
    if (!text.ok()) return "the built-in text model does not parse: " + text.status().ToString();
    return CheckModel(std::move(*text), std::move(*file));
  }
  return "";
}

}  // namespace tessera::runtime

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string why = tessera::runtime::CheckGgufFuzzInput(data, size);
  if (!why.empty()) {
    std::fprintf(stderr, "gguf_fuzz: %s\n", why.c_str());
    std::abort();
  }
  return 0;
}
