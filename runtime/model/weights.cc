#include "runtime/model/weights.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "runtime/quant/dequantize.h"

namespace tessera::runtime {
namespace {

class Binder {
 public:
  Binder(const Checkpoint& ckpt, ModelWeights* w) : ckpt_(ckpt), w_(w) {}

  absl::StatusOr<const TensorView*> Get(const std::string& name, std::vector<int64_t> shape) {
    const TensorView* t = ckpt_.Find(name);
    if (t == nullptr) return absl::InvalidArgumentError("checkpoint is missing tensor " + name);
    if (t->shape != shape) {
      TensorView want;
      want.shape = shape;
      return absl::InvalidArgumentError("tensor " + name + " has shape " + t->ShapeString() +
                                        "; the config implies " + want.ShapeString());
    }
    if (t->dtype != DType::kBF16 && t->dtype != DType::kF16 && t->dtype != DType::kF32) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", name, " has dtype ", DTypeName(t->dtype), "; expected BF16, F16 or F32"));
    }
    w_->total_bytes += t->num_bytes;
    return t;
  }

  absl::Status Vector(const std::string& name, std::vector<int64_t> shape,
                      std::vector<float>* out) {
    auto t = Get(name, shape);
    if (!t.ok()) return t.status();
    auto v = ToFloatVector(**t);
    if (!v.ok()) return v.status();
    *out = std::move(*v);
    return absl::OkStatus();
  }

  absl::Status Matrix(const std::string& name, int64_t rows, int64_t cols, WeightMatrix* out) {
    auto t = Get(name, {rows, cols});
    if (!t.ok()) return t.status();
    out->rows = rows;
    out->cols = cols;
    const TensorView& v = **t;
    if (v.dtype == DType::kBF16) {
      out->type = WeightMatrix::Type::kBF16;
      out->data = v.data;
      return absl::OkStatus();
    }
    out->type = WeightMatrix::Type::kF32;
    if (v.dtype == DType::kF32) {
      out->data = v.data;
      return absl::OkStatus();
    }
    std::unique_ptr<float[]> buf(new float[rows * cols]);
    absl::Status s = ToFloat(v, buf.get());
    if (!s.ok()) return s;
    out->data = buf.get();
    w_->owned.push_back(std::move(buf));
    return absl::OkStatus();
  }

 private:
  const Checkpoint& ckpt_;
  ModelWeights* w_;
};

}  // namespace

absl::Status WeightMatrix::Validate(const std::string& name) const {
  const quant::TypeTraits* t = quant::FindTypeTraits(static_cast<uint32_t>(type));
  if (t == nullptr || !t->dequantizable || type == Type::kQ8_K) {
    return absl::InvalidArgumentError(absl::StrCat(
        "matrix ", name, " has type ", quant::TypeName(type),
        "; supported: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K"));
  }
  if (rows < 0 || cols <= 0 || cols % t->block_elems != 0) {
    return absl::InvalidArgumentError(absl::StrCat("matrix ", name, " is ", rows, " x ", cols,
                                                   ": a ", t->name,
                                                   " row must be a positive "
                                                   "multiple of ",
                                                   t->block_elems, " values"));
  }
  return absl::OkStatus();
}

void WeightMatrix::RowToFloat(int64_t r, float* out) const {
  // Validate() was checked at load; the status cannot fail here.
  quant::DequantizeRow(type, row(r), out, cols).IgnoreError();
}

absl::StatusOr<std::unique_ptr<ModelWeights>> BindWeights(const ModelConfig& config,
                                                          std::unique_ptr<Checkpoint> checkpoint) {
  auto w = std::make_unique<ModelWeights>();
  Binder b(*checkpoint, w.get());
  const TextConfig& t = config.text;
  const int64_t H = t.hidden_size;
  const std::string lm = "model.language_model.";
  TESSERA_RETURN_IF_ERROR(b.Matrix(lm + "embed_tokens.weight", t.vocab_size, H, &w->embed_tokens));
  w->bf16_constants = config.dtype.empty() ? w->embed_tokens.type == WeightMatrix::Type::kBF16
                                           : config.dtype == "bfloat16";
  const float scale = std::sqrt(static_cast<float>(H));
  w->embed_scale = w->bf16_constants ? Bf16ToFloat(FloatToBf16(scale)) : scale;
  TESSERA_RETURN_IF_ERROR(b.Vector(lm + "norm.weight", {H}, &w->final_norm));
  for (int32_t i = 0; i < t.num_layers; ++i) {
    const LayerConfig& lc = t.layers[i];
    const std::string p = absl::StrCat(lm, "layers.", i, ".");
    LayerWeights lw;
    const int64_t qd = static_cast<int64_t>(t.num_heads) * lc.head_dim;
    const int64_t kd = static_cast<int64_t>(lc.num_kv_heads) * lc.head_dim;
    TESSERA_RETURN_IF_ERROR(b.Matrix(p + "self_attn.q_proj.weight", qd, H, &lw.q_proj));
    TESSERA_RETURN_IF_ERROR(b.Matrix(p + "self_attn.k_proj.weight", kd, H, &lw.k_proj));
    if (!lc.k_eq_v)
      TESSERA_RETURN_IF_ERROR(b.Matrix(p + "self_attn.v_proj.weight", kd, H, &lw.v_proj));
    TESSERA_RETURN_IF_ERROR(b.Matrix(p + "self_attn.o_proj.weight", H, qd, &lw.o_proj));
    TESSERA_RETURN_IF_ERROR(b.Vector(p + "self_attn.q_norm.weight", {lc.head_dim}, &lw.q_norm));
    TESSERA_RETURN_IF_ERROR(b.Vector(p + "self_attn.k_norm.weight", {lc.head_dim}, &lw.k_norm));
    TESSERA_RETURN_IF_ERROR(
        b.Matrix(p + "mlp.gate_proj.weight", t.intermediate_size, H, &lw.gate_proj));
    TESSERA_RETURN_IF_ERROR(
        b.Matrix(p + "mlp.up_proj.weight", t.intermediate_size, H, &lw.up_proj));
    TESSERA_RETURN_IF_ERROR(
        b.Matrix(p + "mlp.down_proj.weight", H, t.intermediate_size, &lw.down_proj));
    TESSERA_RETURN_IF_ERROR(b.Vector(p + "input_layernorm.weight", {H}, &lw.input_norm));
    TESSERA_RETURN_IF_ERROR(
        b.Vector(p + "post_attention_layernorm.weight", {H}, &lw.post_attention_norm));
    TESSERA_RETURN_IF_ERROR(
        b.Vector(p + "pre_feedforward_layernorm.weight", {H}, &lw.pre_feedforward_norm));
    TESSERA_RETURN_IF_ERROR(
        b.Vector(p + "post_feedforward_layernorm.weight", {H}, &lw.post_feedforward_norm));
    std::vector<float> scalar;
    TESSERA_RETURN_IF_ERROR(b.Vector(p + "layer_scalar", {1}, &scalar));
    lw.layer_scalar = scalar[0];
    w->layers.push_back(std::move(lw));
  }
  if (config.vision.present) {
    const VisionConfig& vc = config.vision;
    const int64_t D = vc.mm_embed_dim;
    const std::string p = "model.vision_embedder.";
    VisionWeights& v = w->vision;
    constexpr int64_t kPatch = 48 * 48 * 3;
    TESSERA_RETURN_IF_ERROR(b.Vector(p + "patch_ln1.weight", {kPatch}, &v.ln1_weight));
    TESSERA_RETURN_IF_ERROR(b.Vector(p + "patch_ln1.bias", {kPatch}, &v.ln1_bias));
    TESSERA_RETURN_IF_ERROR(b.Matrix(p + "patch_dense.weight", D, kPatch, &v.patch_dense));
    TESSERA_RETURN_IF_ERROR(b.Vector(p + "patch_dense.bias", {D}, &v.patch_dense_bias));
    TESSERA_RETURN_IF_ERROR(b.Vector(p + "patch_ln2.weight", {D}, &v.ln2_weight));
    TESSERA_RETURN_IF_ERROR(b.Vector(p + "patch_ln2.bias", {D}, &v.ln2_bias));
    TESSERA_RETURN_IF_ERROR(
        b.Vector(p + "pos_embedding", {vc.mm_posemb_size, 2, D}, &v.pos_embedding));
    TESSERA_RETURN_IF_ERROR(b.Vector(p + "pos_norm.weight", {D}, &v.pos_norm_weight));
    TESSERA_RETURN_IF_ERROR(b.Vector(p + "pos_norm.bias", {D}, &v.pos_norm_bias));
    TESSERA_RETURN_IF_ERROR(
        b.Matrix("model.embed_vision.embedding_projection.weight", H, D, &v.projection));
    w->has_vision = true;
  }
  if (config.audio.present) {
    TESSERA_RETURN_IF_ERROR(b.Matrix("model.embed_audio.embedding_projection.weight", H,
                                     config.audio.audio_embed_dim, &w->audio.projection));
    w->has_audio = true;
  }
  w->checkpoint = std::move(checkpoint);
  return w;
}

}  // namespace tessera::runtime
