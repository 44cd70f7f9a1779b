#include "tools/gguf_convert.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "runtime/model/gguf_model.h"
#include "runtime/model/gguf_tokenizer.h"
#include "runtime/model/gguf_writer.h"
#include "runtime/model/model_config.h"
#include "runtime/model/safetensors.h"
#include "runtime/quant/quantize.h"

namespace tessera::tools {
namespace {

using runtime::GgmlType;
using runtime::GgufWriter;

struct FileType {
  const char* name;
  uint32_t ftype;  // LLAMA_FTYPE_*
  GgmlType base;
};

// llama.h's llama_ftype values for the types this tool writes.
constexpr FileType kFileTypes[] = {
    {"F32", 0, GgmlType::kF32},      {"F16", 1, GgmlType::kF16},
    {"BF16", 32, GgmlType::kBF16},   {"Q4_0", 2, GgmlType::kQ4_0},
    {"Q4_1", 3, GgmlType::kQ4_1},    {"Q8_0", 7, GgmlType::kQ8_0},
    {"Q4_K_S", 14, GgmlType::kQ4_K}, {"Q4_K_M", 15, GgmlType::kQ4_K},
    {"Q5_K_S", 16, GgmlType::kQ5_K}, {"Q5_K_M", 17, GgmlType::kQ5_K},
    {"Q6_K", 18, GgmlType::kQ6_K},
};

absl::StatusOr<const FileType*> FindFileType(const std::string& name) {
  for (const FileType& t : kFileTypes) {
    if (name == t.name) return &t;
  }
  return absl::InvalidArgumentError(
      "unknown GGUF file type '" + name +
      "' (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q6_K, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M)");
}

bool IsFloat(GgmlType t) {
  return t == GgmlType::kF32 || t == GgmlType::kF16 || t == GgmlType::kBF16;
}

int64_t BlockElems(GgmlType t) { return runtime::quant::Traits(t).block_elems; }

// llama-quant.cpp's use_more_bits.
bool UseMoreBits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string ReadFileOr(const std::string& path, const std::string& fallback) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fallback;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A checkpoint tensor to write: its GGUF name, source, and how its data is laid out in the file.
struct Planned {
  std::string gguf_name;
  const runtime::TensorView* source = nullptr;  // nullptr for generated tensors (rope_freqs).
  std::vector<int64_t> ne;                      // ggml order.
  GgmlType type = GgmlType::kF32;
  std::vector<float> generated;  // rope_freqs.
  // mmproj permutations.
  enum class Permute { kNone, kChwColumns, kChw, kPosEmbd } permute = Permute::kNone;
};

// The source values in the file's order (applying the converter's permutations).
absl::StatusOr<std::vector<float>> Values(const Planned& p) {
  if (p.source == nullptr) return p.generated;
  TESSERA_ASSIGN_OR_RETURN(std::vector<float> v, runtime::ToFloatVector(*p.source));
  constexpr int64_t kPatch = 48;
  switch (p.permute) {
    case Planned::Permute::kNone:
      return v;
    case Planned::Permute::kChwColumns: {
      const int64_t cols = p.ne[0], rows = p.ne[1];
      std::vector<float> out(v.size());
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t i = 0; i < cols; ++i)
          out[r * cols + i] = v[r * cols + runtime::HwcColumn(i, kPatch)];
      }
      return out;
    }
    case Planned::Permute::kChw: {
      std::vector<float> out(v.size());
      for (size_t i = 0; i < v.size(); ++i) out[i] = v[runtime::HwcColumn(i, kPatch)];
      return out;
    }
    case Planned::Permute::kPosEmbd: {
      // [P, 2, D] -> [2, P, D].
      const int64_t D = p.ne[0], P = p.ne[1];
      std::vector<float> out(v.size());
      for (int64_t pos = 0; pos < P; ++pos) {
        for (int64_t xy = 0; xy < 2; ++xy) {
          std::copy(&v[(pos * 2 + xy) * D], &v[(pos * 2 + xy) * D] + D, &out[(xy * P + pos) * D]);
        }
      }
      return out;
    }
  }
  return v;
}

void AddPlanned(const Planned& p, GgufWriter* w) {
  w->AddTensor(p.gguf_name, p.type, p.ne, [p](std::string* out) -> absl::Status {
    TESSERA_ASSIGN_OR_RETURN(std::vector<float> v, Values(p));
    const int64_t cols = p.ne[0];
    const int64_t rows = static_cast<int64_t>(v.size()) / cols;
    TESSERA_ASSIGN_OR_RETURN(int64_t row_bytes, runtime::quant::RowBytes(p.type, cols));
    out->assign(rows * row_bytes, '\0');
    for (int64_t r = 0; r < rows; ++r) {
      absl::Status s =
          runtime::quant::QuantizeRow(p.type, &v[r * cols], &(*out)[r * row_bytes], cols);
      if (!s.ok()) return absl::InternalError(absl::StrCat(p.gguf_name, ": ", s.message()));
    }
    return absl::OkStatus();
  });
}

uint64_t Params(const std::vector<Planned>& tensors) {
  uint64_t n = 0;
  for (const Planned& t : tensors) {
    uint64_t e = 1;
    for (int64_t d : t.ne) e *= d;
    n += e;
  }
  return n;
}

std::string DefaultName(const std::string& dir) {
  std::string base = std::filesystem::path(dir).filename().string();
  if (base.empty()) base = std::filesystem::path(dir).parent_path().filename().string();
  if (!base.empty()) base[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(base[0])));
  return base;
}

}  // namespace

absl::StatusOr<uint32_t> LlamaFileType(const std::string& type) {
  TESSERA_ASSIGN_OR_RETURN(const FileType* t, FindFileType(type));
  return t->ftype;
}

std::string SizeLabel(uint64_t params) {
  double scaled;
  const char* suffix;
  if (params > 1e12) {
    scaled = params * 1e-12, suffix = "T";
  } else if (params > 1e9) {
    scaled = params * 1e-9, suffix = "B";
  } else if (params > 1e6) {
    scaled = params * 1e-6, suffix = "M";
  } else {
    scaled = params * 1e-3, suffix = "K";
  }
  const std::string rounded = std::to_string(static_cast<long long>(std::nearbyint(scaled)));
  const size_t first = rounded.find_first_not_of('0');
  const int digits = first == std::string::npos ? 0 : static_cast<int>(rounded.size() - first);
  const int fix = std::max(2 - digits, 0);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f%s", fix, scaled, suffix);
  return buf;
}

absl::StatusOr<std::vector<std::pair<std::string, GgmlType>>> QuantizationPlan(
    const std::string& type, const std::vector<MatrixInfo>& matrices) {
  TESSERA_ASSIGN_OR_RETURN(const FileType* ft, FindFileType(type));
  const std::string name = ft->name;
  int n_attn_v = 0, n_ffn_down = 0;
  for (const MatrixInfo& m : matrices) {
    n_attn_v += EndsWith(m.name, "attn_v.weight");
    n_ffn_down += EndsWith(m.name, "ffn_down.weight");
  }
  int i_attn_v = 0, i_ffn_down = 0;
  std::vector<std::pair<std::string, GgmlType>> plan;
  for (const MatrixInfo& m : matrices) {
    GgmlType t = ft->base;
    if (!IsFloat(ft->base)) {
      // llama_tensor_get_type_impl, for the mixes this tool writes.
      if (m.name == "token_embd.weight") {
        // The tied embedding takes the output tensor's rule.
        if (m.row_length % BlockElems(t) != 0) {
          t = GgmlType::kQ8_0;
        } else if (t != GgmlType::kQ8_0) {
          t = GgmlType::kQ6_K;
        }
      } else if (EndsWith(m.name, "attn_v.weight")) {
        if ((name == "Q4_K_M" || name == "Q5_K_M") && UseMoreBits(i_attn_v, n_attn_v)) {
          t = GgmlType::kQ6_K;
        } else if (name == "Q4_K_S" && i_attn_v < 4) {
          t = GgmlType::kQ5_K;
        }
        ++i_attn_v;
      } else if (EndsWith(m.name, "ffn_down.weight")) {
        if ((name == "Q4_K_M" || name == "Q5_K_M") && UseMoreBits(i_ffn_down, n_ffn_down)) {
          t = GgmlType::kQ6_K;
        } else if (name == "Q4_K_S" && i_ffn_down < n_ffn_down / 8) {
          t = GgmlType::kQ5_K;
        }
        ++i_ffn_down;
      }
      // tensor_type_fallback: a row length the type's block does not divide.
      if (m.row_length % BlockElems(t) != 0) {
        switch (t) {
          case GgmlType::kQ4_K:
            t = GgmlType::kQ5_0;
            break;
          case GgmlType::kQ5_K:
            t = GgmlType::kQ5_1;
            break;
          case GgmlType::kQ6_K:
            t = GgmlType::kQ8_0;
            break;
          default:
            break;
        }
        if (m.row_length % BlockElems(t) != 0) t = GgmlType::kF16;
      }
    }
    if (!runtime::quant::CanQuantize(t)) {
      return absl::InvalidArgumentError(absl::StrCat(
          m.name, ": llama-quantize would write ", runtime::GgmlTypeName(t), " (rows of ",
          m.row_length, "), which runtime/quant cannot write; choose another --type"));
    }
    plan.emplace_back(m.name, t);
  }
  return plan;
}

absl::Status ConvertToGguf(const GgufConvertOptions& o) {
  TESSERA_ASSIGN_OR_RETURN(runtime::ModelConfig config, runtime::LoadModelConfig(o.model_dir));
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<runtime::Checkpoint> ckpt,
                           runtime::Checkpoint::Open(o.model_dir));
  TESSERA_ASSIGN_OR_RETURN(const FileType* ft, FindFileType(o.type));
  const runtime::TextConfig& t = config.text;
  const std::string name = o.name.empty() ? DefaultName(o.model_dir) : o.name;
  const auto source = [&](const std::string& hf) -> absl::StatusOr<const runtime::TensorView*> {
    const runtime::TensorView* v = ckpt->Find(hf);
    if (v == nullptr) return absl::InvalidArgumentError(o.model_dir + ": missing tensor " + hf);
    return v;
  };

  // Tensors in the converter's order: rope_freqs (generated first), then the checkpoint's in name
  // order (safetensors sorts them), mapped to GGUF names.
  std::vector<Planned> tensors;
  const int32_t first_global = config.first_layer_of(runtime::LayerType::kGlobal);
  if (first_global >= 0) {
    const runtime::LayerConfig& g = t.layers[first_global];
    Planned p;
    p.gguf_name = "rope_freqs.weight";
    p.ne = {g.head_dim / 2};
    p.generated.assign(g.head_dim / 2, 1e30f);
    for (int32_t i = 0; i < g.rope_pairs; ++i) p.generated[i] = 1.0f;
    tensors.push_back(std::move(p));
  }
  const std::string lm = "model.language_model.";
  static const std::vector<std::pair<std::string, std::string>> kLayerNames = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"layer_scalar", "layer_output_scale.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"post_attention_layernorm.weight", "post_attention_norm.weight"},
      {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
      {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
  };
  // HF names sort "layers.10" before "layers.2": follow the checkpoint's (sorted) order.
  std::map<std::string, std::string> hf_to_gguf;
  hf_to_gguf[lm + "embed_tokens.weight"] = "token_embd.weight";
  hf_to_gguf[lm + "norm.weight"] = "output_norm.weight";
  for (int32_t i = 0; i < t.num_layers; ++i) {
    for (const auto& [hf, gg] : kLayerNames) {
      if (gg == "attn_v.weight" && t.layers[i].k_eq_v) continue;
      hf_to_gguf[absl::StrCat(lm, "layers.", i, ".", hf)] = absl::StrCat("blk.", i, ".", gg);
    }
  }
  for (const auto& [hf, gg] : hf_to_gguf) {
    Planned p;
    p.gguf_name = gg;
    TESSERA_ASSIGN_OR_RETURN(p.source, source(hf));
    p.ne.assign(p.source->shape.rbegin(), p.source->shape.rend());
    if (p.ne.empty()) p.ne = {1};
    tensors.push_back(std::move(p));
  }
  // Quantized types by llama-quantize's rules over the 2-D tensors, in file order (it walks the
  // converter's file in that order); 1-D tensors stay F32 as the converter and llama-quantize keep
  // them.
  std::vector<MatrixInfo> matrices;
  for (const Planned& p : tensors) {
    if (p.ne.size() >= 2) matrices.push_back({p.gguf_name, p.ne[0]});
  }
  // llama-quantize visits the tensors of the converter's file in order; its counters follow the
  // layer order of that file, which is the checkpoint's sorted order.
  TESSERA_ASSIGN_OR_RETURN(auto plan, QuantizationPlan(o.type, matrices));
  std::map<std::string, GgmlType> type_of(plan.begin(), plan.end());
  for (Planned& p : tensors) {
    auto it = type_of.find(p.gguf_name);
    p.type = it == type_of.end() ? GgmlType::kF32 : it->second;
  }

  GgufWriter w;
  w.AddString("general.architecture", "gemma4");
  w.AddString("general.type", "model");
  w.AddString("general.name", name);
  w.AddString("general.size_label", SizeLabel(Params(tensors)));
  w.AddUint32("gemma4.block_count", t.num_layers);
  w.AddUint32("gemma4.context_length", t.max_position_embeddings);
  w.AddUint32("gemma4.embedding_length", t.hidden_size);
  w.AddUint32("gemma4.feed_forward_length", t.intermediate_size);
  w.AddUint32("gemma4.attention.head_count", t.num_heads);
  std::vector<int32_t> kv;
  std::vector<bool> swa;
  for (const runtime::LayerConfig& l : t.layers) {
    kv.push_back(l.num_kv_heads);
    swa.push_back(l.type == runtime::LayerType::kSliding);
  }
  const int32_t first_sliding = config.first_layer_of(runtime::LayerType::kSliding);
  const runtime::LayerConfig& gl = t.layers[first_global >= 0 ? first_global : 0];
  const runtime::LayerConfig& sl = t.layers[first_sliding >= 0 ? first_sliding : 0];
  w.AddInt32Array("gemma4.attention.head_count_kv", kv);
  w.AddFloat32("gemma4.rope.freq_base", gl.rope_theta);
  w.AddFloat32("gemma4.rope.freq_base_swa", sl.rope_theta);
  w.AddFloat32("gemma4.attention.layer_norm_rms_epsilon", t.rms_norm_eps);
  w.AddUint32("gemma4.attention.key_length", gl.head_dim);
  w.AddUint32("gemma4.attention.value_length", gl.head_dim);
  w.AddUint32("general.file_type", ft->ftype);
  w.AddFloat32("gemma4.final_logit_softcapping", t.final_logit_softcapping);
  w.AddUint32("gemma4.attention.sliding_window", t.sliding_window);
  w.AddUint32("gemma4.attention.shared_kv_layers", 0);
  w.AddUint32("gemma4.embedding_length_per_layer_input", 0);
  w.AddBoolArray("gemma4.attention.sliding_window_pattern", swa);
  w.AddUint32("gemma4.attention.key_length_swa", sl.head_dim);
  w.AddUint32("gemma4.attention.value_length_swa", sl.head_dim);
  w.AddUint32("gemma4.rope.dimension_count", gl.head_dim);
  w.AddUint32("gemma4.rope.dimension_count_swa", sl.head_dim);
  w.AddUint32("general.quantization_version", 2);
  runtime::HfTokenizerFiles tok;
  tok.tokenizer_json =
      ReadFileOr(o.tokenizer_json.empty() ? o.model_dir + "/tokenizer.json" : o.tokenizer_json, "");
  tok.tokenizer_config_json =
      ReadFileOr(o.tokenizer_config_json.empty() ? o.model_dir + "/tokenizer_config.json"
                                                 : o.tokenizer_config_json,
                 "");
  tok.chat_template = ReadFileOr(
      o.chat_template.empty() ? o.model_dir + "/chat_template.jinja" : o.chat_template, "");
  if (!tok.tokenizer_json.empty()) {
    TESSERA_RETURN_IF_ERROR(runtime::AddGgufTokenizerMetadata(tok, &w));
  }
  for (const Planned& p : tensors) AddPlanned(p, &w);
  TESSERA_RETURN_IF_ERROR(w.WriteFile(o.out));

  if (o.mmproj_out.empty()) return absl::OkStatus();
  if (!config.vision.present && !config.audio.present) {
    return absl::InvalidArgumentError(o.model_dir + " has neither vision nor audio weights");
  }
  TESSERA_ASSIGN_OR_RETURN(const FileType* mft, FindFileType(o.mmproj_type));
  if (!IsFloat(mft->base)) {
    return absl::InvalidArgumentError("--mmproj_type must be F32, F16 or BF16");
  }
  std::vector<Planned> mm;
  const auto add = [&](const std::string& hf, const std::string& gg, Planned::Permute perm,
                       bool force_f32) -> absl::Status {
    Planned p;
    p.gguf_name = gg;
    TESSERA_ASSIGN_OR_RETURN(p.source, source(hf));
    p.ne.assign(p.source->shape.rbegin(), p.source->shape.rend());
    p.permute = perm;
    if (perm == Planned::Permute::kPosEmbd) p.ne = {p.ne[0], p.ne[2], 2};
    p.type = p.ne.size() >= 2 && !force_f32 ? mft->base : GgmlType::kF32;
    mm.push_back(std::move(p));
    return absl::OkStatus();
  };
  using P = Planned::Permute;
  if (config.audio.present) {
    TESSERA_RETURN_IF_ERROR(add("model.embed_audio.embedding_projection.weight",
                                "mm.a.input_projection.weight", P::kNone, false));
  }
  if (config.vision.present) {
    const std::string v = "model.vision_embedder.";
    TESSERA_RETURN_IF_ERROR(add("model.embed_vision.embedding_projection.weight",
                                "mm.input_projection.weight", P::kNone, false));
    TESSERA_RETURN_IF_ERROR(add(v + "patch_dense.bias", "v.patch_embd.bias", P::kNone, false));
    TESSERA_RETURN_IF_ERROR(
        add(v + "patch_dense.weight", "v.patch_embd.weight", P::kChwColumns, false));
    TESSERA_RETURN_IF_ERROR(add(v + "patch_ln1.bias", "v.patch_norm.1.bias", P::kChw, false));
    TESSERA_RETURN_IF_ERROR(add(v + "patch_ln1.weight", "v.patch_norm.1.weight", P::kChw, false));
    TESSERA_RETURN_IF_ERROR(add(v + "patch_ln2.bias", "v.patch_norm.2.bias", P::kNone, false));
    TESSERA_RETURN_IF_ERROR(add(v + "patch_ln2.weight", "v.patch_norm.2.weight", P::kNone, false));
    // The converter forces the position table to F32.
    TESSERA_RETURN_IF_ERROR(add(v + "pos_embedding", "v.position_embd.weight", P::kPosEmbd, true));
    TESSERA_RETURN_IF_ERROR(add(v + "pos_norm.bias", "v.patch_norm.3.bias", P::kNone, false));
    TESSERA_RETURN_IF_ERROR(add(v + "pos_norm.weight", "v.patch_norm.3.weight", P::kNone, false));
  }
  GgufWriter m;
  m.AddString("general.architecture", "clip");
  m.AddString("general.type", "mmproj");
  m.AddString("general.name", name);
  m.AddString("general.size_label", SizeLabel(Params(mm)));
  m.AddUint32("general.file_type", mft->ftype);
  m.AddBool("clip.has_vision_encoder", config.vision.present);
  if (config.vision.present) {
    m.AddUint32("clip.vision.projection_dim", t.hidden_size);
    m.AddUint32("clip.vision.image_size", 224);  // Unused; the converter writes it.
    m.AddUint32("clip.vision.patch_size", 16);   // 16 x pooling 3 = the 48-pixel patches.
    m.AddUint32("clip.vision.embedding_length", config.vision.mm_embed_dim);
    m.AddUint32("clip.vision.feed_forward_length", 0);
    m.AddUint32("clip.vision.block_count", 0);
    m.AddUint32("clip.vision.attention.head_count", 0);
    m.AddFloat32Array("clip.vision.image_mean", {0.0f, 0.0f, 0.0f});
    m.AddFloat32Array("clip.vision.image_std", {1.0f, 1.0f, 1.0f});
  }
  m.AddBool("clip.has_audio_encoder", config.audio.present);
  if (config.audio.present) {
    m.AddUint32("clip.audio.projection_dim", t.hidden_size);
    m.AddUint32("clip.audio.embedding_length", config.audio.audio_embed_dim);
    m.AddUint32("clip.audio.feed_forward_length", 0);
    m.AddUint32("clip.audio.block_count", 0);
    m.AddUint32("clip.audio.attention.head_count", 0);
  }
  if (config.vision.present) {
    m.AddString("clip.vision.projector_type", "gemma4uv");
    m.AddFloat32("clip.vision.attention.layer_norm_epsilon", 1e-6f);
  }
  if (config.audio.present) {
    m.AddString("clip.audio.projector_type", "gemma4ua");
    m.AddUint32("clip.audio.num_mel_bins", 128);
    m.AddFloat32("clip.audio.attention.layer_norm_epsilon", 1e-6f);
  }
  m.AddUint32("general.quantization_version", 2);
  for (const Planned& p : mm) AddPlanned(p, &m);
  return m.WriteFile(o.mmproj_out);
}

}  // namespace tessera::tools
