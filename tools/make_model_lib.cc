#include "tools/make_model_lib.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/bf16.h"
#include "nlohmann/json.hpp"

namespace tessera::tools {
namespace {

using json = nlohmann::json;

constexpr int32_t kPatchValues = 48 * 48 * 3;  // One flattened 48x48 RGB patch.
constexpr int32_t kAudioFrame = 640;           // Samples per 40 ms frame at 16 kHz.

// SplitMix64: a small, fast generator with a 64-bit state; good enough for random weights and
// identical on every platform (std::normal_distribution is not).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t state) : state_(state) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1): never 0, so log() below is finite.
  double Uniform() { return (static_cast<double>(Next() >> 11) + 0.5) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

// FNV-1a of the tensor name, mixed with the seed: one independent stream per tensor.
uint64_t StreamKey(uint64_t seed, const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  SplitMix64 mix(seed ^ (h * 0x9e3779b97f4a7c15ull));
  return mix.Next();
}

// Fills `out` with N(0, 1) by Box-Muller (both values of each pair used).
void FillNormal(SplitMix64& rng, std::vector<float>& out) {
  const double two_pi = 6.283185307179586;
  for (size_t i = 0; i < out.size(); i += 2) {
    const double r = std::sqrt(-2.0 * std::log(rng.Uniform()));
    const double theta = two_pi * rng.Uniform();
    out[i] = static_cast<float>(r * std::cos(theta));
    if (i + 1 < out.size()) out[i + 1] = static_cast<float>(r * std::sin(theta));
  }
}

bool Contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const char* DTypeName(WeightDType dtype) { return dtype == WeightDType::kBF16 ? "BF16" : "F32"; }
size_t DTypeBytes(WeightDType dtype) { return dtype == WeightDType::kBF16 ? 2 : 4; }

int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

json LabelMaps(json* label2id) {
  json id2label = {{"0", "LABEL_0"}, {"1", "LABEL_1"}};
  *label2id = {{"LABEL_0", 0}, {"LABEL_1", 1}};
  return id2label;
}

// The fields transformers writes for every sub-config (PretrainedConfig defaults).
json SubConfigCommon(const char* model_type) {
  json c;
  json label2id;
  c["_name_or_path"] = "";
  c["architectures"] = nullptr;
  c["chunk_size_feed_forward"] = 0;
  c["dtype"] = nullptr;
  c["id2label"] = LabelMaps(&label2id);
  c["initializer_range"] = 0.02;
  c["is_encoder_decoder"] = false;
  c["label2id"] = label2id;
  c["model_type"] = model_type;
  c["output_attentions"] = false;
  c["output_hidden_states"] = false;
  c["problem_type"] = nullptr;
  c["return_dict"] = true;
  c["rms_norm_eps"] = 1e-06;
  return c;
}

json EosJson(const SpecialIds& ids) {
  if (ids.eos_ids.size() == 1) return ids.eos_ids[0];
  return json(ids.eos_ids);
}

absl::Status ReadInt(const json& j, const char* key, int32_t* out) {
  if (!j.contains(key)) return absl::OkStatus();
  const json& v = j[key];
  if (!v.is_number_integer()) {
    return absl::InvalidArgumentError(absl::StrCat("spec: \"", key, "\" must be an integer"));
  }
  const int64_t x = v.get<int64_t>();
  if (x < 0 || x > (int64_t{1} << 31) - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec: \"", key, "\" is ", x, "; it must be in [0, 2^31)"));
  }
  *out = static_cast<int32_t>(x);
  return absl::OkStatus();
}

}  // namespace

SpecialIds SmallVocabIds() { return SpecialIds{}; }

SpecialIds Gemma4Ids() {
  SpecialIds ids;
  ids.image = 258880;
  ids.boi = 255999;
  ids.eoi = 258882;
  ids.audio = 258881;
  ids.boa = 256000;
  ids.eoa = 258883;
  ids.video = 258884;
  ids.eos_ids = {1, 106};
  return ids;
}

bool ModelSpec::IsGlobal(int32_t layer) const {
  if (!global_layers.empty()) {
    return std::find(global_layers.begin(), global_layers.end(), layer) != global_layers.end();
  }
  return global_every > 0 && (layer + 1) % global_every == 0;
}

absl::StatusOr<ModelSpec> ParseModelSpec(const std::string& json_text, const ModelSpec& base) {
  const json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("spec: not a JSON object");
  }
  static const std::set<std::string> kKeys = {"num_layers",
                                              "global_every",
                                              "global_layers",
                                              "hidden_size",
                                              "intermediate_size",
                                              "num_heads",
                                              "num_kv_heads",
                                              "head_dim",
                                              "global_head_dim",
                                              "global_kv_heads",
                                              "sliding_window",
                                              "vocab_size",
                                              "mm_embed_dim",
                                              "mm_posemb_size",
                                              "max_position_embeddings",
                                              "seed",
                                              "dtype",
                                              "special_ids"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!kKeys.count(it.key())) {
      return absl::InvalidArgumentError(absl::StrCat("spec: unknown key \"", it.key(),
                                                     "\"; known: ", absl::StrJoin(kKeys, ", ")));
    }
  }
  ModelSpec s = base;
  struct Field {
    const char* key;
    int32_t* value;
  };
  const Field fields[] = {{"num_layers", &s.num_layers},
                          {"global_every", &s.global_every},
                          {"hidden_size", &s.hidden_size},
                          {"intermediate_size", &s.intermediate_size},
                          {"num_heads", &s.num_heads},
                          {"num_kv_heads", &s.num_kv_heads},
                          {"head_dim", &s.head_dim},
                          {"global_head_dim", &s.global_head_dim},
                          {"global_kv_heads", &s.global_kv_heads},
                          {"sliding_window", &s.sliding_window},
                          {"vocab_size", &s.vocab_size},
                          {"mm_embed_dim", &s.mm_embed_dim},
                          {"mm_posemb_size", &s.mm_posemb_size},
                          {"max_position_embeddings", &s.max_position_embeddings}};
  for (const Field& f : fields) {
    if (absl::Status st = ReadInt(j, f.key, f.value); !st.ok()) return st;
  }
  if (j.contains("global_layers")) {
    const json& g = j["global_layers"];
    if (!g.is_array()) return absl::InvalidArgumentError("spec: \"global_layers\" must be a list");
    s.global_layers.clear();
    for (const json& v : g) {
      if (!v.is_number_integer()) {
        return absl::InvalidArgumentError("spec: \"global_layers\" must be a list of integers");
      }
      s.global_layers.push_back(v.get<int32_t>());
    }
  }
  if (j.contains("seed")) {
    if (!j["seed"].is_number_unsigned()) {
      return absl::InvalidArgumentError("spec: \"seed\" must be a non-negative integer");
    }
    s.seed = j["seed"].get<uint64_t>();
  }
  if (j.contains("dtype")) {
    const json& d = j["dtype"];
    if (d == "bf16" || d == "bfloat16") {
      s.dtype = WeightDType::kBF16;
    } else if (d == "f32" || d == "float32") {
      s.dtype = WeightDType::kF32;
    } else {
      return absl::InvalidArgumentError("spec: \"dtype\" must be \"bf16\" or \"f32\"");
    }
  }
  // The ids follow the vocabulary unless chosen: a spec that changes vocab_size gets the ids
  // that fit it; one that changes neither keeps the base's.
  if (!j.contains("special_ids") && !j.contains("vocab_size")) return s;
  std::string ids = s.vocab_size == 262144 ? "gemma4" : "small";
  if (j.contains("special_ids")) {
    if (!j["special_ids"].is_string()) {
      return absl::InvalidArgumentError("spec: \"special_ids\" must be \"small\" or \"gemma4\"");
    }
    ids = j["special_ids"].get<std::string>();
  }
  if (ids == "gemma4") {
    s.ids = Gemma4Ids();
  } else if (ids == "small") {
    s.ids = SmallVocabIds();
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("spec: \"special_ids\" is \"", ids, "\"; it must be \"small\" or \"gemma4\""));
  }
  return s;
}

absl::Status ValidateModelSpec(const ModelSpec& s) {
  const std::pair<const char*, int32_t> positive[] = {
      {"num_layers", s.num_layers},
      {"hidden_size", s.hidden_size},
      {"intermediate_size", s.intermediate_size},
      {"num_heads", s.num_heads},
      {"num_kv_heads", s.num_kv_heads},
      {"head_dim", s.head_dim},
      {"global_head_dim", s.global_head_dim},
      {"global_kv_heads", s.global_kv_heads},
      {"sliding_window", s.sliding_window},
      {"vocab_size", s.vocab_size},
      {"mm_embed_dim", s.mm_embed_dim},
      {"mm_posemb_size", s.mm_posemb_size},
      {"max_position_embeddings", s.max_position_embeddings}};
  for (const auto& [name, value] : positive) {
    if (value <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec: ", name, " is ", value, "; it must be > 0"));
    }
  }
  if (s.num_heads % s.num_kv_heads != 0 || s.num_heads % s.global_kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec: num_heads ", s.num_heads, " must be a multiple of num_kv_heads ",
                     s.num_kv_heads, " and of global_kv_heads ", s.global_kv_heads));
  }
  if (s.head_dim % 2 != 0 || s.global_head_dim % 8 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec: head_dim ", s.head_dim, " must be even and global_head_dim ",
                     s.global_head_dim, " a multiple of 8 (a quarter of its RoPE pairs rotate)"));
  }
  for (int32_t layer : s.global_layers) {
    if (layer < 0 || layer >= s.num_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec: global layer ", layer, " is outside [0, ", s.num_layers, ")"));
    }
  }
  if (s.global_every < 0) return absl::InvalidArgumentError("spec: global_every must be >= 0");
  const std::pair<const char*, int32_t> ids[] = {
      {"pad", s.ids.pad}, {"eos", s.ids.eos},    {"bos", s.ids.bos},     {"image", s.ids.image},
      {"boi", s.ids.boi}, {"eoi", s.ids.eoi},    {"audio", s.ids.audio}, {"boa", s.ids.boa},
      {"eoa", s.ids.eoa}, {"video", s.ids.video}};
  for (const auto& [name, id] : ids) {
    if (id < 0 || id >= s.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "spec: special id ", name, " = ", id, " is outside the vocabulary of ", s.vocab_size,
          "; the small ids need vocab_size >= 507, the gemma4 ids 262144"));
    }
  }
  for (int32_t id : s.ids.eos_ids) {
    if (id < 0 || id >= s.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec: eos id ", id, " is outside the vocabulary of ", s.vocab_size));
    }
  }
  return absl::OkStatus();
}

std::string ConfigJson(const ModelSpec& s) {
  json text;
  text["attention_bias"] = false;
  text["attention_dropout"] = 0.0;
  text["attention_k_eq_v"] = true;
  text["bos_token_id"] = s.ids.bos;
  text["eos_token_id"] = EosJson(s.ids);
  text["final_logit_softcapping"] = 30.0;
  text["head_dim"] = s.head_dim;
  text["hidden_activation"] = "gelu_pytorch_tanh";
  text["hidden_size"] = s.hidden_size;
  text["initializer_range"] = 0.02;
  text["intermediate_size"] = s.intermediate_size;
  json layer_types = json::array();
  json per_layer = json::object();
  for (int32_t i = 0; i < s.num_layers; ++i) {
    const bool global = s.IsGlobal(i);
    layer_types.push_back(global ? "full_attention" : "sliding_attention");
    if (global) {
      per_layer[std::to_string(i)] = {{"head_dim", s.global_head_dim},
                                      {"num_key_value_heads", s.global_kv_heads}};
    }
  }
  text["layer_types"] = layer_types;
  text["max_position_embeddings"] = s.max_position_embeddings;
  text["model_type"] = "gemma4_unified_text";
  text["num_attention_heads"] = s.num_heads;
  text["num_hidden_layers"] = s.num_layers;
  text["num_key_value_heads"] = s.num_kv_heads;
  text["num_kv_shared_layers"] = 0;
  text["pad_token_id"] = s.ids.pad;
  text["per_layer_config"] = per_layer;
  text["rms_norm_eps"] = 1e-06;
  text["rope_parameters"] = {
      {"full_attention",
       {{"partial_rotary_factor", 0.25}, {"rope_theta", 1000000.0}, {"rope_type", "proportional"}}},
      {"sliding_attention", {{"rope_theta", 10000.0}, {"rope_type", "default"}}}};
  text["sliding_window"] = s.sliding_window;
  text["tie_word_embeddings"] = true;
  text["use_bidirectional_attention"] = "vision";
  text["use_cache"] = true;
  text["use_double_wide_mlp"] = false;
  text["vocab_size"] = s.vocab_size;

  json audio = SubConfigCommon("gemma4_unified_audio");
  audio["audio_embed_dim"] = kAudioFrame;

  json vision = SubConfigCommon("gemma4_unified_vision");
  vision["mm_embed_dim"] = s.mm_embed_dim;
  vision["mm_posemb_size"] = s.mm_posemb_size;
  vision["output_proj_dims"] = s.hidden_size;
  vision["patch_size"] = 16;
  vision["pooling_kernel_size"] = 3;

  json c;
  c["architectures"] = {"Gemma4UnifiedForConditionalGeneration"};
  c["audio_config"] = audio;
  c["audio_token_id"] = s.ids.audio;
  c["boa_token_id"] = s.ids.boa;
  c["boi_token_id"] = s.ids.boi;
  c["dtype"] = s.dtype == WeightDType::kBF16 ? "bfloat16" : "float32";
  c["eoa_token_index"] = s.ids.eoa;  // Sic: transformers 5.17 writes this key (see the fixture).
  c["eoi_token_id"] = s.ids.eoi;
  c["image_token_id"] = s.ids.image;
  c["initializer_range"] = 0.02;
  c["model_type"] = "gemma4_unified";
  c["text_config"] = text;
  c["tie_word_embeddings"] = true;
  c["transformers_version"] = "5.17.0";
  c["video_token_id"] = s.ids.video;
  c["vision_config"] = vision;
  return c.dump(2) + "\n";
}

std::string GenerationConfigJson(const ModelSpec& s) {
  json g;
  g["_from_model_config"] = true;
  g["bos_token_id"] = s.ids.bos;
  g["eos_token_id"] = EosJson(s.ids);
  g["output_attentions"] = false;
  g["output_hidden_states"] = false;
  g["pad_token_id"] = s.ids.pad;
  g["transformers_version"] = "5.17.0";
  g["use_cache"] = true;
  return g.dump(2) + "\n";
}

std::vector<TensorSpec> CheckpointTensors(const ModelSpec& s) {
  const int64_t H = s.hidden_size, I = s.intermediate_size, M = s.mm_embed_dim;
  std::vector<TensorSpec> t = {
      {"model.embed_audio.embedding_projection.weight", {H, kAudioFrame}},
      {"model.embed_vision.embedding_projection.weight", {H, M}},
      {"model.language_model.embed_tokens.weight", {s.vocab_size, H}},
      {"model.language_model.norm.weight", {H}},
      {"model.vision_embedder.patch_dense.bias", {M}},
      {"model.vision_embedder.patch_dense.weight", {M, kPatchValues}},
      {"model.vision_embedder.patch_ln1.bias", {kPatchValues}},
      {"model.vision_embedder.patch_ln1.weight", {kPatchValues}},
      {"model.vision_embedder.patch_ln2.bias", {M}},
      {"model.vision_embedder.patch_ln2.weight", {M}},
      {"model.vision_embedder.pos_embedding", {s.mm_posemb_size, 2, M}},
      {"model.vision_embedder.pos_norm.bias", {M}},
      {"model.vision_embedder.pos_norm.weight", {M}},
  };
  for (int32_t i = 0; i < s.num_layers; ++i) {
    const bool global = s.IsGlobal(i);
    const int64_t hd = global ? s.global_head_dim : s.head_dim;
    const int64_t kv = global ? s.global_kv_heads : s.num_kv_heads;
    const std::string p = absl::StrCat("model.language_model.layers.", i, ".");
    for (const char* norm : {"input_layernorm", "post_attention_layernorm",
                             "pre_feedforward_layernorm", "post_feedforward_layernorm"}) {
      t.push_back({p + norm + ".weight", {H}});
    }
    t.push_back({p + "layer_scalar", {1}});
    t.push_back({p + "mlp.gate_proj.weight", {I, H}});
    t.push_back({p + "mlp.up_proj.weight", {I, H}});
    t.push_back({p + "mlp.down_proj.weight", {H, I}});
    t.push_back({p + "self_attn.q_proj.weight", {s.num_heads * hd, H}});
    t.push_back({p + "self_attn.k_proj.weight", {kv * hd, H}});
    // Global layers take V from the K projection (attention_k_eq_v): no v_proj.
    if (!global) t.push_back({p + "self_attn.v_proj.weight", {kv * hd, H}});
    t.push_back({p + "self_attn.o_proj.weight", {H, s.num_heads * hd}});
    t.push_back({p + "self_attn.q_norm.weight", {hd}});
    t.push_back({p + "self_attn.k_norm.weight", {hd}});
  }
  std::sort(t.begin(), t.end(),
            [](const TensorSpec& a, const TensorSpec& b) { return a.name < b.name; });
  return t;
}

std::vector<float> TensorValues(const ModelSpec& spec, const TensorSpec& tensor) {
  SplitMix64 rng(StreamKey(spec.seed, tensor.name));
  std::vector<float> v(NumElements(tensor.shape));
  const std::string& n = tensor.name;
  if (EndsWith(n, "layer_scalar")) {
    for (float& x : v) x = static_cast<float>(0.5 + rng.Uniform());
  } else {
    FillNormal(rng, v);
    // The same rules, in the same order, as gemma4_golden.py. NOTE: like the script, a 1-D
    // tensor whose name contains "norm" or "ln" counts as a norm weight, so the LayerNorm
    // biases (patch_ln1/2.bias, pos_norm.bias) get 1 + 0.2 N too.
    if (tensor.shape.size() == 1 && (Contains(n, "norm") || Contains(n, "ln"))) {
      for (float& x : v) x = 1.0f + 0.2f * x;
    } else if (tensor.shape.size() == 1) {
      for (float& x : v) x = 0.1f * x;
    } else if (Contains(n, "pos_embedding") || Contains(n, "embed_tokens")) {
      for (float& x : v) x = 0.5f * x;
    } else {
      const float scale = 1.0f / std::sqrt(static_cast<float>(tensor.shape.back()));
      for (float& x : v) x *= scale;
    }
  }
  for (float& x : v) x = Bf16ToFloat(FloatToBf16(x));
  return v;
}

std::string SafetensorsHeader(const std::vector<TensorSpec>& tensors, WeightDType dtype) {
  std::string h = "{\"__metadata__\":{\"format\":\"pt\"}";
  uint64_t offset = 0;
  for (const TensorSpec& t : tensors) {
    const uint64_t bytes = NumElements(t.shape) * DTypeBytes(dtype);
    absl::StrAppend(&h, ",\"", t.name, "\":{\"dtype\":\"", DTypeName(dtype), "\",\"shape\":[",
                    absl::StrJoin(t.shape, ","), "],\"data_offsets\":[", offset, ",",
                    offset + bytes, "]}");
    offset += bytes;
  }
  h += "}";
  h.append((8 - h.size() % 8) % 8, ' ');
  return h;
}

absl::Status WriteSafetensors(const ModelSpec& spec, const std::string& path) {
  const std::vector<TensorSpec> tensors = CheckpointTensors(spec);
  const std::string header = SafetensorsHeader(tensors, spec.dtype);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::UnavailableError(absl::StrCat("cannot open ", path, " for writing"));
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i));
  out.write(reinterpret_cast<const char*>(length), 8);
  out.write(header.data(), header.size());
  std::vector<uint8_t> bytes;
  for (const TensorSpec& t : tensors) {
    const std::vector<float> values = TensorValues(spec, t);
    bytes.resize(values.size() * DTypeBytes(spec.dtype));
    // Little-endian, byte by byte, so the file is the same on any host.
    for (size_t i = 0; i < values.size(); ++i) {
      if (spec.dtype == WeightDType::kBF16) {
        const uint16_t b = FloatToBf16(values[i]);
        bytes[2 * i] = static_cast<uint8_t>(b);
        bytes[2 * i + 1] = static_cast<uint8_t>(b >> 8);
      } else {
        uint32_t b;
        std::memcpy(&b, &values[i], 4);
        for (int k = 0; k < 4; ++k) bytes[4 * i + k] = static_cast<uint8_t>(b >> (8 * k));
      }
    }
    out.write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("writing ", path, " failed"));
  return absl::OkStatus();
}

absl::Status WriteModel(const ModelSpec& spec, const std::string& dir) {
  if (absl::Status st = ValidateModelSpec(spec); !st.ok()) return st;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  const std::pair<std::string, std::string> files[] = {
      {"config.json", ConfigJson(spec)}, {"generation_config.json", GenerationConfigJson(spec)}};
  for (const auto& [name, text] : files) {
    const std::string path = dir + "/" + name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) return absl::UnavailableError(absl::StrCat("writing ", path, " failed"));
  }
  return WriteSafetensors(spec, dir + "/model.safetensors");
}

}  // namespace tessera::tools
