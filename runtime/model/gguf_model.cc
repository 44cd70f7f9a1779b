#include "runtime/model/gguf_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/bf16.h"
#include "base/status_macros.h"
#include "runtime/quant/dequantize.h"

namespace tessera::runtime {
namespace {

// A rope_freqs factor at or above this leaves its pair unrotated: ggml rotates by
// pos * theta_i / factor, which for any position below 2^31 is an angle under 1e-10, far below
// fp32's resolution of cos/sin near 1 and 0. The converter writes 1e30.
constexpr double kUnrotatedFactor = 1e20;

// The media placeholder tokens, found by their text in the GGUF's vocabulary (MODEL.md).
struct MediaToken {
  const char* text;
  int32_t ModelConfig::*id;
};
constexpr MediaToken kMediaTokens[] = {
    {"<|image|>", &ModelConfig::image_token_id}, {"<|image>", &ModelConfig::boi_token_id},
    {"<image|>", &ModelConfig::eoi_token_id},    {"<|audio|>", &ModelConfig::audio_token_id},
    {"<|audio>", &ModelConfig::boa_token_id},    {"<audio|>", &ModelConfig::eoa_token_id},
    {"<|video|>", &ModelConfig::video_token_id},
};

absl::StatusOr<int32_t> Int32In(const GgufFile& f, const std::string& key, int64_t min) {
  auto v = f.GetInt(key);
  if (!v.ok()) return v.status();
  if (*v < min || *v > std::numeric_limits<int32_t>::max()) {
    return f.Error(absl::StrCat("metadata ", key, " is ", *v, "; it must be in [", min, ", ",
                                std::numeric_limits<int32_t>::max(), "]"));
  }
  return static_cast<int32_t>(*v);
}

// A key that llama.cpp reads with get_key_or_arr: one value for every layer, or one per layer.
absl::StatusOr<std::vector<int32_t>> PerLayerInt(const GgufFile& f, const std::string& key,
                                                 int32_t num_layers, int64_t min) {
  const GgufValue* v = f.Find(key);
  if (v == nullptr) return f.Error(absl::StrCat("metadata key ", key, " is missing"));
  std::vector<int64_t> raw;
  if (v->is_array()) {
    auto a = f.GetIntArray(key);
    if (!a.ok()) return a.status();
    if (static_cast<int64_t>(a->size()) != num_layers) {
      return f.Error(absl::StrCat("metadata ", key, " has ", a->size(), " entries for ", num_layers,
                                  " layers"));
    }
    raw = std::move(*a);
  } else {
    auto x = f.GetInt(key);
    if (!x.ok()) return x.status();
    raw.assign(num_layers, *x);
  }
  std::vector<int32_t> out;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] < min || raw[i] > std::numeric_limits<int32_t>::max()) {
      return f.Error(
          absl::StrCat("metadata ", key, "[", i, "] is ", raw[i], "; it must be >= ", min));
    }
    out.push_back(static_cast<int32_t>(raw[i]));
  }
  return out;
}

absl::StatusOr<float> FiniteFloat(const GgufFile& f, const std::string& key) {
  auto v = f.GetFloat(key);
  if (!v.ok()) return v.status();
  if (!std::isfinite(*v)) return f.Error(absl::StrCat("metadata ", key, " is not finite"));
  return static_cast<float>(*v);
}

// Decodes a tensor to fp32 (float types and every quantized type runtime/quant dequantizes,
// bit-identical to ggml).
absl::Status TensorToFloat(const GgufFile& f, const GgufTensor& t, float* out) {
  const quant::TypeTraits* traits = quant::FindTypeTraits(t.type);
  if (traits == nullptr || !traits->dequantizable) {
    return f.Error(absl::StrCat("tensor ", t.name, " has type ", GgmlTypeName(t.type),
                                ", which Tessera cannot decode"));
  }
  const int64_t cols = t.ne[0];
  const int64_t row_bytes = cols / traits->block_elems * traits->block_bytes;
  for (int64_t r = 0; r < t.num_rows(); ++r) {
    absl::Status s =
        quant::DequantizeRow(t.ggml_type(), t.data + r * row_bytes, out + r * cols, cols);
    if (!s.ok()) return f.Error(absl::StrCat("tensor ", t.name, ": ", s.message()));
  }
  return absl::OkStatus();
}

// The ggml shape [cols, rows] (ne order) of a [rows, cols] matrix, "[64, 512]" for messages.
std::string NeString(const std::vector<int64_t>& ne) {
  GgufTensor t;
  t.ne = ne;
  return t.ShapeString();
}

class GgufBinder {
 public:
  GgufBinder(const GgufFile& f, ModelWeights* w) : f_(f), w_(w) {}

  // The tensor `name` with ggml shape `ne`, or nullptr (and OK) when absent and optional.
  absl::StatusOr<const GgufTensor*> Get(const std::string& name, const std::vector<int64_t>& ne,
                                        bool required = true) {
    const GgufTensor* t = f_.FindTensor(name);
    if (t == nullptr) {
      if (!required) return nullptr;
      return f_.Error("tensor " + name + " is missing");
    }
    if (t->ne != ne) {
      return f_.Error(absl::StrCat("tensor ", name, " has shape ", t->ShapeString(),
                                   "; the metadata implies ", NeString(ne)));
    }
    used_.insert(name);
    w_->total_bytes += t->num_bytes;
    return t;
  }

  absl::Status Vector(const std::string& name, const std::vector<int64_t>& ne,
                      std::vector<float>* out) {
    auto t = Get(name, ne);
    if (!t.ok()) return t.status();
    out->resize((*t)->num_elements());
    return TensorToFloat(f_, **t, out->data());
  }

  // A [rows, cols] matrix (ggml ne [cols, rows]).
  absl::Status Matrix(const std::string& name, int64_t rows, int64_t cols, WeightMatrix* out,
                      bool required = true) {
    auto t = Get(name, {cols, rows}, required);
    if (!t.ok()) return t.status();
    if (*t == nullptr) return absl::OkStatus();
    const GgufTensor& v = **t;
    // Straight from the mapping in the file's own type (F32, F16, BF16 or quantized blocks).
    out->rows = rows;
    out->cols = cols;
    out->type = v.ggml_type();
    out->data = v.data;
    absl::Status s = out->Validate(name);
    if (!s.ok()) return f_.Error(std::string(s.message()));
    return absl::OkStatus();
  }

  // Every tensor in the file must have been bound (or consumed by the config, `also_used`).
  absl::Status CheckAllUsed(const std::set<std::string>& also_used, const std::string& what) {
    for (const GgufTensor& t : f_.tensors()) {
      if (used_.count(t.name) == 0 && also_used.count(t.name) == 0) {
        return f_.Error(absl::StrCat("tensor ", t.name, " ", t.ShapeString(),
                                     " is not part of the ", what,
                                     " Tessera implements; refusing rather than ignoring it"));
      }
    }
    return absl::OkStatus();
  }

 private:
  const GgufFile& f_;
  ModelWeights* w_;
  std::set<std::string> used_;
};

absl::Status TextConfigFromGguf(const GgufFile& f, ModelConfig* c) {
  auto arch = f.GetString("general.architecture");
  if (!arch.ok()) return arch.status();
  if (*arch != "gemma4") {
    return f.Error(absl::StrCat("general.architecture is '", std::string(*arch),
                                "'; Tessera serves 'gemma4' text models"));
  }
  const std::string a = "gemma4.";
  c->architecture = "gemma4";
  c->model_type = "gemma4_unified";
  TextConfig& x = c->text;
  TESSERA_ASSIGN_OR_RETURN(x.num_layers, Int32In(f, a + "block_count", 1));
  // Every layer has its own tensors: a count above the file's tensors is a lie (and would size
  // per-layer tables by it).
  if (static_cast<size_t>(x.num_layers) > f.tensors().size()) {
    return f.Error(absl::StrCat("metadata ", a, "block_count is ", x.num_layers,
                                " but the file has ", f.tensors().size(), " tensors"));
  }
  TESSERA_ASSIGN_OR_RETURN(x.hidden_size, Int32In(f, a + "embedding_length", 1));
  TESSERA_ASSIGN_OR_RETURN(std::vector<int32_t> ff,
                           PerLayerInt(f, a + "feed_forward_length", x.num_layers, 1));
  for (int32_t i = 1; i < x.num_layers; ++i) {
    if (ff[i] != ff[0]) {
      return f.Error(absl::StrCat("metadata ", a, "feed_forward_length differs between layers (",
                                  ff[0], " and ", ff[i], " at layer ", i,
                                  "); a per-layer MLP width (double-wide MLP) is not supported"));
    }
  }
  x.intermediate_size = ff[0];
  TESSERA_ASSIGN_OR_RETURN(std::vector<int32_t> heads,
                           PerLayerInt(f, a + "attention.head_count", x.num_layers, 1));
  for (int32_t i = 1; i < x.num_layers; ++i) {
    if (heads[i] != heads[0]) {
      return f.Error(absl::StrCat("metadata ", a, "attention.head_count differs between layers; ",
                                  "one query head count is supported"));
    }
  }
  x.num_heads = heads[0];
  TESSERA_ASSIGN_OR_RETURN(std::vector<int32_t> kv_heads,
                           PerLayerInt(f, a + "attention.head_count_kv", x.num_layers, 1));
  TESSERA_ASSIGN_OR_RETURN(int32_t head_dim_global, Int32In(f, a + "attention.key_length", 2));
  TESSERA_ASSIGN_OR_RETURN(int32_t head_dim_swa, Int32In(f, a + "attention.key_length_swa", 2));
  TESSERA_ASSIGN_OR_RETURN(int32_t v_global, Int32In(f, a + "attention.value_length", 2));
  TESSERA_ASSIGN_OR_RETURN(int32_t v_swa, Int32In(f, a + "attention.value_length_swa", 2));
  if (v_global != head_dim_global || v_swa != head_dim_swa) {
    return f.Error("Gemma 4 requires attention.value_length == key_length (and the _swa pair)");
  }
  TESSERA_ASSIGN_OR_RETURN(std::vector<bool> swa,
                           f.GetBoolArray(a + "attention.sliding_window_pattern"));
  if (static_cast<int32_t>(swa.size()) != x.num_layers) {
    return f.Error(absl::StrCat("metadata ", a, "attention.sliding_window_pattern has ", swa.size(),
                                " entries for ", x.num_layers, " layers"));
  }
  TESSERA_ASSIGN_OR_RETURN(x.sliding_window, Int32In(f, a + "attention.sliding_window", 1));
  TESSERA_ASSIGN_OR_RETURN(x.rms_norm_eps, FiniteFloat(f, a + "attention.layer_norm_rms_epsilon"));
  if (!(x.rms_norm_eps > 0.0f)) return f.Error("attention.layer_norm_rms_epsilon must be > 0");
  x.final_logit_softcapping = 0.0f;
  if (f.Has(a + "final_logit_softcapping")) {
    TESSERA_ASSIGN_OR_RETURN(x.final_logit_softcapping,
                             FiniteFloat(f, a + "final_logit_softcapping"));
    if (x.final_logit_softcapping < 0.0f) return f.Error("final_logit_softcapping must be >= 0");
  }
  if (f.Has(a + "attn_logit_softcapping")) {
    TESSERA_ASSIGN_OR_RETURN(float cap, FiniteFloat(f, a + "attn_logit_softcapping"));
    if (cap != 0.0f)
      return f.Error("attention logit softcapping is not supported (Gemma 4 has none)");
  }
  TESSERA_ASSIGN_OR_RETURN(x.max_position_embeddings, Int32In(f, a + "context_length", 1));
  // Features of other Gemma 4 variants that Tessera does not implement.
  for (const char* key : {"attention.shared_kv_layers", "embedding_length_per_layer_input",
                          "expert_count", "nextn_predict_layers"}) {
    if (f.Has(a + key)) {
      TESSERA_ASSIGN_OR_RETURN(int64_t v, f.GetInt(a + key));
      if (v != 0) {
        return f.Error(absl::StrCat("metadata ", a, key, " is ", v,
                                    "; Tessera supports only 0 (no shared KV layers, per-layer "
                                    "embeddings, experts or MTP layers)"));
      }
    }
  }
  if (f.Has(a + "rope.scaling.type")) {
    TESSERA_ASSIGN_OR_RETURN(std::string_view type, f.GetString(a + "rope.scaling.type"));
    if (type != "none") {
      return f.Error("RoPE scaling '" + std::string(type) + "' is not supported");
    }
  }
  if (f.Has(a + "rope.scaling.factor")) {
    TESSERA_ASSIGN_OR_RETURN(float factor, FiniteFloat(f, a + "rope.scaling.factor"));
    if (factor != 0.0f && factor != 1.0f) {
      return f.Error(absl::StrCat("RoPE scaling factor ", factor, " is not supported"));
    }
  }
  TESSERA_ASSIGN_OR_RETURN(float theta_global, FiniteFloat(f, a + "rope.freq_base"));
  float theta_swa = theta_global;
  if (f.Has(a + "rope.freq_base_swa")) {
    TESSERA_ASSIGN_OR_RETURN(theta_swa, FiniteFloat(f, a + "rope.freq_base_swa"));
  }
  if (!(theta_global > 0.0f) || !(theta_swa > 0.0f)) return f.Error("rope.freq_base must be > 0");
  int32_t rot_global = head_dim_global, rot_swa = head_dim_swa;
  if (f.Has(a + "rope.dimension_count")) {
    TESSERA_ASSIGN_OR_RETURN(rot_global, Int32In(f, a + "rope.dimension_count", 0));
  }
  if (f.Has(a + "rope.dimension_count_swa")) {
    TESSERA_ASSIGN_OR_RETURN(rot_swa, Int32In(f, a + "rope.dimension_count_swa", 0));
  }
  if (rot_global != head_dim_global || rot_swa != head_dim_swa) {
    return f.Error(absl::StrCat(
        "rope.dimension_count ", rot_global, " / _swa ", rot_swa, " differ from the head dims ",
        head_dim_global, " / ", head_dim_swa,
        ": RoPE over the first dims only is not supported (Gemma 4 rotates whole heads, with "
        "rope_freqs leaving pairs unrotated)"));
  }

  // The global layers' rotated pairs come from rope_freqs: a run of factors 1, then unrotated.
  bool any_global = false;
  for (bool s : swa) any_global = any_global || !s;
  int32_t global_pairs = head_dim_global / 2;
  if (any_global) {
    const GgufTensor* rf = f.FindTensor("rope_freqs.weight");
    if (rf == nullptr) {
      return f.Error("tensor rope_freqs.weight is missing (the global layers' RoPE factors)");
    }
    if (rf->ne != std::vector<int64_t>{head_dim_global / 2}) {
      return f.Error(absl::StrCat("tensor rope_freqs.weight has shape ", rf->ShapeString(),
                                  "; the global head_dim ", head_dim_global, " implies [",
                                  head_dim_global / 2, "]"));
    }
    std::vector<float> factors(head_dim_global / 2);
    TESSERA_RETURN_IF_ERROR(TensorToFloat(f, *rf, factors.data()));
    global_pairs = 0;
    while (global_pairs < static_cast<int32_t>(factors.size()) && factors[global_pairs] == 1.0f) {
      ++global_pairs;
    }
    for (size_t i = global_pairs; i < factors.size(); ++i) {
      if (!(factors[i] >= kUnrotatedFactor)) {
        return f.Error(absl::StrCat(
            "rope_freqs.weight[", i, "] is ", factors[i],
            "; Tessera supports factors of 1 (rotated) followed by factors >= 1e20 (unrotated, "
            "the converter writes 1e30)"));
      }
    }
  }

  for (int32_t i = 0; i < x.num_layers; ++i) {
    LayerConfig l;
    l.num_kv_heads = kv_heads[i];
    if (swa[i]) {
      l.type = LayerType::kSliding;
      l.head_dim = head_dim_swa;
      l.rope_theta = theta_swa;
      l.rope_pairs = head_dim_swa / 2;
      l.window = x.sliding_window;
    } else {
      l.type = LayerType::kGlobal;
      l.head_dim = head_dim_global;
      l.rope_theta = theta_global;
      l.rope_pairs = global_pairs;
    }
    // V from the K projection where the layer has no attn_v (llama.cpp: "if v_proj is not
    // present, use Kcur as Vcur").
    l.k_eq_v = f.FindTensor(absl::StrCat("blk.", i, ".attn_v.weight")) == nullptr;
    x.layers.push_back(l);
  }
  TESSERA_RETURN_IF_ERROR(ValidateTextLayers(x, f.path()));

  const GgufTensor* embd = f.FindTensor("token_embd.weight");
  if (embd == nullptr) return f.Error("tensor token_embd.weight is missing");
  if (embd->ne.size() != 2 || embd->ne[0] != x.hidden_size || embd->ne[1] < 1 ||
      embd->ne[1] > std::numeric_limits<int32_t>::max()) {
    return f.Error(absl::StrCat("tensor token_embd.weight has shape ", embd->ShapeString(),
                                "; expected [", x.hidden_size, ", vocab]"));
  }
  x.vocab_size = static_cast<int32_t>(embd->ne[1]);
  x.tie_word_embeddings = true;
  x.hidden_activation = "gelu_pytorch_tanh";

  // Special ids from the tokenizer metadata (none when the file carries no tokenizer).
  x.eos_token_ids.clear();
  const auto id_key = [&](const char* key, int32_t* out) -> absl::Status {
    const std::string k = std::string("tokenizer.ggml.") + key;
    if (!f.Has(k)) return absl::OkStatus();
    TESSERA_ASSIGN_OR_RETURN(*out, Int32In(f, k, 0));
    if (*out >= x.vocab_size) {
      return f.Error(
          absl::StrCat("metadata ", k, " is ", *out, ", beyond the vocabulary of ", x.vocab_size));
    }
    return absl::OkStatus();
  };
  TESSERA_RETURN_IF_ERROR(id_key("bos_token_id", &x.bos_token_id));
  TESSERA_RETURN_IF_ERROR(id_key("padding_token_id", &x.pad_token_id));
  for (const char* key : {"eos_token_id", "eot_token_id"}) {
    int32_t id = -1;
    TESSERA_RETURN_IF_ERROR(id_key(key, &id));
    if (id >= 0 &&
        std::find(x.eos_token_ids.begin(), x.eos_token_ids.end(), id) == x.eos_token_ids.end()) {
      x.eos_token_ids.push_back(id);
    }
  }
  if (f.Has("tokenizer.ggml.tokens")) {
    TESSERA_ASSIGN_OR_RETURN(const std::vector<std::string_view>* tokens,
                             f.GetStringArray("tokenizer.ggml.tokens"));
    if (static_cast<int64_t>(tokens->size()) != x.vocab_size) {
      return f.Error(absl::StrCat("tokenizer.ggml.tokens has ", tokens->size(),
                                  " tokens but token_embd.weight has ", x.vocab_size, " rows"));
    }
    for (const MediaToken& m : kMediaTokens) {
      for (size_t i = 0; i < tokens->size(); ++i) {
        if ((*tokens)[i] == m.text) {
          c->*m.id = static_cast<int32_t>(i);
          break;
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status MmprojConfigFromGguf(const GgufFile& m, ModelConfig* c) {
  auto arch = m.GetString("general.architecture");
  if (!arch.ok()) return arch.status();
  if (*arch != "clip") {
    return m.Error(absl::StrCat("general.architecture is '", std::string(*arch),
                                "'; an mmproj file has 'clip'"));
  }
  const auto projector = [&](const char* modality) -> absl::StatusOr<std::string> {
    const std::string key = absl::StrCat("clip.", modality, ".projector_type");
    if (m.Has(key)) {
      TESSERA_ASSIGN_OR_RETURN(std::string_view p, m.GetString(key));
      return std::string(p);
    }
    if (m.Has("clip.projector_type")) {
      TESSERA_ASSIGN_OR_RETURN(std::string_view p, m.GetString("clip.projector_type"));
      return std::string(p);
    }
    return m.Error("metadata " + key + " is missing");
  };
  const auto has = [&](const char* key) -> absl::StatusOr<bool> {
    if (!m.Has(key)) return false;
    return m.GetBool(key);
  };
  TESSERA_ASSIGN_OR_RETURN(bool vision, has("clip.has_vision_encoder"));
  TESSERA_ASSIGN_OR_RETURN(bool audio, has("clip.has_audio_encoder"));
  if (!vision && !audio) return m.Error("the mmproj has neither a vision nor an audio part");
  if (vision) {
    TESSERA_ASSIGN_OR_RETURN(std::string type, projector("vision"));
    if (type != "gemma4uv") {
      return m.Error("vision projector type '" + type +
                     "' is not supported; Tessera serves the encoder-free 'gemma4uv'");
    }
    for (const char* key : {"clip.vision.image_mean", "clip.vision.image_std"}) {
      if (!m.Has(key)) continue;
      TESSERA_ASSIGN_OR_RETURN(std::vector<double> v, m.GetFloatArray(key));
      const double want = std::string(key).find("mean") != std::string::npos ? 0.0 : 1.0;
      for (double x : v) {
        if (x != want) {
          return m.Error(absl::StrCat(
              "metadata ", key, " is not all ", want,
              ": Gemma 4's image preprocessing has no mean/std normalisation (MODEL.md)"));
        }
      }
    }
    const GgufTensor* pe = m.FindTensor("v.patch_embd.weight");
    const GgufTensor* pos = m.FindTensor("v.position_embd.weight");
    if (pe == nullptr || pos == nullptr) {
      return m.Error("tensors v.patch_embd.weight and v.position_embd.weight are required");
    }
    if (pe->ne.size() != 2 || pe->ne[1] < 1 || pe->ne[1] > (1 << 20)) {
      return m.Error("tensor v.patch_embd.weight has shape " + pe->ShapeString() +
                     "; expected [6912, mm_embed_dim]");
    }
    c->vision.present = true;
    c->vision.mm_embed_dim = static_cast<int32_t>(pe->ne[1]);
    if (pos->ne.size() != 3 || pos->ne[0] != pe->ne[1] || pos->ne[2] != 2 || pos->ne[1] < 1 ||
        pos->ne[1] > (1 << 20)) {
      return m.Error(absl::StrCat("tensor v.position_embd.weight has shape ", pos->ShapeString(),
                                  "; expected [", pe->ne[1], ", positions, 2]"));
    }
    c->vision.mm_posemb_size = static_cast<int32_t>(pos->ne[1]);
    // LayerNorm eps: llama.cpp's gemma4uv graph and PyTorch's nn.LayerNorm both use 1e-5 (the
    // converter's clip.vision.attention.layer_norm_epsilon is the pre-projection RMSNorm's).
    c->vision.layer_norm_eps = 1e-5f;
    c->vision.rms_norm_eps = 1e-6f;
    if (m.Has("clip.vision.attention.layer_norm_epsilon")) {
      TESSERA_ASSIGN_OR_RETURN(c->vision.rms_norm_eps,
                               FiniteFloat(m, "clip.vision.attention.layer_norm_epsilon"));
    }
  }
  if (audio) {
    TESSERA_ASSIGN_OR_RETURN(std::string type, projector("audio"));
    if (type != "gemma4ua") {
      return m.Error("audio projector type '" + type +
                     "' is not supported; Tessera serves the encoder-free 'gemma4ua'");
    }
    const GgufTensor* p = m.FindTensor("mm.a.input_projection.weight");
    if (p == nullptr) return m.Error("tensor mm.a.input_projection.weight is missing");
    if (p->ne.size() != 2 || p->ne[0] < 1 || p->ne[0] > (1 << 20)) {
      return m.Error("tensor mm.a.input_projection.weight has shape " + p->ShapeString());
    }
    c->audio.present = true;
    c->audio.audio_embed_dim = static_cast<int32_t>(p->ne[0]);
    // llama.cpp hard-codes 1e-6 for gemma4ua (clip.cpp): the converter's key is a default, not
    // the checkpoint's value.
    c->audio.rms_norm_eps = 1e-6f;
  }
  return absl::OkStatus();
}

}  // namespace

int64_t HwcColumn(int64_t i, int64_t p) {
  const int64_t ch = i / (p * p);
  const int64_t row = (i % (p * p)) / p;
  const int64_t col = i % p;
  return row * p * 3 + col * 3 + ch;
}

absl::StatusOr<ModelConfig> GgufModelConfig(const GgufFile& text, const GgufFile* mmproj) {
  ModelConfig c;
  TESSERA_RETURN_IF_ERROR(TextConfigFromGguf(text, &c));
  if (mmproj != nullptr) TESSERA_RETURN_IF_ERROR(MmprojConfigFromGguf(*mmproj, &c));
  return c;
}

absl::StatusOr<std::unique_ptr<ModelWeights>> BindGgufWeights(
    const ModelConfig& config, std::shared_ptr<const GgufFile> text,
    std::shared_ptr<const GgufFile> mmproj) {
  auto w = std::make_unique<ModelWeights>();
  const TextConfig& t = config.text;
  const int64_t H = t.hidden_size;
  GgufBinder b(*text, w.get());
  TESSERA_RETURN_IF_ERROR(b.Matrix("token_embd.weight", t.vocab_size, H, &w->embed_tokens));
  // llama.cpp computes in fp32 with exact constants (sqrt(hidden) and the RoPE frequencies), as
  // transformers does for an fp32 model: the file's storage type does not round them.
  w->bf16_constants = false;
  w->embed_scale = std::sqrt(static_cast<float>(H));
  TESSERA_RETURN_IF_ERROR(b.Vector("output_norm.weight", {H}, &w->final_norm));
  for (int32_t i = 0; i < t.num_layers; ++i) {
    const LayerConfig& lc = t.layers[i];
    const std::string p = absl::StrCat("blk.", i, ".");
    LayerWeights lw;
    const int64_t qd = static_cast<int64_t>(t.num_heads) * lc.head_dim;
    const int64_t kd = static_cast<int64_t>(lc.num_kv_heads) * lc.head_dim;
    TESSERA_RETURN_IF_ERROR(b.Matrix(p + "attn_q.weight", qd, H, &lw.q_proj));
    TESSERA_RETURN_IF_ERROR(b.Matrix(p + "attn_k.weight", kd, H, &lw.k_proj));
    if (!lc.k_eq_v) TESSERA_RETURN_IF_ERROR(b.Matrix(p + "attn_v.weight", kd, H, &lw.v_proj));
    TESSERA_RETURN_IF_ERROR(b.Matrix(p + "attn_output.weight", H, qd, &lw.o_proj));
    TESSERA_RETURN_IF_ERROR(b.Vector(p + "attn_q_norm.weight", {lc.head_dim}, &lw.q_norm));
    TESSERA_RETURN_IF_ERROR(b.Vector(p + "attn_k_norm.weight", {lc.head_dim}, &lw.k_norm));
    TESSERA_RETURN_IF_ERROR(b.Matrix(p + "ffn_gate.weight", t.intermediate_size, H, &lw.gate_proj));
    TESSERA_RETURN_IF_ERROR(b.Matrix(p + "ffn_up.weight", t.intermediate_size, H, &lw.up_proj));
    TESSERA_RETURN_IF_ERROR(b.Matrix(p + "ffn_down.weight", H, t.intermediate_size, &lw.down_proj));
    TESSERA_RETURN_IF_ERROR(b.Vector(p + "attn_norm.weight", {H}, &lw.input_norm));
    TESSERA_RETURN_IF_ERROR(
        b.Vector(p + "post_attention_norm.weight", {H}, &lw.post_attention_norm));
    TESSERA_RETURN_IF_ERROR(b.Vector(p + "ffn_norm.weight", {H}, &lw.pre_feedforward_norm));
    TESSERA_RETURN_IF_ERROR(b.Vector(p + "post_ffw_norm.weight", {H}, &lw.post_feedforward_norm));
    // Optional in llama.cpp (TENSOR_NOT_REQUIRED): no scale is a scale of 1.
    if (text->FindTensor(p + "layer_output_scale.weight") != nullptr) {
      std::vector<float> scalar;
      TESSERA_RETURN_IF_ERROR(b.Vector(p + "layer_output_scale.weight", {1}, &scalar));
      lw.layer_scalar = scalar[0];
    }
    w->layers.push_back(std::move(lw));
  }
  std::set<std::string> config_tensors;
  if (config.first_layer_of(LayerType::kGlobal) >= 0) config_tensors.insert("rope_freqs.weight");
  TESSERA_RETURN_IF_ERROR(b.CheckAllUsed(config_tensors, "Gemma 4 text model"));

  if (mmproj != nullptr && (config.vision.present || config.audio.present)) {
    GgufBinder m(*mmproj, w.get());
    if (config.vision.present) {
      const VisionConfig& vc = config.vision;
      const int64_t D = vc.mm_embed_dim;
      constexpr int64_t kPatch = 48;
      constexpr int64_t kCols = kPatch * kPatch * 3;
      VisionWeights& v = w->vision;
      // patch_ln1 and the patch matrix's columns back from CHW (ggml's im2col) to HWC.
      std::vector<float> ln1w, ln1b;
      TESSERA_RETURN_IF_ERROR(m.Vector("v.patch_norm.1.weight", {kCols}, &ln1w));
      TESSERA_RETURN_IF_ERROR(m.Vector("v.patch_norm.1.bias", {kCols}, &ln1b));
      v.ln1_weight.resize(kCols);
      v.ln1_bias.resize(kCols);
      for (int64_t i = 0; i < kCols; ++i) {
        v.ln1_weight[HwcColumn(i, kPatch)] = ln1w[i];
        v.ln1_bias[HwcColumn(i, kPatch)] = ln1b[i];
      }
      TESSERA_ASSIGN_OR_RETURN(const GgufTensor* pe, m.Get("v.patch_embd.weight", {kCols, D}));
      std::vector<float> chw(D * kCols);
      TESSERA_RETURN_IF_ERROR(TensorToFloat(*mmproj, *pe, chw.data()));
      std::unique_ptr<float[]> hwc(new float[D * kCols]);
      for (int64_t r = 0; r < D; ++r) {
        for (int64_t i = 0; i < kCols; ++i) {
          hwc[r * kCols + HwcColumn(i, kPatch)] = chw[r * kCols + i];
        }
      }
      v.patch_dense.type = WeightMatrix::Type::kF32;
      v.patch_dense.rows = D;
      v.patch_dense.cols = kCols;
      v.patch_dense.data = hwc.get();
      w->owned.push_back(std::move(hwc));
      TESSERA_RETURN_IF_ERROR(m.Vector("v.patch_embd.bias", {D}, &v.patch_dense_bias));
      TESSERA_RETURN_IF_ERROR(m.Vector("v.patch_norm.2.weight", {D}, &v.ln2_weight));
      TESSERA_RETURN_IF_ERROR(m.Vector("v.patch_norm.2.bias", {D}, &v.ln2_bias));
      // [2, P, D] in the file (ne [D, P, 2]); [P, 2, D] in the checkpoint.
      const int64_t P = vc.mm_posemb_size;
      std::vector<float> pos;
      TESSERA_RETURN_IF_ERROR(m.Vector("v.position_embd.weight", {D, P, 2}, &pos));
      v.pos_embedding.resize(P * 2 * D);
      for (int64_t xy = 0; xy < 2; ++xy) {
        for (int64_t p = 0; p < P; ++p) {
          std::memcpy(&v.pos_embedding[(p * 2 + xy) * D], &pos[(xy * P + p) * D], D * 4);
        }
      }
      TESSERA_RETURN_IF_ERROR(m.Vector("v.patch_norm.3.weight", {D}, &v.pos_norm_weight));
      TESSERA_RETURN_IF_ERROR(m.Vector("v.patch_norm.3.bias", {D}, &v.pos_norm_bias));
      TESSERA_RETURN_IF_ERROR(m.Matrix("mm.input_projection.weight", H, D, &v.projection));
      w->has_vision = true;
    }
    if (config.audio.present) {
      TESSERA_RETURN_IF_ERROR(m.Matrix("mm.a.input_projection.weight", H,
                                       config.audio.audio_embed_dim, &w->audio.projection));
      w->has_audio = true;
    }
    TESSERA_RETURN_IF_ERROR(m.CheckAllUsed({}, "Gemma 4 multimodal projector"));
  }
  w->gguf = std::move(text);
  w->gguf_mmproj = std::move(mmproj);
  return w;
}

}  // namespace tessera::runtime
