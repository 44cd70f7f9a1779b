#include "runtime/model/model_config.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace tessera::runtime {
namespace {

using json = nlohmann::json;

// Field readers that name the field on error. `path` is the dotted prefix ("text_config").
class Reader {
 public:
  Reader(const json& obj, std::string path) : obj_(obj), path_(std::move(path)) {}

  std::string Name(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  bool Has(const std::string& key) const { return obj_.contains(key) && !obj_[key].is_null(); }
  const json& Get(const std::string& key) const { return obj_[key]; }

  absl::Status Int(const std::string& key, int32_t* out, bool required = true,
                   int64_t min = 0) const {
    if (!Has(key)) {
      return required ? absl::InvalidArgumentError("config.json: missing field " + Name(key))
                      : absl::OkStatus();
    }
    const json& v = obj_[key];
    if (!v.is_number_integer() || v.get<int64_t>() < min || v.get<int64_t>() > INT32_MAX) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config.json: field ", Name(key), " must be an integer >= ", min, ", got ", v.dump()));
    }
    *out = static_cast<int32_t>(v.get<int64_t>());
    return absl::OkStatus();
  }
  absl::Status Float(const std::string& key, float* out, bool required = true) const {
    if (!Has(key)) {
      return required ? absl::InvalidArgumentError("config.json: missing field " + Name(key))
                      : absl::OkStatus();
    }
    const json& v = obj_[key];
    if (!v.is_number() || !std::isfinite(v.get<double>())) {
      return absl::InvalidArgumentError("config.json: field " + Name(key) +
                                        " must be a number, got " + v.dump());
    }
    *out = v.get<float>();
    return absl::OkStatus();
  }
  absl::Status Bool(const std::string& key, bool* out) const {
    if (!Has(key)) return absl::OkStatus();
    if (!obj_[key].is_boolean()) {
      return absl::InvalidArgumentError("config.json: field " + Name(key) + " must be a boolean");
    }
    *out = obj_[key].get<bool>();
    return absl::OkStatus();
  }
  absl::Status String(const std::string& key, std::string* out, bool required = true) const {
    if (!Has(key)) {
      return required ? absl::InvalidArgumentError("config.json: missing field " + Name(key))
                      : absl::OkStatus();
    }
    if (!obj_[key].is_string()) {
      return absl::InvalidArgumentError("config.json: field " + Name(key) + " must be a string");
    }
    *out = obj_[key].get<std::string>();
    return absl::OkStatus();
  }

 private:
  const json& obj_;
  std::string path_;
};

absl::Status ParseRope(const json& rope_parameters, const std::string& type_key, int32_t head_dim,
                       LayerConfig* layer) {
  const std::string path = "text_config.rope_parameters." + type_key;
  if (!rope_parameters.contains(type_key) || !rope_parameters[type_key].is_object()) {
    return absl::InvalidArgumentError("config.json: missing field " + path);
  }
  Reader r(rope_parameters[type_key], path);
  TESSERA_RETURN_IF_ERROR(r.Float("rope_theta", &layer->rope_theta));
  std::string rope_type = "default";
  TESSERA_RETURN_IF_ERROR(r.String("rope_type", &rope_type, /*required=*/false));
  if (rope_type == "default") {
    layer->rope_pairs = head_dim / 2;
  } else if (rope_type == "proportional") {
    float factor = 1.0f;
    TESSERA_RETURN_IF_ERROR(r.Float("partial_rotary_factor", &factor, /*required=*/false));
    if (!(factor > 0.0f && factor <= 1.0f)) {
      return absl::InvalidArgumentError("config.json: " + path +
                                        ".partial_rotary_factor must be in (0, 1]");
    }
    // As transformers: int(partial_rotary_factor * head_dim // 2).
    layer->rope_pairs = static_cast<int32_t>(factor * static_cast<float>(head_dim / 2));
  } else {
    return absl::InvalidArgumentError("config.json: " + path + ".rope_type '" + rope_type +
                                      "' is not supported (default, proportional)");
  }
  return absl::OkStatus();
}

}  // namespace

int32_t ModelConfig::num_layers_of(LayerType type) const {
  int32_t n = 0;
  for (const auto& l : text.layers) n += l.type == type;
  return n;
}

int32_t ModelConfig::first_layer_of(LayerType type) const {
  for (size_t i = 0; i < text.layers.size(); ++i) {
    if (text.layers[i].type == type) return static_cast<int32_t>(i);
  }
  return -1;
}

absl::Status ValidateTextLayers(const TextConfig& text, const std::string& source) {
  if (static_cast<int32_t>(text.layers.size()) != text.num_layers || text.num_layers < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", text.layers.size(), " layers resolved for ", text.num_layers));
  }
  for (size_t i = 0; i < text.layers.size(); ++i) {
    const LayerConfig& l = text.layers[i];
    if (l.head_dim < 2 || l.head_dim % 2 != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": layer ", i, " head_dim ", l.head_dim, " must be even"));
    }
    if (l.num_kv_heads < 1 || text.num_heads % l.num_kv_heads != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": layer ", i, ": num_attention_heads ", text.num_heads,
                       " is not a multiple of its ", l.num_kv_heads, " KV heads"));
    }
    if (l.rope_pairs < 0 || l.rope_pairs > l.head_dim / 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": layer ", i, " rotates ", l.rope_pairs, " RoPE pairs of ", l.head_dim / 2));
    }
  }
  // Every layer of one type must share one KV shape: each type is one KV group with one pool.
  for (LayerType lt : {LayerType::kSliding, LayerType::kGlobal}) {
    int32_t first = -1;
    for (size_t i = 0; i < text.layers.size(); ++i) {
      const LayerConfig& l = text.layers[i];
      if (l.type != lt) continue;
      if (first < 0) {
        first = static_cast<int32_t>(i);
        continue;
      }
      if (l.head_dim != text.layers[first].head_dim ||
          l.num_kv_heads != text.layers[first].num_kv_heads) {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ": layer ", i, " has a KV shape different from layer ", first,
                         " of the same type; one KV shape per layer type is supported"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text) {
  json root = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError("config.json is not a JSON object");
  }
  ModelConfig c;
  Reader top(root, "");
  TESSERA_RETURN_IF_ERROR(top.String("model_type", &c.model_type));
  if (c.model_type != "gemma4_unified") {
    return absl::InvalidArgumentError("config.json: model_type '" + c.model_type +
                                      "' is not supported (expected gemma4_unified)");
  }
  if (top.Has("architectures")) {
    const json& a = root["architectures"];
    if (!a.is_array() || a.empty() || !a[0].is_string()) {
      return absl::InvalidArgumentError("config.json: field architectures must be a list of names");
    }
    c.architecture = a[0].get<std::string>();
    if (c.architecture.rfind("Gemma4Unified", 0) != 0) {
      return absl::InvalidArgumentError("config.json: architecture '" + c.architecture +
                                        "' is not supported (expected Gemma4Unified*)");
    }
  }
  TESSERA_RETURN_IF_ERROR(top.String("dtype", &c.dtype, /*required=*/false));
  if (c.dtype.empty())
    TESSERA_RETURN_IF_ERROR(top.String("torch_dtype", &c.dtype, /*required=*/false));
  TESSERA_RETURN_IF_ERROR(top.Int("image_token_id", &c.image_token_id, false));
  TESSERA_RETURN_IF_ERROR(top.Int("boi_token_id", &c.boi_token_id, false));
  TESSERA_RETURN_IF_ERROR(top.Int("eoi_token_id", &c.eoi_token_id, false));
  TESSERA_RETURN_IF_ERROR(top.Int("audio_token_id", &c.audio_token_id, false));
  TESSERA_RETURN_IF_ERROR(top.Int("boa_token_id", &c.boa_token_id, false));
  // transformers spells it eoa_token_index in this family; accept either.
  TESSERA_RETURN_IF_ERROR(top.Int("eoa_token_id", &c.eoa_token_id, false));
  TESSERA_RETURN_IF_ERROR(top.Int("eoa_token_index", &c.eoa_token_id, false));
  TESSERA_RETURN_IF_ERROR(top.Int("video_token_id", &c.video_token_id, false));

  if (!top.Has("text_config") || !root["text_config"].is_object()) {
    return absl::InvalidArgumentError("config.json: missing field text_config");
  }
  const json& tj = root["text_config"];
  Reader t(tj, "text_config");
  TextConfig& x = c.text;
  TESSERA_RETURN_IF_ERROR(t.Int("vocab_size", &x.vocab_size, true, 1));
  TESSERA_RETURN_IF_ERROR(t.Int("hidden_size", &x.hidden_size, true, 1));
  TESSERA_RETURN_IF_ERROR(t.Int("intermediate_size", &x.intermediate_size, true, 1));
  TESSERA_RETURN_IF_ERROR(t.Int("num_hidden_layers", &x.num_layers, true, 1));
  TESSERA_RETURN_IF_ERROR(t.Int("num_attention_heads", &x.num_heads, true, 1));
  int32_t head_dim = 0, kv_heads = 0;
  TESSERA_RETURN_IF_ERROR(t.Int("head_dim", &head_dim, true, 2));
  TESSERA_RETURN_IF_ERROR(t.Int("num_key_value_heads", &kv_heads, true, 1));
  int32_t global_head_dim = head_dim, global_kv_heads = kv_heads;
  TESSERA_RETURN_IF_ERROR(t.Int("global_head_dim", &global_head_dim, false, 2));
  TESSERA_RETURN_IF_ERROR(t.Int("num_global_key_value_heads", &global_kv_heads, false, 1));
  TESSERA_RETURN_IF_ERROR(t.Float("rms_norm_eps", &x.rms_norm_eps, false));
  TESSERA_RETURN_IF_ERROR(t.Float("final_logit_softcapping", &x.final_logit_softcapping, false));
  TESSERA_RETURN_IF_ERROR(t.Int("sliding_window", &x.sliding_window, true, 1));
  TESSERA_RETURN_IF_ERROR(t.Int("max_position_embeddings", &x.max_position_embeddings, false));
  TESSERA_RETURN_IF_ERROR(t.Bool("tie_word_embeddings", &x.tie_word_embeddings));
  TESSERA_RETURN_IF_ERROR(top.Bool("tie_word_embeddings", &x.tie_word_embeddings));
  if (!x.tie_word_embeddings) {
    return absl::InvalidArgumentError(
        "config.json: tie_word_embeddings=false is not supported (Gemma 4 ties the output head)");
  }
  x.hidden_activation = "gelu_pytorch_tanh";
  TESSERA_RETURN_IF_ERROR(t.String("hidden_activation", &x.hidden_activation, false));
  if (x.hidden_activation != "gelu_pytorch_tanh") {
    return absl::InvalidArgumentError("config.json: text_config.hidden_activation '" +
                                      x.hidden_activation +
                                      "' is not supported (gelu_pytorch_tanh)");
  }
  bool double_wide = false;
  TESSERA_RETURN_IF_ERROR(t.Bool("use_double_wide_mlp", &double_wide));
  if (double_wide) {
    return absl::InvalidArgumentError(
        "config.json: text_config.use_double_wide_mlp=true is not supported");
  }
  int32_t shared_kv = 0;
  TESSERA_RETURN_IF_ERROR(t.Int("num_kv_shared_layers", &shared_kv, false));
  if (shared_kv != 0) {
    return absl::InvalidArgumentError(
        "config.json: text_config.num_kv_shared_layers != 0 is not supported");
  }
  TESSERA_RETURN_IF_ERROR(t.Int("pad_token_id", &x.pad_token_id, false));
  TESSERA_RETURN_IF_ERROR(t.Int("bos_token_id", &x.bos_token_id, false));
  if (t.Has("eos_token_id")) {
    const json& e = tj["eos_token_id"];
    if (e.is_number_integer()) {
      x.eos_token_ids.push_back(e.get<int32_t>());
    } else if (e.is_array()) {
      for (const json& v : e) {
        if (!v.is_number_integer()) {
          return absl::InvalidArgumentError("config.json: text_config.eos_token_id must be ints");
        }
        x.eos_token_ids.push_back(v.get<int32_t>());
      }
    } else {
      return absl::InvalidArgumentError("config.json: text_config.eos_token_id must be ints");
    }
  }
  bool k_eq_v = false;
  TESSERA_RETURN_IF_ERROR(t.Bool("attention_k_eq_v", &k_eq_v));

  if (!t.Has("layer_types") || !tj["layer_types"].is_array()) {
    return absl::InvalidArgumentError("config.json: missing field text_config.layer_types");
  }
  const json& types = tj["layer_types"];
  if (static_cast<int32_t>(types.size()) != x.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: text_config.layer_types has ", types.size(),
                     " entries but num_hidden_layers is ", x.num_layers));
  }
  if (!t.Has("rope_parameters") || !tj["rope_parameters"].is_object()) {
    return absl::InvalidArgumentError("config.json: missing field text_config.rope_parameters");
  }
  const json& rope = tj["rope_parameters"];
  // per_layer_config is keyed by layer index as transformers writes it: "5" in a 6-layer config,
  // "05" and "11" in a 12-layer one (zero-padded to the width of the layer count). Every key must
  // be a layer index in range; a key naming no layer would otherwise be ignored silently and the
  // layer it meant would load with the wrong shape.
  std::vector<const json*> per_layer(x.num_layers, nullptr);
  std::vector<std::string> per_layer_key(x.num_layers);
  if (t.Has("per_layer_config")) {
    const json& plc = tj["per_layer_config"];
    if (!plc.is_object()) {
      return absl::InvalidArgumentError(
          "config.json: text_config.per_layer_config must be an object keyed by layer index");
    }
    for (const auto& [key, value] : plc.items()) {
      int64_t index = 0;
      bool digits = !key.empty() && key.size() <= 9;
      for (char ch : key) {
        if (ch < '0' || ch > '9') {
          digits = false;
          break;
        }
        index = index * 10 + (ch - '0');
      }
      if (!digits) {
        return absl::InvalidArgumentError("config.json: text_config.per_layer_config key '" + key +
                                          "' is not a layer index");
      }
      if (index >= x.num_layers) {
        return absl::InvalidArgumentError(
            absl::StrCat("config.json: text_config.per_layer_config key '", key, "' is layer ",
                         index, ", out of range for num_hidden_layers ", x.num_layers));
      }
      if (per_layer[index] != nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("config.json: text_config.per_layer_config keys '", per_layer_key[index],
                         "' and '", key, "' both name layer ", index));
      }
      per_layer[index] = &value;
      per_layer_key[index] = key;
    }
  }
  for (int32_t i = 0; i < x.num_layers; ++i) {
    LayerConfig l;
    const std::string name = absl::StrCat("text_config.layer_types[", i, "]");
    if (!types[i].is_string())
      return absl::InvalidArgumentError("config.json: " + name + " must be a string");
    const std::string type = types[i].get<std::string>();
    if (type == "sliding_attention") {
      l.type = LayerType::kSliding;
      l.head_dim = head_dim;
      l.num_kv_heads = kv_heads;
      l.window = x.sliding_window;
    } else if (type == "full_attention") {
      l.type = LayerType::kGlobal;
      l.head_dim = global_head_dim;
      l.num_kv_heads = global_kv_heads;
      l.k_eq_v = k_eq_v;
    } else {
      return absl::InvalidArgumentError("config.json: " + name + " '" + type +
                                        "' is not supported (sliding_attention, full_attention)");
    }
    if (per_layer[i] != nullptr) {
      const std::string& key = per_layer_key[i];
      const json& o = *per_layer[i];
      if (!o.is_object()) {
        return absl::InvalidArgumentError("config.json: text_config.per_layer_config." + key +
                                          " must be an object");
      }
      Reader pr(o, "text_config.per_layer_config." + key);
      TESSERA_RETURN_IF_ERROR(pr.Int("head_dim", &l.head_dim, false, 2));
      TESSERA_RETURN_IF_ERROR(pr.Int("num_key_value_heads", &l.num_kv_heads, false, 1));
      TESSERA_RETURN_IF_ERROR(pr.Int("global_head_dim", &l.head_dim, false, 2));
      TESSERA_RETURN_IF_ERROR(pr.Int("num_global_key_value_heads", &l.num_kv_heads, false, 1));
    }
    if (l.head_dim % 2 != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.json: layer ", i, " head_dim ", l.head_dim, " must be even"));
    }
    TESSERA_RETURN_IF_ERROR(ParseRope(rope, type, l.head_dim, &l));
    x.layers.push_back(l);
  }
  TESSERA_RETURN_IF_ERROR(ValidateTextLayers(x, "config.json"));

  if (top.Has("vision_config")) {
    const json& vj = root["vision_config"];
    if (!vj.is_object())
      return absl::InvalidArgumentError("config.json: vision_config must be an object");
    Reader v(vj, "vision_config");
    c.vision.present = true;
    TESSERA_RETURN_IF_ERROR(v.Int("mm_embed_dim", &c.vision.mm_embed_dim, true, 1));
    TESSERA_RETURN_IF_ERROR(v.Int("mm_posemb_size", &c.vision.mm_posemb_size, true, 1));
    TESSERA_RETURN_IF_ERROR(v.Float("rms_norm_eps", &c.vision.rms_norm_eps, false));
    TESSERA_RETURN_IF_ERROR(v.Float("layer_norm_eps", &c.vision.layer_norm_eps, false));
  }
  if (top.Has("audio_config")) {
    const json& aj = root["audio_config"];
    if (!aj.is_object())
      return absl::InvalidArgumentError("config.json: audio_config must be an object");
    Reader a(aj, "audio_config");
    c.audio.present = true;
    TESSERA_RETURN_IF_ERROR(a.Int("audio_embed_dim", &c.audio.audio_embed_dim, false, 1));
    TESSERA_RETURN_IF_ERROR(a.Float("rms_norm_eps", &c.audio.rms_norm_eps, false));
  }
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir) {
  const std::string path = dir + "/config.json";
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  return ParseModelConfig(text.str());
}

}  // namespace tessera::runtime
